"""swapoff (mm/swapfile.c): `try_to_unuse` brings every swapped page back (`unuse_pte`),
then `arch_swap_invalidate_area` drops whatever tags remain for the device."""

from __future__ import annotations

from mteswap.model import sched
from mteswap.model.page_alloc import folio_put
from mteswap.model.pgtable import set_ptes
from mteswap.model.rmap import folio_add_anon_rmap_pte
from mteswap.model.pte import is_swap_pte, pte_swp_exclusive, pte_to_swp_entry
from mteswap.model.swap_slots import (disable_swap_slots_cache_lock,
                                      reenable_swap_slots_cache_unlock)
from mteswap.model.swap_state import swap_cache_get_folio, swapin_readahead
from mteswap.model.swapfile import folio_free_swap, swap_free_nr
from mteswap.model.swapinfo import SWAP_HAS_CACHE, SWP_TYPE, swp_offset


class SwapoffFailed(Exception):
    """try_to_unuse could not bring a page back (no free frame): swapoff fails with -ENOMEM."""


def unuse_pte(m, mm, vpn: int, folio) -> None:
    """`unuse_pte()`: restore the page's tags (`arch_swap_restore(folio_swap(entry, folio),
    folio)` before the PTE is set, I3), map it read-only and old, drop the swap reference."""
    e = mm.ptes[vpn]
    entry, exclusive = pte_to_swp_entry(e, vpn), pte_swp_exclusive(e)
    page = m.pages[folio.pfn + swp_offset(entry) % folio.nr]
    m.design.arch_swap_restore(m, entry, folio, page)
    folio_add_anon_rmap_pte(m, page.pfn, mm.pid, vpn, exclusive)
    vma = mm.find_vma(vpn)
    set_ptes(m, mm, vpn, page.pfn, 1, vma.vm_mte, False, f"unuse_pte entry={entry:#x}")
    swap_free_nr(m, entry, 1)
    if m.tracing: m.log("unuse_pte", f"pid={mm.pid} vpn={vpn} entry={entry:#x} pfn={page.pfn}")


def try_to_unuse(m) -> None:
    """`try_to_unuse()`: walk every process's swap PTEs (`unuse_mm` → `unuse_pte_range`), each
    page from the swap cache or read in order-0 (`swapin_readahead`), then drop every
    swap-cache folio whose slots are no longer referenced (`folio_free_swap`). Between other
    threads it starts over while slots are still in use (`si->inuse_pages`): a zap that
    cleared its swap PTE but has not dropped the slot's count yet, a fault between its map
    and `swapcache_clear`; the retry is one step that waits for swap_map to change."""
    while True:
        skipped = _unuse_all(m)
        si = m.swap
        if m.sched is None or not si.inuse_pages():
            return
        if skipped:
            continue          # a page changed while it waited for a folio lock: walk again
        seen = si.swap_map.tolist()
        sched.wait_until(m, "try_to_unuse:retry", lambda: si.swap_map.tolist() != seen)


def _unuse_all(m) -> bool:
    """One walk of every mm and of the swap cache. Between other threads, True when the walk
    must be redone at once: a swap PTE was left because its page changed while the walk
    waited for the folio lock, or reclaim installed swap PTEs behind the walk (in an mm, or
    at a PTE, it had passed); the retry's wait for swap_map to change would miss those."""
    skipped = False
    visited = set()
    for mm in m.mms:
        todo = [v for v, e in mm.ptes.items() if is_swap_pte(e)]
        if m.sched is not None:
            visited.update((mm.pid, v, mm.ptes[v]) for v in todo)
        for vpn in todo:
            if m.sched is not None and not _unuse_pte_concurrent(m, mm, vpn):
                continue
            entry = pte_to_swp_entry(mm.ptes[vpn], vpn)
            folio = swap_cache_get_folio(m, entry) or swapin_readahead(m, entry)
            if folio is None:
                raise SwapoffFailed("no free frame to bring a page back")
            sched.get_folio_ref(m, folio)   # the lookup's reference: __remove_mapping fails
            if m.sched is not None and not _folio_lock_concurrent(m, mm, vpn, folio):
                sched.put_folio_refs(m)
                skipped = True        # the page changed meanwhile: walk again
                continue
            unuse_pte(m, mm, vpn, folio)
            folio_free_swap(m, folio)
            sched.unlock(m, sched.ptl(mm))
            sched.unlock(m, sched.folio_lock_key(folio))
            sched.put_folio_refs(m)
    for off in sorted(m.swap.cache):
        folio = m.swap.cache.get(off)
        if folio is None:
            continue
        if m.sched is not None and not _cached_folio_lock(m, off, folio):
            continue
        if folio_free_swap(m, folio):
            folio_put(m, folio)
        sched.unlock(m, sched.folio_lock_key(folio))
    return skipped or (m.sched is not None and _swap_ptes_missed(m, visited))


