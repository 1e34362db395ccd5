"""The operation alphabet: presets (`--model small|thread`), config overrides (`--set`), the
operation filter (`--ops`), and the `Problem` every search (and every worker) rebuilds from.

An action is one scenario step written as the YAML mapping a scenario file holds, e.g.
`{"write": {"proc": "A", "vma": "buf", "pages": "0-3", "tag": "distinct"}}`; all actions are
parsed once by the scenario loader, so what the search runs is exactly what a counterexample
file replays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from mteswap.scenario.load import OPS, Config, Scenario, ScenarioError, Step, parse_scenario

FIXED_TAG = 5                      # the one fixed tag of the alphabet (besides `distinct`)


@dataclass(frozen=True)
class Preset:
    name: str
    config: dict                   # scenario `config` keys
    procs: tuple[str, ...]         # A first; the others are created by fork A -> X
    vma: str
    vma_pages: int
    page_sets: tuple               # pages fields: int, "a-b" or "all"
    description: str
    reaches: str = ""              # which sometimes properties (explore/model.py) it can reach (--help)
    parallel: bool = False         # a small alphabet of its own, with parallel blocks (issue 14)


_SMALL = Preset(
    "small", {"folio_pages": [1, 4], "swap_slots": 1024, "frames": 16, "swap_device": "ssd"},
    ("A", "B"), "buf", 4, (0, 1, 2, 3, "0-3"),
    "processes A and B (B by fork), one VMA of 4 pages, folio_pages [1, 4], 16 frames, "
    "1024 swap slots (slot 0 is the header: whole-folio swap-out needs the second cluster)",
    "every one but a large swap-in (ssd: swap-in is order 0), all by depth 4")

PRESETS = {
    "small": _SMALL,
    "zram": dataclasses.replace(
        _SMALL, name="zram", config=dict(_SMALL.config, swap_device="zram"),
        description="small on a zram device (synchronous I/O): v6.12's large swap-in "
        "(do_swap_page of a whole 4-page folio) becomes reachable, and with it rfc-v2's and "
        "rfc-v3's failures",
        reaches="every one, a large swap-in included (from depth 4): rfc-v2 and rfc-v3 fail"),
    "thread": Preset(
        "thread", {"folio_pages": [1, 16], "swap_slots": 1024, "frames": 48, "swap_device": "ssd"},
        ("A", "B"), "buf", 16, (0, 1, 15, "0-3", "4-7", "0-15"),
        "processes A and B (B by fork), one VMA of 16 pages, folio_pages [1, 16] (the discussion's 64 KiB case), "
        "48 frames, 1024 swap slots",
        "no large swap-in (ssd)"),
}

# Issue 14: presets whose alphabet contains parallel blocks (explore/blocks.py runs each block
# under every interleaving). One MTE page of A (B by fork): enough to put it in swap and race
# on its entry, small enough that each block is explored in a second or two (the longest, a
# fault against a fault, a write and a pageout: reclaim's steps r1-r4 make ~2,300 interleavings).
_PAR = dict(folio_pages=[1], swap_slots=2, frames=16)
for _dev in ("zram", "ssd"):
    PRESETS[f"parallel-{_dev}"] = Preset(
        f"parallel-{_dev}", dict(_PAR, swap_device=_dev), ("A", "B"), "buf", 1, (0,),
        f"one MTE page of A (B by fork) on {_dev}, and parallel blocks: two faults (threads of "
        "A; A and B; one thread faulting, rewriting and swapping out again), a fault and a zap "
        "(MADV_DONTNEED), a fault and reclaim (MADV_PAGEOUT), a fault and swapoff; every block "
        "is explored under every interleaving (DPOR, docs/concurrency.md §5)",
        "tags restored from swap", parallel=True)


def parallel_actions(p: Preset) -> list[dict]:
    """The parallel presets' alphabet: the sequential steps that put page 0 in swap, then
    blocks racing a fault of page 0 against a second fault, a zap, reclaim and swapoff."""
    base = {"vma": p.vma, "pages": 0}
    a0, b0 = dict(base, proc="A"), dict(base, proc="B")
    fault = {"read": a0}
    return [
        {"mmap": dict(a0, pages=p.vma_pages, mte=True)},
        {"write": dict(a0, tag=FIXED_TAG)},
        {"fork": {"proc": "A", "child": "B"}},
        {"pageout": dict(a0)},
        {"reclaim": dict(a0)},
        {"parallel": [fault, {"read": a0}]},
        {"parallel": [fault, {"read": b0}]},
        {"parallel": [fault, [{"read": a0}, {"write": dict(a0, tag=FIXED_TAG + 1)},
                              {"pageout": dict(a0)}]]},
        {"parallel": [fault, {"dontneed": a0}]},
        {"parallel": [fault, {"pageout": a0}]},
        {"parallel": [fault, "swapoff"]},
    ]


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(Config))


class BadInput(ValueError):
    """A bad --model/--set/--ops/--design value: exit status 2."""


def parse_set(items: list[str]) -> dict:
    """`--set key=value` items -> config mapping (values parsed as YAML scalars/lists)."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--set: expected key=value, got {item!r}")
        if key not in CONFIG_KEYS:
            raise BadInput(f"--set: unknown config key {key!r}; known: {', '.join(CONFIG_KEYS)}")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise BadInput(f"--set: bad value for {key}: {value!r}") from None
    return out


