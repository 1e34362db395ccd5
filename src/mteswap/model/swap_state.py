"""The swap cache (mm/swap_state.c): adding and removing folios, slot allocation for a folio,
and order-0 swap-in through the cache (`swapin_readahead`)."""

from __future__ import annotations

from array import array

from mteswap.model.page_alloc import alloc_folio
from mteswap.model.state import CLEAR_FOLIO_SWAPCACHE, SET_FOLIO_SWAPCACHE
from mteswap.model.swap_slots import take_cached_slot
from mteswap.model.swapfile import get_swap_pages, put_swap_folio, swapcache_prepare
from mteswap.model.swapinfo import SWAP_HAS_CACHE, SWP_TYPE, swp_entry, swp_offset


def folio_alloc_swap(m, folio) -> int | None:
    """`folio_alloc_swap()` (mm/swap_slots.c in v6.10-6.13): nr contiguous, naturally aligned
    slots, each set to SWAP_HAS_CACHE, or None. A large folio asks only if the arch allows
    THP swap (`arch_thp_swp_supported`, pre-v6.10 false with MTE) and the device has clusters."""
    si = m.swap
    if not si.active:
        return None
    if folio.nr > 1 and not m.design.arch_thp_swp_supported(m):
        return None
    # 6.12: an order-0 folio takes the next slot of the per-CPU slot cache while it is active
    # (model/swap_slots.py); otherwise, and for large folios, `get_swap_pages` of one.
    offset = take_cached_slot(m) if folio.nr == 1 and si.has_slots_cache else None
    if offset is None:
        got = get_swap_pages(m, 1, folio.nr)
        if not got:
            m.counters["swap_slot_alloc_fails"] += 1
            return None
        offset = got[0]
    m.counters["swap_slot_allocs"] += 1          # one allocation of folio.nr slots
    return swp_entry(SWP_TYPE, offset)


def add_to_swap_cache(m, folio, entry: int, k: int = 1) -> None:
    """`add_to_swap_cache()`: folio->swap = entry, index entry+i -> folio, PG_swapcache; for
    k folios one after another (a batch of faults), folio j at entry + j * nr."""
    pfn, nr = folio.pfn, folio.nr
    heads = slice(pfn, pfn + nr * k, nr)
    m.folio_flags[heads] = m.folio_flags[heads].translate(SET_FOLIO_SWAPCACHE)
    m.folio_swap[heads] = array("q", range(entry, entry + nr * k, nr))     # folio.swap
    m.swap.cache.add(swp_offset(entry), folio, k)


def add_to_swap(m, folio) -> bool:
    """`add_to_swap()` (mm/swap_state.c): get slots, enter the swap cache, mark dirty so that
    the folio is written out."""
    entry = folio_alloc_swap(m, folio)
    if entry is None:
        if m.tracing: m.log("add_to_swap", f"folio={folio.pfn} order={folio.order}: no slots")
        return False
    add_to_swap_cache(m, folio, entry)
    folio.dirty = True
    if m.tracing: m.log("add_to_swap", f"folio={folio.pfn} order={folio.order} entry={entry:#x}")
    return True


def delete_from_swap_cache(m, folio, k: int = 1) -> None:
    """`delete_from_swap_cache()`: remove the folio (k folios one after another, in slots
    one after another) from the swap cache, then `put_swap_folio` drops the cache pin on
    their slots."""
    pfn, nr = folio.pfn, folio.nr
    entry = m.folio_swap[pfn]                            # folio.swap
    start = swp_offset(entry)
    if m.swap.cache.clear_range(start, nr * k) != nr * k:
        raise KeyError(f"slot of folio {pfn} not in the swap cache")   # a model bug
    heads = slice(pfn, pfn + nr * k, nr)
    m.folio_flags[heads] = m.folio_flags[heads].translate(CLEAR_FOLIO_SWAPCACHE)
    m.folio_swap[heads] = array("q", bytes(8 * k))
    if m.tracing:
        for j in range(k):
            m.log("delete_from_swap_cache", f"folio={pfn + j * nr} entry={entry + j * nr:#x} "
                  f"nr={nr}", ("pfn", pfn + j * nr))
    put_swap_folio(m, folio, entry, k)


def swap_cache_get_folio(m, entry: int):
    """`swap_cache_get_folio()`: the swap-cache folio holding entry, or None."""
    return m.swap.cache.get(swp_offset(entry))


def swap_read_folio(m, folio, entry: int, k: int = 1) -> None:
    """`swap_read_folio()` (mm/page_io.c): fill the folio's pages from the device (a slot in
    the zeromap reads as zeros without I/O); k folios one after another for a batch of
    faults. Tags are not on the device: they come from arch_swap_restore."""
    nr = folio.nr
    m.frame_data[folio.pfn:folio.pfn + nr * k] = read_slots(m.swap, swp_offset(entry), nr * k)
    c = m.counters
    c["swap_ins"] += k
    c["pswpin"] += nr * k
    if nr > 1:
        c["large_swap_ins"] += k
    if m.tracing:
        for j in range(k):
            m.log("swap_read_folio", f"folio={folio.pfn + j * nr} order={folio.order} "
                  f"entry={entry + j * nr:#x}", ("pfn", folio.pfn + j * nr))


def read_slots(si, start: int, nr: int):
    """The data of nr slots from start, as the device returns it (an array): 0 where nothing
    was written, and 0 for a slot in the zeromap."""
    data = si.contents.slots[start:start + nr]
    if si.zeromap:
        for i in range(nr):
            if start + i in si.zeromap:
                data[i] = 0
    return data


def swapin_readahead(m, entry: int, k: int = 1):
    """`swapin_readahead()` → `__read_swap_cache_async()`: an order-0 folio for the entry,
    added to the swap cache and read (k of them for k entries in a batch of faults: the first
    folio returned, the others after it). Readahead of neighbouring slots is not modelled (as
    with page-cluster 0); it changes which pages are cached, not which tags they get."""
    folio = alloc_folio(m, 1, zerotags=False, why="swapin_readahead", k=k)
    if folio is None:
        return None
    swapcache_prepare(m, entry, k)
    add_to_swap_cache(m, folio, entry, k)
    swap_read_folio(m, folio, entry, k)
    return folio
