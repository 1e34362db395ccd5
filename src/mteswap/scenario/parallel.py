"""Parallel blocks (issue 14, docs/concurrency.md): running one interleaving of a block's
lanes as kernel threads (model/sched.py), the linearizability oracle, and the exhaustive
exploration of every interleaving by replay.

One interleaving of a whole scenario is named by its *schedule*: the lane that ran each
atomic step, every block's steps one after another. `Runner.par.prefix` fixes the start of
it; past the prefix the running lane goes on while it can, else the lowest enabled lane (no
preemption). The explorer re-runs the scenario from a clone taken at the first block with
longer and longer prefixes: a depth-first search over the choice points (stateless, by
replay).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from mteswap.model import sched as S
from mteswap.model import tags as T
from mteswap.oracle import StepContext, Violation
from mteswap.oracle.core import gen_text

# State checks of the registry that hold only between system calls, not between two atomic
# steps of a kernel path. They run at the end of the block (with every other check), not
# after each atomic step:
# - I5 (SWAP_HAS_CACHE exactly on cached slots): the skip-swapcache pin holds a slot with no
#   swap-cache folio between swapcache_prepare and swapcache_clear;
# - tag-storage-leak ("saved tags left after swapoff"): swapoff clears SWP_WRITEOK first and
#   drops the tags of the area only at its end (arch_swap_invalidate_area);
# - I7 (a slot's count equals the swap PTEs that name it): zap_pte_range clears the swap
#   PTEs under the PTL, then drops their counts in free_swap_and_cache_nr's own step;
# - I1-lock (PG_mte_lock only with PG_mte_tagged): a restore that looks its buffers up in one
#   step and copies them in the next (a reverted 6dca4ac6fc91) may hold PG_mte_lock between.
QUIESCENT_ONLY = frozenset({"I1-lock", "I5", "I7", "tag-storage-leak"})


class ScheduleError(Exception):
    """A `--schedule` names a lane that cannot run at that step."""


@dataclass
class Decision:
    enabled: tuple[int, ...]
    chosen: int
    last: int | None          # the lane that ran the step before (None at a block start)

    @property
    def preempts(self) -> bool:
        """A switch away from a lane that could have gone on (CHESS's preemption)."""
        return self.last is not None and self.last in self.enabled and self.chosen != self.last


@dataclass
class BlockRecord:
    """What one block of one interleaving did: its atomic steps (lane, kernel step name) and
    each user operation's interval [first step, last step] and observations."""
    index: int
    steps: list[tuple[int, str]] = field(default_factory=list)
    spans: dict[tuple[int, int], list[int]] = field(default_factory=dict)   # (lane, pos) -> [a, b]
    observed: dict[tuple[int, int], list] = field(default_factory=dict)


@dataclass
class ParallelState:
    """A runner's part in parallel blocks: the schedule prefix to follow, the decisions
    taken so far (every block), the blocks' records, and the cache of serial outcomes
    (shared by clones: it depends only on the state before a block)."""
    prefix: tuple[int, ...] = ()
    decisions: list[Decision] = field(default_factory=list)
    blocks: list[BlockRecord] = field(default_factory=list)
    serial_cache: dict = field(default_factory=dict)
    current: tuple[int, int] | None = None     # (lane, pos) being run in a serial replay
    serial_observed: dict = field(default_factory=dict)   # ... and what its ops observed
    stopped: bool = False      # an interleaving that cannot go on (use-after-free)
    # A reducing explorer's hook (scenario/por.py), None otherwise: it picks the lane past
    # the prefix (`choose`) and is told each step's footprint (`stepped`).
    hook: object = None
    # Indices in the oracle's violations of the per-access checks made inside the running
    # block: provisional until the linearizability check (`provisional`).
    pending: list = field(default_factory=list)

    def clone(self) -> "ParallelState":
        return ParallelState(self.prefix, list(self.decisions), list(self.blocks),
                             self.serial_cache, self.current, self.serial_observed,
                             self.stopped, self.hook)

    @property
    def schedule(self) -> tuple[int, ...]:
        return tuple(d.chosen for d in self.decisions)


def describe_lane_step(step) -> str:
    from mteswap.scenario.runner import describe_step
    return describe_step(step)


# -- one interleaving ------------------------------------------------------------------------

def run_block(runner, step) -> None:
    """Run the parallel block `step` on `runner` as one interleaving (the runner's schedule
    prefix, then no preemption), with per-step state checks, then check linearizability."""
    par, m = runner.par, runner.m
    lanes = step.args["lanes"]
    pre = runner.clone()
    rec = BlockRecord(step.index)
    par.blocks.append(rec)
    first_violation = len(runner.oracle.violations)
    found_by: dict[int, int] = {}          # violation index -> lane whose step found it

    def body(lane_no, lane):
        def run():
            for pos, inner in enumerate(lane):
                if pos:
                    S.point(m, describe_lane_step(inner))
                rec.spans[(lane_no, pos)] = [len(rec.steps), len(rec.steps)]
                rec.observed[(lane_no, pos)] = []
                runner.run_lane_op(inner)
        return run

    def choose(enabled, last):
        pos = len(par.decisions)
        if pos < len(par.prefix):
            c = par.prefix[pos]
            if c not in enabled:
                raise ScheduleError(f"schedule position {pos + 1}: CPU{c} cannot run here "
                                    f"(enabled: {', '.join(f'CPU{e}' for e in enabled)})")
        elif par.hook is not None:
            c = par.hook.choose(pos, tuple(enabled), last, len(par.blocks) - 1)
        else:
            c = last if last in enabled else enabled[0]
        par.decisions.append(Decision(tuple(enabled), c, last))
        return c

    ctx = StepContext(step.index, "parallel")
    shared = [None]            # what the previous step left shared (for footprints)

    def after_step(lane_no, name):
        rec.steps.append((lane_no, name))
        _extend_span(rec, lane_no)
        if par.hook is not None:
            before, shared[0] = shared[0], shared_state(runner, scheduler)
            par.hook.stepped(step_footprint(rec, lane_no, before, shared[0]))
        if runner.on_atomic_step is not None:
            runner.on_atomic_step(lane_no, name)
        n = len(runner.oracle.violations)
        if runner.check_state:
            runner.oracle.check_state(ctx, m, skip=QUIESCENT_ONLY)
        for k in range(n, len(runner.oracle.violations)):
            found_by[k] = lane_no
        for k in range(first_violation, n):
            found_by.setdefault(k, lane_no)

    scheduler = S.Scheduler(m, [(describe_lane_step(lane[0]), body(i, lane))
                                for i, lane in enumerate(lanes)], choose, after_step)
    if par.hook is not None:
        shared[0] = shared_state(runner, scheduler)
    try:
        scheduler.run()
    except S.Deadlock as err:
        runner.oracle._add("deadlock", "deadlock", ctx, None, f"no thread can run: {err}")
        found_by[len(runner.oracle.violations) - 1] = err.waiting[0][0]
        par.stopped = True         # the lanes cannot finish: nothing after this is meaningful
    except S.UseAfterFree as err:
        # The lane cannot go on (its next read is of freed memory): the interleaving stops.
        rec.steps.append((err.lane, err.reader))
        runner.oracle._add("use-after-free", "use-after-free", ctx, None, f"{err} on CPU{err.lane}")
        found_by[len(runner.oracle.violations) - 1] = err.lane
        par.stopped = True
    pending, par.pending = par.pending, []
    if not par.stopped:
        verdict = check_linearizable(runner, pre, step, rec, ctx)
        if verdict is not None:          # linearizable: the instant checks were premature
            found_by = _drop(runner, pending, found_by)
            runner.oracle.violations.extend(verdict)
    _annotate(runner, first_violation, found_by, par.schedule)


def provisional(runner, since: int) -> None:
    """Hold the violations from index `since` on, which the per-access checks of an access
    in a lane just found (Runner.op_read / op_write), against the program's expected view at
    the access's instant. Inside an interleaved block that view changes only when an
    operation ends, not at the atomic step that makes its effect visible, so what they find
    is provisional: kept only when the block is not linearizable (where they say which
    access of which lane went wrong), dropped otherwise (docs/concurrency.md §4). Called
    only while a scheduler runs: a sequential access's violations are final."""
    runner.par.pending.extend(range(since, len(runner.oracle.violations)))


def _drop(runner, indices, found_by: dict[int, int]) -> dict[int, int]:
    """Remove the violations at `indices`; the lane map follows the shifted indices."""
    gone = set(indices)
    vs = runner.oracle.violations
    keep = [k for k in range(len(vs)) if k not in gone]
    runner.oracle.violations[:] = [vs[k] for k in keep]
    return {new: found_by[old] for new, old in enumerate(keep) if old in found_by}


def shared_state(runner, scheduler) -> tuple:
    """Everything a step of one lane can change that another lane can see: the machine, the
    program's expected view, the swap device's lifetime and references, the lock table."""
    return (runner.m.snapshot(), runner.oracle.expect.snapshot(), scheduler.device,
            tuple(sorted(scheduler.device_refs)), tuple(sorted(scheduler.scanning)),
            tuple(sorted(scheduler.locks.items(), key=repr)))


def step_footprint(rec: BlockRecord, lane_no: int, before: tuple, after: tuple):
    """The footprint of the step just run (scenario/por.py): `por.PURE` when it changed
    nothing shared and starts no user operation, else `por.GLOBAL`."""
    from mteswap.scenario import por
    last = len(rec.steps) - 1
    starts_op = any(ln == lane_no and span[0] == last for (ln, _), span in rec.spans.items())
    return por.PURE if before == after and not starts_op else por.GLOBAL


def _extend_span(rec: BlockRecord, lane_no: int) -> None:
    """The step just recorded belongs to the operation the lane is in: its span grows."""
    last = len(rec.steps) - 1
    current = max((pos for (ln, pos) in rec.spans if ln == lane_no), default=None)
    if current is not None:
        rec.spans[(lane_no, current)][1] = last


def _annotate(runner, first: int, found_by: dict[int, int], schedule: tuple[int, ...]) -> None:
    """Violations found in the block carry the schedule so far and the lane that found them."""
    vs = runner.oracle.violations
    for k in range(first, len(vs)):
        vs[k] = replace(vs[k], schedule=schedule, thread=found_by.get(k))


def observe(runner, page: int, data, mets, gens=None) -> None:
    """A user access of a lane's operation: what it saw (data None for a store), and the
    write generations of the tags it met (the oracle's ghost; None when not checked)."""
    par, m = runner.par, runner.m
    key = par.current if m.sched is None else None
    seen = (page, None if data is None else tuple(data), tuple(mets),
            None if gens is None else tuple(gens))
    if key is None:
        lane = m.sched.current
        rec = par.blocks[-1]
        key = (lane, max(pos for (ln, pos) in rec.spans if ln == lane))
        rec.observed[key].append(seen)
    else:
        par.serial_observed[key].append(seen)


# -- the oracle: linearizability -------------------------------------------------------------

def final_view(runner) -> tuple:
    """What each live process reads in each of its VMAs now: ((pid, vma, page, value, tags
    met, the tags' write generation), ...), read on a clone (the reads fault pages in); the
    generation (a ghost) is None when the oracle's stale-tags check is off."""
    probe = runner.clone()
    probe.par = ParallelState()
    out = []
    for (pid, name), (start, n) in sorted(probe.vmas.items()):
        mm = probe.m.mms[pid]
        if not mm.alive:
            continue
        out.extend(probe.probe_vma(mm, name, start, n))
    if not runner.oracle.gens_on:
        return tuple(x[:5] + (None,) for x in out)
    return tuple(out)


def serial_orders(lanes) -> list[tuple[tuple[int, int], ...]]:
    """Every order of the lanes' operations that keeps each lane's order."""
    ops = [(i, p) for i, lane in enumerate(lanes) for p in range(len(lane))]
    orders = []
    for perm in itertools.permutations(ops):
        if all(perm.index((i, p)) < perm.index((i, p + 1))
               for i, lane in enumerate(lanes) for p in range(len(lane) - 1)):
            orders.append(perm)
    return orders


def serial_outcomes(runner, pre, step) -> list[tuple[tuple, dict, tuple, tuple]]:
    """(order, observations, final view, access violations) of each serial order of the
    block, run one operation after another from the state before the block (cached by that
    state). The access violations are those of the sequential per-access checks (the
    program's expected view, exact when operations do not overlap): a serial order with
    none is a correct sequential execution."""
    key = (step.index, pre.snapshot())
    cache = runner.par.serial_cache
    if key not in cache:
        lanes = step.args["lanes"]
        outs = []
        for order in serial_orders(lanes):
            r = pre.clone()
            r.par = ParallelState()
            r.par.serial_observed = {op: [] for op in order}
            before = len(r.oracle.violations)
            for op in order:
                r.par.current = op
                r.run_lane_op(lanes[op[0]][op[1]])
            r.par.current = None
            outs.append((order, {k: tuple(v) for k, v in r.par.serial_observed.items()},
                         final_view(r), tuple(r.oracle.violations[before:])))
        cache[key] = outs
    return cache[key]


def _admissible(order, spans) -> bool:
    """Does the serial order keep the real-time order of operations that did not overlap?"""
    at = {op: i for i, op in enumerate(order)}
    for a, (a0, a1) in spans.items():
        for b, (b0, b1) in spans.items():
            if a1 < b0 and at[a] > at[b]:
                return False
    return True


def check_linearizable(runner, pre, step, rec: BlockRecord, ctx) -> tuple | None:
    """Report a violation when no admissible, correct serial order gives what this
    interleaving gave: every access's observation and each process's data and tags after the
    block; a serial order counts only when its own sequential per-access checks pass.
    Returns what the block's provisional access violations are replaced by when it is
    linearizable: () when it equals a correct serial order, the access violations of the
    first failing serial order it equals (a design that fails sequentially); None when it
    is not linearizable (reported here; the provisional ones stay)."""
    seen = {k: tuple(v) for k, v in rec.observed.items()}
    view = final_view(runner)
    outs = [o for o in serial_outcomes(runner, pre, step) if _admissible(o[0], rec.spans)]
    same = [bad for _, obs, v, bad in outs if obs == seen and v == view]
    if any(not bad for bad in same):
        return ()
    if same:
        return same[0]
    data_only = any(_values(obs) == _values(seen) and _values_view(v) == _values_view(view)
                    for _, obs, v, _ in outs)
    # Data and tags as some admissible order gives them, but tags of another write (ghost).
    stale = [(order, v) for order, obs, v, _ in outs
             if _no_gens(obs) == _no_gens(seen) and _no_gens_view(v) == _no_gens_view(view)]
    kind = "stale-tags" if stale else "tag-check-fault" if data_only else "data-corruption"
    order, _, v, _ = outs[0] if outs else ((), {}, (), ())
    if stale:
        order, v = stale[0]
    cut = 6 if stale else 5        # generations compared only for stale-tags
    diff = next(((a, b) for a, b in zip(view, v) if a[:cut] != b[:cut]), None)
    page = proc = vma = None
    if diff:
        pid, vma, page = diff[0][0], diff[0][1], diff[0][2]
        proc = runner.m.mms[pid].name
        detail = (f"not linearizable: after the block {proc} {vma} page {page} holds value "
                  f"{diff[0][3]:#x} with tags {_tags_text(diff[0][4])}{_gen_text(diff[0], stale)}; "
                  f"the serial order {_order_text(order)} gives {diff[1][3]:#x} with tags "
                  f"{_tags_text(diff[1][4])}{_gen_text(diff[1], stale)}")
    else:
        detail = (f"not linearizable: what the lanes' accesses observed matches no serial "
                  f"order (e.g. {_order_text(order)})")
    runner.oracle.violations.append(Violation(kind, step.index, "parallel", proc, vma, page,
                                              detail, "linearizability"))
    return None


def _tags_text(tags) -> str:
    """Tags a load met, as traces show them (`unknown` for never-initialised tags; None
    through an untagged mapping)."""
    return str(tags) if tags is None else T.describe(tags)


def _gen_text(entry: tuple, stale) -> str:
    """` of generation 0x400001` for a final-view entry when the mismatch is stale-tags."""
    if not stale or entry[5] is None:
        return ""
    return f" of generation {gen_text(entry[5])}"


def _values(obs: dict) -> dict:
    return {k: tuple((o[0], o[1]) for o in v) for k, v in obs.items()}


def _values_view(view: tuple) -> tuple:
    return tuple(x[:4] for x in view)


def _no_gens(obs: dict) -> dict:
    """Observations without the tags' write generations (what the program can see)."""
    return {k: tuple(o[:3] for o in v) for k, v in obs.items()}


def _no_gens_view(view: tuple) -> tuple:
    return tuple(x[:5] for x in view)


def _order_text(order) -> str:
    return ", ".join(f"CPU{lane}.{pos + 1}" for lane, pos in order)


# -- every interleaving ----------------------------------------------------------------------

@dataclass
class Exploration:
    runs: int = 0
    failing: int = 0
    best: object = None          # the runner of a shortest failing interleaving
    first: object = None         # the runner of the first interleaving (no preemption)
    best_len: int = 0
    nodes: int = 0               # schedule prefixes run (the nodes of the search tree)


def preemptions(decisions) -> int:
    return sum(1 for d in decisions if d.preempts)


def explore(base, bound: int | None = None, limit: int | None = None) -> Exploration:
    """Every interleaving of the scenario's remaining steps from `base` (a runner stopped at
    its first parallel block), depth-first by replay; with `bound`, only schedules with at
    most that many preemptions. Keeps the first run and a shortest failing one."""
    ex = Exploration()
    stack = [()]
    while stack:
        prefix = stack.pop()
        r = base.clone()
        r.par.prefix = prefix
        r.run_remaining()
        ex.runs += 1
        ds = r.par.decisions
        ex.nodes += len(ds) - max(len(prefix) - 1, 0)
        if ex.first is None:
            ex.first = r
        if r.oracle.violations:
            ex.failing += 1
            if ex.best is None or len(ds) < ex.best_len:
                ex.best, ex.best_len = r, len(ds)
        if limit is not None and ex.runs >= limit:
            break
        used = preemptions(ds[:len(prefix)])
        # Branch at each choice point past the prefix, latest first popped (DFS).
        for i in range(len(prefix), len(ds)):
            d = ds[i]
            for alt in d.enabled:
                if alt == d.chosen:
                    continue
                extra = 1 if d.last is not None and d.last in d.enabled and alt != d.last else 0
                if bound is not None and used + extra > bound:
                    continue
                stack.append(tuple(x.chosen for x in ds[:i]) + (alt,))
            used += 1 if d.preempts else 0
    return ex


# -- counterexamples -------------------------------------------------------------------------

def cpu_trace(rec: BlockRecord, nlanes: int, width: int = 40) -> list[str]:
    """The block's atomic steps as the `CPU0 | CPU1` columns of kernel commit messages: one
    step per line, in the column of the lane that ran it; a column is as wide as its longest
    step name (at least `width`), so that the bars line up."""
    width = max([width] + [len(name) for lane, name in rec.steps if lane < nlanes - 1])
    head = " | ".join(f"CPU{i}".ljust(width) for i in range(nlanes)).rstrip()
    lines = [head, "-" * len(head)]
    for lane, name in rec.steps:
        cells = [""] * nlanes
        cells[lane] = name
        lines.append(" | ".join(c.ljust(width) for c in cells).rstrip())
    return lines