def preset_actions(p: Preset) -> list[dict]:
    """Every operation of the scenario format (and `stg`), with small argument sets."""
    acts: list[dict] = []
    v = p.vma
    for proc in p.procs:
        for mte in (True, False):
            acts.append({"mmap": {"proc": proc, "vma": v, "pages": p.vma_pages, "mte": mte}})
    for child in p.procs[1:]:
        acts.append({"fork": {"proc": p.procs[0], "child": child}})
    for proc in p.procs:
        for pages in p.page_sets:
            base = {"proc": proc, "vma": v, "pages": pages}
            acts.append({"write": dict(base)})
            acts.append({"write": dict(base, tag="distinct")})
            acts.append({"write": dict(base, tag=FIXED_TAG)})
            acts.append({"read": dict(base)})
            acts.append({"stg": dict(base, tag="distinct")})
            acts.append({"stg": dict(base, tag=FIXED_TAG)})
            for keep in (False, True):
                acts.append({"pageout": dict(base, keep_cached=keep)})
                acts.append({"reclaim": dict(base, keep_cached=keep)})
            acts.append({"dontneed": dict(base)})
            acts.append({"split": dict(base)})
            acts.append({"mprotect": dict(base, mte=True)})
            acts.append({"munmap": dict(base)})
        acts.append({"exit": {"proc": proc}})
    acts.append("evict")
    acts.append("swapoff")
    acts.append("drop_caches")
    return acts


def action_op(action) -> str:
    return action if isinstance(action, str) else next(iter(action))


def _lane_text(lane) -> str:
    return "; ".join(action_text(a) for a in lane) if isinstance(lane, list) else action_text(lane)


def action_text(action) -> str:
    """One-line human form, e.g. `write A buf 0-3 tag=distinct`."""
    if isinstance(action, str):
        return action
    op, args = next(iter(action.items()))
    if op == "parallel":
        return "parallel " + " | ".join(_lane_text(lane) for lane in args)
    parts = [op]
    for k, val in args.items():
        if k in ("proc", "vma", "pages"):
            parts.append(str(val))
        elif k == "child":
            parts.append(f"-> {val}")
        elif val is not False and val is not None:
            parts.append(f"{k}={val}".replace("=True", ""))
    return " ".join(parts)


@dataclass(frozen=True)
class Problem:
    """What to search: picklable, so workers and Dask tasks rebuild everything from it."""
    design: str = "merged"
    model: str = "small"
    overrides: tuple = ()          # ((key, value), ...) from --set
    ops: tuple | None = None       # restrict to these ops (None: all)
    reduce: bool = True            # symmetry reduction (symmetry.py)
    reverts: tuple = ()            # fixes taken out (--revert; config.revert of the scenario)

    def config_doc(self) -> dict:
        doc = dict(PRESETS[self.model].config)
        doc.update(dict(self.overrides))
        if self.reverts:
            doc["revert"] = sorted(set(doc.get("revert", ())) | set(self.reverts))
        return doc

    def actions(self) -> list:
        p = PRESETS[self.model]
        acts = parallel_actions(p) if p.parallel else preset_actions(p)
        if self.ops is not None:
            acts = [a for a in acts if action_op(a) in self.ops]
        return acts


