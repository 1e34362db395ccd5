"""Exhaustive breadth-first search over canonical states, level by level.

The search sees the system only through `explore.model.Model` (init, actions, step,
properties, fingerprint). A level's frontier is a list of traces (tuples of action indices),
kept in lexicographic order (parents in order, then actions in order). It is cut into chunks;
`expand_chunk` rebuilds each parent by replaying its trace along a stack of prefix states
(siblings share their prefix), takes every action the model offers there, and returns the
children's fingerprints in order, with the first failing `always` property and the first
transition reaching each `sometimes` property. The coordinator merges chunks in order against
one global `seen` set, so the result (the first violation in that order, the first trace
reaching each sometimes property, state and transition counts) does not depend on how many
workers ran the chunks, nor on the chunk size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mteswap.explore import footprint as fpm
from mteswap.explore.alphabet import Problem
from mteswap.explore.model import get_model

CHUNK = 48          # parents per chunk


@dataclass
class SleepChunk:
    """A chunk of the reduced search (sleep sets, docs/checking.md): each parent's trace and
    sleep set (footprint.py: a tuple of (action, touched, written)); `footprints`: whether
    the children need sleep sets of their own (not on the last level, never expanded)."""
    traces: list
    sleeps: list
    footprints: bool

    def __len__(self):
        return len(self.traces)

    def __getitem__(self, i):
        return self.traces[i]


@dataclass
class ChunkResult:
    children: list            # [(parent position in chunk, action, fingerprint)], locally deduped
    #                           (with sleep sets: (position, action, fingerprint, sleep set))
    transitions: int          # enabled transitions run (up to and including a violating one)
    violation: tuple | None   # (parent position, action, property name, Violation.to_dict())
    reached: dict = field(default_factory=dict)   # sometimes property -> (parent position, action)


def _replayed(model, traces):
    """(position, parent state, whether it is the stack's own copy) for each trace in order,
    rebuilt along a stack of prefix states (siblings share their prefix, so a parent costs
    about one clone and one step). The caller may step the parent in place only for its last
    child (no later trace has it as a prefix), and then sends True so that it is popped."""
    stack = [model.init()]
    current: tuple = ()
    for pos, trace in enumerate(traces):
        c = 0
        limit = min(len(current), len(trace), len(stack) - 1)
        while c < limit and current[c] == trace[c]:
            c += 1
        del stack[c + 1:]
        for j in range(c, len(trace)):
            stack.append(model.step(stack[-1], trace[j]))
        current = trace
        consumed = yield pos, stack[-1], len(stack) > 1
        if consumed:
            stack.pop()
            current = trace[:-1]


def expand_chunk(problem: Problem, traces) -> ChunkResult:
    """Every child of every parent of the chunk, in order. With sleep sets (a SleepChunk,
    docs/checking.md) a parent skips the actions asleep in it, and each child gets the sleep
    set of the actions (asleep in the parent, or explored from it before) independent of the
    action that reached it (footprint.py); a child reached twice in the chunk keeps the
    intersection. Without, every sleep set is empty and no footprint is measured."""
    model = get_model(problem)
    base = model.alpha.base_steps
    sleeps = traces.sleeps if isinstance(traces, SleepChunk) else None
    footprints = sleeps is not None and traces.footprints
    children: list = []
    local: dict = {}                  # fingerprint -> its index in children
    transitions = 0
    reached: dict = {}
    unreached = [p.name for p in model.sometimes()]
    gen = _replayed(model, traces)
    item = next(gen, None)
    while item is not None:
        pos, parent, own = item
        sleep = sleeps[pos] if sleeps is not None else ()
        asleep = {c[0] for c in sleep}
        awake = [a for a in model.actions(parent) if a not in asleep] if sleep \
            else model.actions(parent)
        info = fpm.Parent(parent) if footprints and awake else None
        done: list = []
        last = len(awake) - 1
        for k, a in enumerate(awake):
            child = parent if (k == last and own) else parent.clone()
            if not model.step_in_place(child, a):
                continue
            transitions += 1
            if unreached:
                for name in model.reached(child, unreached):
                    reached[name] = (pos, a)
                    unreached.remove(name)
            failed = model.failed_property(child)
            if failed is not None:
                gen.close()
                return ChunkResult(children, transitions, (pos, a) + failed, reached)
            fp = model.fingerprint(child)
            z = ()
            if info is not None:
                foot = info.measure(base[a], child)
                z = fpm.child_sleep(foot, sleep + tuple(done))
                done.append((a,) + (foot if foot is not None else (None, None)))
            i = local.get(fp)
            if i is None:
                local[fp] = len(children)
                children.append((pos, a, fp, z))
            elif sleeps is not None:
                p0, a0, fp0, z0 = children[i]
                children[i] = (p0, a0, fp0, fpm.intersect(z0, z))
        try:
            item = gen.send(bool(awake) and own)
        except StopIteration:
            item = None
    return ChunkResult(children, transitions, None, reached)


@dataclass
class BfsState:
    """The whole search state between two chunks (what a checkpoint holds)."""
    problem: Problem
    max_depth: int
    level: int = 0                       # depth of the parents being expanded
    frontier: list = field(default_factory=lambda: [()])
    pos: int = 0                         # next chunk start in frontier
    next_frontier: list = field(default_factory=list)
    seen: set = field(default_factory=set)
    distinct: int = 1                    # the root
    transitions: int = 0
    violation: dict | None = None        # {"trace": [...], "property": name, "violation": {...}}
    reached: dict = field(default_factory=dict)   # sometimes property -> first trace reaching it
    done: bool = False
    depth_reached: int = 0               # deepest level whose states were all generated
    elapsed: float = 0.0                 # seconds spent before the last resume
    chunk: int = CHUNK
    level_started: float = 0.0           # `elapsed` when the current level began
    stopped: str | None = None           # why the search stopped early ("time limit"), if it did
    # Sleep sets (docs/checking.md "Independence (sleep sets) over the sequential alphabet"):
    # on when `por`; then `sleeps[i]` is frontier[i]'s sleep set, and `next_index` maps the
    # fingerprint of each state first reached at the next level to its place there (a second
    # arrival at the same depth intersects the sleep sets).
    por: bool = False
    sleeps: list = field(default_factory=lambda: [()])
    next_sleeps: list = field(default_factory=list)
    next_index: dict = field(default_factory=dict)


def new_bfs(problem: Problem, max_depth: int, por: bool = False) -> BfsState:
    """The search's initial state. `por` (sleep sets) needs the symmetry reduction: the two
    orders of independent steps leave states equal only up to the renaming of written
    values (symmetry.py, reduction 1), so without it sleep sets would lose states."""
    model = get_model(problem)
    st = BfsState(problem, max_depth, por=por and problem.reduce)
    st.seen.add(model.fingerprint(model.init()))
    if max_depth <= 0:
        st.done = True
    return st


def merge(st: BfsState, chunk_traces: list, res: ChunkResult) -> None:
    """Fold one chunk's result into the state, in order. With sleep sets, a new state joins
    the next frontier with its sleep set; a state first reached at this same next level gets
    the intersection of its sleep sets (merging is in order, so the result is the same for
    any number of workers); a state of an earlier level is left alone (BFS reaches every
    state first by a shortest path, and every shortest-path arrival is merged before the
    state is expanded: docs/checking.md)."""
    seen, nxt, sleeps, index = st.seen, st.next_frontier, st.next_sleeps, st.next_index
    keep = st.level + 1 < st.max_depth
    for pos, a, fp, z in res.children:
        if fp not in seen:
            seen.add(fp)
            st.distinct += 1
            if keep:
                if st.por:
                    index[fp] = len(nxt)
                    sleeps.append(z)
                nxt.append(chunk_traces[pos] + (a,))
        elif st.por:
            i = index.get(fp)
            if i is not None:
                sleeps[i] = fpm.intersect(sleeps[i], z)
    st.transitions += res.transitions
    for name, (pos, a) in res.reached.items():
        st.reached.setdefault(name, list(chunk_traces[pos] + (a,)))
    if res.violation is not None:
        pos, a, prop, v = res.violation
        st.distinct += 1
        st.violation = {"trace": list(chunk_traces[pos] + (a,)), "property": prop, "violation": v}
        st.depth_reached = st.level + 1
        st.done = True


def advance_level(st: BfsState) -> None:
    """Called when every chunk of the level is merged."""
    st.depth_reached = st.level + 1
    st.level += 1
    st.frontier, st.next_frontier, st.pos = st.next_frontier, [], 0
    st.sleeps, st.next_sleeps, st.next_index = st.next_sleeps, [], {}
    st.level_started = st.elapsed
    if st.level >= st.max_depth or not st.frontier:
        st.done = True


def chunks_from(st: BfsState):
    """(start, traces) of the remaining chunks of the current level (a SleepChunk with
    sleep sets: the last level's children need none, as they are never expanded)."""
    for start in range(st.pos, len(st.frontier), st.chunk):
        traces = st.frontier[start:start + st.chunk]
        if st.por:
            traces = SleepChunk(traces, st.sleeps[start:start + st.chunk],
                                st.level + 1 < st.max_depth)
        yield start, traces


def run_bfs(st: BfsState, mapper, on_progress=None, on_chunk=None,
            time_limit: float | None = None) -> BfsState:
    """Drive the search to the end. `mapper(problem, list of chunks)` yields ChunkResults in
    order (in-process, a process pool or Dask); it may be closed early on a violation.
    `time_limit` (seconds of this call): stop after the chunk that reaches it, with
    `st.stopped` set and the state consistent (a checkpoint of it resumes where it stopped)."""
    t0 = time.perf_counter() - st.elapsed
    started = time.perf_counter()
    st.stopped = None
    while not st.done:
        pending = list(chunks_from(st))
        results = mapper(st.problem, [traces for _, traces in pending])
        try:
            for (start, traces), res in zip(pending, results):
                merge(st, traces, res)
                st.pos = start + len(traces)
                st.elapsed = time.perf_counter() - t0
                if on_progress:
                    on_progress(st)
                if st.done:
                    break
                if on_chunk:
                    on_chunk(st)
                if time_limit is not None and time.perf_counter() - started >= time_limit:
                    st.stopped = "time limit"
                    break
        finally:
            close = getattr(results, "close", None)
            if close:
                close()
        if st.stopped:
            break
        if not st.done:
            advance_level(st)
            if on_chunk:
                on_chunk(st)
    st.elapsed = time.perf_counter() - t0
    return st


def serial_mapper(problem, chunk_list):
    for traces in chunk_list:
        yield expand_chunk(problem, traces)
