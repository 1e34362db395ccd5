"""Runs of consecutive integers: the one helper behind page-range arguments, traces and
evidence lines (standard library only; the model uses it too)."""

from __future__ import annotations

from typing import Callable, Iterable


def runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """The distinct values, sorted, as [start, end) runs of consecutive integers."""
    return ordered_runs(sorted(set(values)))


def ordered_runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """The values in the order given, as [start, end) runs of ascending consecutive integers:
    [3, 4, 5, 0, 1] -> [(3, 6), (0, 2)]. A range comes back as one run."""
    if isinstance(values, range) and values.step == 1:
        return [(values.start, values.stop)] if len(values) else []
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1][1] = v + 1
        else:
            out.append([v, v + 1])
    return [(a, b) for a, b in out]


def format_ranges(values: Iterable[int], fmt: Callable[[int], str] = str) -> str:
    """Values in the order given, each ascending run of consecutive ones written `a-b`:
    [0, 1, 2, 5] -> "0-2,5". Empty input gives ""."""
    out: list[str] = []
    start = prev = None
    for v in values:
        if prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            out.append(fmt(start) if start == prev else f"{fmt(start)}-{fmt(prev)}")
        start = prev = v
    if start is not None:
        out.append(fmt(start) if start == prev else f"{fmt(start)}-{fmt(prev)}")
    return ",".join(out)


def leading(seq, value) -> int:
    """How many items at the start of seq (a list, array or bytearray) equal value; one C
    `count` when all of them do (the usual case for a folio's or a run's entries)."""
    if seq.count(value) == len(seq):
        return len(seq)
    n = 0
    while seq[n] == value:
        n += 1
    return n
