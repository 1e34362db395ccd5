"""6.12's per-CPU swap slot cache (mm/swap_slots.c; the free side went in v6.14, the file in
v6.15, so 7.2 has none of it: `SwapInfo.has_slots_cache`).

Order-0 swap-outs take slots from a per-CPU array that `refill_swap_slots_cache` fills with
up to `SWAP_SLOTS_CACHE_SIZE` slots at once (`get_swap_pages`), each pinned by
SWAP_HAS_CACHE in swap_map while it waits there. A slot whose last reference goes is not
freed at once either: `free_swap_slot` leaves it SWAP_HAS_CACHE on a per-CPU return list,
and `swapcache_free_entries` frees the whole list when it is full (or when the cache is
drained). Slots on either list keep their cluster in use, so a cluster an order-0 swap-out
touched does not become free again for large folios, and freed slots are not reused at once.

The cache is used only while the free swap space stays above thresholds scaled by the number
of online CPUs (`check_cache_active`). The model assumes the kernel oracle's guest: two CPUs
(QEMU `-smp 2`, kernel/guest.py), with every scenario process pinned to CPU 0, so one
per-CPU cache holds all the slots (`NUM_ONLINE_CPUS`; docs/model.md, "Kernel versions").
"""

from __future__ import annotations

from mteswap.model.swapfile import get_swap_pages, swapcache_free_entries
from mteswap.model.swapinfo import SWAP_HAS_CACHE

SWAP_BATCH = 64                                   # include/linux/swap.h
SWAP_SLOTS_CACHE_SIZE = SWAP_BATCH                # include/linux/swap_slots.h
THRESHOLD_ACTIVATE_SWAP_SLOTS_CACHE = 5 * SWAP_SLOTS_CACHE_SIZE
THRESHOLD_DEACTIVATE_SWAP_SLOTS_CACHE = 2 * SWAP_SLOTS_CACHE_SIZE
NUM_ONLINE_CPUS = 2                               # the guest's `-smp 2` (kernel/guest.py)


def use_swap_slot_cache(si) -> bool:
    """`use_swap_slot_cache`: the cache is both enabled (a usable swap device) and active."""
    return si.has_slots_cache and si.slots_cache_enabled and si.slots_cache_active


def check_cache_active(m) -> bool:
    """`check_cache_active()`: (de)activate the cache by the free swap space
    (`get_nr_swap_pages`) against thresholds times `num_online_cpus()`; whether it is
    active now. Deactivation drains it."""
    si = m.swap
    if not (si.has_slots_cache and si.slots_cache_enabled):
        return False
    pages = si.nr_swap_pages()
    if not si.slots_cache_active:
        if pages > NUM_ONLINE_CPUS * THRESHOLD_ACTIVATE_SWAP_SLOTS_CACHE:
            si.slots_cache_active = True
            if m.tracing: m.log("check_cache_active", f"free={pages}: slot cache active")
    elif pages < NUM_ONLINE_CPUS * THRESHOLD_DEACTIVATE_SWAP_SLOTS_CACHE:
        deactivate_swap_slots_cache(m)
    return si.slots_cache_active


def deactivate_swap_slots_cache(m) -> None:
    """`deactivate_swap_slots_cache()`: too little swap left; inactive and drained."""
    m.swap.slots_cache_active = False
    if m.tracing: m.log("deactivate_swap_slots_cache", f"free={m.swap.nr_swap_pages()}")
    drain_slots_cache_cpu(m)


def drain_slots_cache_cpu(m) -> None:
    """`drain_slots_cache_cpu()` (via `__drain_swap_slots_cache`, for every online CPU; only
    CPU 0's holds slots): free the slots still waiting to be handed out, then the return
    list (`swapcache_free_entries`)."""
    si = m.swap
    waiting, si.slots_cache = si.slots_cache, ()
    swapcache_free_entries(m, waiting)
    returned, si.slots_ret = si.slots_ret, ()
    swapcache_free_entries(m, returned)


def disable_swap_slots_cache_lock(m) -> None:
    """`disable_swap_slots_cache_lock()` (swapoff, before `try_to_unuse`): disabled and
    drained, so every slot freed afterwards is freed at once."""
    si = m.swap
    if not si.has_slots_cache:
        return
    si.slots_cache_enabled = False
    drain_slots_cache_cpu(m)


def reenable_swap_slots_cache_unlock(m) -> None:
    """`reenable_swap_slots_cache_unlock()` → `__reenable_swap_slots_cache`: enabled again
    only if some swap device is usable (`has_usable_swap`; the model's one device is gone
    after swapoff)."""
    si = m.swap
    if si.has_slots_cache:
        si.slots_cache_enabled = si.active


def refill_swap_slots_cache(m) -> int:
    """`refill_swap_slots_cache()`: up to SWAP_SLOTS_CACHE_SIZE order-0 slots at once
    (`get_swap_pages`, each pinned by SWAP_HAS_CACHE); how many."""
    si = m.swap
    if not use_swap_slot_cache(si):
        return 0
    si.slots_cache = tuple(get_swap_pages(m, SWAP_SLOTS_CACHE_SIZE, 1))
    if m.tracing and si.slots_cache:
        m.log("refill_swap_slots_cache", f"slots {si.slots_cache[0]:#x}.. nr={len(si.slots_cache)}")
    return len(si.slots_cache)


def take_cached_slot(m) -> int | None:
    """`folio_alloc_swap()`'s order-0 path: the next slot of this CPU's cache (refilled when
    empty) while the cache is active, else None (the caller asks `get_swap_pages` for one)."""
    si = m.swap
    if not check_cache_active(m):
        return None
    if not si.slots_cache and not refill_swap_slots_cache(m):
        return None
    offset, si.slots_cache = si.slots_cache[0], si.slots_cache[1:]
    return offset


def free_swap_slot(m, offset: int) -> None:
    """`free_swap_slot()`: a slot whose last reference and cache pin went (its swap_map left
    at SWAP_HAS_CACHE by `__swap_entry_free_locked`) waits on the return list; a full list is
    freed first (`swapcache_free_entries`). Without an active cache the slot is freed now."""
    si = m.swap
    si.swap_map[offset] = SWAP_HAS_CACHE
    si.written.add(offset)   # for the oracle's scoped checks
    if not use_swap_slot_cache(si):
        swapcache_free_entries(m, (offset,))
        return
    if len(si.slots_ret) >= SWAP_SLOTS_CACHE_SIZE:
        returned, si.slots_ret = si.slots_ret, ()
        swapcache_free_entries(m, returned)
    si.slots_ret += (offset,)
    if m.tracing: m.log("free_swap_slot", f"slot {offset:#x} to the return list", ("slot", offset))
