"""What every search shares: the per-process context (alphabet, design, root state) and running
one action on one state."""

from __future__ import annotations

from mteswap.explore.alphabet import Alphabet, BadInput, Problem
from mteswap.explore.symmetry import fingerprint
from mteswap.scenario.load import ScenarioError
from mteswap.scenario.runner import Runner


def design_maker(spec: str):
    """A maker of fresh design instances for a name or path/to/file.py:Class (BadInput if bad)."""
    try:
        from mteswap.designs.loader import design_factory
    except ImportError:                                   # pragma: no cover - loader not there
        from mteswap.designs import get_design

        def design_factory(s):
            get_design(s)
            return lambda: get_design(s)
    from mteswap.designs import UnknownDesign
    try:
        return design_factory(spec)
    except UnknownDesign as err:
        raise BadInput(f"--design: {err}") from None


class Context:
    """Everything a search process rebuilds from a `Problem` (cached per process)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.alpha = Alphabet(problem)
        self.make_design = design_maker(problem.design)
        self.root = Runner(self.alpha.scenario, self.make_design())
        self.design_name = self.root.design.name
        self.nactions = len(self.alpha.actions)

    def fp(self, r) -> int:
        return fingerprint(r, self.alpha.vma_ids, self.problem.reduce)

    def replay(self, trace) -> Runner:
        """The runner after the actions of `trace` from the root (each must apply)."""
        r = self.root.clone()
        for i, a in enumerate(trace, start=1):
            r.run_step(self.alpha.steps_at(i)[a])
        return r

    def first_violation(self, trace):
        """(index in trace, Violation) of the first violation replaying `trace`, or None;
        ScenarioError if some step cannot apply."""
        r = self.root.clone()
        for i, a in enumerate(trace, start=1):
            r.run_step(self.alpha.steps_at(i)[a])
            if r.oracle.violations:
                return i, r.oracle.violations[0]
        return None


_CONTEXTS: dict = {}


def get_context(problem: Problem) -> Context:
    ctx = _CONTEXTS.get(problem)
    if ctx is None:
        _CONTEXTS.clear()
        ctx = _CONTEXTS[problem] = Context(problem)
    return ctx


def try_step(r, step) -> bool:
    """Run `step` on `r`; False if it cannot apply (bad input there, including running out of
    frames: the model has no OOM killer, so such a transition is disabled)."""
    try:
        r.run_step(step)
    except ScenarioError:
        return False
    return True
