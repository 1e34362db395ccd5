"""Cost of turning a machine state into a hashable key, as an exhaustive checker would.

For machine states of increasing size it measures, under the `merged` design:

  snap us      one `m.snapshot()` (median of many calls)
  hash us      one `hash(snap)` of that tuple (median; tuples do not cache their hash, so this
               is what every set/dict lookup of a fresh key pays)
  pickle B     `len(pickle.dumps(snap, protocol=5))`: what storing one state serialised costs
  mem B        bytes the snapshot's objects take in memory (tuples + ints, each object counted
               once; CPython's cached small ints and True/False count 0): what keeping the
               tuple itself in a `seen` set costs, before the set's own slot
  step us      mean cost of one `run_step` (model + oracle), no snapshot
  step+key us  mean cost of `run_step` + `m.snapshot()` + `hash(...)`, i.e. per transition
  deepcopy us  one `copy.deepcopy(runner)` with the scenario shared (median): the other way a
               checker branches states (machine + oracle + name tables)

States measured:
  1. prefixes of the long scenario of run_steps.py (frames 4096, swap_slots 8192, ssd)
  2. generated scenarios on frames 64, 256, 1024 x swap_slots 1024, 8192 (ssd)
     (frames 256 / swap_slots 1024 is the scenario-format default machine)
  3. the small machine typical of exhaustive checking: frames 16, swap_slots 64,
     folio_pages [1, 4], two processes, one MTE VMA of 4 pages; then the same machine with
     swap_slots 1024, the smallest on which this model swaps out a large folio whole

    .venv/bin/python benchmarks/snapshot.py [--seed S] [--long-steps N] [--steps N]
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run_steps import DEFAULT_SEED, DEFAULT_SHAPE, SMALL_SHAPE as SMALL, Shape, build_scenario  # noqa: E402

from mteswap.designs import get_design  # noqa: E402
from mteswap.scenario.runner import Runner  # noqa: E402

def sized_shape(frames: int, slots: int) -> Shape:
    """A layout whose footprint (procs x pages) stays well inside `frames`."""
    if frames <= 64:
        return Shape(frames=frames, swap_slots=slots, max_procs=2, fork_exit=False, munmap=False,
                     vmas=(("heap", 16, True), ("buf", 8, False)))
    if frames <= 256:
        return Shape(frames=frames, swap_slots=slots, max_procs=3,
                     vmas=(("heap", 32, True), ("buf", 16, False), ("small", 8, True)))
    return Shape(frames=frames, swap_slots=slots, max_procs=4,
                 vmas=(("heap", 64, True), ("buf", 32, False), ("tagged", 40, True),
                       ("plain", 40, False), ("small", 8, True)))


def median_us(fn, budget: float = 0.15, min_samples: int = 7, max_samples: int = 201) -> float:
    """Median time of one fn() call in microseconds. Calls are batched so that a sample lasts
    at least ~50 us (timer resolution), and samples are taken until `budget` seconds pass."""
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    batch = max(1, int(50e-6 / max(one, 1e-9)))
    samples = []
    start = time.perf_counter()
    while len(samples) < max_samples and (len(samples) < min_samples
                                          or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples) * 1e6


def measure_state(runner: Runner, with_copy: bool) -> dict:
    m = runner.m
    snap = m.snapshot()
    out = {
        "snap": median_us(m.snapshot),
        "hash": median_us(lambda: hash(snap)),
        "pickle": len(pickle.dumps(snap, protocol=5)),
        "mem": deep_size(snap),
        "elems": count_ints(snap),
        "folios": len(m.folios),
        "ptes": sum(len(mm.ptes) for mm in m.mms),
    }
    if with_copy:
        # The scenario (immutable, and large) is shared, not copied.
        memo = {id(runner.scenario): runner.scenario}
        out["copy"] = median_us(lambda: copy.deepcopy(runner, dict(memo)), budget=0.3, min_samples=3)
    return out


def deep_size(obj, seen=None) -> int:
    """sys.getsizeof over a nest of tuples, each distinct object once; objects CPython
    shares anyway (small ints, bools, the empty tuple) are free."""
    if seen is None:
        seen = set()
    if id(obj) in seen or isinstance(obj, bool) or (isinstance(obj, tuple) and not obj) \
            or (isinstance(obj, int) and -5 <= obj <= 256):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, tuple):
        size += sum(deep_size(x, seen) for x in obj)
    return size


def breakdown(m) -> list[tuple[str, float]]:
    """Median us of the parts of Machine.snapshot() (the same expressions, evaluated apart)."""
    parts = [
        ("pages (one 6-tuple per frame)", lambda: tuple(
            (p.tags, p.data, p.mte_tagged, p.mte_lock, p.anon_exclusive, tuple(p.rmap))
            for p in m.pages)),
        ("folios (sorted)", lambda: tuple(sorted(
            (f.pfn, f.nr, f.swapcache, f.swap, f.dirty, f.partially_mapped)
            for f in m.folios.values()))),
        ("mms (VMAs, sorted PTEs)", lambda: tuple(
            (mm.alive, tuple((v.start, v.end, v.orig_start, v.vm_mte) for v in mm.vmas),
             tuple(sorted(mm.ptes.items()))) for mm in m.mms)),
        ("swap.snapshot() (every slot)", m.swap.snapshot),
        ("mte_pages (sorted)", lambda: tuple(sorted(m.mte_pages.items()))),
    ]
    return [(name, median_us(fn)) for name, fn in parts]


def count_ints(obj) -> int:
    if isinstance(obj, tuple):
        return sum(count_ints(x) for x in obj)
    return 1


def timed_pass(scenario, steps, checked: bool, stops=()):
    """Run `steps` on a fresh Runner; with `checked`, snapshot+hash after every step. Returns
    (runner, per-segment seconds, {stop: runner state measurements taken outside the clock})."""
    runner = Runner(scenario, get_design("merged"))
    seen = set()
    elapsed = 0.0
    segments = {}
    last = 0
    for i, step in enumerate(steps, start=1):
        t0 = time.perf_counter()
        runner.run_step(step)
        if checked:
            seen.add(hash(runner.m.snapshot()))
        elapsed += time.perf_counter() - t0
        if i in stops:
            segments[i] = (elapsed, i - last)
            elapsed, last = 0.0, i
    return runner, segments


def per_step(scenario, stops, repeat: int):
    """{stop: (plain us/step, checked us/step)} over each segment ending at a stop, best of
    `repeat` passes."""
    steps = scenario.steps[:max(stops)]
    best = {}
    for checked in (False, True):
        for _ in range(repeat):
            _, seg = timed_pass(scenario, steps, checked, set(stops))
            for stop, (secs, n) in seg.items():
                us = secs / n * 1e6
                key = (stop, checked)
                best[key] = min(best.get(key, us), us)
    return {s: (best[(s, False)], best[(s, True)]) for s in stops}


def states_at(scenario, stops, with_copy: bool):
    """Measurements of the state after 0 steps and after each stop."""
    runner = Runner(scenario, get_design("merged"))
    out = {0: measure_state(runner, with_copy)}
    done = 0
    for stop in stops:
        for step in scenario.steps[done:stop]:
            runner.run_step(step)
        done = stop
        out[stop] = measure_state(runner, with_copy)
    return out, runner


HEADER = (f"{'state':28} {'frames':>6} {'slots':>6} {'folios':>6} {'ptes':>5} {'ints':>7} "
          f"{'snap us':>9} {'hash us':>8} {'pickle B':>9} {'mem B':>9} {'step us':>8} {'step+key us':>11} "
          f"{'deepcopy us':>11}")


def row(label, shape, st, step_costs=None):
    plain, checked = step_costs if step_costs else (None, None)
    fmt = lambda v, w, p=0: f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
    print(f"{label:28} {shape.frames:6d} {shape.swap_slots:6d} {st['folios']:6d} {st['ptes']:5d} "
          f"{st['elems']:7d} {fmt(st['snap'], 9, 1)} {fmt(st['hash'], 8, 1)} {st['pickle']:9d} {st['mem']:9d} "
          f"{fmt(plain, 8)} {fmt(checked, 11)} {fmt(st.get('copy'), 11)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--long-steps", type=int, default=1000,
                    help="last prefix of the long scenario (default 1000)")
    ap.add_argument("--steps", type=int, default=400,
                    help="steps of the sized and small scenarios (default 400)")
    ap.add_argument("--repeat", type=int, default=2, help="passes for the per-step costs, best kept")
    args = ap.parse_args(argv)
    print(f"seed {args.seed}  design merged  python {sys.version.split()[0]}")
    print("us = microseconds; snap/hash/deepcopy: median of many calls on the state after "
          "the steps; step / step+key: mean per step over the steps leading to it, best of "
          f"{args.repeat} passes")
    print()
    print(HEADER)

    # 1. Prefixes of the long scenario.
    stops = sorted({s for s in (100, 250, 500, 1000, 2000, 3000) if s < args.long_steps}
                   | {args.long_steps})
    long = build_scenario(args.long_steps, args.seed, "ssd", DEFAULT_SHAPE)
    states, long_runner = states_at(long, stops, with_copy=False)
    costs = per_step(long, stops, args.repeat)
    row("long, empty machine", DEFAULT_SHAPE, states[0])
    for s in stops:
        row(f"long, after {s} steps", DEFAULT_SHAPE, states[s], costs[s])
    parts = breakdown(long_runner.m)
    print("    parts of m.snapshot() after the last prefix: "
          + "; ".join(f"{name} {us:.0f} us" for name, us in parts))

    # 2. Machines of increasing size.
    print()
    for frames in (64, 256, 1024):
        for slots in (1024, 8192):
            shape = sized_shape(frames, slots)
            sc = build_scenario(args.steps, args.seed, "ssd", shape)
            st, r = states_at(sc, [args.steps], with_copy=True)
            c = per_step(sc, [args.steps], args.repeat)
            row(f"sized, after {args.steps} steps", shape, st[args.steps], c[args.steps])
            if (frames, slots) == (256, 1024):
                default_parts = breakdown(r.m)
    print("    parts of m.snapshot(), frames 256 / slots 1024: "
          + "; ".join(f"{name} {us:.0f} us" for name, us in default_parts))

    # 3. The small machine of exhaustive checking, on both devices; then the same with
    #    swap_slots 1024, the smallest device on which this model swaps a large folio out whole
    #    (cluster 0 holds the header slot and serves order 0 only).
    for slots in (SMALL.swap_slots, 1024):
        shape = replace(SMALL, swap_slots=slots)
        for device in ("ssd", "zram"):
            print()
            sc = build_scenario(args.steps, args.seed, device, shape)
            snaps_at = [s for s in (10, 50, args.steps) if s <= args.steps] if slots == SMALL.swap_slots \
                else [args.steps]
            st, runner = states_at(sc, snaps_at, with_copy=True)
            c = per_step(sc, [args.steps], args.repeat)
            for s in snaps_at:
                row(f"small {device}, after {s}", shape, st[s], c[args.steps] if s == args.steps else None)
            print("    parts of m.snapshot(): "
                  + "; ".join(f"{name} {us:.1f} us" for name, us in breakdown(runner.m)))
            ex = runner.oracle.expect
            key = lambda: hash((runner.m.snapshot(), ex.snapshot()))  # noqa: E731
            print(f"    + oracle.expect.snapshot(): {median_us(ex.snapshot):.1f} us; "
                  f"hash((m.snapshot(), expect.snapshot())): {median_us(key):.1f} us; "
                  f"pickle of both: {len(pickle.dumps((runner.m.snapshot(), ex.snapshot()), protocol=5))} B; "
                  f"counters: large_swap_outs {runner.m.counters['large_swap_outs']}, "
                  f"swpout_fallback {runner.m.counters['swpout_fallback']}")
    print()
    print("ints = leaves in the snapshot tuple; 'long' rows are the run_steps.py scenario "
          "(ssd) with the same seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
