"""Reclaim (mm/vmscan.c `shrink_folio_list`, mm/page_io.c `swap_writepage`), MADV_PAGEOUT
(mm/madvise.c), and a later reclaim pass over the swap cache (`evict`)."""

from __future__ import annotations

from array import array
from collections import deque

from mteswap.model import sched
from mteswap.model.huge_memory import split_folio
from mteswap.model.mte import page_mte_tagged
from mteswap.model.page_alloc import folio_put
from mteswap.model.pte import pte_pfn, pte_present, swp_entry_to_pte, vm_normal_pfn
from mteswap.model.rmap import folio_maybe_mapped_shared, folio_remove_rmap_pte, folio_rmap_walk
from mteswap.model.state import (CLEAR_ANON_EXCLUSIVE, FOLIO_DIRTY, FOLIO_SWAPCACHE,
                                  IS_ANON_EXCLUSIVE, IS_MTE_TAGGED, NO_RMAP, PG_ANON_EXCLUSIVE,
                                  PG_MTE_TAGGED, rmap_count, rmap_unkey)
from mteswap.model.swap_state import add_to_swap, delete_from_swap_cache
from mteswap.model.swapfile import folio_free_swap, swap_duplicate
from mteswap.model.swapinfo import each_slot, swp_offset
from mteswap.ranges import ordered_runs, runs


def try_to_unmap(m, folio) -> None:
    """`try_to_unmap()` → `try_to_unmap_one()` (mm/rmap.c) for every PTE mapping the folio:
    take a reference on the page's slot (`swap_duplicate`), share the page (it is no longer
    anon-exclusive) and install a swap PTE that keeps the exclusive bit."""
    if m.sched is not None:
        done = _unmap_each_mm(m, folio)
    elif _mapped_once_in_order(m, folio):
        done = _unmap_whole(m, folio)
    else:
        done = [try_to_unmap_one(m, folio, pid, vpn, pfn)
                for pid, vpn, pfn in folio_rmap_walk(m, folio)]
    if not m.tracing:
        return
    for pid, first, last in _unmap_runs(done):
        m.log("try_to_unmap_one", f"pid={pid} vpn={first[1]}-{last[1]} -> entry={first[2]:#x}-{last[2]:#x} "
              f"swap_map+1 excl={int(first[3])}" if first is not last else
              f"pid={pid} vpn={first[1]} -> entry={first[2]:#x} swap_map+1 excl={int(first[3])}")


def try_to_unmap_one(m, folio, pid: int, vpn: int, pfn: int) -> tuple:
    """`try_to_unmap_one()` (mm/rmap.c) for one PTE: the slot's reference (`swap_duplicate`),
    the exclusive bit moved to the swap PTE, the rmap dropped."""
    flags = m.frame_flags
    entry = folio.swap + (pfn - folio.pfn)
    swap_duplicate(m, entry)
    exclusive = bool(flags[pfn] & PG_ANON_EXCLUSIVE)
    flags[pfn] &= ~PG_ANON_EXCLUSIVE
    folio_remove_rmap_pte(m, pfn, pid, vpn)
    m.mms[pid].ptes.ents[vpn] = swp_entry_to_pte(entry, exclusive, vpn)   # set_pte_at
    m.mms[pid].ptes.written.add(vpn)                # for the oracle's scoped checks
    return (pid, vpn, entry, exclusive)


def _unmap_each_mm(m, folio) -> list:
    """Between other threads (r2): the rmap walk (`rmap_walk_anon`, mm/rmap.c) visits each mm
    mapping the folio in turn and `try_to_unmap_one` unmaps its PTEs under that mm's PTL, one
    step per mm; the walk is redone in each step, since a zap in that mm may have removed PTEs
    meanwhile (the folio lock keeps faults out, not zaps)."""
    done = []
    for pid in sorted({pid for pid, _, _ in folio_rmap_walk(m, folio)}):
        mm = m.mm(pid)
        sched.lock(m, "try_to_unmap:try_to_unmap_one", sched.ptl(mm), device=True)
        done += [try_to_unmap_one(m, folio, p, vpn, pfn)
                 for p, vpn, pfn in folio_rmap_walk(m, folio) if p == pid]
        sched.unlock(m, sched.ptl(mm))
    return done


