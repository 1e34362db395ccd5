"""The `--trace` record: one (function, text) line per kernel step, in the order the kernel
would print them.

Some kernel steps work on a range (`swap_range_free` frees a run of slots, `do_swap_page`
serves a batch of k independent faults at once). Their records are kept per range and
ordered for printing the way the kernel runs them one by one: a record names what it is about
(`slot`, `pfn` or `vpn`), and inside an ordered region (`TraceRegion`) the records are sorted,
stably, by that key when the region closes:
- `swap_range_free` orders by slot, so each slot's `swap_range_free` line comes right before
  the `arch_swap_invalidate_page` lines of that slot, as the kernel's per-slot loop prints them;
- a batch of k faults orders by fault (`FaultBatch`), so the trace reads as k faults in turn,
  and a record of a range spanning several faults is split into one record per fault.
A record without a key belongs with the record before it. Tracing never changes which code runs:
regions are opened only while tracing, and only order what was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultBatch:
    """k faults, fault i on pages vpn + i*nr, frames pfn + i*nr, slots off + i*nr (`nr` pages
    per fault): the geometry that maps a record's key to its fault."""
    vpn: int
    pfn: int
    off: int
    nr: int
    k: int

    def order(self, kind: str, value: int) -> int:
        base = self.vpn if kind == "vpn" else self.pfn if kind == "pfn" else self.off
        return (value - base) // self.nr

    def split(self, kind: str, start: int, n: int):
        """(start, n) of each fault's part of the range [start, start + n)."""
        base = self.vpn if kind == "vpn" else self.pfn if kind == "pfn" else self.off
        nr = self.nr
        end = start + n
        while start < end:
            stop = min(end, base + ((start - base) // nr + 1) * nr)
            yield start, stop - start
            start = stop


class SlotOrder:
    """The order of `swap_range_free`'s per-slot loop."""

    @staticmethod
    def order(kind: str, value: int) -> int:
        return value

    @staticmethod
    def split(kind: str, start: int, n: int):
        yield start, n


class TraceRegion:
    """Records collected while a range step runs, put in kernel order when it ends."""

    __slots__ = ("geometry", "records", "last")

    def __init__(self, geometry):
        self.geometry = geometry
        self.records: list[tuple] = []
        self.last = None

    def add(self, key, record: tuple) -> None:
        if key is None:
            key = self.last
        self.last = key
        rank = -1 if key is None else self.geometry.order(*key)
        self.records.append((rank, len(self.records), key, record))

    def ordered(self) -> list[tuple]:
        """(key, record) in kernel order."""
        return [(key, rec) for _, _, key, rec in sorted(self.records, key=lambda r: r[:2])]
