"""Throughput of the model: steps/s and page-ops/s of one long, generated scenario.

The scenario is built in code from a seed (printed, and accepted with --seed), so every run of
the same command measures the same work. It mixes every op the format has except swapoff:
several processes (fork/exit), several VMAs (MTE and not, some too small or too short for a
64 KiB folio), folio_pages [1, 16], writes with and without tags, reads, reclaim and pageout
with keep_cached true and false, dontneed, split, mprotect, munmap (+ a fresh mmap of the same
size) and evict. It is valid input by construction: pages in range and still mapped, only live
processes, and a machine large enough (frames 4096, swap_slots 8192) that no fault runs out of
memory.

It is run under the `merged` design once per swap device (ssd, zram); the reported time is the
best of --repeat runs of the step loop, variants interleaved (building the Runner/Machine is
timed separately).

    .venv/bin/python benchmarks/run_steps.py [--steps N] [--seed S] [--repeat R]
        [--devices ssd,zram] [--variants off,on[,nostate,noslots]]
        [--shape long|small] [--frames N] [--swap-slots N] [--attribute | --profile N] [--dump FILE]

"Page ops" = the sum, over the steps, of the number of page indices the step names (write,
read, reclaim, pageout, dontneed, split, mprotect, munmap); mmap, fork, exit and evict count 0.

Variants timed for each device by default (each best of --repeat):
  trace off   Runner(..., keep_trace=False), what `mteswap run` does without --trace
  trace on    Runner(..., keep_trace=True): the per-step trace list is kept
Attribution variants (not run by default; --variants off,nostate,noslots):
  nostate     trace off, with Oracle.check_state replaced by a no-op *in this process only*
              (the per-step leak/invariant scan; the src tree is not changed)
  noslots     trace off, with only the swap-slot invariants I5/I7/I10 switched off (the
              oracle registry's DISABLED), in this process only
--attribute   one run per device with the oracle checks and a few model functions wrapped in
              timers; prints each one's share of the step loop (with --variants nostate: the
              state check stubbed out, so the shares are of the model-only time)
--profile N   one run per device with the step loop (only) under cProfile; top N functions
--shape small the small machine of exhaustive checking (frames 16, swap_slots 64,
              folio_pages [1, 4], two processes, one 4-page MTE VMA) instead of the long one
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field, replace

from mteswap.designs import get_design
from mteswap.oracle import Oracle, registry
from mteswap.scenario.load import parse_scenario
from mteswap.scenario.runner import Runner

DEFAULT_SEED = 20240611
DEFAULT_STEPS = 2000

PAGE_OPS = ("write", "read", "reclaim", "pageout", "dontneed", "split", "mprotect", "munmap")


# --------------------------------------------------------------------------- the generator

@dataclass(frozen=True)
class Shape:
    """Machine size and address-space layout of a generated scenario."""
    frames: int = 4096
    swap_slots: int = 8192
    folio_pages: tuple[int, ...] = (1, 16)
    max_procs: int = 4                     # live processes at most (fork/exit keep 2..max)
    # (name, pages, mte) of the VMAs process A maps at the start; children inherit them.
    vmas: tuple[tuple[str, int, bool], ...] = (
        ("heap", 128, True),     # MTE, eight 64 KiB folios
        ("buf", 64, False),      # no MTE: mprotect target
        ("tagged", 40, True),    # MTE, last 8 pages can only take order-0 folios
        ("plain", 72, False),    # no MTE, 72 = 4.5 folios
        ("small", 8, True),      # MTE, shorter than a 64 KiB folio: order 0 only
    )
    fork_exit: bool = True       # fork/exit during the run (else: fork to max_procs at start)
    munmap: bool = True          # munmap a range, then mmap a fresh VMA of that size


DEFAULT_SHAPE = Shape()

# The small machine typical of exhaustive checking: two processes, one MTE VMA of 4 pages.
SMALL_SHAPE = Shape(frames=16, swap_slots=64, folio_pages=(1, 4), max_procs=2,
                    vmas=(("buf", 4, True),), fork_exit=False, munmap=False)

SHAPES = {"long": DEFAULT_SHAPE, "small": SMALL_SHAPE}

# Relative weights of the ops in the main loop.
WEIGHTS = {
    "write": 22, "read": 20, "reclaim": 12, "pageout": 10, "dontneed": 6, "split": 5,
    "mprotect": 3, "evict": 5, "fork": 2, "exit": 1, "munmap": 1,
}


@dataclass
class _Proc:
    name: str
    mapped: dict[str, set[int]] = field(default_factory=dict)   # vma -> page indices mapped
    sizes: dict[str, int] = field(default_factory=dict)         # vma -> pages (original)
    mte: dict[str, bool] = field(default_factory=dict)          # vma -> created with MTE


class _Gen:
    def __init__(self, rng: random.Random, shape: Shape):
        self.rng = rng
        self.shape = shape
        self.steps: list[str] = []
        self.procs: dict[str, _Proc] = {"A": _Proc("A")}
        self.alive: list[str] = ["A"]
        self.next_child = 0
        self.next_vma = 0
        self.big = max(shape.folio_pages)

    # -- emitting ---------------------------------------------------------------------
    def emit(self, op: str, **fields) -> None:
        if not fields:
            self.steps.append(f"  - {op}")
            return
        body = ", ".join(f"{k}: {v}" for k, v in fields.items())
        self.steps.append(f"  - {op}: {{{body}}}")

    @staticmethod
    def pages_text(indices: list[int]) -> str:
        indices = sorted(indices)
        if len(indices) == 1:
            return str(indices[0])
        if indices == list(range(indices[0], indices[-1] + 1)):
            return f"{indices[0]}-{indices[-1]}"
        return "[" + ", ".join(map(str, indices)) + "]"

    # -- choosing -----------------------------------------------------------------------
    def pick_proc(self) -> _Proc:
        return self.procs[self.rng.choice(self.alive)]

    def pick_vma(self, p: _Proc, only_plain: bool = False) -> str | None:
        names = [n for n, s in p.mapped.items() if s and (not only_plain or not p.mte[n])]
        return self.rng.choice(names) if names else None

    def pick_pages(self, p: _Proc, vma: str) -> list[int]:
        """Mapped page indices of `vma`: a whole folio, a folio-crossing range, one page, a
        scattered list, or everything."""
        mapped = p.mapped[vma]
        size = p.sizes[vma]
        r = self.rng.random()
        if r < 0.30:                       # one aligned large-folio range
            start = self.rng.randrange(0, max(1, size), self.big)
            want = range(start, min(size, start + self.big))
        elif r < 0.60:                     # a range that usually cuts folios
            start = self.rng.randrange(size)
            want = range(start, min(size, start + self.rng.randint(1, 2 * self.big + 8)))
        elif r < 0.75:                     # one page
            want = [self.rng.randrange(size)]
        elif r < 0.90:                     # a scattered list
            want = self.rng.sample(range(size), min(size, self.rng.randint(2, 6)))
        else:                              # the whole VMA
            want = range(size)
        out = [i for i in want if i in mapped]
        return out or [self.rng.choice(sorted(mapped))]

    # -- the scenario -------------------------------------------------------------------
    def setup(self) -> None:
        a = self.procs["A"]
        for name, pages, mte in self.shape.vmas:
            self.emit("mmap", proc="A", vma=name, pages=pages, mte=str(mte).lower())
            a.mapped[name] = set(range(pages))
            a.sizes[name] = pages
            a.mte[name] = mte
            self.emit("write", proc="A", vma=name, pages=f"0-{pages - 1}",
                      tag="distinct" if mte else 0)
        first = self.shape.max_procs - (1 if self.shape.fork_exit else 0)
        while len(self.alive) < first:
            self.fork(self.procs[self.alive[0]])

    def fork(self, parent: _Proc) -> None:
        self.next_child += 1
        child = _Proc(f"P{self.next_child}",
                      {n: set(s) for n, s in parent.mapped.items()},
                      dict(parent.sizes), dict(parent.mte))
        self.procs[child.name] = child
        self.alive.append(child.name)
        self.emit("fork", proc=parent.name, child=child.name)

    def step(self) -> None:
        rng = self.rng
        ops = [op for op in WEIGHTS if self.allowed(op)]
        op = rng.choices(ops, [WEIGHTS[o] for o in ops])[0]
        if op == "evict":
            self.emit("evict")
            return
        p = self.pick_proc()
        if op == "fork":
            self.fork(p)
            return
        if op == "exit":
            self.alive.remove(p.name)
            self.emit("exit", proc=p.name)
            return
        vma = self.pick_vma(p, only_plain=(op == "mprotect"))
        if vma is None:
            vma = self.pick_vma(p)
            op = "read"
        if vma is None:                      # nothing mapped at all: cannot happen in practice
            self.emit("evict")
            return
        pages = self.pick_pages(p, vma)
        text = self.pages_text(pages)
        if op == "write":
            tag = rng.choice([None, None, "distinct", rng.randint(0, 15)])
            if tag is None:
                self.emit("write", proc=p.name, vma=vma, pages=text)
            else:
                self.emit("write", proc=p.name, vma=vma, pages=text, tag=tag)
        elif op in ("reclaim", "pageout"):
            self.emit(op, proc=p.name, vma=vma, pages=text,
                      keep_cached=rng.choice(["true", "false"]))
        elif op == "mprotect":
            self.emit("mprotect", proc=p.name, vma=vma, pages=text, mte="true")
        elif op == "munmap":
            self.emit("munmap", proc=p.name, vma=vma, pages=text)
            p.mapped[vma] -= set(pages)
            # Keep the process's footprint: a fresh VMA of the same size.
            self.next_vma += 1
            name = f"v{self.next_vma}"
            mte = rng.random() < 0.5
            self.emit("mmap", proc=p.name, vma=name, pages=len(pages), mte=str(mte).lower())
            p.mapped[name] = set(range(len(pages)))
            p.sizes[name] = len(pages)
            p.mte[name] = mte
        else:                                # read, dontneed, split
            self.emit(op, proc=p.name, vma=vma, pages=text)

    def allowed(self, op: str) -> bool:
        if op == "fork":
            return self.shape.fork_exit and len(self.alive) < self.shape.max_procs
        if op == "exit":
            return self.shape.fork_exit and len(self.alive) > 2
        if op == "munmap":
            return self.shape.munmap
        return True


def build_text(steps: int, seed: int, device: str, shape: Shape = DEFAULT_SHAPE,
               name: str = "bench-long") -> str:
    """YAML text of a generated scenario with exactly `steps` steps (setup included)."""
    g = _Gen(random.Random(seed), shape)
    g.setup()
    while len(g.steps) < steps:
        g.step()
    del g.steps[steps:]          # munmap emits two steps: trim to the exact count
    head = [
        "version: 1",
        f"name: {name}",
        f"description: generated by benchmarks/run_steps.py, seed {seed}",
        "design: merged",
        "config:",
        f"  folio_pages: [{', '.join(map(str, shape.folio_pages))}]",
        f"  swap_device: {device}",
        f"  swap_slots: {shape.swap_slots}",
        f"  frames: {shape.frames}",
        "steps:",
    ]
    return "\n".join(head + g.steps) + "\n"


def build_scenario(steps: int, seed: int, device: str, shape: Shape = DEFAULT_SHAPE):
    text = build_text(steps, seed, device, shape)
    return parse_scenario(text, f"<generated seed={seed} device={device}>")


def page_ops(scenario) -> int:
    total = 0
    for step in scenario.steps:
        if step.op in PAGE_OPS and isinstance(step.args.get("pages"), (tuple, range)):
            total += len(step.args["pages"])
    return total


# --------------------------------------------------------------------------- timing

def time_run(scenario, keep_trace: bool) -> tuple[float, float, Runner]:
    """(seconds to build the Runner, seconds for the step loop, the runner)."""
    t0 = time.perf_counter()
    runner = Runner(scenario, get_design("merged"), keep_trace=keep_trace)
    t1 = time.perf_counter()
    for step in scenario.steps:
        runner.run_step(step)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, runner


def one_run(scenario, variant: str):
    """One timed run of a variant. The attribution variants patch the oracle in this process
    only, and restore it afterwards."""
    saved = Oracle.check_state, registry.DISABLED
    if variant == "nostate":
        Oracle.check_state = lambda self, ctx, m: m.tag_reads.clear()
    elif variant == "noslots":
        registry.DISABLED = frozenset({"I5", "I7", "I10"})
    try:
        return time_run(scenario, variant == "on")
    finally:
        Oracle.check_state, registry.DISABLED = saved


def best_of(scenario, repeat: int, variants: list[str]) -> dict:
    """{variant: (build s, loop s, runner)}, best of `repeat`; the variants are interleaved
    (off, on, off, on, ...) so that a burst of load on the machine hits them alike."""
    best: dict = {}
    for _ in range(repeat):
        for variant in variants:
            build, loop, runner = one_run(scenario, variant)
            old = best.get(variant)
            best[variant] = (min(build, old[0]) if old else build,
                             min(loop, old[1]) if old else loop, runner)
    return best


# --------------------------------------------------------------------------- attribution

def _timed(fn, acc: dict, key: str, consume: bool = False):
    """fn wrapped to add its wall time to acc[key]; with `consume`, a generator function is
    run to the end inside the clock (its results are returned as an iterator)."""
    perf = time.perf_counter

    def wrapper(*a, **kw):
        t0 = perf()
        try:
            out = fn(*a, **kw)
            if consume:
                out = iter(list(out))
            return out
        finally:
            acc[key] = acc.get(key, 0.0) + perf() - t0
    return wrapper


def attribute(scenario, no_state: bool = False) -> tuple[float, dict]:
    """One trace-off run with a few functions timed (each adds ~0.3 us per call): the loop
    time and {name: seconds}. With `no_state`, Oracle.check_state is a no-op (model-only
    shares). The patches live in this process only and are undone."""
    from mteswap.model import memory, swap_state
    from mteswap.model.swapinfo import SwapInfo
    acc: dict = {}
    patches = [
        (Oracle, "check_state", "oracle: Oracle.check_state (all)", False),
        (memory, "alloc_folio", "model: alloc_folio (first-fit frame search)", False),
        (swap_state, "alloc_folio", "model: alloc_folio (first-fit frame search)", False),
        (SwapInfo, "inuse_pages", "model: SwapInfo.inuse_pages (vm_swap_full)", False),
        (SwapInfo, "find_slots", "model: SwapInfo.find_slots (cluster scan)", False),
    ]
    if no_state:
        patches = [p for p in patches if p[2].startswith("model:")]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _, _ in patches]
    saved.append((Oracle, "check_state", Oracle.check_state))
    saved.append((registry, "STATE_CHECKS", registry.STATE_CHECKS))
    if not no_state:     # each state check of the registry timed under its name
        registry.STATE_CHECKS = tuple(
            replace(c, run=_timed(c.run, acc, f"oracle: {c.name}", True))
            for c in registry.STATE_CHECKS)
    try:
        if no_state:
            Oracle.check_state = lambda self, ctx, m: m.tag_reads.clear()
        for obj, name, key, consume in patches:
            setattr(obj, name, _timed(getattr(obj, name), acc, key, consume))
        _, loop, _ = time_run(scenario, False)
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    return loop, acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"steps (default {DEFAULT_STEPS})")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"generator seed (default {DEFAULT_SEED})")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement, best is kept (default 3)")
    ap.add_argument("--devices", default="ssd,zram", help="comma-separated swap devices (default ssd,zram)")
    ap.add_argument("--variants", default="off,on",
                    help="comma-separated: off (trace off), on (trace kept), and for attribution "
                         "nostate (Oracle.check_state skipped), noslots (its swap-slot "
                         "invariants I5/I7/I10 skipped); default off,on")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="long",
                    help="long (default: frames 4096, swap_slots 8192, up to 4 processes, 5 VMAs) "
                         "or small (frames 16, swap_slots 64, folio_pages [1, 4], 2 processes, "
                         "one 4-page MTE VMA)")
    ap.add_argument("--frames", type=int, help="override the shape's frames")
    ap.add_argument("--swap-slots", type=int, help="override the shape's swap_slots")
    ap.add_argument("--attribute", action="store_true",
                    help="instead of the variants: one run per device with the oracle checks and a "
                         "few model functions timed, printed as a share of the step loop; with "
                         "--variants nostate, the oracle's state check is stubbed out (model-only shares)")
    ap.add_argument("--profile", type=int, metavar="N", default=0,
                    help="instead of the variants: one trace-off run per device under cProfile, "
                         "the step loop only (no generation or YAML parsing); print the top N "
                         "functions by cumulative and by internal time")
    ap.add_argument("--dump", metavar="FILE", help="also write the generated scenario (first device) as YAML")
    args = ap.parse_args(argv)

    devices = [d for d in args.devices.split(",") if d]
    shape = SHAPES[args.shape]
    if args.frames:
        shape = replace(shape, frames=args.frames)
    if args.swap_slots:
        shape = replace(shape, swap_slots=args.swap_slots)
    variants = [v for v in args.variants.split(",") if v]
    print(f"seed {args.seed}  steps {args.steps}  repeat {args.repeat}  shape {args.shape} "
          f"(frames {shape.frames}, swap_slots {shape.swap_slots})  design merged  "
          f"python {sys.version.split()[0]}")
    rows = []
    for i, device in enumerate(devices):
        t0 = time.perf_counter()
        text = build_text(args.steps, args.seed, device, shape)
        scenario = parse_scenario(text, f"<generated seed={args.seed} device={device}>")
        t_parse = time.perf_counter() - t0
        if args.dump and i == 0:
            with open(args.dump, "w") as f:
                f.write(text)
        n_steps, n_pages = len(scenario.steps), page_ops(scenario)
        ops = {}
        for s in scenario.steps:
            ops[s.op] = ops.get(s.op, 0) + 1
        print(f"\n[{device}] {n_steps} steps, {n_pages} page ops; generate+parse {t_parse:.2f} s")
        print("  ops: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])))
        if args.profile:
            import cProfile
            import io
            import pstats
            runner = Runner(scenario, get_design("merged"))
            prof = cProfile.Profile()
            prof.enable()
            for step in scenario.steps:
                runner.run_step(step)
            prof.disable()
            for order in ("cumulative", "tottime"):
                out = io.StringIO()
                pstats.Stats(prof, stream=out).strip_dirs().sort_stats(order).print_stats(args.profile)
                text = out.getvalue()
                print(f"  --- step loop under cProfile, top {args.profile} by {order} ---")
                print(text[text.index("ncalls") - 3:].rstrip() if "ncalls" in text else text)
            continue
        if args.attribute:
            best = None
            for _ in range(args.repeat):
                loop, acc = attribute(scenario, no_state="nostate" in variants)
                if best is None or loop < best[0]:
                    best = (loop, acc)
            loop, acc = best
            print(f"  attribution (best of {args.repeat} by loop time): loop {loop:.3f} s, "
                  f"{loop / n_steps * 1e6:.0f} us/step (timers included)")
            for key, secs in sorted(acc.items(), key=lambda kv: -kv[1]):
                print(f"    {secs / loop * 100:5.1f} %  {secs / n_steps * 1e6:7.0f} us/step  {key}")
            continue
        results = best_of(scenario, args.repeat, variants)
        for variant in variants:
            build, loop, runner = results[variant]
            c = runner.m.counters
            if variant == variants[0]:
                print(f"  violations {len(runner.oracle.violations)}"
                      + (f" (first: {runner.oracle.violations[0].short()} {runner.oracle.violations[0].detail[:60]})"
                         if runner.oracle.violations else "")
                      + f"; faults {c['faults']}, swap_outs {c['swap_outs']}, large_swap_outs "
                        f"{c['large_swap_outs']}, swap_ins {c['swap_ins']}, splits {c['splits']}, "
                        f"swpout_fallback {c['swpout_fallback']}, folios at end {len(runner.m.folios)}")
            rows.append((device, variant, n_steps, n_pages, build, loop))
    if args.attribute or args.profile:
        return 0
    label = {"off": "trace off", "on": "trace on", "nostate": "no state check",
             "noslots": "no slot scan"}
    print(f"\nbest of {args.repeat}; 'build' = Runner()/Machine() construction, not in the rate")
    print(f"{'device':7} {'variant':14} {'steps':>6} {'page ops':>9} {'build ms':>9} "
          f"{'loop s':>8} {'steps/s':>9} {'page-ops/s':>11} {'us/step':>8}")
    for device, variant, n, p, build, loop in rows:
        print(f"{device:7} {label.get(variant, variant):14} {n:6d} {p:9d} {build * 1e3:9.1f} "
              f"{loop:8.3f} {n / loop:9.0f} {p / loop:11.0f} {loop / n * 1e6:8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