def _mapped_once_in_order(m, folio) -> bool:
    """Is every page of the folio mapped exactly once, by one process, page i at vpn + i? (A
    private anonymous folio that was never forked or split: the common case at scale.)"""
    pfn, nr = folio.pfn, folio.nr
    keys = m.frame_rmap[pfn:pfn + nr]                       # key - pfn: one value if in order
    k0 = keys[0]
    return (k0 != NO_RMAP and keys.count(k0) == nr
            and (not m.rmap_extra or m.rmap_extra.keys().isdisjoint(range(pfn, pfn + nr))))


def _unmap_whole(m, folio) -> list:
    """try_to_unmap_one for each PTE of a folio `_mapped_once_in_order`, in one pass over the
    arrays: the same slot references, flags, rmap and swap PTEs as PTE by PTE."""
    pfn, nr, swap = folio.pfn, folio.nr, folio.swap
    pid, vpn = rmap_unkey(m.frame_rmap[pfn] + pfn)
    start = swp_offset(swap)
    swap_map = m.swap.swap_map
    # swap_duplicate of each slot
    swap_map[start:start + nr] = each_slot(swap_map[start:start + nr], lambda c: c + 1)
    m.swap.written.update(range(start, start + nr))   # for the oracle's scoped checks
    flags = m.frame_flags[pfn:pfn + nr]
    excl = flags.translate(IS_ANON_EXCLUSIVE)                   # 1 where PG_anon_exclusive
    m.frame_flags[pfn:pfn + nr] = flags.translate(CLEAR_ANON_EXCLUSIVE)
    m.frame_rmap[pfn:pfn + nr] = array("q", [NO_RMAP]) * nr     # folio_remove_rmap_pte each
    m.folio_mapcounts[pfn] -= nr
    m.folio_nr_mapped[pfn] -= nr
    entries = range(swap, swap + nr)
    # swp_entry_to_pte(entry + i, exclusive_i, vpn + i): one int per exclusive bit (pte.py)
    e0, e1 = swp_entry_to_pte(swap, False, vpn), swp_entry_to_pte(swap, True, vpn)
    m.mms[pid].ptes.ents[vpn:vpn + nr] = array("q", [e1]) * nr if excl.count(1) == nr else \
        array("q", [e1 if x else e0 for x in excl])
    m.mms[pid].ptes.written.update(range(vpn, vpn + nr))   # for the oracle's scoped checks
    if not m.tracing:
        return []
    return [(pid, vpn + i, e, bool(x)) for i, (e, x) in enumerate(zip(entries, excl))]


def _unmap_runs(done):
    """Group unmapped PTEs into runs of consecutive vpn and entry, for a compact trace."""
    runs = []
    for item in done:
        if runs:
            pid, first, last = runs[-1]
            if item[0] == pid and item[1] == last[1] + 1 and item[2] == last[2] + 1 and item[3] == last[3]:
                runs[-1] = (pid, first, item)
                continue
        runs.append((item[0], item, item))
    return runs


