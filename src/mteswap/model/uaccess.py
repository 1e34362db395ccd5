"""What the CPU does for a user access: fault the page in (`handle_mm_fault`, as the
exception path of arch/arm64/mm/fault.c would), then perform it. Tag checks compare with the
program's pointer tags, which the model does not know: it returns the allocation tags the
access met (or None through an untagged mapping) and the oracle judges."""

from __future__ import annotations

from array import array

from mteswap.model import tags as T
from mteswap.model.memory import PTRS_PER_PTE, handle_mm_fault
from mteswap.model.origin import STG, TagOrigin
from mteswap.model.pte import (nr_access_permitted, pte_access_permitted, pte_pfn,
                               pte_tagged, ptes_pfns, ptes_tagged)
from mteswap.model.state import FOLIO_DIRTY, ZERO_PFN


def _mapped_pte(m, mm, vpn: int, write: bool, reach: int) -> int:
    """The PTE (as its int, pte.py) through which the access reaches memory. The MMU walks
    the page table; only a PTE that is not present (or read-only, for a write) raises the
    exception that enters the kernel. The access goes on to `reach` (handle_mm_fault may take
    the faults it will meet on the way together, when they are independent)."""
    ents = mm.ptes.ents
    e = ents[vpn]
    if not pte_access_permitted(e, write):
        handle_mm_fault(m, mm, vpn, write, reach)
        e = ents[vpn]
        # Between other threads a fault may back out (pte_same failed, swapcache_prepare
        # lost): the access traps again. Alone, one fault always suffices.
        while m.sched is not None and not pte_access_permitted(e, write):
            handle_mm_fault(m, mm, vpn, write, reach)
            e = ents[vpn]
    return e


# A program touching consecutive pages runs its loads and stores one page after another; only
# a page whose PTE raises an exception enters the kernel. So between two faults the accesses
# are plain memory traffic, and the model performs such a span of pages at once (same result
# as one by one: no kernel code runs inside a span). Frames mapped in order at consecutive
# vpns are one repeated PTE int (pte.py); the zero page's pfn, -1, indexes the arrays' last slot.

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
    pfn = pte_pfn(e0, vpn)
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
    return nr_access_permitted(mm.ptes.ents[vpn:end], write)


def user_load_span(m, mm, vpn: int, n: int) -> tuple[list, list[int]]:
    """A load of every granule of n pages from vpn, all reachable (`user_span`): (allocation
    tags met, None through an untagged PTE; data), a list and a list or array."""
    ents = mm.ptes.ents[vpn:vpn + n]
    tags, data = m.frame_tags, m.frame_data
    if n > 1 and (pfn := _consecutive_frames(ents, vpn)) is not None:     # slices
        mets = tags[pfn:pfn + n] if pte_tagged(ents[0]) else [None] * n
        return mets, data[pfn:pfn + n]
    pfns = ptes_pfns(ents, vpn)
    mets = [tags[p] if t else None for p, t in zip(pfns, ptes_tagged(ents))]
    return mets, [data[p] for p in pfns]


def user_stg_span(m, mm, vpn: int, tags: list[int], gens: array) -> list[bool]:
    """STG over every granule of len(tags) pages from vpn, all reachable for a store (STG
    needs write permission, so it faults like a store). Through an untagged PTE it does
    nothing; a tag store dirties the page (semantics §11). Returns which pages were tagged.
    `gens`: the write generation of each page's new tags (the oracle's ghost,
    Machine.frame_tgen; the program cannot see it)."""
    n = len(tags)
    ents = mm.ptes.ents[vpn:vpn + n]
    frame_tags, frame_tgen = m.frame_tags, m.frame_tgen
    e0 = ents[0]
    pfn = pte_pfn(e0, vpn)
    if pte_tagged(e0) and ents.count(e0) == n:
        # Tagged PTEs of consecutive frames (a folio's): the tags go in as one slice.
        frame_tags[pfn:pfn + n] = T.uniform_each(tags)
        frame_tgen[pfn:pfn + n] = gens
        _dirty_folios(m, pfn, pfn + n)
        done, pfns = [True] * n, range(pfn, pfn + n)
    else:
        done = ptes_tagged(ents)
        pfns = ptes_pfns(ents, vpn)
        for pfn, did, tag, gen in zip(pfns, done, tags, gens):
            if not did:
                continue
            frame_tags[pfn] = T.uniform(tag)
            frame_tgen[pfn] = gen
            _dirty_folios(m, pfn, pfn + 1)
    if m.track_origins:                          # diagnostic: who set these tags
        origin = m.stg_origin
        if origin.step != m.step:            # one shared record per step, not one per page
            origin = m.stg_origin = TagOrigin(STG, m.step, "STG")
        for pfn, did in zip(pfns, done):
            if did:
                m.frame_origin[pfn] = origin
    return done


def user_tag_gens(m, mm, vpn: int, n: int) -> array:
    """The write-generation ghost (Machine.frame_tgen) of the tags behind n pages from vpn,
    of the frames their PTEs map: for the oracle, which compares it with the generation the
    program expects; no access observes it."""
    ents = mm.ptes.ents[vpn:vpn + n]
    gens = m.frame_tgen
    if (pfn := _consecutive_frames(ents, vpn)) is not None:
        return gens[pfn:pfn + n]                     # one slice
    return array("q", [gens[p] for p in ptes_pfns(ents, vpn)])


def _consecutive_frames(ents: array, vpn: int) -> int | None:
    """The frame the first of these PTEs (from vpn) maps, when they map consecutive frames
    (one repeated PTE int, pte.py), so that slices of the frame arrays serve; else None.
    Never the zero page: its PTE at vpn is the same int as frame 0's at vpn + 1 (pte.py
    encodes pfn - vpn)."""
    e0 = ents[0]
    if ents.count(e0) == len(ents) and (pfn := pte_pfn(e0, vpn)) != ZERO_PFN:
        return pfn
    return None


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
        pfn = pte_pfn(e0, vpn)
        frame_data[pfn:pfn + n] = values if isinstance(values, array) else array("q", values)
        _dirty_folios(m, pfn, pfn + n)
        return frame_tags[pfn:pfn + n] if pte_tagged(e0) else [None] * n
    mets = []
    order, flags = m.frame_order, m.folio_flags
    for pfn, tagged, value in zip(ptes_pfns(ents, vpn), ptes_tagged(ents), values):
        assert pfn != ZERO_PFN, "a write fault never leaves the zero page mapped"
        frame_data[pfn] = value
        flags[pfn & -(1 << order[pfn])] |= FOLIO_DIRTY     # the folio's PG_dirty
        mets.append(frame_tags[pfn] if tagged else None)
    return mets