def _swap_ptes_missed(m, visited: set) -> bool:
    return any(is_swap_pte(e) and (mm.pid, v, e) not in visited
               for mm in m.mms for v, e in mm.ptes.items())


def _cached_folio_lock(m, off: int, folio) -> bool:
    """`try_to_unuse`'s last loop (mm/swapfile.c) locks each swap-cache folio (`folio_lock`,
    blocking) before `folio_free_swap`. Free, the lock is taken in the walk's step (a
    coarsening: the lockless lookup and the critical section are one step, as before reclaim had
    steps); held by another thread (reclaim, r1-r4), it is a step that waits for it, and the
    folio is rechecked: still the cache's folio at that slot (reclaim may have freed it). True
    with the lock held."""
    key = sched.folio_lock_key(folio)
    if sched.trylock_hold(m, key):
        return True
    sched.lock(m, "try_to_unuse:folio_lock", key)
    if m.swap.cache.holds(off, folio):
        return True
    sched.unlock(m, key)
    return False


def _folio_lock_concurrent(m, mm, vpn: int, folio) -> bool:
    """`unuse_pte_range` (mm/swapfile.c) locks the folio before `unuse_pte` takes the PTL: when
    another thread (reclaim, r1-r4) holds the folio lock, drop the PTL, wait for the folio lock,
    then take the PTL again and recheck that the PTE and the swap-cache folio are unchanged.
    True with both held; False with neither."""
    key, ptl = sched.folio_lock_key(folio), sched.ptl(mm)
    if sched.trylock_hold(m, key):
        return True
    e = mm.ptes[vpn]
    sched.unlock(m, ptl)
    sched.lock(m, "try_to_unuse:folio_lock", key)
    sched.lock(m, "try_to_unuse:unuse_pte", ptl)
    off = swp_offset(pte_to_swp_entry(e, vpn))
    if mm.ptes[vpn] == e and m.swap.cache.holds(off, folio):
        return True
    sched.unlock(m, ptl)
    sched.unlock(m, key)
    return False


def _unuse_pte_concurrent(m, mm, vpn: int) -> bool:
    """Between other threads, `unuse_pte_range` for one PTE is its own step under the PTL;
    the PTE may have changed since the walk (a fault mapped it: nothing to do), and a slot a
    skip-swapcache fault pins (SWAP_HAS_CACHE without a swap-cache folio) makes
    `__read_swap_cache_async` wait (-EEXIST) until the pin goes. True: unuse it now."""
    sched.lock(m, "try_to_unuse:unuse_pte", sched.ptl(mm))
    e = mm.ptes[vpn]
    if is_swap_pte(e):
        si, off = m.swap, swp_offset(pte_to_swp_entry(e, vpn))
        if si.swap_map[off] & SWAP_HAS_CACHE and si.cache.get(off) is None:
            sched.unlock(m, sched.ptl(mm))
            sched.wait_until(m, "try_to_unuse:__read_swap_cache_async", lambda: mm.ptes[vpn] != e or not (
                si.swap_map[off] & SWAP_HAS_CACHE))
            sched.lock(m, "try_to_unuse:unuse_pte", sched.ptl(mm))
            e = mm.ptes[vpn]
    done = is_swap_pte(e)
    if not done:
        sched.unlock(m, sched.ptl(mm))
    return done


def swapoff(m) -> None:
    """`swapoff()`: clear SWP_WRITEOK, `try_to_unuse`, `arch_swap_invalidate_area`; the device
    is gone afterwards (reclaim finds no swap space)."""
    si = m.swap
    if not si.active:
        if m.tracing: m.log("swapoff", "no swap device: nothing to do")
        return
    si.active = False                                   # so1: SWP_WRITEOK cleared
    disable_swap_slots_cache_lock(m)    # 6.12: the slot cache drained; frees go straight on
    try_to_unuse(m)                                     # so2: a step per PTE
    reenable_swap_slots_cache_unlock(m)
    # so3: percpu_ref_kill and wait for every get_swap_device user to leave
    sched.swapoff_wait_users(m, "swapoff:free_swap_map")
    m.design.arch_swap_invalidate_area(m, SWP_TYPE)     # so4: swap_map and tags go
    sched.swap_device_freed(m, "swapoff")
    if m.tracing: m.log("swapoff", f"type={SWP_TYPE} done")
