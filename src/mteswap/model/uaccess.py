"""What the CPU does for a user access: fault the page in (`handle_mm_fault`, as the
exception path of arch/arm64/mm/fault.c would), then perform it. Tag checks compare with the
program's pointer tags, which the model does not know: it returns the allocation tags the
access met (or None through an untagged mapping) and the oracle judges."""

from __future__ import annotations

from array import array

from mteswap.model import tags as T
from mteswap.model.memory import PTRS_PER_PTE, handle_mm_fault
from mteswap.model.origin import STG, TagOrigin
from mteswap.model.state import (FOLIO_DIRTY, PTE_PRESENT, PTE_SWAP, PTE_TAGGED_BIT, PTE_WRITE_BIT,
                                  ZERO_PFN)


def _mapped_pte(m, mm, vpn: int, write: bool, reach: int) -> int:
    """The PTE (as its int, state.py) through which the access reaches memory. The MMU walks
    the page table; only a PTE that is not present (or read-only, for a write) raises the
    exception that enters the kernel. The access goes on to `reach` (handle_mm_fault may take
    the faults it will meet on the way together, when they are independent)."""
    ents = mm.ptes.ents
    e = ents[vpn]
    if e & 3 != PTE_PRESENT or (write and not e & PTE_WRITE_BIT):
        handle_mm_fault(m, mm, vpn, write, reach)
        e = ents[vpn]
    return e


# A program touching consecutive pages runs its loads and stores one page after another; only
# a page whose PTE raises an exception enters the kernel. So between two faults the accesses
# are plain memory traffic, and the model performs such a span of pages at once (same result
# as one by one: no kernel code runs inside a span). The pfn of a PTE int e at vpn is
# (e >> 4) - 1 + vpn (state.py encoding; -1, the zero page, indexes the arrays' last slot).

def user_span(m, mm, vpn: int, end: int, write: bool) -> int:
    """Fault the page at vpn in if the access would trap (`_mapped_pte`), then return how many
    pages from vpn (below end) the CPU reaches without another exception: present PTEs, and
    writable ones for a store, within vpn's page-table page (PTRS_PER_PTE). At least 1.
    A batch of independent swap-in faults from vpn is taken at once (memory.py
    `swapin_batch`): each of those faults touches only its own slots, frames and PTEs, so
    taking them all before the span's accesses leaves the accesses the same memory as taking
    them one by one."""
    end = min(end, vpn - vpn % PTRS_PER_PTE + PTRS_PER_PTE)
    e0 = _mapped_pte(m, mm, vpn, write, end)
    pfn = (e0 >> 4) - 1 + vpn
    if pfn != ZERO_PFN:
        # Frames mapped in order are one repeated PTE: all reachable if e0 is. The rest of
        # this folio first; then, if the next frame follows in order too (fresh order-0
        # folios taken one after another), the rest of the span.
        ents = mm.ptes.ents
        nr = 1 << m.frame_order[pfn]                       # the folio holding pfn
        stop = min(end, vpn + (pfn & -nr) + nr - pfn)
        if ents[vpn:stop].count(e0) == stop - vpn:
            if stop < end and ents[stop] == e0 and ents[stop:end].count(e0) == end - stop:
                return end - vpn
            return stop - vpn
    n = 0
    for e in mm.ptes.ents[vpn:end]:
        if e & 3 != PTE_PRESENT or (write and not e & PTE_WRITE_BIT):
            break
        n += 1
    return n