def validate_problem(pr: Problem) -> None:
    if pr.model not in PRESETS:
        raise BadInput(f"--model: unknown model {pr.model!r}; known: {', '.join(PRESETS)}")
    if pr.ops is not None:
        bad = [o for o in pr.ops if o not in OPS]
        if bad:
            raise BadInput(f"--ops: unknown op {bad[0]!r}; known: {', '.join(OPS)}")
        if not pr.ops:
            raise BadInput("--ops: no operation given")
    try:
        scenario_doc(pr, [])
    except ScenarioError as err:
        option = "--revert" if (err.field or "").endswith("revert") else "--set"
        raise BadInput(f"{option}: {err.message} (field {err.field})") from None


def scenario_doc(pr: Problem, actions: list, name: str = "explore", design: str | None = None,
                 expect: dict | None = None, description: str | None = None) -> Any:
    """A scenario-format-1 document for `actions` (validated: ScenarioError if bad)."""
    doc: dict = {"version": 1, "name": name}
    if description:
        doc["description"] = description
    if design:
        doc["design"] = design
    doc["config"] = pr.config_doc()
    if expect:
        doc["expect"] = expect
    doc["steps"] = list(actions) or ["evict"]
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    return parse_scenario(text, file=f"<{name}>")


class Alphabet:
    """Parsed actions plus the helpers the search needs: the scenario a runner starts from and
    the Step objects for a given step index."""

    def __init__(self, pr: Problem):
        self.problem = pr
        self.actions = pr.actions()
        sc = scenario_doc(pr, self.actions)
        self.scenario: Scenario = sc
        self.base_steps: list[Step] = list(sc.steps) if self.actions else []
        self._steps: dict[int, list[Step]] = {}
        # lane steps of the alphabet: their write values are renumbered per position (_at)
        self._lane_steps = max((ls.value_base for s in self.base_steps if s.op == "parallel"
                                for lane in s.args["lanes"] for ls in lane), default=0) + 1
        names = sorted({s.args.get("vma") for s in self.base_steps if s.args.get("vma")})
        self.vma_ids = {n: i for i, n in enumerate(names)}

    def steps_at(self, index: int) -> list[Step]:
        """Each action as the step with 1-based position `index` (values written depend on it)."""
        got = self._steps.get(index)
        if got is None:
            got = [Step(index, s.op, _at(s.args, index, self._lane_steps)
                        if s.op == "parallel" else s.args) for s in self.base_steps]
            self._steps[index] = got
        return got


# Write values of lane steps are numbered from here: above every sequential step's position
# (a sequential `write` at position k stores values numbered k), far beyond any depth.
LANE_VALUES = 1 << 24


def _at(args: dict, index: int, stride: int) -> dict:
    """A parallel block's lanes with their steps at position `index` (what a violation in a
    lane names: the block's step). A lane `write` stores values numbered by position too
    (`value_base`, distinct from every other position's and every sequential step's): the
    same block run twice in one path writes different data and tag generations each time,
    as a scenario file of that path does, so a mix of the two runs' data and tags is seen."""
    return {"lanes": tuple(tuple(dataclasses.replace(
        s, index=index, value_base=LANE_VALUES + index * stride + s.value_base) for s in lane)
                           for lane in args["lanes"])}


def step_action(step: Step):
    """The scenario-file mapping of a parsed step (the inverse of the loader, defaults left
    out), for writing a counterexample: `{"write": {"proc": "A", ..., "pages": "0-3"}}`."""
    if step.op == "parallel":
        return {"parallel": [step_action(lane[0]) if len(lane) == 1
                             else [step_action(s) for s in lane] for lane in step.args["lanes"]]}
    defaults = {spec.name: spec.default for spec in OPS[step.op] if not spec.required}
    args = {}
    for key, value in step.args.items():
        if key in defaults and value == defaults[key] and key != "mte":
            continue
        if isinstance(value, range):
            value = f"{value.start}-{value.stop - 1}" if len(value) > 1 else value.start
        elif isinstance(value, tuple):
            value = value[0] if len(value) == 1 else list(value)
        args[key] = value
    return {step.op: args} if args or OPS[step.op] else step.op


def parse_actions(pr: Problem, actions: list) -> list[Step]:
    """Scenario-file mappings -> Steps positioned 1, 2, ... (ScenarioError if bad)."""
    return list(scenario_doc(pr, actions).steps) if actions else []