def swap_writepage(m, folio) -> bool:
    """`swap_writepage()` (mm/page_io.c): drop the cache if no slot is referenced; else
    `arch_prepare_to_swap` (on error the folio is redirtied and stays in the swap cache), then
    a zero-filled folio only sets its zeromap bits (v6.12) and any other is written."""
    if folio_free_swap(m, folio):
        return True
    if m.tracing: m.log("arch_prepare_to_swap", f"folio={folio.pfn} nr={folio.nr} entry={folio.swap:#x}")
    err = m.design.arch_prepare_to_swap(m, folio)
    if err:
        folio.dirty = True
        if m.tracing: m.log("swap_writepage", f"folio={folio.pfn}: arch_prepare_to_swap failed ({err}), kept")
        return False
    si = m.swap
    start, pfn, nr = swp_offset(folio.swap), folio.pfn, folio.nr
    data = m.frame_data[pfn:pfn + nr]
    zero = data.count(0) == nr
    offs = range(start, start + nr)
    if zero:
        si.zeromap.update(offs)
        si.contents.clear_range(start, nr)
    else:
        if si.zeromap:
            si.zeromap.difference_update(offs)
        si.contents.set_range(start, data)
    # The ghost for I8/I9: what tags went out with each page (None: not PG_mte_tagged).
    if m.flags_per_page:
        tags, flags = m.frame_tags[pfn:pfn + nr], m.frame_flags[pfn:pfn + nr]
        written = tags if flags.translate(IS_MTE_TAGGED).count(1) == nr else \
            [t if f & PG_MTE_TAGGED else None for t, f in zip(tags, flags)]
    else:
        written = [page.tags if page_mte_tagged(m, page) else None for page in m.folio_pages(folio)]
    si.written_tags.set_range(start, written)
    c = m.counters
    c["swpout_zero" if zero else "swap_outs"] += 1
    if zero:
        c["swap_outs"] += 1
    c["pswpout"] += nr
    if nr > 1:
        c["large_swap_outs"] += 1
    if m.tracing: m.log("swap_writepage", f"folio={folio.pfn} order={folio.order} entry={folio.swap:#x}"
          + (" zero-filled: zeromap" if zero else ""))
    return True


def shrink_folio_list(m, folios: list, keep_cached: bool) -> None:
    """`shrink_folio_list()`: reclaim each folio; tails of a split come next (`_queue_tails`).
    The queue is a deque (a list's pop(0) made a split of every folio quadratic), and the
    tails of one split wait in it as the range of their pfns rather than a view each (a split
    of every folio of a 1 GiB range queues 15/16 of its pages); each is looked up in turn."""
    queue = deque(folios)
    while queue:
        item = queue.popleft()
        for folio in map(m.folios.get, item) if isinstance(item, range) else (item,):
            if folio is not None and folio.pfn in m.folios:   # not freed meanwhile
                _shrink_folio(m, folio, keep_cached, queue)


def _queue_tails(m, queue, tails: list) -> None:
    """The tail folios a split left (ascending pfns) are reclaimed next, before the rest of
    the list: the split puts them at the end of `folio_list`, which is where
    `shrink_folio_list` takes its next folio from (`lru_to_folio` reads the list's last).
    6.12's `__split_huge_page` adds them from the last tail down, so they come back in
    ascending order; 7.2's `__folio_split` adds them ascending (`lru_add_split_folio`), so
    the last page's comes first and the others follow downwards (docs/model.md)."""
    if tails:
        first, last = tails[0].pfn, tails[-1].pfn
        queue.appendleft(range(first, last + 1) if m.config.kernel == "6.12"
                         else range(last, first - 1, -1))


def _shrink_folio(m, folio, keep_cached: bool, queue) -> None:
    """One folio of `shrink_folio_list` (mm/vmscan.c). Between other threads its steps are r1
    `folio_trylock` (the folio lock is then held to the end) with `add_to_swap`, r2 one
    `try_to_unmap_one` step per mm under its PTL, r3 `swap_writepage` → `arch_prepare_to_swap`
    and r4 `__remove_mapping`."""
    if m.sched is None:
        return _shrink_locked_folio(m, folio, keep_cached, queue)
    sched.point(m, "shrink_folio_list:folio_trylock")
    key = sched.folio_lock_key(folio)
    if folio.pfn not in m.folios or not sched.trylock_hold(m, key):
        return            # freed meanwhile, or another thread (a fault) holds the folio lock
    try:
        _shrink_locked_folio(m, folio, keep_cached, queue)
    finally:
        sched.unlock(m, key)


