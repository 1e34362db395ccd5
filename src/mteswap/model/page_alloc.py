"""Physical frame allocation and freeing (mm/page_alloc.c), plus folio reference drops.

Frames are handed out lowest-address-first from naturally aligned free blocks, so a scenario
always gets the same frames, and a freed frame is reused by the next allocation: leftover tags
of an earlier owner then meet the new one, as on hardware (semantics §1.1, §11).
"""

from __future__ import annotations

from mteswap.model.mte import tag_clear_highpage
from mteswap.model.origin import STALE, TagOrigin
from array import array

from mteswap.model.state import FOLIO_FREE, FOLIO_SWAPCACHE, Folio, PageRange


def alloc_folio(m, nr: int, zerotags: bool, why: str, k: int = 1) -> Folio | None:
    """`folio_alloc()` / `vma_alloc_folio()`: nr naturally aligned free frames, or None.
    With `zerotags` (__GFP_ZEROTAGS, only for order 0 in a VM_MTE VMA) data and tags are
    zeroed and the page is marked tagged by `tag_clear_highpage`. k > 1: the k allocations of
    a batch of faults, which `swapin_batch` made sure find the k blocks after the first one
    free: the first folio is returned, the others follow it."""
    frame_order = m.frame_order
    nframes = m.config.frames
    # Every frame below m.first_free is allocated, so the search can start there.
    for pfn in range(m.first_free - m.first_free % nr, nframes - nr + 1, nr):
        if nr == 1:
            if frame_order[pfn] == FOLIO_FREE:
                break
        elif frame_order[pfn:pfn + nr].count(FOLIO_FREE) == nr:
            break
    else:
        return None
    end = pfn + nr * k
    frame_order[pfn:end] = bytes([nr.bit_length() - 1]) * (nr * k)
    heads = slice(pfn, end, nr)
    m.folio_flags[heads] = bytes(k)
    m.folio_swap[heads] = array("q", bytes(8 * k))
    m.folio_mapcounts[heads] = m.folio_nr_mapped[heads] = array("i", bytes(4 * k))
    m.folios.n += k
    folio = Folio(m, pfn, nr)
    if m.track_origins:
        origins = m.frame_origin
        for p in range(pfn, end):
            if p in origins:
                # The frame's hardware tags are whatever the previous owner left.
                origins[p] = TagOrigin(STALE, m.step, "alloc_folio", pfn=p)
    if zerotags:
        for page in PageRange(m, pfn, nr * k):
            tag_clear_highpage(m, page)
    advance_first_free(m)
    if m.tracing:
        for p in range(pfn, end, nr):
            m.log("folio_alloc", f"folio={p} order={folio.order} ({why})", ("pfn", p))
    return folio


def advance_first_free(m) -> None:
    """Move `m.first_free` past the allocated folios that now start there."""
    frame_order, nframes = m.frame_order, m.config.frames
    first = m.first_free
    while first < nframes:
        order = frame_order[first]
        if order == FOLIO_FREE:
            break
        first = (first & -(1 << order)) + (1 << order)   # past the whole allocated folio
    m.first_free = first


def free_folio(m, folio: Folio) -> None:
    """`free_pages_prepare()`: the page flags (PG_mte_tagged, PG_mte_lock, PG_anon_exclusive)
    are cleared; tags and data stay in the frames."""
    start, nr = folio.pfn, folio.nr
    m.frame_order[start:start + nr] = bytes([FOLIO_FREE]) * nr
    m.frame_flags[start:start + nr] = bytes(nr)
    m.folio_arch.pop(start, None)            # (the other folio_* slots: cleared at alloc)
    m.folios.n -= 1
    m.first_free = min(m.first_free, folio.pfn)
    if m.tracing: m.log("free_folio", f"folio={folio.pfn} order={folio.order}")


def folio_put(m, folio: Folio) -> None:
    """`folio_put()`: drop a reference; the folio is freed when nothing maps it and the swap
    cache does not hold it (no other references are modelled)."""
    pfn = folio.pfn
    if pfn in m.folios and not m.folio_flags[pfn] & FOLIO_SWAPCACHE \
            and m.folio_mapcounts[pfn] == 0:
        free_folio(m, folio)
