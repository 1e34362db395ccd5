"""Splitting a large folio (mm/huge_memory.c `split_huge_page_to_list_to_order` →
`__split_huge_page`, v6.12): unmap, give every new folio the head's flags, remap."""

from __future__ import annotations

from mteswap.model.mte import page_mte_tagged
from mteswap.model.origin import SPLIT_CLEARED
from mteswap.model.page_alloc import folio_put
from mteswap.model.pgtable import set_ptes
from mteswap.model.pte import pte_tagged, pte_write, vm_normal_pfn
from mteswap.model.rmap import folio_add_anon_rmap_pte, folio_rmap_walk, rmap_drop
from mteswap.model.state import Folio, ZERO_PFN
from mteswap.model.swapfile import folio_free_swap
from mteswap.model.swapinfo import swp_offset


def split_folio(m, folio, why: str) -> list:
    """Split `folio` into order-0 folios and return the tail folios still alive (the head
    folio keeps the head pfn and stays with the caller, as `split_folio_to_list` does).

    1. `unmap_folio`: every PTE becomes a migration entry (the page's PG_anon_exclusive kept).
    2. `__split_folio_to_order`: page flags of each new folio are reset and copied from the
       head page, PG_mte_tagged/PG_mte_lock included (the design decides: semantics §3.10);
       a swap-cache folio's pages keep their slots (swap = old swap + i).
    3. `remap_page(folio, nr, RMP_USE_SHARED_ZEROPAGE)`: a zero-filled page that is not
       PG_mte_tagged is mapped to the shared zero page instead (`try_to_map_unused_to_zeropage`,
       semantics §11); every other mapping is restored through `set_pte_at` → mte_sync_tags,
       which zeroes the tags of a page that lost PG_mte_tagged (S5, [K] on 6.12 and 7.2).
    4. Tails nothing maps any more are freed (`free_page_and_swap_cache`)."""
    m.count("splits")
    if m.tracing: m.log("split_folio", f"folio={folio.pfn} order={folio.order} ({why})")
    migration = []
    for pid, vpn, pfn in folio_rmap_walk(m, folio):
        e = m.mms[pid].ptes.pop(vpn)
        rmap_drop(m, pfn, pid, vpn)             # PG_anon_exclusive stays for the remap
        migration.append((pid, vpn, pfn, pte_tagged(e), pte_write(e)))
    folio.mapcount = folio.nr_mapped = 0          # every mapping is a migration entry now
    head = m.pages[folio.pfn]
    pages = m.folio_pages(folio)
    if len({p.mte_tagged for p in pages}) > 1:
        # Not a kernel counter: tells the explorer its "split of a mixed-tagged folio"
        # property was reached (the case where copying the head's flag can be wrong).
        m.count("mixed_tag_splits")
    flags = [m.design.split_page_mte_flags(m, head, p) for p in pages]
    new_folios = _split_to_order0(m, folio)
    for page, (tagged, lock) in zip([m.pages[f.pfn] for f in new_folios], flags):
        if page.mte_tagged != tagged:
            if m.tracing: m.log("__split_folio_to_order",
                  f"pfn={page.pfn} PG_mte_tagged {int(page.mte_tagged)}->{int(tagged)} (copied from head pfn {head.pfn})")
            note = f"the split {'set' if tagged else 'cleared'} its PG_mte_tagged (copied from head pfn {head.pfn})"
            if tagged:
                page.origin = page.origin.noted(note)
            else:
                m.pending_notes[page.pfn] = (SPLIT_CLEARED, note)
        page.mte_tagged, page.mte_lock = tagged, lock
        if not tagged:
            page.tags_init = False    # the I1 ghost: its tags are no longer known valid
    _remap_page(m, migration)
    m.pending_notes = {}
    survivors = []
    for f in new_folios[1:]:
        if f.swapcache and m.folio_mapcount(f) == 0:
            folio_free_swap(m, f)
        folio_put(m, f)
        if f.pfn in m.folios:
            survivors.append(f)
    return survivors