def _shrink_locked_folio(m, folio, keep_cached: bool, queue) -> None:
    if not folio.swapcache:
        if folio.nr > 1 and folio.partially_mapped:
            # "Split partially mapped folios right away": unmapped pages go without I/O.
            _queue_tails(m, queue, split_folio(m, folio, "shrink_folio_list: partially mapped"))
            if _freed_if_unused(m, folio):
                return
        if not add_to_swap(m, folio):
            if folio.nr == 1:
                return                                   # activate_locked: no swap space
            m.count("swpout_fallback")                   # THP_SWPOUT_FALLBACK
            _queue_tails(m, queue, split_folio(m, folio, "shrink_folio_list: swap-out fallback"))
            if _freed_if_unused(m, folio) or not add_to_swap(m, folio):
                return
    if m.folio_mapcount(folio):
        try_to_unmap(m, folio)
    flags = m.folio_flags
    # keep_cached stands for writeback still running when the pass ends: only a folio this
    # pass wrote with I/O can be held by it. A clean folio (its copy in the swap area is
    # current) is not written, and `shrink_folio_list` frees it in this pass.
    written = False
    if flags[folio.pfn] & FOLIO_DIRTY:
        sched.point(m, "swap_writepage:arch_prepare_to_swap", device=True)   # r3
        flags[folio.pfn] &= ~FOLIO_DIRTY                 # folio_clear_dirty_for_io
        if not swap_writepage(m, folio):
            return
        if not flags[folio.pfn] & FOLIO_SWAPCACHE:       # swap was already free: no I/O
            folio_put(m, folio)
            return
        # A zero-filled folio only set zeromap bits: no I/O, so nothing is under writeback
        # and `shrink_folio_list` frees it in this pass (PAGE_SUCCESS, then __remove_mapping)
        # on every device: keep_cached, which stands for writeback still running, cannot hold.
        written = not _written_to_zeromap(m, folio)
    if keep_cached and written:
        if m.tracing: m.log("shrink_folio_list", f"folio={folio.pfn} kept in swap cache entry={folio.swap:#x}")
        return
    if m.sched is not None:                              # r4
        sched.point(m, "shrink_folio_list:__remove_mapping", device=True)
        if sched.referenced_elsewhere(m, folio):
            return        # folio_ref_freeze fails: a fault holds the folio it found in the cache
    __remove_mapping(m, folio)


def _written_to_zeromap(m, folio) -> bool:
    """Whether `swap_writepage` just stored the folio as zeromap bits (zero-filled) only."""
    zeromap = m.swap.zeromap
    start = swp_offset(folio.swap)
    return bool(zeromap) and all(o in zeromap for o in range(start, start + folio.nr))


def _freed_if_unused(m, folio) -> bool:
    folio_put(m, folio)
    return folio.pfn not in m.folios


def __remove_mapping(m, folio) -> None:
    """`__remove_mapping()` (mm/vmscan.c): a clean, unmapped swap-cache folio leaves the cache
    (`__delete_from_swap_cache`, mm/swap_state.c) and is freed."""
    delete_from_swap_cache(m, folio)
    folio_put(m, folio)


def reclaim(m, mm, start: int, indices, keep_cached: bool) -> None:
    """Memory-pressure reclaim (LRU, e.g. a cgroup's memory.reclaim) of the folios mapped at
    these pages: `shrink_folio_list` unmaps each from every process through the rmap walk.
    Without a swap device anonymous memory is not scanned at all (`can_reclaim_anon_pages`)."""
    if not m.swap.active:
        if m.tracing: m.log("shrink_folio_list", "no swap device: anonymous folios are not reclaimed")
        return
    shrink_folio_list(m, _mapped_folios(m, mm, start, indices), keep_cached)


def _mapped_folios(m, mm, start: int, indices) -> list:
    """The folios mapped at pages start + i, in the order first met (the LRU order the
    scenario gives): one per folio, the zero page excluded."""
    seen, out = set(), []
    ents, nents = mm.ptes.ents, len(mm.ptes.ents)
    for lo, hi in ordered_runs(indices):
        vpn, end = start + lo, min(start + hi, nents)
        while vpn < end:
            e = ents[vpn]
            pfn = vm_normal_pfn(e, vpn)
            if pfn is None:
                vpn += 1
                continue
            folio = m.folio_at(pfn)
            if folio.pfn not in seen:
                seen.add(folio.pfn)
                out.append(folio)
            # The next pages usually map the rest of this folio: skip them in one step.
            rest = min(folio.pfn + folio.nr - pfn, end - vpn)
            if rest > 1 and ents[vpn:vpn + rest].count(e) == rest:   # in order: one value
                vpn += rest
            else:
                vpn += 1
    return out


