"""The explorer's seam, shaped like stateright's `Model` trait: `init` (the initial state),
`actions` (what may happen in a state), `step` (the next state) and `properties` (named
`always` and `sometimes` properties). Breadth-first search (bfs.py), random walks
(random_walk.py) and shrinking (shrink.py) reach the system only through this class; the class
reaches it only through the runner's public methods (`run_step`, `clone`, `snapshot`,
`can_apply`, `violations`, `counters`).

A state is a `Runner` between two steps. An action is an index into the alphabet
(alphabet.py); as the value a `write` stores depends on the step's position, the step an action
runs is the alphabet's step at position `state.steps_run + 1`.

Properties are values with a name, so a search says which one failed or was reached:

* `always` — one per violation kind of the oracle ("no tag-check-fault", ...): the state has no
  violation of that kind. A search stops at the first state where one fails.
* `sometimes` — an event a search should be able to produce ("a large swap-in", ...): reached
  in a state when it happened on the way there (a counter of the machine is non-zero). A search
  reports each as reached (with the first trace that reached it) or not reached, so a preset
  whose alphabet cannot produce an event says so instead of passing vacuously.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from typing import Callable

from mteswap.explore.alphabet import Alphabet, BadInput, Problem
from mteswap.explore.blocks import run_block_exhaustively
from mteswap.explore.symmetry import fingerprint
from mteswap.scenario.load import PARALLEL, VIOLATION_KINDS, ScenarioError, Step
from mteswap.scenario.runner import Runner

ALWAYS, SOMETIMES = "always", "sometimes"


@dataclass(frozen=True)
class Property:
    name: str
    expectation: str                       # ALWAYS or SOMETIMES
    condition: Callable[[Runner], bool]    # always: holds here; sometimes: reached on the way here
    description: str


@dataclass(frozen=True)
class NoViolation:
    """The state has no oracle violation of `kind`."""
    kind: str

    def __call__(self, r: Runner) -> bool:
        return all(v.kind != self.kind for v in r.violations)


@dataclass(frozen=True)
class CounterAbove0:
    """The machine counted `counter` at least once on the way to the state."""
    counter: str

    def __call__(self, r: Runner) -> bool:
        return r.counters[self.counter] > 0


def always_name(kind: str) -> str:
    return f"no {kind}"


ALWAYS_PROPERTIES = tuple(
    Property(always_name(kind), ALWAYS, NoViolation(kind), f"the oracle reports no {kind}")
    for kind in VIOLATION_KINDS)

SOMETIMES_PROPERTIES = (
    Property("a large folio swapped out whole", SOMETIMES, CounterAbove0("large_swap_outs"),
             "shrink_folio_list wrote a large folio to swap without splitting it (THP_SWPOUT)"),
    Property("a large swap-in", SOMETIMES, CounterAbove0("large_swap_ins"),
             "do_swap_page allocated a large folio for a swap-in (v6.12+, zram only)"),
    Property("tags restored from swap", SOMETIMES, CounterAbove0("tag_restores"),
             "mte_restore_tags wrote saved tags back into a page"),
    Property("a split of a mixed-tagged folio", SOMETIMES, CounterAbove0("mixed_tag_splits"),
             "a large folio whose pages' PG_mte_tagged differ was split"),
)


def design_maker(spec: str):
    """A maker of fresh design instances for a name or path/to/file.py:Class (BadInput if bad)."""
    from mteswap.designs import UnknownDesign
    from mteswap.designs.loader import design_factory
    try:
        return design_factory(spec)
    except UnknownDesign as err:
        raise BadInput(f"--design: {err}") from None


class Model:
    """The system under check for one `Problem` (rebuilt, and cached, in every process)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.alpha = Alphabet(problem)
        self.make_design = design_maker(problem.design)
        self._root = Runner(self.alpha.scenario, self.make_design())
        self.design_name = self._root.design.name
        self.nactions = len(self.alpha.actions)
        # can_apply per distinct key (Runner.can_apply_key) rather than per action: the
        # alphabet has many operations on the same pages (150 actions, 16 keys for `small`).
        keys: dict = {}                 # key -> its index
        self._key_of: list[int] = []     # per action, its key's index
        self._key_steps: list[Step] = []  # per key, a step with that key
        for s in self.alpha.base_steps:
            k = keys.setdefault(Runner.can_apply_key(s), len(keys))
            if k == len(self._key_steps):
                self._key_steps.append(s)
            self._key_of.append(k)
        self._sometimes = {p.name: p for p in self.properties() if p.expectation == SOMETIMES}

    # -- the trait --------------------------------------------------------------------------
    def init(self) -> Runner:
        """A fresh initial state (process A, nothing mapped)."""
        return self._root.clone()

    def actions(self, state: Runner) -> list[int]:
        """The actions that may apply in `state`, in alphabet order."""
        ok = [state.can_apply(s) for s in self._key_steps]
        return list(compress(range(self.nactions), map(ok.__getitem__, self._key_of)))

    def offers(self, state: Runner, action: int) -> bool:
        """Is `action` among `actions(state)`? (One test, for a walk that draws actions.)"""
        return state.can_apply(self.alpha.steps_at(state.steps_run + 1)[action])

    def step(self, state: Runner, action: int) -> Runner | None:
        """The state after `action`, or None if it cannot apply; `state` is left as it was."""
        child = state.clone()
        return child if self.step_in_place(child, action) else None

    def properties(self) -> tuple[Property, ...]:
        return ALWAYS_PROPERTIES + SOMETIMES_PROPERTIES

    # -- what searches need besides ---------------------------------------------------------
    def step_in_place(self, state: Runner, action: int) -> bool:
        """`step` without the copy, for a state the caller no longer needs: False if the action
        cannot apply (bad input there, including running out of frames: the model has no OOM
        killer, so such a transition is disabled; the state is then unusable)."""
        step = self.alpha.steps_at(state.steps_run + 1)[action]
        try:
            if step.op == PARALLEL:
                run_block_exhaustively(state, step)      # every interleaving (blocks.py)
            else:
                state.run_step(step)
        except ScenarioError:
            return False
        return True

    def fingerprint(self, state: Runner) -> int:
        return fingerprint(state, self.alpha.vma_ids, self.problem.reduce,
                           self.alpha.scenario.config.tag_alloc_fail_after)

    def failed_property(self, state: Runner) -> tuple[str, dict] | None:
        """(name of the always property that fails, the violation as a dict) for the state's
        first violation, or None when every always property holds."""
        if not state.violations:
            return None
        v = state.violations[0]
        return always_name(v.kind), v.to_dict()

    def sometimes(self) -> tuple[Property, ...]:
        return tuple(self._sometimes.values())

    def reached(self, state: Runner, names) -> list[str]:
        """Which of the sometimes properties `names` are reached in `state`."""
        out = []
        counters = state.counters
        for n in names:
            cond = self._sometimes[n].condition
            # the counter test inlined: this runs on every transition of a search
            if counters.get(cond.counter, 0) > 0 if type(cond) is CounterAbove0 else cond(state):
                out.append(n)
        return out

    def steps_of(self, trace) -> list[Step]:
        """The steps a trace of action indices runs, positioned 1, 2, ..."""
        return [self.alpha.steps_at(i)[a] for i, a in enumerate(trace, start=1)]

    def replay(self, trace) -> Runner:
        """The state after the actions of `trace` from the initial state (each must apply)."""
        r = self.init()
        for a in trace:
            if not self.step_in_place(r, a):
                raise ValueError(f"replay: action {a} cannot apply at step {r.steps_run + 1}")
        return r


def run_step(r: Runner, step: Step) -> bool:
    """Run `step` on `r`; False if it cannot apply (ScenarioError)."""
    try:
        if step.op == PARALLEL:
            run_block_exhaustively(r, step)
        else:
            r.run_step(step)
    except ScenarioError:
        return False
    return True


_MODELS: dict = {}


def get_model(problem: Problem) -> Model:
    """The model of `problem` in this process (built once: workers are handed the problem)."""
    model = _MODELS.get(problem)
    if model is None:
        _MODELS.clear()
        model = _MODELS[problem] = Model(problem)
    return model
