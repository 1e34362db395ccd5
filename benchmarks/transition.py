"""What one transition of `mteswap check` costs, part by part (docs/performance.md,
"Incremental state"): on 3,000 states of random walks (seed 1, 1-6 steps) of the `small`
preset under merged-split-fix, CPU µs of `Runner.clone`, the fingerprint, `Model.actions`
(per state), and clone + step with and without the oracle's state check (the step and the
check by difference). Best of three passes.

    .venv/bin/python benchmarks/transition.py
"""

from __future__ import annotations

import random
import time

from mteswap.explore.alphabet import Problem
from mteswap.explore.model import get_model
from mteswap.oracle import core, scoped


def sample_states(model, n: int = 3000, seed: int = 1) -> list:
    rng = random.Random(seed)
    states: list = []
    while len(states) < n:
        r = model.init()
        for _ in range(rng.randint(1, 6)):
            c = model.step(r, rng.choice(model.actions(r)))
            if c is None:
                continue
            if c.violations:
                break
            r = c
            states.append(r)
    return states


def cpu_us(f, items, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        for x in items:
            f(x)
        best = min(best, (time.process_time() - t0) / len(items) * 1e6)
    return best


def _no_state_check(self, ctx, m, skip=frozenset()):
    scoped.forget_writes(m)
    m.tag_reads.clear()
    self._seen = None


def main() -> None:
    model = get_model(Problem(design="merged-split-fix"))
    states = sample_states(model)
    pairs = [(s, a) for s in states for a in model.actions(s)[::7]]

    def clone_step(p):
        child = p[0].clone()
        model.step_in_place(child, p[1])

    rows = [("Runner.clone", cpu_us(lambda s: s.clone(), states)),
            ("  Machine.clone", cpu_us(lambda s: s.m.clone(), states)),
            ("  SwapInfo.clone", cpu_us(lambda s: s.m.swap.clone(), states)),
            ("  Oracle.clone", cpu_us(lambda s: s.oracle.clone(), states)),
            ("fingerprint", cpu_us(model.fingerprint, states)),
            ("  Runner.snapshot", cpu_us(lambda s: s.snapshot(), states)),
            ("  Machine.snapshot", cpu_us(lambda s: s.m.snapshot(), states)),
            ("Model.actions (per state)", cpu_us(model.actions, states))]
    with_check = cpu_us(clone_step, pairs)
    saved = core.Oracle.check_state
    core.Oracle.check_state = _no_state_check
    try:
        without = cpu_us(clone_step, pairs)
    finally:
        core.Oracle.check_state = saved
    rows += [("clone + step + check_state", with_check), ("clone + step", without),
             ("  step (difference)", without - rows[0][1]),
             ("  check_state (difference)", with_check - without)]
    print(f"{len(states)} states, {len(pairs)} transitions")
    for name, us in rows:
        print(f"{name:30s} {us:7.2f} µs")


if __name__ == "__main__":
    main()