def folio_likely_mapped_shared(m, folio) -> bool:
    """`folio_likely_mapped_shared()` (include/linux/mm.h, v6.12): more mappings than pages,
    or else a guess from the first page being mapped more than once."""
    total = m.folio_mapcount(folio)
    if folio.nr == 1 or total <= 1:
        return total > 1
    if total > folio.nr:
        return True
    return rmap_count(m, folio.pfn) > 1


def madvise_pageout(m, mm, vpns: list[int], keep_cached: bool) -> None:
    """`madvise_pageout()` → `madvise_cold_or_pageout_pte_range()` VMA by VMA: a large folio
    that the range's part in this VMA does not map whole is split (unless shared); folios
    mapped by other processes are skipped; the rest go to `reclaim_pages` →
    `shrink_folio_list`. Without a swap device (after swapoff) nothing checks for one on this
    path: `add_to_swap` fails, so a large folio is split as a swap-out fallback (its
    zero-filled pages may go to the zero page; `swpout_fallback` counts it) and every small
    folio stays mapped. (LRU reclaim, `reclaim`, does not scan anonymous memory then.)"""
    chosen = []
    wanted = set(vpns)
    for vma in sorted(mm.vmas, key=lambda v: v.start):
        for start, end in runs(v for v in wanted if vma.start <= v < vma.end):
            chosen.extend(_pageout_run(m, mm, start, end))
    if m.tracing: m.log("madvise_pageout", f"pid={mm.pid} {len(chosen)} folio(s) to reclaim_pages")
    shrink_folio_list(m, chosen, keep_cached)


def _pageout_run(m, mm, start: int, end: int) -> list:
    chosen, seen = [], set()
    vpn = start
    while vpn < end:
        pfn = vm_normal_pfn(mm.ptes[vpn], vpn)
        if pfn is None:
            vpn += 1
            continue
        folio = m.pages[pfn].folio
        if folio.nr > 1:
            nr = _folio_pte_batch(mm, vpn, end, pfn, folio)
            if nr < folio.nr:
                # 7.2 knows whether another process maps any page of it (its MM ids);
                # 6.12 guesses from the first page (fuzz-13-0110, 7.2 / zram, step 20)
                if (folio_likely_mapped_shared(m, folio) if m.config.kernel == "6.12"
                        else folio_maybe_mapped_shared(m, folio)):
                    vpn += nr
                    continue
                split_folio(m, folio, "madvise_pageout: folio not wholly in range")
                folio_put(m, folio)
                continue                                  # look at this PTE again
            if m.folio_mapcount(folio) == folio.nr and folio.pfn not in seen:
                seen.add(folio.pfn)
                chosen.append(folio)
            vpn += nr
            continue
        if m.folio_mapcount(folio) == 1 and folio.pfn not in seen:
            seen.add(folio.pfn)
            chosen.append(folio)
        vpn += 1
    return chosen


def _folio_pte_batch(mm, vpn: int, end: int, pfn: int, folio) -> int:
    """`folio_pte_batch()`: consecutive PTEs from vpn (below end) mapping consecutive pages of
    the same folio; the whole folio only if the batch starts at its first page."""
    n = 0
    while vpn + n < end and pfn + n < folio.pfn + folio.nr:
        e = mm.ptes[vpn + n]
        if not pte_present(e) or pte_pfn(e, vpn + n) != pfn + n:
            break
        n += 1
    return n


def evict(m) -> None:
    """A later reclaim pass over the swap cache: every clean folio that nothing maps leaves
    the cache and is freed (`__remove_mapping`)."""
    for off in sorted(m.swap.cache):
        folio = m.swap.cache.get(off)
        if folio is not None and swp_offset(folio.swap) == off and not folio.dirty \
                and m.folio_mapcount(folio) == 0:
            if m.tracing: m.log("evict", f"folio={folio.pfn} entry={folio.swap:#x}")
            __remove_mapping(m, folio)
