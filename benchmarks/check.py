"""Benchmark `mteswap check`: distinct states per second per core (exhaustive, small/merged),
and time to the first counterexample for each flawed design (docs/performance.md).

    .venv/bin/python benchmarks/check.py                  # depth 4 rate + every flawed design
    .venv/bin/python benchmarks/check.py --depth 5 --designs merged --skip-ce
    .venv/bin/python benchmarks/check.py --profile 20     # cProfile of a depth-3 search
    .venv/bin/python benchmarks/check.py --full-check ... # the oracle's full state check
    .venv/bin/python benchmarks/check.py --skip-ce --workers 1 --por off,on   # sleep sets, back to back
    .venv/bin/python benchmarks/check.py --skip-rate --workers 1 --ce exhaustive
                                             # each flawed design searched exhaustively on the
                                             # preset that reaches its own bug (PRESET_OF)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

from mteswap.explore.check import Options, run_check

FLAWED = ["split-before-swap", "rfc-v1", "rfc-v2", "rfc-v3", "restore-all-unmarked",
          "folio-marker", "merged"]
# The preset whose alphabet reaches each design's own bug: rfc-v2 and rfc-v3 restore one page
# of a fresh large swap-in (S3'), which only a synchronous device (zram) does in v6.12; every
# other flaw is reached on `small` (docs/checking.md, "Results on small").
PRESET_OF = {"rfc-v2": "zram", "rfc-v3": "zram"}


def run(**kw):
    out = tempfile.mkdtemp(prefix="bench-check-")
    try:
        kw.setdefault("progress", False)
        t, c = time.perf_counter(), time.process_time()
        s, _ = run_check(Options(out=out, **kw))
        s["wall"] = time.perf_counter() - t
        s["cpu"] = time.process_time() - c    # this process's only: one worker runs here
        return s
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--designs", default=",".join(FLAWED))
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-ce", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--ce", choices=("random", "exhaustive"), default="random",
                    help="first counterexamples by random walks on small (rfc-v1: exhaustive), "
                         "or by the exhaustive search (depth 6) of each design's preset")
    ap.add_argument("--full-check", action="store_true",
                    help="the oracle's full state check after every step (as --full-check)")
    # merged breaks I1 at depth 4 (the S5 split), so its search stops there; merged-split-fix
    # explores the whole depth-4 space (30,354 states, docs/performance.md).
    ap.add_argument("--rate-design", default="merged-split-fix")
    ap.add_argument("--model", default="small")
    ap.add_argument("--por", default="on",
                    help="sleep sets for the rate runs: on, off, or both back to back (off,on)")
    a = ap.parse_args()
    if a.full_check:
        from mteswap.oracle import registry
        registry.set_full_check(True)
    print(f"cpus: {os.cpu_count()}  python: {sys.version.split()[0]}"
          + ("  (full state check)" if a.full_check else ""))
    if a.profile:
        pr = cProfile.Profile()
        pr.enable()
        run(design="merged", depth=3, workers=1)
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(a.profile)
        print(s.getvalue())
        return
    if not a.skip_rate:
        for w, por in [(w, p) for w in map(int, a.workers.split(",")) for p in a.por.split(",")]:
            s = run(design=a.rate_design, model=a.model, depth=a.depth, workers=w,
                    por=por == "on")
            per_core = s["distinct_states"] / s["seconds"] / w
            print(f"exhaustive {a.model}/{a.rate_design} depth {a.depth} workers {w} "
                  f"sleep sets {por}: "
                  f"{s['distinct_states']:,} states, {s['transitions']:,} transitions, "
                  f"{s['seconds']:.1f}s, {s['distinct_states'] / s['seconds']:,.0f} states/s, "
                  f"{per_core:,.0f} states/s/core, {s['transitions'] / s['seconds'] / w:,.0f} "
                  f"transitions/s/core, violation: {s['violation'] and s['violation']['kind']}"
                  + (f"; CPU {s['cpu']:.2f}s, {s['distinct_states'] / s['cpu']:,.0f} states/s, "
                     f"{s['cpu'] / s['transitions'] * 1e6:.1f} µs/transition" if w == 1 else ""))
    if not a.skip_ce:
        for d in a.designs.split(","):
            for w in map(int, a.workers.split(",")):
                first_counterexample(d, w, a.ce, a.seed)


def first_counterexample(design: str, workers: int, how: str, seed: int) -> None:
    """Time to `design`'s first counterexample, shrinking and writing the files included."""
    mode = "exhaustive" if how == "exhaustive" or design == "rfc-v1" else "random"
    preset = PRESET_OF.get(design, "small") if how == "exhaustive" else "small"
    kw = dict(depth=6) if mode == "exhaustive" else dict(random=True, seed=seed, time=120)
    s = run(design=design, workers=workers, model=preset, **kw)
    v = s["violation"]
    print(f"first counterexample {design:<22} {preset:<5} workers {workers} {mode:<10}: "
          f"{s['wall']:.2f}s total (search {s['seconds']:.2f}s, {s['distinct_states']:,} states"
          + (f"; CPU {s['cpu']:.2f}s" if workers == 1 else "") + ") "
          + f"{v['kind'] + '@' + str(v['step']) if v else 'none'}"
          + (f" walk {v['walk']}, shrunk {v['original_length']} -> {len(v['trace'])}"
             if v and 'walk' in v else ""))

if __name__ == "__main__":
    main()
