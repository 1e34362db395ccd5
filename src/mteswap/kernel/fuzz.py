"""`mteswap kernel fuzz`: differential fuzzing of the model against real kernels.

A seeded generator of random valid scenarios (its own, not the test suite's Hypothesis
strategies: several mTHP sizes at once, VMAs up to 64 pages, up to three processes, fork and
copy-on-write, partial mprotect/munmap/dontneed, split, pageout and reclaim with and without
`keep_cached`, swapoff), run in batches through the real-kernel oracle (compare.run_batch: one
boot per batch, kernel and device) and the model. Every scenario whose verdict or page states
disagree is written as a file; the report counts verdicts, step states and the rows set aside
per precondition class; `--resume` goes on after a run killed from outside; `--shrink` shrinks
each disagreement (shrink.py).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from mteswap.scenario.load import ScenarioError, load_scenario

from . import compare
from .setup import Env

SIZES = (4, 8, 16, 32)          # mTHP sizes in pages (16-128 KiB); order 1 has no anon mTHP
MAX_VMA = 64
MAX_PROCS = 3
DEVICE_KINDS = {"zram": ("zram",), "virtio-blk": ("ssd", "rotational"), "all": ("zram", "ssd", "rotational")}
# op -> weight; each is drawn only when it can apply (_applicable)
WEIGHTS = {"write": 6, "read": 4, "pageout": 4, "reclaim": 2, "mmap": 1, "mprotect": 1, "munmap": 1,
           "dontneed": 1, "split": 2, "stg": 1, "fork": 1, "exit": 1, "swapoff": 0.3}


@dataclass
class _Gen:
    """What the generator knows of the scenario so far, to draw only steps that apply."""
    rng: random.Random
    keep_cached_ok: bool
    alive: list[str] = field(default_factory=lambda: ["A"])
    spawned: int = 1
    mapped: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    nvmas: int = 0
    swap_on: bool = True

    def vmas_of(self, proc: str) -> list[tuple[str, str]]:
        return [k for k, pages in self.mapped.items() if k[0] == proc and pages]

    def targets(self) -> list[tuple[str, str]]:
        return [k for p in self.alive for k in self.vmas_of(p)]


def _pages_arg(g: _Gen, key: tuple[str, str]):
    """A contiguous run of mapped pages ('a-b' or one index), or 'all' now and then."""
    have = sorted(g.mapped[key])
    if g.rng.random() < 0.2:
        return "all", set(have)
    i = g.rng.randrange(len(have))
    j = i
    limit = g.rng.randint(1, len(have))
    while j + 1 < len(have) and have[j + 1] == have[j] + 1 and j - i + 1 < limit:
        j += 1
    lo, hi = have[i], have[j]
    return (lo if lo == hi else f"{lo}-{hi}"), set(range(lo, hi + 1))


def _applicable(g: _Gen, op: str) -> bool:
    if op in ("write", "read", "pageout", "reclaim", "mprotect", "munmap", "dontneed", "split", "stg"):
        return bool(g.targets())
    if op == "mmap":
        return g.nvmas < 4
    if op == "fork":
        return g.spawned < MAX_PROCS
    if op == "exit":
        return len(g.alive) > 1
    if op == "swapoff":
        return g.swap_on
    raise ValueError(op)


def _step(g: _Gen, op: str) -> dict | str:
    rng = g.rng
    if op == "mmap":
        proc = rng.choice(g.alive)
        g.nvmas += 1
        name = f"v{g.nvmas}"
        pages = rng.randint(4, MAX_VMA)
        g.mapped[(proc, name)] = set(range(pages))
        return {"mmap": {"proc": proc, "vma": name, "pages": pages, "mte": rng.random() < 0.85}}
    if op == "fork":
        proc = rng.choice(g.alive)
        child = "ABC"[g.spawned]
        g.spawned += 1
        g.alive.append(child)
        for (p, v), pages in list(g.mapped.items()):
            if p == proc:
                g.mapped[(child, v)] = set(pages)
        return {"fork": {"proc": proc, "child": child}}
    if op == "exit":
        proc = rng.choice(g.alive)
        g.alive.remove(proc)
        for key in [k for k in g.mapped if k[0] == proc]:
            del g.mapped[key]
        return {"exit": {"proc": proc}}
    if op == "swapoff":
        g.swap_on = False
        return "swapoff"
    proc, vma = rng.choice(g.targets())
    pages, chosen = _pages_arg(g, (proc, vma))
    args = {"proc": proc, "vma": vma, "pages": pages}
    if op == "munmap":
        g.mapped[(proc, vma)] -= chosen
    elif op == "mprotect":
        args["mte"] = True
    elif op in ("write", "stg"):
        tag = rng.choice(["distinct", rng.randint(0, 15), None] if op == "write" else ["distinct", rng.randint(0, 15)])
        if tag is not None:
            args["tag"] = tag
    elif op in ("pageout", "reclaim") and g.keep_cached_ok and rng.random() < 0.3:
        args["keep_cached"] = True
    return {op: args}


def generate(seed: int, index: int, device: str = "all") -> dict:
    """The scenario document (a dict, format 1) number `index` of the run seeded `seed`: the
    same pair always gives the same scenario."""
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choice(DEVICE_KINDS[device])
    sizes = sorted(rng.sample(SIZES, rng.randint(1, 3)))
    g = _Gen(rng, keep_cached_ok=kind != "zram")
    steps = [_step(g, "mmap")]
    for _ in range(rng.randint(10, 40) - 1):
        ops = [op for op in WEIGHTS if _applicable(g, op)]
        op = rng.choices(ops, weights=[WEIGHTS[o] for o in ops])[0]
        steps.append(_step(g, op))
    return {"version": 1, "name": f"fuzz-{seed}-{index:04d}",
            "description": f"generated by mteswap kernel fuzz --seed {seed} (scenario {index})",
            "config": {"folio_pages": [1, *sizes], "swap_device": kind, "frames": 4096},
            "steps": steps}


def write_scenario(doc: dict, folder: Path) -> Path:
    path = folder / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return path


@dataclass
class FuzzReport:
    rows: list[compare.Row] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    invalid: list[str] = field(default_factory=list)       # generated but rejected by the model
    disagreements: list[tuple[compare.Row, Path]] = field(default_factory=list)
    shrunk: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return compare.totals_line(self.rows) + (f"; {len(self.invalid)} generated scenario(s) rejected"
                                                 if self.invalid else "")


def run_resilient(scenarios: list, env: Env, kernel: str, log: Callable[[str], None]) -> list[compare.Row]:
    """compare.run_batch on one kernel; when a guest hangs or dies, the scenario it was running
    stays an error row ("lost in flight") and those it never began run again in a new boot.
    Gives up on a boot in which no scenario began twice in a row."""
    rows: list[compare.Row] = []
    pending, idle = list(scenarios), 0
    while pending and idle < 2:
        got, _ = compare.run_batch(pending, env, [kernel], "auto", log=log)
        retry = {r.scenario for r in got if r.kernel_verdict == "error" and not r.started}
        for r in got:
            if r.scenario in retry:
                continue
            if r.kernel_verdict == "error":
                r.detail = "lost in flight: " + r.detail
                log(f"  guest problem, scenario lost in flight: {r.scenario} [{r.kernel} {r.device}]: {r.detail}")
            rows.append(r)
        idle = idle + 1 if len(retry) == len(pending) else 0
        if retry:
            log(f"  restarting the guest for {len(retry)} scenario(s) it did not begin")
        pending = [sc for sc in pending if sc.name in retry]
    for sc in pending:      # the guest never began them, twice: report them, do not loop
        rows.append(compare.Row(sc.name, sc.file, kernel, "-", kernel_verdict="error", started=False,
                                detail="the guest never began this scenario (two boots in a row)"))
    return rows


def disagrees(row: compare.Row) -> bool:
    """A verdict or page-state disagreement; a row set aside (precondition) is neither."""
    return row.agree is False or (row.agree is True and row.states_agree is False)


ROWS_FILE = "rows.jsonl"     # one finished row per line, appended after each batch (--resume)


def fuzz(env: Env, kernels: list[str], device: str, count: int, seed: int, out: Path,
         batch: int = 20, log: Callable[[str], None] = lambda s: None, resume: bool = False,
         shrink: bool = False) -> FuzzReport:
    """Generate `count` scenarios, run them in batches on every kernel, write each scenario to
    `out` (those that disagree also to `out/disagree/`) and report progress after each batch.
    Finished rows go to `out/rows.jsonl`; with `resume` the (scenario, kernel) pairs found
    there are not run again (a run killed from outside repeats at most its last batch). With
    `shrink`, each disagreement is also shrunk (shrink.py) to `out/disagree/NAME-KERNEL-DEVICE.min.yaml`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "disagree").mkdir(exist_ok=True)
    rep = FuzzReport()
    done = _load_rows(out / ROWS_FILE, rep) if resume else set()
    if not resume:
        (out / ROWS_FILE).write_text("")
    log(f"fuzz: seed {seed}, {count} scenario(s), kernels {', '.join(kernels)}, device {device}, into {out}"
        + (f"; resuming after {len(done)} finished row(s)" if resume else ""))
    for first in range(0, count, batch):
        scenarios = _batch(seed, range(first, min(count, first + batch)), device, out, rep)
        rows = []
        for kernel in kernels:
            todo = [sc for sc in scenarios if (sc.name, kernel) not in done]
            rows += run_resilient(todo, env, kernel, log) if todo else []
        with open(out / ROWS_FILE, "a") as fh:
            for row in rows:
                fh.write(json.dumps(row.to_json()) + "\n")
                _record(rep, row, out, log)
                if shrink and disagrees(row):
                    rep.shrunk.append(_shrink(row, env, out, log))
        log(f"fuzz: {min(count, first + batch)}/{count} scenario(s) done; {rep.summary()}")
    return rep


