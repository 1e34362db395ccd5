"""Shrinking a failing trace: drop steps, then simplify each step's arguments (fewer pages,
smaller tags, keep_cached off, fewer processes), keeping the same violation kind, until nothing
more helps. Candidates are lists of `Step` objects (scenario/load.py), replayed from the
model's initial state: no scenario text is written or parsed while shrinking."""

from __future__ import annotations

import time
from dataclasses import replace

from mteswap.explore.alphabet import Problem
from mteswap.explore.model import get_model, run_step
from mteswap.scenario.load import ALL, Step


def positioned(steps: list[Step]) -> list[Step]:
    """The same steps numbered 1, 2, ... (a write's values depend on its position)."""
    return [s if s.index == i else replace(s, index=i) for i, s in enumerate(steps, start=1)]


def first_violation(problem: Problem, steps: list[Step]):
    """The first Violation replaying `steps` from the initial state, or None (also None if a
    step cannot apply)."""
    model = get_model(problem)
    r = model.init()
    for step in positioned(steps):
        if not run_step(r, step):
            return None
        if r.violations:
            return r.violations[0]
    return None


def _pages_candidates(pages):
    """Fewer pages: the two halves of a range, then each single page."""
    if pages == ALL or len(pages) < 2:
        return []
    out = []
    if isinstance(pages, range) and len(pages) > 2:
        half = len(pages) // 2
        out += [pages[:half], pages[half:]]
    out += [(p,) for p in (pages[0], pages[-1], *pages[1:-1])]
    return out


def _with(step: Step, **changes) -> Step:
    return replace(step, args=dict(step.args, **changes))


def _simplifications(step: Step):
    args = step.args
    if "pages" in args and step.op != "mmap":
        for p in _pages_candidates(args["pages"]):
            yield _with(step, pages=p)
    tag = args.get("tag")
    if tag is not None and tag != 1:
        yield _with(step, tag=1)
        if step.op == "write":
            yield _with(step, tag=None)
    if args.get("keep_cached"):
        yield _with(step, keep_cached=False)


def _one_process(steps: list[Step]) -> list[Step]:
    """Every step of a process other than A done by A instead, forks dropped."""
    out = []
    for s in steps:
        if s.op == "fork":
            continue
        if s.args.get("proc", "A") != "A":
            s = _with(s, proc="A")
        out.append(s)
    return out


def shrink(problem: Problem, steps: list[Step], kind: str,
           deadline: float | None = None) -> tuple[list[Step], int]:
    """(shrunk steps, candidates tried). The result fails with `kind` and is no longer than
    `steps`; steps after the first violation are dropped first."""
    tried = 0

    def fails(cand) -> bool:
        nonlocal tried
        tried += 1
        v = first_violation(problem, cand)
        return v is not None and v.kind == kind

    def late() -> bool:
        return deadline is not None and time.monotonic() > deadline

    cur = positioned(steps)
    v = first_violation(problem, cur)
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
                cand = positioned(cur[:i] + cur[i + size:])
                if fails(cand):
                    cur, changed = cand, True
                else:
                    i += size
            size //= 2
        # 2. fewer processes
        cand = positioned(_one_process(cur))
        if cand != cur and fails(cand):
            cur, changed = cand, True
        # 3. simpler arguments, step by step
        for i in range(len(cur)):
            for simpler in _simplifications(cur[i]):
                cand = cur[:i] + [simpler] + cur[i + 1:]
                if fails(cand):
                    cur, changed = cand, True
                    break
    v = first_violation(problem, cur)
    return cur[:v.step], tried
