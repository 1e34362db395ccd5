"""A parallel block as one transition of `mteswap check` (issue 14, docs/checking.md).

The search's state is a runner between two steps; a parallel block from that state has as
many outcomes as interleavings. The transition explores all of them (scenario/por.py: DPOR
with sleep sets) and goes on from one: a shortest failing interleaving when one fails (its
violations, with `schedule` and `thread`, are the state's), else the first interleaving.
So a block's verdict from each state the search reaches is exhaustive; the states after the
block that the other passing interleavings leave (e.g. the page swapped out or not) are not
searched further (a deeper search would multiply each block by its interleavings).
"""

from __future__ import annotations

from dataclasses import replace

from mteswap.scenario import por
from mteswap.scenario.parallel import ParallelState


def run_block_exhaustively(state, step) -> None:
    """Run the parallel `step` on the runner `state` under every interleaving and leave
    `state` as the chosen one left it (ScenarioError when a lane cannot apply)."""
    scenario = state.scenario
    base = state.clone()
    # The explorer runs the rest of the runner's scenario: here, only this block.
    base.scenario = replace(scenario, steps=tuple(scenario.steps[:state.steps_run]) + (step,))
    base.par = ParallelState()
    ex = por.explore(base)
    pick = ex.best or ex.first
    pick.scenario = scenario
    pick.par = ParallelState()
    state.__dict__.update(pick.__dict__)
