"""Checks of the saved-tag store (the mte_pages xarray, arch/arm64/mm/mteswap.c) between
steps: buffers kept past their slot's life, and buffers read while nothing pinned their slot.

Each function yields (detail, key): the key names the problem for the oracle to report once
(None: report every time it is seen)."""

from __future__ import annotations

from mteswap.model.swapinfo import SWAP_HAS_CACHE, swp_offset


def tag_storage_leaks(m):
    """`tag-storage-leak`: saved tags kept for a free slot (`swap_range_free` did not call
    `arch_swap_invalidate_page`, mm/swapfile.c), after swapoff (`arch_swap_invalidate_area`)
    or after the last process exited. A slot that only the swap cache still holds is not
    leaked then: its folio is reclaimable, and reclaim frees the slot and its tags
    (`__remove_mapping` → `put_swap_folio`, mm/vmscan.c), as after a split leaves an unmapped
    swap-cache folio behind (`__split_huge_page` keeps the head in the swap cache). Nor is
    a slot on 6.12's slot-cache return list (mm/swap_slots.c): the next flush frees it and
    its tags (`swapcache_free_entries`)."""
    if not m.mte_pages:              # the usual state: nothing saved, nothing to keep
        return
    yield from leaks_among(m, sorted(m.mte_pages))


def leaks_among(m, entries):
    """tag_storage_leaks restricted to `entries` (sorted, each saved in mte_pages)."""
    si = m.swap
    everyone_gone = bool(m.mms) and not any(mm.alive for mm in m.mms)
    for entry in entries:
        off = swp_offset(entry)
        if off >= len(si.swap_map) or si.swap_map[off] == 0:
            why = f"saved tags kept for free slot {off:#x}"
        elif not si.active:
            why = f"saved tags of slot {off:#x} left after swapoff"
        elif everyone_gone and not (si.swap_map[off] == SWAP_HAS_CACHE
                                    and (off in si.cache or off in si.slots_ret)):
            why = f"saved tags of slot {off:#x} left after the last process exited"
        else:
            continue
        yield why, ("leak", entry)


def tag_storage_use_after_free(m):
    """`tag-storage-use-after-free`: a restore read a slot's buffer while the slot had neither
    a reference nor a cache pin (I5): in the kernel a concurrent `swap_range_free` may kfree
    it at any moment. The model records such reads in `m.tag_reads` (model/mte.py); the
    oracle empties it after every step."""
    for entry, swap_map in m.tag_reads:
        if swap_map == 0:
            yield f"tags of slot {swp_offset(entry):#x} read while the slot was free", None
