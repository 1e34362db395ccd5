"""Reduced exploration of parallel blocks (issue 14, docs/concurrency.md §5): dynamic
partial-order reduction with sleep sets (Flanagan and Godefroid, POPL 2005), stateless by
replay like the plain search of scenario/parallel.py, and lane symmetry.

Footprints. Each atomic step's footprint is measured when it runs (parallel.step_footprint):
it is PURE when the step changed nothing another lane can see (machine, the program's
expected view, the swap device's lifetime and references, the lock table) and starts no user
operation; otherwise GLOBAL. Reads are not declared, so every step is taken to read
everything: two steps are independent only when both are PURE. This is the sound default the
brief asks for, with no declaration to get wrong:

- a PURE step changes only its own thread's locals, from shared state that another PURE step
  did not change, so the two commute and each still reads what it read;
- the registry's state checks run after every step: with one of two adjacent steps PURE the
  two orders visit the same global states, so every invariant verdict is kept;
- the oracle's real-time order compares an operation's last step with another's first: first
  steps of operations are GLOBAL, so that order is the same in equivalent interleavings;
- a PURE step takes or drops no lock and moves no reference, so it enables or disables no one.

Equivalent interleavings have the same steps, so the same length: the shortest failing
interleaving keeps its length, and every verdict (each Mazurkiewicz trace is run at least once)
is kept. Preemption bounds are not combined with the reduction (`explore` falls back to the
plain search with a bound: DPOR does not preserve bounded sets of schedules).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mteswap.scenario import parallel as par_mod
from mteswap.scenario.load import PARALLEL

PURE = frozenset()
GLOBAL = None


def dependent(a, b) -> bool:
    """Two steps of different lanes are dependent unless both are PURE (reads undeclared)."""
    return a is GLOBAL or b is GLOBAL or bool(a) or bool(b)


class Pruned(BaseException):
    """Every enabled lane is asleep: each continuation is equivalent to one already run. A
    BaseException, so that no model code catches it; the scheduler unwinds the lanes."""


@dataclass
class Node:
    """The state before one atomic step of the current interleaving."""
    enabled: tuple[int, ...]
    block: int
    sleep: dict = field(default_factory=dict)      # lane -> footprint of its next step
    backtrack: set = field(default_factory=set)
    done: dict = field(default_factory=dict)       # lanes explored from here -> footprint
    lane: int | None = None
    fp: object = GLOBAL
    mirrors: frozenset = frozenset()   # at a block's first step: lanes never run first


class _Hook:
    """Picks lanes past the replayed prefix (avoiding sleeping ones) and records footprints."""

    def __init__(self, nodes: list[Node], prefix_len: int, roots: dict):
        self.nodes, self.prefix_len, self.roots = nodes, prefix_len, roots
        self.pos = None

    def choose(self, pos, enabled, last, block):
        self.pos = pos
        if pos < len(self.nodes):            # replaying: the prefix's own choice
            lane = self.nodes[pos].lane
            if lane not in enabled:          # replay is deterministic: a bug if not
                raise RuntimeError(f"replay diverged at step {pos + 1}: CPU{lane} not enabled")
            return lane
        node = Node(enabled, block, self._sleep(pos, block), mirrors=self._mirrors(pos, block))
        awake = [i for i in enabled if i not in node.sleep and i not in node.mirrors]
        if not awake:
            raise Pruned()
        node.lane = last if last in awake else awake[0]
        node.backtrack.add(node.lane)
        self.nodes.append(node)
        return node.lane

    def _sleep(self, pos, block) -> dict:
        if pos == 0 or self.nodes[pos - 1].block != block:
            return {}
        prev = self.nodes[pos - 1]
        carried = {**prev.sleep, **prev.done}
        return {ln: fp for ln, fp in carried.items()
                if ln != prev.lane and not dependent(fp, prev.fp)}

    def _mirrors(self, pos, block) -> frozenset:
        """At a block's first step, the lanes identical to a lower one (symmetry)."""
        if pos and self.nodes[pos - 1].block == block:
            return frozenset()
        return self.roots.get(block, frozenset())

    def stepped(self, fp) -> None:
        self.nodes[self.pos].fp = fp


def _races(nodes: list[Node], finished: set[int]) -> None:
    """Race detection on the run's steps: for each step, the latest earlier step of another
    lane that is dependent with it and does not happen before it adds that lane (or, if it
    was not enabled there, every enabled lane) to the backtrack set before the earlier step.
    The pending step of each lane that did not finish counts as a GLOBAL step at the end."""
    clocks: list[dict] = []
    last_of: dict[int, int] = {}
    steps = [(n.lane, n.fp, n.block) for n in nodes]
    end_block = nodes[-1].block if nodes else 0
    lanes = {n.lane for n in nodes} | {i for n in nodes for i in n.enabled}
    steps += [(p, GLOBAL, end_block) for p in sorted(lanes - finished)]
    for i, (p, fp, block) in enumerate(steps):
        own = dict(clocks[last_of[p]]) if p in last_of else {}
        race = None
        for j in range(min(i, len(nodes)) - 1, -1, -1):
            q, fq, bq = steps[j]
            if bq != block:
                break
            if q != p and dependent(fp, fq) and own.get(q, -1) < j:
                race = j
                break
        if race is not None:
            n = nodes[race]
            n.backtrack |= {p} if p in n.enabled else set(n.enabled)
        if i < len(nodes):
            clock = own
            for j in range(i):
                q, fq, bq = steps[j]
                if bq == block and (q == p or dependent(fp, fq)):
                    for k, v in clocks[j].items():
                        clock[k] = max(clock.get(k, -1), v)
            clock[p] = i
            clocks.append(clock)
            last_of[p] = i


