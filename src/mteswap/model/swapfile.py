"""Swap slot reference counting (mm/swapfile.c, v6.12 era): swap_map updates, slot freeing
and the `arch_swap_invalidate_page` hook, `free_swap_and_cache_nr`, `folio_free_swap`.

On 7.2 a slot is freed when its swap_map byte reaches 0. On 6.12 an order-0 free goes
through the per-CPU slot cache's return list (`free_swap_slot`, model/swap_slots.py) while
that cache is active; a whole large folio's slots are freed at once (`put_swap_folio`,
`free_swap_and_cache_nr`), as there.
"""

from __future__ import annotations

from functools import partial

from mteswap.model import sched
from mteswap.model.state import FOLIO_SWAPCACHE, FOLIO_WRITEBACK, folio_mark_dirty
from mteswap.model.trace import SlotOrder
from mteswap.model.swapinfo import (SWAP_HAS_CACHE, SWAPFILE_CLUSTER, SWP_TYPE, any_slot_has,
                                    each_slot, swp_entry, swp_offset)


def swap_range_free(m, offset: int, nr: int) -> None:
    """`swap_range_free()`: slots [offset, offset+nr) are free; the arch drops their tags
    (`arch_swap_invalidate_page` of each slot, given as one range: the design's
    `arch_swap_invalidate_range`, whose default calls it slot by slot)."""
    si = m.swap
    si.release_slots(offset, nr)
    si.contents.clear_range(offset, nr)
    if si.zeromap:
        si.zeromap.difference_update(range(offset, offset + nr))
    si.written_tags.clear_range(offset, nr)
    if m.tracing:
        # The kernel loops slot by slot: each slot's line, then what its hook printed.
        m.begin_trace_region(SlotOrder)
        for off in range(offset, offset + nr):
            m.log("swap_range_free", f"entry={swp_entry(SWP_TYPE, off):#x}", ("slot", off))
    m.design.arch_swap_invalidate_range(m, SWP_TYPE, offset, nr)
    if m.tracing:
        m.end_trace_region()
    for off in range(offset, offset + nr, SWAPFILE_CLUSTER):
        si.release_cluster_if_free(off)
    si.release_cluster_if_free(offset + nr - 1)


def swapcache_free_entries(m, offsets) -> None:
    """`swapcache_free_entries()` (6.12): free each slot, left at SWAP_HAS_CACHE by the slot
    cache that held it, in the order given (`swap_entry_range_free` of one slot)."""
    for off in offsets:
        swap_entry_range_free(m, off, 1)


def swap_entry_range_free(m, offset: int, nr: int) -> None:
    """`swap_entry_range_free()` (6.12): nr slots holding SWAP_HAS_CACHE only become free
    (`swap_range_free`)."""
    assert m.swap.swap_map[offset:offset + nr].count(SWAP_HAS_CACHE) == nr
    swap_range_free(m, offset, nr)


# "mm, swap: fix allocation and scanning race with swapoff" (v6.12): the cluster allocator
# counts SWP_SCANNING around its scan, so that swapoff waits for it before freeing swap_map,
# and checks SWP_WRITEOK before it takes slots (`cluster_alloc_range`), which it may do after
# dropping the locks to reclaim a cache-only slot (`cluster_reclaim_range`).
REVERT_ALLOC_SWAPOFF = "0ec8bc9e880e"


