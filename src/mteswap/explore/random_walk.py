"""Random walks, swarm style: each walk draws its own subset of operations and weights, so
different walks stress different mixes (Groce et al., "Swarm testing", ISSTA 2012).

Walk `i` of seed `s` is fully determined by (s, i): shards (worker processes, Dask tasks) run
disjoint walk indices, and the reported violation is the one of the lowest walk index, so the
result does not depend on how the walks were spread (with `--time`, on how many were run).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from mteswap.explore.alphabet import Problem, action_op
from mteswap.explore.model import get_model


@dataclass
class WalkResult:
    walk: int
    steps: int                 # steps run
    trace: list | None         # action indices up to the violation, or None
    violation: dict | None
    prop: str | None = None    # the always property that failed
    reached: dict = field(default_factory=dict)   # sometimes property -> trace reaching it


def walk_rng(seed: int, walk: int) -> random.Random:
    return random.Random(seed * 1_000_003 + walk)


def one_walk(problem: Problem, seed: int, walk: int, length: int) -> WalkResult:
    model = get_model(problem)
    alpha = model.alpha
    rng = walk_rng(seed, walk)
    by_op: dict[str, list[int]] = {}
    for i, a in enumerate(alpha.actions):
        by_op.setdefault(action_op(a), []).append(i)
    ops = sorted(by_op)
    chosen = [o for o in ops if rng.random() < 0.6] or [rng.choice(ops)]
    for must in ("mmap", "fork"):          # a walk without them does nothing interesting
        if must in by_op and must not in chosen:
            chosen.append(must)
    weights = [rng.randint(1, 10) for _ in chosen]
    r = model.init()
    trace: list[int] = []
    reached: dict = {}
    unreached = [p.name for p in model.sometimes()]
    for _depth in range(length):
        for _ in range(30):
            op = rng.choices(chosen, weights)[0]
            a = rng.choice(by_op[op])
            if model.offers(r, a):
                break
        else:
            break
        # No clone per step: a step that turns out not to apply (out of frames) ends the walk,
        # and the trace so far stays valid.
        if not model.step_in_place(r, a):
            break
        trace.append(a)
        if unreached:
            for name in model.reached(r, unreached):
                reached[name] = list(trace)
                unreached.remove(name)
        failed = model.failed_property(r)
        if failed is not None:
            return WalkResult(walk, len(trace), trace, failed[1], failed[0], reached)
    return WalkResult(walk, len(trace), None, None, None, reached)


def walk_batch(problem: Problem, seed: int, walks: list, length: int) -> list[WalkResult]:
    """Run the given walk indices; stop after the first violation (later walks of the batch
    cannot win: the lowest walk index does)."""
    out = []
    for w in walks:
        res = one_walk(problem, seed, w, length)
        out.append(res)
        if res.violation:
            break
    return out