def symmetric_lanes(base) -> dict[int, frozenset]:
    """For each parallel block, the lanes that are copies of a lower lane: the same steps
    of the same process storing the same values (so no `write`: each write's values are
    numbered by its place in the file), so threads of one mm that nothing tells apart (the
    lock table and the device references are keyed by lane but treat lanes alike). Exploring one of them
    first covers the others (their subtrees are mirror images: the same verdicts, the same
    lengths). Lanes of different processes are never taken as alike (pids, rmap order and
    the final view per process tell them apart)."""
    out = {}
    blocks = [s for s in base.scenario.steps[base.steps_run:] if s.op == PARALLEL]
    for b, step in enumerate(blocks):
        lanes = step.args["lanes"]
        # value_base: a write stores values numbered by its place in the file, so two lanes
        # that write are told apart by what they store (never alike). An stg's tags carry a
        # write generation numbered the same way (the oracle's ghost, docs/concurrency.md
        # §4), but nothing observable: twin stg lanes' subtrees are mirror images up to a
        # renaming of the two generations, which no verdict depends on (the oracle only
        # compares generations for equality), so they stay alike.
        keys = [tuple(_lane_step_key(s) for s in lane) for lane in lanes]
        out[b] = frozenset(i for i, k in enumerate(keys) if k in keys[:i])
    return out


def _lane_step_key(s) -> tuple:
    return (s.op, s.value_base if s.op == "write" else 0,
            tuple(sorted((k, repr(v)) for k, v in s.args.items())))


@dataclass
class Reduced(par_mod.Exploration):
    pruned: int = 0              # runs stopped because every enabled lane slept


def start(scenario, design):
    """A runner of `scenario` stopped at its first parallel block (what both explorers take)."""
    from mteswap.scenario.runner import Runner
    runner = Runner(scenario, design)
    for step in scenario.steps:
        if step.op == PARALLEL:
            break
        runner.run_step(step)
    return runner


def explore(base, symmetry: bool = True, limit: int | None = None) -> Reduced:
    """Every Mazurkiewicz trace of the remaining steps from `base` (a runner stopped at its
    first parallel block), by DPOR with sleep sets; with `symmetry`, a block's first step is
    never taken by a lane that copies a lower one. Keeps the first run and a shortest failing
    one, like parallel.explore."""
    ex = Reduced()
    roots = symmetric_lanes(base) if symmetry else {}
    nodes: list[Node] = []
    prefix_len = 0
    while True:
        r = base.clone()
        hook = _Hook(nodes, prefix_len, roots)
        r.par.hook = hook
        pruned = False
        try:
            r.run_remaining()
        except Pruned:
            pruned = True
            ex.pruned += 1
        else:
            _record(ex, r)
        ex.nodes += len(nodes) - max(prefix_len - 1, 0)    # new schedule prefixes run
        _races(nodes, _finished(r, bool(pruned)))
        if limit is not None and ex.runs >= limit:
            break
        prefix_len = _next(nodes)
        if prefix_len is None:
            break
    return ex


def _record(ex: Reduced, r) -> None:
    ex.runs += 1
    if ex.first is None:
        ex.first = r
    if r.oracle.violations:
        ex.failing += 1
        n = len(r.par.decisions)
        if ex.best is None or n < ex.best_len:
            ex.best, ex.best_len = r, n


def _finished(r, pruned: bool) -> set[int]:
    """Lanes known to have ended: all of them when the run went to the end; none when it was
    pruned or stopped (their pending steps then count as GLOBAL: more backtracking, never
    less)."""
    if pruned or r.par.stopped or not r.par.blocks:
        return set()
    return {ln for ln, _ in r.par.blocks[-1].spans}


def _next(nodes: list[Node]) -> int | None:
    """Backtrack to the deepest node with a lane left to run (not done, not asleep); that
    node keeps its new choice, deeper ones go. Returns the new prefix length."""
    while nodes:
        n = nodes[-1]
        if n.lane is not None:
            n.done[n.lane] = n.fp
        todo = sorted(ln for ln in n.backtrack if ln not in n.done and ln not in n.sleep
                      and ln not in n.mirrors and ln in n.enabled)
        if todo:
            n.lane, n.fp = todo[0], GLOBAL
            return len(nodes)
        nodes.pop()
    return None
