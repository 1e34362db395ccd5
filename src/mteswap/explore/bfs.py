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

from mteswap.explore.alphabet import Problem
from mteswap.explore.model import get_model

CHUNK = 48          # parents per chunk


@dataclass
class ChunkResult:
    children: list            # [(parent position in chunk, action, fingerprint)], locally deduped
    transitions: int          # enabled transitions run (up to and including a violating one)
    violation: tuple | None   # (parent position, action, property name, Violation.to_dict())
    reached: dict = field(default_factory=dict)   # sometimes property -> (parent position, action)


def expand_chunk(problem: Problem, traces: list) -> ChunkResult:
    model = get_model(problem)
    stack = [model.init()]
    current: tuple = ()
    children: list = []
    local: set = set()
    transitions = 0
    reached: dict = {}
    unreached = [p.name for p in model.sometimes()]
    for pos, trace in enumerate(traces):
        c = 0
        limit = min(len(current), len(trace), len(stack) - 1)
        while c < limit and current[c] == trace[c]:
            c += 1
        del stack[c + 1:]
        for j in range(c, len(trace)):
            stack.append(model.step(stack[-1], trace[j]))
        current = trace
        parent = stack[-1]
        enabled = model.actions(parent)
        last = len(enabled) - 1
        for k, a in enumerate(enabled):
            # The parent itself serves its last child: no later trace has it as a prefix.
            child = parent if (k == last and len(stack) > 1) else parent.clone()
            if not model.step_in_place(child, a):
                continue
            transitions += 1
            if unreached:
                for name in model.reached(child, unreached):
                    reached[name] = (pos, a)
                    unreached.remove(name)
            failed = model.failed_property(child)
            if failed is not None:
                return ChunkResult(children, transitions, (pos, a) + failed, reached)
            fp = model.fingerprint(child)
            if fp not in local:
                local.add(fp)
                children.append((pos, a, fp))
        if len(stack) > 1 and enabled:
            stack.pop()
            current = trace[:-1]
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


def new_bfs(problem: Problem, max_depth: int) -> BfsState:
    model = get_model(problem)
    st = BfsState(problem, max_depth)
    st.seen.add(model.fingerprint(model.init()))
    if max_depth <= 0:
        st.done = True
    return st


def merge(st: BfsState, chunk_traces: list, res: ChunkResult) -> None:
    """Fold one chunk's result into the state, in order."""
    seen, nxt = st.seen, st.next_frontier
    for pos, a, fp in res.children:
        if fp not in seen:
            seen.add(fp)
            st.distinct += 1
            if st.level + 1 < st.max_depth:
                nxt.append(chunk_traces[pos] + (a,))
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
    st.level_started = st.elapsed
    if st.level >= st.max_depth or not st.frontier:
        st.done = True


def chunks_from(st: BfsState):
    """(start, traces) of the remaining chunks of the current level."""
    for start in range(st.pos, len(st.frontier), st.chunk):
        yield start, st.frontier[start:start + st.chunk]


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
