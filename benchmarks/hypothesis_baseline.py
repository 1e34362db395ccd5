"""Baseline for `mteswap check`: the same model driven by Hypothesis's RuleBasedStateMachine,
with one rule per operation drawing its arguments from the same alphabet (`--model small`), and
an invariant that the oracle saw no violation. Prints the time to the first failing example
(the first violation Hypothesis's generation hits) and to the end (after its shrinking).

    .venv/bin/python benchmarks/hypothesis_baseline.py [--designs a,b] [--limit 300]
"""

from __future__ import annotations

import argparse
import time

from hypothesis import HealthCheck, Phase, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mteswap.explore.alphabet import Problem, action_op
from mteswap.explore.engine import get_context, try_step

FLAWED = ["split-before-swap", "rfc-v1", "rfc-v2", "rfc-v3", "restore-all-unmarked",
          "folio-marker", "merged"]


class Stop(KeyboardInterrupt):
    """The time limit: a KeyboardInterrupt subclass, which Hypothesis lets through at once."""


def machine_for(design: str, found: dict, deadline: list):
    ctx = get_context(Problem(design=design))
    alpha = ctx.alpha
    by_op: dict[str, list[int]] = {}
    for i, a in enumerate(alpha.actions):
        by_op.setdefault(action_op(a), []).append(i)

    class Model(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.r = ctx.root.clone()
            self.n = 0

        def _do(self, a):
            if time.perf_counter() > deadline[0]:
                raise Stop()
            step = alpha.steps_at(self.n + 1)[a]
            if alpha.enabled(self.r, step):
                probe = self.r.clone()
                if try_step(probe, step):
                    self.r = probe
                    self.n += 1

        @invariant()
        def no_violation(self):
            if self.r.oracle.violations and "first" not in found:
                found["first"] = time.perf_counter()
            assert not self.r.oracle.violations, self.r.oracle.violations[0]

    for op, idx in by_op.items():
        def make(idx):
            @rule(a=st.sampled_from(idx))
            def r(self, a):
                self._do(a)
            return r
        setattr(Model, f"op_{op}", make(idx))
    return Model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", default=",".join(FLAWED))
    ap.add_argument("--limit", type=float, default=300.0, help="seconds per design")
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()
    for d in a.designs.split(","):
        found: dict = {}
        deadline = [0.0]
        Model = machine_for(d, found, deadline)
        Model.TestCase.settings = settings(
            max_examples=10**9, stateful_step_count=a.steps, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), derandomize=True,
            phases=[Phase.generate, Phase.shrink])
        test = Model.TestCase("runTest")
        t0 = time.perf_counter()
        deadline[0] = t0 + a.limit
        outcome = "none"
        try:
            test.runTest()
        except Stop:
            outcome = f"no failure within {a.limit:.0f}s"
        except AssertionError:
            outcome = "fail"
        except Exception as err:   # Hypothesis wraps some failures
            outcome = f"error {type(err).__name__}"
        end = time.perf_counter()
        first = found.get("first")
        print(f"hypothesis {d:<22}: first violation "
              f"{'%.2fs' % (first - t0) if first else 'none'}, end (after shrinking) "
              f"{end - t0:.2f}s, outcome {outcome}", flush=True)


if __name__ == "__main__":
    main()