def get_swap_pages(m, n_goal: int, nr: int) -> list[int]:
    """`get_swap_pages()` (6.12; 7.2 allocates one folio's slots through `swap_alloc_fast`
    or `swap_alloc_slow`, which `find_slots` follows per kernel): up to n_goal allocations of
    nr slots each (at most SWAP_BATCH, and no more than the free space holds), each set to
    SWAP_HAS_CACHE; their first offsets, in the order `cluster_alloc_swap_entry` found them.

    The scan (`cluster_alloc_swap`) may reclaim cache-only slots while swap is more than half
    full (`cluster_reclaim_range`, which drops the locks). With the fix it runs inside
    SWP_SCANNING and takes no slot once swapoff cleared SWP_WRITEOK (`si.active`); with
    0ec8bc9e880e reverted neither (6.12 only keeps the two on a rotational disk, whose
    `scan_swap_map_slots` never lost them)."""
    si = m.swap
    fixed = REVERT_ALLOC_SWAPOFF not in m.config.reverts or not si.uses_next
    got: list[int] = []
    if fixed:
        sched.swap_scanning(m, True)
    reclaim = partial(_reclaim_run, m)
    for _ in range(min(n_goal, 64, si.nr_swap_pages() // nr)):
        offset = si.find_slots(nr, reclaim)
        if offset is None:
            break
        if fixed and not si.active:             # cluster_alloc_range: SWP_WRITEOK cleared
            si.drop_next(nr.bit_length() - 1)
            break
        si.take_slots(offset, nr, SWAP_HAS_CACHE)
        got.append(offset)
    if fixed:
        sched.swap_scanning(m, False)
    return got


def _reclaim_run(m, off: int, n: int) -> bool:
    """`find_slots`' reclaim callback: cluster_reclaim_range of the n slots from off."""
    return cluster_reclaim_range(m, off, off + n)


def cluster_reclaim_range(m, start: int, end: int) -> bool:
    """`cluster_reclaim_range()` (mm/swapfile.c, v6.12): drop the cluster lock and si->lock,
    reclaim the swap-cache folio of each cache-only slot of [start, end)
    (`__try_to_reclaim_swap(si, offset, TTRS_ANYWAY | TTRS_DIRECT)`; stop at a slot in use
    or a folio not reclaimed), take the locks again and recheck: True when every slot is free.

    Between other threads the lock drop is a step boundary: each slot's lockless READ_ONCE
    and swap-cache lookup is a step (`cluster_reclaim_range:__try_to_reclaim_swap`), the
    folio's trylock and removal another (`__try_to_reclaim_swap:folio_trylock`), the relock
    and recheck a third (`cluster_reclaim_range:spin_lock`, which goes on with the
    allocation); each reads swap_map, a use-after-free once swapoff freed it."""
    swap_map = m.swap.swap_map
    for off in range(start, end):
        sched.point(m, "cluster_reclaim_range:__try_to_reclaim_swap", device=True)
        v = swap_map[off]                 # READ_ONCE, with the locks dropped
        if v == 0:
            continue
        if v != SWAP_HAS_CACHE or __try_to_reclaim_swap(m, off, anyway=True) <= 0:
            break
    sched.point(m, "cluster_reclaim_range:spin_lock", device=True)
    return swap_map[start:end].count(0) == end - start


def _clear_and_free(m, start: int, nr: int, bit: int, delta: int) -> None:
    """Apply `swap_map[o] = (swap_map[o] & ~bit) + delta` to nr slots from start, then free
    (`swap_range_free`) each run of slots left at 0, in offset order: the loop shared by
    `swap_free_nr`, `put_swap_folio` and `swapcache_clear`. On 6.12, while the slot cache is
    active, each such slot goes to `free_swap_slot` instead, one by one (without it,
    `free_swap_slot` frees the slot at once, which the runs do)."""
    from mteswap.model.swap_slots import free_swap_slot, use_swap_slot_cache
    swap_map = m.swap.swap_map
    new = each_slot(swap_map[start:start + nr], lambda v: (v & ~bit) + delta)
    swap_map[start:start + nr] = new
    m.swap.written.update(range(start, start + nr))   # for the oracle's scoped checks
    zeros = new.count(0)
    if not zeros:
        return
    if use_swap_slot_cache(m.swap):
        for i, v in enumerate(new):
            if v == 0:
                free_swap_slot(m, start + i)
        return
    if zeros == nr:                          # all free now: one run
        swap_range_free(m, start, nr)
        return
    run = None
    for i, v in enumerate(new):
        if v == 0:
            if run is None:
                run = i
            continue
        if run is not None:
            swap_range_free(m, start + run, i - run)
            run = None
    if run is not None:
        swap_range_free(m, start + run, nr - run)


def swap_duplicate(m, entry: int) -> None:
    """`swap_duplicate()`: one more page-table reference to the slot."""
    m.swap.swap_map[swp_offset(entry)] += 1
    m.swap.written.add(swp_offset(entry))   # for the oracle's scoped checks


def swap_free_nr(m, entry: int, nr: int) -> None:
    """`swap_free_nr()` → `__swap_entry_free_locked()`: drop one reference from each of nr
    slots; a slot left with neither references nor cache pin is freed."""
    start = swp_offset(entry)
    if m.tracing: m.log_range("swap_free_nr", "slot", start, nr,
                              lambda s, n: f"entry={swp_entry(SWP_TYPE, s):#x} nr={n}")
    _clear_and_free(m, start, nr, 0, -1)


def put_swap_folio(m, folio, entry: int, k: int = 1) -> None:
    """`put_swap_folio()`: the folio (k folios in slots one after another) left the swap
    cache; drop SWAP_HAS_CACHE on its slots and free the ones no page table references."""
    start, nr = swp_offset(entry), folio.nr
    if m.tracing:
        m.log_range("put_swap_folio", "slot", start, nr * k,
                    lambda s, n: f"entry={swp_entry(SWP_TYPE, s):#x} nr={n}")
    si = m.swap
    if nr > 1 and si.has_slots_cache:
        # 6.12: a large folio whose slots only the cache pins frees them all at once
        # (`swap_entry_range_free`), never through the slot cache; else slot by slot.
        for j in range(start, start + nr * k, nr):
            if si.swap_map[j:j + nr].count(SWAP_HAS_CACHE) == nr:
                swap_entry_range_free(m, j, nr)
            else:
                _clear_and_free(m, j, nr, SWAP_HAS_CACHE, 0)
        return
    _clear_and_free(m, start, nr * k, SWAP_HAS_CACHE, 0)


def swapcache_prepare(m, entry: int, nr: int) -> bool:
    """`swapcache_prepare(entry, nr)`: set SWAP_HAS_CACHE on nr slots, pinning them; fails if
    any already has it (another task is bringing the slot in: -EEXIST) or is free (the entry
    went away since the caller read it: -ENOENT, only between threads)."""
    si = m.swap
    start = swp_offset(entry)
    slots = si.swap_map[start:start + nr]
    if any_slot_has(slots, SWAP_HAS_CACHE) or (m.sched is not None and 0 in slots):
        return False
    si.swap_map[start:start + nr] = each_slot(slots, lambda v: v | SWAP_HAS_CACHE)
    si.written.update(range(start, start + nr))   # for the oracle's scoped checks
    if m.tracing: m.log_range("swapcache_prepare", "slot", start, nr,
                              lambda s, n: f"entry={swp_entry(SWP_TYPE, s):#x} nr={n}")
    return True


def swapcache_clear(m, entry: int, nr: int) -> None:
    """`swapcache_clear()`: end of the skip-swapcache path: drop the pins swapcache_prepare
    took; slots without references are freed now."""
    start = swp_offset(entry)
    if m.tracing: m.log_range("swapcache_clear", "slot", start, nr,
                              lambda s, n: f"entry={swp_entry(SWP_TYPE, s):#x} nr={n}")
    _clear_and_free(m, start, nr, SWAP_HAS_CACHE, 0)


def folio_swapped(m, folio, k: int = 1) -> bool:
    """`folio_swapped()`: does any slot of this swap-cache folio (of k folios in slots one
    after another) still have a reference?"""
    start = swp_offset(m.folio_swap[folio.pfn])
    return any_slot_has(m.swap.swap_map[start:start + folio.nr * k], ~SWAP_HAS_CACHE)


def folio_free_swap(m, folio, k: int = 1) -> bool:
    """`folio_free_swap()`: drop the folio from the swap cache if no slot is referenced any
    more; the folio is then dirty (its only copy is in memory). For a batch of faults, k
    folios alike (do_swap_page's `swapin_batch`), one after another in frames and slots."""
    flags = m.folio_flags
    if flags[folio.pfn] & (FOLIO_SWAPCACHE | FOLIO_WRITEBACK) != FOLIO_SWAPCACHE \
            or folio_swapped(m, folio, k):               # not in the cache, or under writeback
        return False
    from mteswap.model.swap_state import delete_from_swap_cache
    delete_from_swap_cache(m, folio, k)
    folio_mark_dirty(m, folio, k)
    return True


def __try_to_reclaim_swap(m, offset: int, anyway: bool = False) -> int:
    """`__try_to_reclaim_swap(si, offset, TTRS_UNMAPPED | TTRS_FULL)`: reclaim the swap-cache
    folio at offset if it is unmapped (or swap is full) and every slot of it is HAS_CACHE only;
    `anyway` (TTRS_ANYWAY, the allocator's call) whether mapped or not. Returns nr pages
    reclaimed, -nr if a folio was found but kept, 0 if none."""
    from mteswap.model.page_alloc import folio_put
    from mteswap.model.swap_state import delete_from_swap_cache
    si = m.swap
    folio = si.cache.get(offset)
    if folio is None:
        return 0
    if m.sched is not None:
        # z3: folio_trylock, then the checks and delete_from_swap_cache under the cluster lock.
        # The lookup's reference (held to the end) makes reclaim's __remove_mapping fail.
        sched.get_folio_ref(m, folio)
        sched.point(m, "__try_to_reclaim_swap:folio_trylock", device=True)
        sched.put_folio_refs(m)
        if folio.pfn not in m.folios or not sched.trylock(m, sched.folio_lock_key(folio)):
            return -folio.nr              # freed meanwhile (the kernel holds a reference), or locked
        if not folio.swapcache or not m.swap.cache.holds(offset, folio):
            return -folio.nr              # left the swap cache meanwhile (folio_swapcache_freeable)
    if not anyway and m.folio_mapcount(folio) and not si.vm_swap_full():
        return -folio.nr
    start = swp_offset(folio.swap)
    if any(si.swap_map[o] != SWAP_HAS_CACHE for o in range(start, start + folio.nr)):
        return -folio.nr
    if m.tracing: m.log("__try_to_reclaim_swap", f"folio={folio.pfn} entry={folio.swap:#x} nr={folio.nr}")
    delete_from_swap_cache(m, folio)
    folio.dirty = True
    folio_put(m, folio)
    return folio.nr


# "mm: swap: fix race between free_swap_and_cache() and swapoff()" (v6.9): the zap holds a
# get_swap_device reference, so swapoff cannot free swap_map between its steps.
REVERT_ZAP_SWAPOFF_REF = "82b1c07a0af6"


def free_swap_and_cache_nr(m, entry: int, nr: int) -> None:
    """`free_swap_and_cache_nr()` (v6.10+), the zap path: drop one reference on each of nr
    contiguous slots, then try to reclaim swap-cache folios whose slots are now cache-only.

    Between other threads (zap_pte_range holds the PTL throughout): `get_swap_device`, then
    z1 `__swap_entries_free` under the cluster lock, z2 the lockless READ_ONCE of each
    slot's swap_map and the swap-cache lookup, z3 `__try_to_reclaim_swap`'s trylock and
    reclaim; each reads the device (a use-after-free once swapoff freed it), and
    `put_swap_device` at the end. With 82b1c07a0af6 reverted no reference is taken."""
    if m.sched is None:
        return _free_swap_and_cache(m, entry, nr)
    reverted = REVERT_ZAP_SWAPOFF_REF in m.config.reverts
    # z1; with the fix the reference comes first: the struct outlives swapoff, so a failed
    # get_swap_device reads nothing freed
    sched.point(m, "free_swap_and_cache_nr:__swap_entries_free", device=reverted)
    if reverted:
        return _free_swap_and_cache(m, entry, nr)
    if not sched.get_swap_device(m):
        return
    try:
        _free_swap_and_cache(m, entry, nr)
    finally:
        sched.put_swap_device(m)


def _free_swap_and_cache(m, entry: int, nr: int) -> None:
    si = m.swap
    start = swp_offset(entry)
    if m.tracing: m.log("free_swap_and_cache_nr", f"entry={entry:#x} nr={nr}")
    any_only_cache = False
    # 6.12's `__swap_entries_free`: nr slots in one cluster, each with count 1 and the same
    # cache bit, are dropped together, and freed at once when none is cached; any other slot
    # whose last reference goes takes `__swap_entry_free` → `free_swap_slot`.
    from mteswap.model.swap_slots import free_swap_slot, use_swap_slot_cache
    per_slot = use_swap_slot_cache(si) and not (
        nr > 1 and si.count(start) == 1 and start // SWAPFILE_CLUSTER == (start + nr - 1) // SWAPFILE_CLUSTER
        and si.swap_map[start:start + nr].count(si.swap_map[start]) == nr)
    for off in range(start, start + nr):
        si.swap_map[off] -= 1
        si.written.add(off)   # for the oracle's scoped checks
        if si.swap_map[off] == 0:
            if per_slot:
                free_swap_slot(m, off)
            else:
                swap_range_free(m, off, 1)
        elif si.swap_map[off] == SWAP_HAS_CACHE:
            any_only_cache = True
    if not any_only_cache:
        return
    off = start
    while off < start + nr:
        if m.sched is not None:          # z2: READ_ONCE(si->swap_map[offset]), lockless
            sched.point(m, "free_swap_and_cache_nr:__try_to_reclaim_swap", device=True)
        step = 1
        if si.swap_map[off] == SWAP_HAS_CACHE:
            got = abs(__try_to_reclaim_swap(m, off)) or 1
            step = ((off + got) // got) * got - off   # ALIGN(offset + 1, nr) - offset
        off += step