def _batch(seed: int, indices: range, device: str, out: Path, rep: FuzzReport) -> list:
    """The batch's scenarios, written to `out` and checked by the model."""
    scenarios = []
    for i in indices:
        path = write_scenario(generate(seed, i, device), out)
        try:
            sc = load_scenario(str(path))
            compare.model_run(sc)           # a scenario the model rejects is a generator bug
        except ScenarioError as e:
            rep.invalid.append(f"{path}: {e}")
            continue
        rep.files[sc.name] = path
        scenarios.append(sc)
    return scenarios


def _shrink(row: compare.Row, env: Env, out: Path, log: Callable[[str], None]) -> Path:
    from . import shrink as shrink_mod

    doc = yaml.safe_load((out / f"{row.scenario}.yaml").read_text())
    small = shrink_mod.shrink(doc, row, env, out / "shrink", log)
    small = dict(small, name=f"{row.scenario}-min",
                 description=f"{doc['description']}, shrunk: still disagrees on {row.kernel} / {row.device}")
    dst = out / "disagree" / f"{row.scenario}-{row.kernel}-{row.device}.min.yaml"
    dst.write_text(yaml.safe_dump(small, sort_keys=False, default_flow_style=None))
    log(f"  shrunk {row.scenario} [{row.kernel} {row.device}]: {len(doc['steps'])} -> {len(small['steps'])} step(s) -> {dst}")
    return dst


def _record(rep: FuzzReport, row: compare.Row, out: Path, log: Callable[[str], None]) -> None:
    rep.rows.append(row)
    if not disagrees(row):
        return
    dst = out / "disagree" / f"{row.scenario}-{row.kernel}-{row.device}.yaml"
    dst.write_text((out / f"{row.scenario}.yaml").read_text())
    rep.disagreements.append((row, dst))
    what = row.detail if row.agree is False else compare.describe_state_diff(row.first_state_diff)
    log(f"  DISAGREE {row.scenario} [{row.kernel} {row.device}]: {what} -> {dst}")


def _load_rows(path: Path, rep: FuzzReport) -> set[tuple[str, str]]:
    """Rows of an earlier run into `rep`; the (scenario, kernel) pairs they cover."""
    done = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        if line.strip():
            row = compare.Row(**json.loads(line))
            done.add((row.scenario, row.kernel))
            rep.rows.append(row)
            if disagrees(row):
                rep.disagreements.append((row, path.parent / "disagree" / f"{row.scenario}-{row.kernel}-{row.device}.yaml"))
    return done