def user_load_span(m, mm, vpn: int, n: int) -> tuple[list, list[int]]:
    """A load of every granule of n pages from vpn, all reachable (`user_span`): (allocation
    tags met, None through an untagged PTE; data), a list and a list or array."""
    ents = mm.ptes.ents[vpn:vpn + n]
    tags, data = m.frame_tags, m.frame_data
    e0 = ents[0]
    if n > 1 and ents.count(e0) == n:        # consecutive frames (not the zero page): slices
        pfn = (e0 >> 4) - 1 + vpn
        mets = tags[pfn:pfn + n] if e0 & PTE_TAGGED_BIT else [None] * n
        return mets, data[pfn:pfn + n]
    pfns = [(e >> 4) - 1 + v for v, e in enumerate(ents, vpn)]
    mets = [tags[p] if e & PTE_TAGGED_BIT else None for p, e in zip(pfns, ents)]
    return mets, [data[p] for p in pfns]


def user_stg_span(m, mm, vpn: int, tags: list[int]) -> list[bool]:
    """STG over every granule of len(tags) pages from vpn, all reachable for a store (STG
    needs write permission, so it faults like a store). Through an untagged PTE it does
    nothing; a tag store dirties the page (semantics §11). Returns which pages were tagged."""
    n = len(tags)
    ents = mm.ptes.ents[vpn:vpn + n]
    frame_tags = m.frame_tags
    e0 = ents[0]
    pfn = (e0 >> 4) - 1 + vpn
    if e0 & PTE_TAGGED_BIT and ents.count(e0) == n:
        # Tagged PTEs of consecutive frames (a folio's): the tags go in as one slice.
        frame_tags[pfn:pfn + n] = T.uniform_each(tags)
        _dirty_folios(m, pfn, pfn + n)
        done = [True] * n
    else:
        done = []
        for v, e, tag in zip(range(vpn, vpn + n), ents, tags):
            if not e & PTE_TAGGED_BIT:
                done.append(False)
                continue
            pfn = (e >> 4) - 1 + v
            frame_tags[pfn] = T.uniform(tag)
            _dirty_folios(m, pfn, pfn + 1)
            done.append(True)
    if m.track_origins:                          # diagnostic: who set these tags
        origin = m.stg_origin
        if origin.step != m.step:            # one shared record per step, not one per page
            origin = m.stg_origin = TagOrigin(STG, m.step, "STG")
        for v, e, did in zip(range(vpn, vpn + n), ents, done):
            if did:
                m.frame_origin[(e >> 4) - 1 + v] = origin
    return done


def _dirty_folios(m, pfn: int, end: int) -> None:
    """Set PG_dirty on every folio holding a frame of [pfn, end) (all allocated)."""
    order, flags = m.frame_order, m.folio_flags
    while pfn < end:
        o = order[pfn]
        head = pfn & -(1 << o)
        flags[head] |= FOLIO_DIRTY
        pfn = head + (1 << o)


def user_store_span(m, mm, vpn: int, values: list[int]) -> list:
    """A store to every granule of len(values) pages from vpn, all reachable for a store:
    the allocation tags met (None through an untagged PTE). The store lands even when the tag
    check fails, so one lost tag is reported once, not again as data corruption on every
    later read. `values` a list or an array('q')."""
    n = len(values)
    ents = mm.ptes.ents[vpn:vpn + n]
    frame_tags, frame_data = m.frame_tags, m.frame_data
    e0 = ents[0]
    if n > 1 and ents.count(e0) == n:        # consecutive frames: one slice each
        pfn = (e0 >> 4) - 1 + vpn
        frame_data[pfn:pfn + n] = values if isinstance(values, array) else array("q", values)
        _dirty_folios(m, pfn, pfn + n)
        return frame_tags[pfn:pfn + n] if e0 & PTE_TAGGED_BIT else [None] * n
    mets = []
    order, flags = m.frame_order, m.folio_flags
    for v, e, value in zip(range(vpn, vpn + len(values)), ents, values):
        pfn = (e >> 4) - 1 + v
        assert pfn != ZERO_PFN, "a write fault never leaves the zero page mapped"
        frame_data[pfn] = value
        flags[pfn & -(1 << order[pfn])] |= FOLIO_DIRTY     # the folio's PG_dirty
        mets.append(frame_tags[pfn] if e & PTE_TAGGED_BIT else None)
    return mets
