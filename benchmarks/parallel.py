"""Parallel blocks (issue 14): full vs reduced exploration of each bundled parallel scenario,
and each reverted fix's race as a counterexample (docs/performance.md, "Parallel blocks").

    PYTHONPATH=src python benchmarks/parallel.py [--design merged]

Per scenario, under the design: interleavings run and search-tree nodes (schedule prefixes)
of the plain search (scenario/parallel.py) and of DPOR with sleep sets and symmetry
(scenario/por.py), their ratio, and seconds. Then, per revertible fix and each bundled
scenario, the shortest failing interleaving found by the reduced search: its length (atomic
steps) and seconds. One process, one core.
"""

from __future__ import annotations

import argparse
import time

from mteswap.bundled import parallel_files
from mteswap.designs import get_design
from mteswap.model.reverts import REVERTS
from mteswap.scenario import parallel as P
from mteswap.scenario import por
from mteswap.scenario.load import load_scenario, with_reverts


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _kinds(ex) -> str:
    run = ex.best or ex.first
    return ",".join(sorted({v.kind for v in run.oracle.violations})) or "pass"


def compare(design: str) -> None:
    print(f"design {design}: full vs reduced (DPOR + sleep sets + symmetry)")
    print(f"{'scenario':42} {'full runs':>9} {'nodes':>6} {'s':>5} | {'red runs':>8} "
          f"{'nodes':>6} {'s':>5} | {'runs x':>6} {'nodes x':>7} verdict")
    for path in parallel_files():
        sc = load_scenario(path)
        full, tf = _timed(lambda: P.explore(por.start(sc, get_design(design))))
        red, tr = _timed(lambda: por.explore(por.start(sc, get_design(design))))
        same = "same" if (_kinds(full), full.best_len) == (_kinds(red), red.best_len) else "DIFFERS"
        print(f"{path.stem:42} {full.runs:9} {full.nodes:6} {tf:5.1f} | {red.runs:8} "
              f"{red.nodes:6} {tr:5.1f} | {full.runs / red.runs:6.2f} "
              f"{full.nodes / red.nodes:7.2f} {_kinds(full)} ({same})")


def reverts(design: str) -> None:
    print(f"\nreverted fixes (design {design}, reduced search): race found, counterexample "
          f"length, seconds")
    sets = [(c,) for c in sorted(REVERTS)] + [("13ddaf26be32", "6dca4ac6fc91")]
    for commits in sets:
        for path in parallel_files():
            sc = with_reverts(load_scenario(path), list(commits))
            red, t = _timed(lambda: por.explore(por.start(sc, get_design(design))))
            found = _kinds(red) if red.failing else "pass"
            steps = f"{red.best_len} steps" if red.failing else "-"
            print(f"{'+'.join(commits):27} {path.stem:42} {found:16} {steps:9} "
                  f"{red.runs:5} runs {t:5.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--design", default="merged")
    args = ap.parse_args()
    compare(args.design)
    reverts(args.design)


if __name__ == "__main__":
    main()
