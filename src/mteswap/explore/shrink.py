"""Shrinking a failing scenario: drop steps, then simplify each step's arguments (fewer pages,
smaller tags, keep_cached off, fewer processes), keeping the same violation kind, until nothing
more helps. Every candidate is a scenario-format-1 step list, replayed from scratch."""

from __future__ import annotations

import copy
import time

from mteswap.explore.alphabet import Problem, scenario_doc
from mteswap.scenario.load import ScenarioError
from mteswap.scenario.runner import Runner


def first_violation(problem: Problem, make_design, actions: list):
    """The first Violation replaying `actions`, or None (also None if a step cannot apply)."""
    if not actions:
        return None
    try:
        sc = scenario_doc(problem, actions)
        r = Runner(sc, make_design())
        for step in sc.steps:
            r.run_step(step)
            if r.oracle.violations:
                return r.oracle.violations[0]
    except ScenarioError:
        return None
    return None


def _pages_candidates(pages):
    if isinstance(pages, int):
        return []
    if pages == "all":
        return []
    a, _, b = str(pages).partition("-")
    if not b:
        return []
    a, b = int(a), int(b)
    out = [a, b] + list(range(a + 1, b))
    half = (b - a + 1) // 2
    if half > 1:
        out = [f"{a}-{a + half - 1}", f"{a + half}-{b}"] + out
    return out


def _simplifications(action):
    if isinstance(action, str):
        return
    (op, args), = action.items()
    for p in _pages_candidates(args.get("pages")):
        yield {op: dict(args, pages=p)}
    tag = args.get("tag")
    if tag is not None and tag != 1:
        yield {op: dict(args, tag=1)}
        if op == "write":
            yield {op: {k: v for k, v in args.items() if k != "tag"}}
    if args.get("keep_cached"):
        yield {op: dict(args, keep_cached=False)}


def _one_process(actions):
    """Every step of a process other than A done by A instead, forks dropped."""
    out = []
    for a in actions:
        if isinstance(a, str):
            out.append(a)
            continue
        (op, args), = a.items()
        if op == "fork":
            continue
        if args.get("proc", "A") != "A":
            args = dict(args, proc="A")
        out.append({op: args})
    return out


def shrink(problem: Problem, make_design, actions: list, kind: str,
           deadline: float | None = None) -> tuple[list, int]:
    """(shrunk actions, candidates tried). The result fails with `kind` and is no longer
    than `actions`; steps after the first violation are dropped first."""
    tried = 0

    def fails(cand) -> bool:
        nonlocal tried
        tried += 1
        v = first_violation(problem, make_design, cand)
        return v is not None and v.kind == kind

    def late() -> bool:
        return deadline is not None and time.monotonic() > deadline

    cur = copy.deepcopy(actions)
    v = first_violation(problem, make_design, cur)
    assert v is not None and v.kind == kind, "shrink: the input does not fail with that kind"
    cur = cur[:v.step]
    changed = True
    while changed and not late():
        changed = False
        # 1. drop chunks of steps, halving the chunk size
        size = max(1, len(cur) // 2)
        while size >= 1 and not late():
            i = 0
            while i < len(cur):
                cand = cur[:i] + cur[i + size:]
                if fails(cand):
                    cur, changed = cand, True
                else:
                    i += size
            size //= 2
        # 2. fewer processes
        cand = _one_process(cur)
        if cand != cur and fails(cand):
            cur, changed = cand, True
        # 3. simpler arguments, step by step
        for i in range(len(cur)):
            for simpler in _simplifications(cur[i]):
                cand = cur[:i] + [simpler] + cur[i + 1:]
                if fails(cand):
                    cur, changed = cand, True
                    break
    v = first_violation(problem, make_design, cur)
    return cur[:v.step], tried