def split_huge_pages_pid(m, mm, start: int, end: int) -> None:
    """`split_huge_pages_pid()` (mm/huge_memory.c), what a write of "pid,start,end" to the
    `split_huge_pages` debugfs file runs: page by page from start to end, a large folio mapped
    there is split to order 0. The walk ends at the first address no VMA covers (`vma_lookup`
    finds none), so a folio beyond a hole that munmap left in the range stays whole."""
    for vpn in range(start, end):
        if mm.find_vma(vpn) is None:
            break
        pfn = vm_normal_pfn(mm.ptes[vpn], vpn)
        if pfn is not None and m.pages[pfn].folio.nr > 1:
            folio = m.pages[pfn].folio
            split_folio(m, folio, "split_huge_pages")
            folio_put(m, folio)


def deferred_split_scan(m) -> None:
    """`deferred_split_scan()` (mm/huge_memory.c, v6.12), the deferred-split shrinker, run over
    the whole queue as `drop_slab` (drop_caches) runs it: every large folio queued because it
    was left partly mapped (`partially_mapped`, set by folio_remove_rmap_pte) is split like any
    other split (pages nothing maps are freed, zero-filled untagged ones go to the zero page).
    Queued folios are taken in pfn order; the kernel's list order (queueing order) could only
    change which frames are freed first, and frames are handed out lowest first anyway.
    Folios on the queue that are not partly mapped (6.12's `thp_underused` check) are PMD-sized
    ones queued at fault, which the model does not have."""
    queued = [f for f in m.folios.values() if f.nr > 1 and f.partially_mapped]
    if m.tracing: m.log("deferred_split_scan", f"{len(queued)} partially mapped folio(s) queued")
    for folio in queued:
        if folio.pfn in m.folios and folio.partially_mapped:     # not freed or split meanwhile
            split_folio(m, folio, "deferred_split_scan")
            folio_put(m, folio)


def _split_to_order0(m, folio) -> list[Folio]:
    """The head keeps its `struct folio` (now order 0); each tail page becomes a new folio
    with the head's PG_dirty, arch state and, in the swap cache, its own slot."""
    pfn, nr = folio.pfn, folio.nr
    dirty, arch, swapcache, swap = folio.dirty, folio.arch, folio.swapcache, folio.swap
    folio.partially_mapped = False
    m.frame_order[pfn:pfn + nr] = bytes(nr)             # every frame its own order-0 folio
    folio.nr = 1                                        # the caller's view of the head
    out = [folio]
    for i in range(1, nr):
        f = Folio(m, pfn + i, 1)
        f.mapcount = f.nr_mapped = 0
        f.dirty, f.arch, f.swapcache = dirty, arch, swapcache
        f.partially_mapped = f.writeback = False
        f.swap = swap + i if swapcache else 0
        if swapcache:
            m.swap.cache[swp_offset(f.swap)] = f
        out.append(f)
    m.folios.n += nr - 1
    return out


def _remap_page(m, migration) -> None:
    """`remap_page()` → `remove_migration_ptes()` for each saved mapping."""
    for pid, vpn, pfn, tagged, writable in migration:
        mm = m.mms[pid]
        page = m.pages[pfn]
        if page.data == 0 and not page_mte_tagged(m, page):
            set_ptes(m, mm, vpn, ZERO_PFN, 1, tagged, False, "try_to_map_unused_to_zeropage")
            if m.tracing: m.log("try_to_map_unused_to_zeropage", f"pid={pid} vpn={vpn} pfn={pfn} -> zero page")
            page.anon_exclusive = False
            continue
        folio_add_anon_rmap_pte(m, pfn, pid, vpn, page.anon_exclusive)
        set_ptes(m, mm, vpn, pfn, 1, tagged, writable, "remove_migration_pte after split")
