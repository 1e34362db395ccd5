"""Exhaustive breadth-first search over canonical states, level by level.

A level's frontier is a list of traces (tuples of action indices), kept in lexicographic order
(parents in order, then actions in order). It is cut into chunks; `expand_chunk` rebuilds each
parent by replaying its trace along a stack of cloned prefix states (siblings share their
prefix), runs every enabled action on a clone, and returns the children's fingerprints in
order. The coordinator merges chunks in order against one global `seen` set, so the result
(the first violation in that order, state and transition counts) does not depend on how many
workers ran the chunks, nor on the chunk size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mteswap.explore.alphabet import Problem
from mteswap.explore.engine import get_context, try_step

CHUNK = 48          # parents per chunk


@dataclass
class ChunkResult:
    children: list            # [(parent position in chunk, action, fingerprint)], locally deduped
    transitions: int          # enabled transitions run (up to and including a violating one)
    violation: tuple | None   # (parent position, action, Violation.to_dict()) or None


def expand_chunk(problem: Problem, traces: list) -> ChunkResult:
    ctx = get_context(problem)
    alpha, n = ctx.alpha, ctx.nactions
    stack = [ctx.root]
    current: tuple = ()
    children: list = []
    local: set = set()
    transitions = 0
    for pos, trace in enumerate(traces):
        c = 0
        limit = min(len(current), len(trace), len(stack) - 1)
        while c < limit and current[c] == trace[c]:
            c += 1
        del stack[c + 1:]
        for j in range(c, len(trace)):
            r = stack[-1].clone()
            r.run_step(alpha.steps_at(j + 1)[trace[j]])
            stack.append(r)
        current = trace
        parent = stack[-1]
        steps = alpha.steps_at(len(trace) + 1)
        enabled = [a for a in range(n) if alpha.enabled(parent, steps[a])]
        last = len(enabled) - 1
        for k, a in enumerate(enabled):
            # The parent itself serves its last child: no later trace has it as a prefix.
            child = parent if (k == last and len(stack) > 1) else parent.clone()
            if not try_step(child, steps[a]):
                continue
            transitions += 1
            if child.oracle.violations:
                return ChunkResult(children, transitions,
                                   (pos, a, child.oracle.violations[0].to_dict()))
            fp = ctx.fp(child)
            if fp not in local:
                local.add(fp)
                children.append((pos, a, fp))
        if len(stack) > 1 and enabled:
            stack.pop()
            current = trace[:-1]
    return ChunkResult(children, transitions, None)


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
    violation: dict | None = None        # {"trace": [...], "violation": {...}}
    done: bool = False
    depth_reached: int = 0               # deepest level whose states were all generated
    elapsed: float = 0.0                 # seconds spent before the last resume
    chunk: int = CHUNK


def new_bfs(problem: Problem, max_depth: int) -> BfsState:
    ctx = get_context(problem)
    st = BfsState(problem, max_depth)
    st.seen.add(ctx.fp(ctx.root))
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
    if res.violation is not None:
        pos, a, v = res.violation
        st.distinct += 1
        st.violation = {"trace": list(chunk_traces[pos] + (a,)), "violation": v}
        st.depth_reached = st.level + 1
        st.done = True


def advance_level(st: BfsState) -> None:
    """Called when every chunk of the level is merged."""
    st.depth_reached = st.level + 1
    st.level += 1
    st.frontier, st.next_frontier, st.pos = st.next_frontier, [], 0
    if st.level >= st.max_depth or not st.frontier:
        st.done = True


def chunks_from(st: BfsState):
    """(start, traces) of the remaining chunks of the current level."""
    for start in range(st.pos, len(st.frontier), st.chunk):
        yield start, st.frontier[start:start + st.chunk]


def run_bfs(st: BfsState, mapper, on_progress=None, on_chunk=None) -> BfsState:
    """Drive the search to the end. `mapper(problem, list of chunks)` yields ChunkResults in
    order (in-process, a process pool or Dask); it may be closed early on a violation."""
    t0 = time.perf_counter() - st.elapsed
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
        finally:
            close = getattr(results, "close", None)
            if close:
                close()
        if not st.done:
            advance_level(st)
            if on_chunk:
                on_chunk(st)
    st.elapsed = time.perf_counter() - t0
    return st


def serial_mapper(problem, chunk_list):
    for traces in chunk_list:
        yield expand_chunk(problem, traces)
