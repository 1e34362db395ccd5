"""Hypothesis strategies for scenario files (format 1, docs/scenario-format.md).

- `valid_scenarios()`: scenario dicts that load and that mostly make sense to run: process
  A exists, VMAs are mmap'd before use, pages stay inside what is still mapped.
- `mutated_scenario_texts()`: YAML texts (str or bytes) made from valid scenarios by one
  mutation each, from "untouched" to "random byte flips"; for robustness tests.
- `to_yaml(d)`: dump a scenario dict as YAML text.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import yaml
from hypothesis import strategies as st

DESIGNS = (
    "split-before-swap",
    "rfc-v1",
    "rfc-v2",
    "rfc-v3",
    "restore-all-unmarked",
    "folio-marker",
    "per-folio-flag",
    "merged",
    "merged-split-fix",
)
VMA_NAMES = ("buf", "heap", "data", "stack")  # never reused within a process
CHILD_NAMES = ("B", "C")
MAX_VMA_PAGES = 32
MAX_STEPS = 20
# Ops that need a process with at least one mapped page.
PAGE_OPS = ("munmap", "mprotect", "write", "read", "pageout", "reclaim", "dontneed", "split")


def to_yaml(d: object, flow: bool | None = False) -> str:
    """Dump `d` as YAML in the order given (block style unless `flow`)."""
    # libyaml's dumper when available: same output, much faster in property tests.
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(d, Dumper=dumper, sort_keys=False, allow_unicode=True, default_flow_style=flow)


# ------------------------------------------------------------------ valid scenarios


def _choose(draw, options):
    """draw(st.sampled_from(options)), without building and validating a new strategy
    on every call (a large share of generation time for run-time-computed options)."""
    return options[draw(st.integers(0, len(options) - 1))]


@dataclass
class _Proc:
    vmas: dict[str, set[int]] = field(default_factory=dict)  # VMA -> pages still mapped
    used: set[str] = field(default_factory=set)  # VMA names ever used

    def copy(self) -> _Proc:
        return _Proc({name: set(pages) for name, pages in self.vmas.items()}, set(self.used))


@dataclass
class _World:
    """What the generated steps so far have created, to keep later steps sensible."""

    procs: dict[str, _Proc] = field(default_factory=lambda: {"A": _Proc()})
    spawned: set[str] = field(default_factory=lambda: {"A"})

    def with_pages(self) -> list[str]:
        return [name for name, proc in self.procs.items() if proc.vmas]

    def can_mmap(self) -> list[str]:
        return [name for name, proc in self.procs.items() if len(proc.used) < len(VMA_NAMES)]

    def possible_ops(self) -> list[str]:
        ops = ["evict", "drop_caches"]
        if self.can_mmap():
            ops.append("mmap")
        if self.procs:
            ops.append("exit")
            if set(CHILD_NAMES) - self.spawned:
                ops.append("fork")
        if self.with_pages():
            ops.extend(PAGE_OPS)
        return ops


def _page_spec(draw, mapped: set[int]):
    """A PageSpec covering only pages that are still mapped."""
    pages = sorted(mapped)
    form = _choose(draw, ("index", "range", "list", "all"))
    if form == "index":
        return _choose(draw, pages)
    if form == "range":
        start = _choose(draw, pages)
        run_end = start
        while run_end + 1 in mapped:
            run_end += 1
        return f"{start}-{draw(st.integers(start, run_end))}"
    if form == "list":  # repeats are allowed and dropped by the loader
        picks = draw(st.lists(st.integers(0, len(pages) - 1), min_size=1, max_size=6))
        return [pages[i] for i in picks]
    return "all"


def _pick_vma(draw, world: _World) -> tuple[str, str, set[int]]:
    proc = _choose(draw, sorted(world.with_pages()))
    vma = _choose(draw, sorted(world.procs[proc].vmas))
    return proc, vma, world.procs[proc].vmas[vma]


def _no_field_step(draw, op: str):
    return _choose(draw, (op, {op: None}, {op: {}}))


def _step(draw, world: _World, op: str):
    """Build one `op` step valid in `world`, and update `world` as the op would."""
    if op in ("evict", "drop_caches"):
        return _no_field_step(draw, op)
    if op == "mmap":
        proc = _choose(draw, sorted(world.can_mmap()))
        owner = world.procs[proc]
        vma = _choose(draw, [n for n in VMA_NAMES if n not in owner.used])
        size = draw(st.integers(1, MAX_VMA_PAGES))
        owner.used.add(vma)
        owner.vmas[vma] = set(range(size))
        body = {"proc": proc, "vma": vma, "pages": size}
        if draw(st.booleans()):
            body["mte"] = draw(st.booleans())
        return {op: body}
    if op == "fork":
        proc = _choose(draw, sorted(world.procs))
        child = _choose(draw, sorted(set(CHILD_NAMES) - world.spawned))
        world.spawned.add(child)
        world.procs[child] = world.procs[proc].copy()
        return {op: {"proc": proc, "child": child}}
    if op == "exit":
        # A exits only once it is alone, so most scenarios keep a process to work with.
        children = sorted(set(world.procs) - {"A"})
        proc = _choose(draw, children) if children else "A"
        del world.procs[proc]
        return {op: {"proc": proc}}
    proc, vma, mapped = _pick_vma(draw, world)
    body = {"proc": proc, "vma": vma}
    if op == "munmap":
        return {op: _munmap(draw, world, body, mapped)}
    body["pages"] = _page_spec(draw, mapped)
    if op == "mprotect":
        body["mte"] = True
    elif op == "write" and draw(st.booleans()):
        body["tag"] = draw(st.one_of(st.integers(0, 15), st.just("distinct"), st.none()))
    elif op in ("pageout", "reclaim") and draw(st.booleans()):
        body["keep_cached"] = draw(st.booleans())
    return {op: body}


def _munmap(draw, world: _World, body: dict, mapped: set[int]) -> dict:
    form = _choose(draw, ("omitted", "all", "some"))
    spec = _page_spec(draw, mapped) if form == "some" else "all"
    if form != "omitted":  # pages defaults to all
        body["pages"] = spec
    removed = set(mapped) if spec == "all" else _expand(spec)
    mapped -= removed
    if not mapped:  # the whole VMA is gone
        del world.procs[body["proc"]].vmas[body["vma"]]
    return body


def _expand(spec) -> set[int]:
    if isinstance(spec, int):
        return {spec}
    if isinstance(spec, list):
        return set(spec)
    start, end = (int(part) for part in spec.split("-"))
    return set(range(start, end + 1))


def _config(draw) -> dict:
    optional = {
        "folio_pages": st.sets(st.sampled_from((2, 4, 8, 16))).map(lambda s: [1, *sorted(s)]),
        "swap_device": st.sampled_from(("ssd", "zram", "rotational")),
        "swap_slots": st.sampled_from((64, 512, 1024, 2048)),
        "frames": st.integers(16, 256),
        "map_whole_folio": st.booleans(),
        "large_swapin": st.booleans(),
        "kernel": st.sampled_from(("6.12", "7.2")),
    }
    config = draw(st.fixed_dictionaries({}, optional=optional))
    if draw(st.integers(0, 9)) == 0:  # rare: tag allocation failure injection
        config["tag_alloc_fail_after"] = draw(st.integers(0, 8))
    return config


@st.composite
def valid_scenarios(draw, max_steps: int = MAX_STEPS) -> dict:
    """Scenario dicts that parse, and that mostly run without a bad-input error."""
    world = _World()
    steps = [_step(draw, world, "mmap")]  # every scenario starts with memory to work on
    for _ in range(draw(st.integers(0, max_steps - 1))):
        if not world.procs:  # everyone exited: only a last evict is left to do
            steps.append(_no_field_step(draw, "evict"))
            break
        steps.append(_step(draw, world, _choose(draw, world.possible_ops())))
    if draw(st.integers(0, 5)) == 0:
        # swapoff last: what later swap-outs do with no swap device is not the point here.
        steps.append(_no_field_step(draw, "swapoff"))
    scenario = {"version": 1, "name": f"gen-{draw(st.integers(0, 9999))}"}
    if draw(st.booleans()):
        scenario["description"] = "generated by scenario_strategies.valid_scenarios"
    if draw(st.booleans()):
        scenario["design"] = _choose(draw, DESIGNS)
    config = _config(draw)
    if config:
        scenario["config"] = config
    scenario["steps"] = steps
    return scenario


# ----------------------------------------------------------------- mutated texts

_ANY_VALUE = st.one_of(
    st.integers(-3, 70000),
    st.integers(),
    st.text(max_size=8),
    st.lists(st.integers(-2, 20), max_size=4),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
    st.just({"x": 1}),
)

# Values out of range (or subtly wrong) for specific keys.
_BAD_VALUES = {
    "version": [0, 2, "1", 1.0, True],
    "name": ["", "Upper", "has space", "a_b"],
    "frames": [0, -1, 1 << 21, True],
    "swap_slots": [0, 1 << 21, True, 1.5],
    "folio_pages": [[], [2], [1, 3], [1, 1024], [1, 1], [1, True]],
    "swap_device": ["hdd", "", "SSD"],
    "map_whole_folio": ["yes", 1],
    "tag_alloc_fail_after": [-1, "never"],
    "tag": [16, -1, "Distinct", True],
    "pages": [-1, 262144, 300000, "9-2", "0-300000", [], "ALL", "1,2", [1, -1], 0.5],
    "mte": [False, "true", 1],
    "proc": ["", "a b", 7, None],
    "vma": ["", "x/y", ["buf"]],
    "child": ["A", "", 3],
    "keep_cached": ["yes", 0],
}


_UNKNOWN_KEYS = st.sampled_from(("bogus", "Pages", "page", "tags")) | st.text(max_size=6)
_UNKNOWN_OPS = st.sampled_from(("frobnicate", "Write", "mmap2", "")) | st.text(max_size=6)


def _slots(node, out: list) -> list:
    """Every (container, key) pair in a dict/list tree."""
    if isinstance(node, dict):
        for key in list(node):
            out.append((node, key))
            _slots(node[key], out)
    elif isinstance(node, list):
        for index in range(len(node)):
            out.append((node, index))
            _slots(node[index], out)
    return out


def _pick_slot(draw, d: dict) -> tuple:
    """A (container, key) slot, choosing the part of the file first.

    Hypothesis favours the first of several choices; picking the region first keeps
    that bias from making "drop 'version'" most of the drops.
    """
    regions = {
        "steps": _slots(d.get("steps"), []),
        "top": [(d, key) for key in d],
        "config": _slots(d.get("config"), []),
    }
    region = _choose(draw, [name for name, slots in regions.items() if slots])
    return _choose(draw, regions[region])


def _drop(draw, d: dict) -> dict:
    container, key = _pick_slot(draw, d)
    del container[key]
    return d


def _retype(draw, d: dict) -> dict:
    container, key = _pick_slot(draw, d)
    container[key] = draw(_ANY_VALUE)
    return d


def _out_of_range(draw, d: dict) -> dict:
    slots = [(c, k) for c, k in _slots(d, []) if isinstance(c, dict) and k in _BAD_VALUES]
    # Steps first (reversed): Hypothesis favours the first choice (see _pick_slot).
    container, key = _choose(draw, slots[::-1])
    container[key] = copy.deepcopy(_choose(draw, _BAD_VALUES[key]))
    return d


def _unknown_key(draw, d: dict) -> dict:
    bodies = [d, d.get("config") or {}] + [
        body for step in d["steps"] if isinstance(step, dict) for body in step.values()
        if isinstance(body, dict)
    ]
    target = _choose(draw, bodies)
    target[draw(_UNKNOWN_KEYS)] = 1
    return d


def _unknown_op(draw, d: dict) -> dict:
    index = draw(st.integers(0, len(d["steps"]) - 1))
    step = d["steps"][index]
    body = next(iter(step.values())) if isinstance(step, dict) else None
    op = draw(_UNKNOWN_OPS)
    d["steps"][index] = _choose(draw, ({op: body}, op))
    return d


def _shuffle(draw, d: dict) -> dict:
    d["steps"] = draw(st.permutations(d["steps"]))
    return d


def _duplicate(draw, d: dict) -> dict:
    steps = d["steps"]
    step = copy.deepcopy(_choose(draw, steps))
    steps.insert(draw(st.integers(0, len(steps))), step)
    return d


_DICT_MUTATIONS = {
    "untouched": lambda draw, d: d,
    "drop": _drop,
    "retype": _retype,
    "out-of-range": _out_of_range,
    "unknown-key": _unknown_key,
    "unknown-op": _unknown_op,
    "shuffle": _shuffle,
    "duplicate": _duplicate,
}


def _truncate(draw, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data)))]


def _flip(draw, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    return bytes(buf)


_BYTE_MUTATIONS = {"truncate": _truncate, "flip": _flip}


@st.composite
def mutated_scenario_texts(draw, max_steps: int = 10) -> str | bytes:
    """YAML text (str or bytes) of a valid scenario after one mutation (or none)."""
    scenario = draw(valid_scenarios(max_steps=max_steps))
    kind = _choose(draw, sorted(_DICT_MUTATIONS) + sorted(_BYTE_MUTATIONS))
    if kind in _DICT_MUTATIONS:
        scenario = _DICT_MUTATIONS[kind](draw, scenario)
        text = to_yaml(scenario, flow=_choose(draw, (False, None)))
        return _choose(draw, (text, text.encode()))
    return _BYTE_MUTATIONS[kind](draw, to_yaml(scenario).encode())
