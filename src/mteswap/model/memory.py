"""Page faults and unmapping (mm/memory.c): `handle_mm_fault`, `do_anonymous_page`,
`do_wp_page`/`wp_page_copy`, `do_swap_page` with `alloc_swap_folio`, and `zap_pte_range`."""

from __future__ import annotations

from array import array

from mteswap.model.mte import copy_highpage
from mteswap.model import sched
from mteswap.model.origin import NO_SAVED_TAGS
from mteswap.model.page_alloc import alloc_folio, folio_put
from mteswap.model.pgtable import set_ptes
from mteswap.model.pte import (is_swap_pte, pte_mkwrite, pte_pfn, pte_present, pte_swp_exclusive,
                               pte_to_swp_entry, pte_write)
from mteswap.model.rmap import (folio_add_anon_rmap_pte, folio_add_anon_rmap_ptes,
                                folio_add_new_anon_rmap, folio_maybe_mapped_shared,
                                folio_remove_rmap_pte)
from mteswap.model.state import FOLIO_FREE, ZERO_PFN, folio_mark_dirty
from mteswap.model.trace import FaultBatch
from mteswap.model.vma import anon_vma_prepare
from mteswap.model.swap_state import (add_to_swap_cache, swap_cache_get_folio, swap_read_folio,
                                      swapin_readahead)
from mteswap.model.swapfile import (folio_free_swap, free_swap_and_cache_nr, swap_free_nr,
                                    swapcache_clear, swapcache_prepare)
from mteswap.model.swapinfo import SWAP_HAS_CACHE, any_slot_has, swp_offset
from mteswap.ranges import leading


PMD_NR = 512   # pages per PMD with 4 KiB pages (2 MiB)
PTRS_PER_PTE = 512   # PTEs per page-table page: the range one zap or access batch stays in


class OutOfMemory(Exception):
    """No frame could be allocated for a fault (the task would be OOM-killed)."""


def handle_mm_fault(m, mm, vpn: int, write: bool, reach: int | None = None) -> None:
    """`handle_mm_fault()` → `handle_pte_fault()`: bring the page at vpn in (or make it
    writable) so that the access can proceed. `reach`: the access goes on to the pages below
    it, faulting on each in turn; swap-in faults that `swapin_batch` proves independent of one
    another are then taken together, as one `do_swap_page` of k faults."""
    e = mm.ptes.ents[vpn]                 # the PTE int (pte.py); vpn lies in a VMA
    if not e:                             # pte_none
        m.counters["faults"] += 1
        do_anonymous_page(m, mm, vpn, write)
    elif is_swap_pte(e):
        # A batch assumes no other thread runs between its faults: one fault per thread.
        k = swapin_batch(m, mm, vpn, reach or vpn + 1, write)[0] if m.sched is None else 1
        m.counters["faults"] += k
        if m.sched is None:
            do_swap_page(m, mm, vpn, write, k)
        else:
            _do_swap_page_holding_device(m, mm, vpn, write)
    elif write and not pte_write(e):
        m.counters["faults"] += 1
        do_wp_page(m, mm, vpn)


def thp_vma_suitable_orders(m, mm, vma, vpn: int) -> list[int]:
    """Folio sizes (in pages, largest first) whose naturally aligned range around vpn lies
    inside the VMA: `thp_vma_allowable_orders` (the `folio_pages` sizes are the enabled
    hugepages-*kB sizes) filtered by `thp_vma_suitable_order`."""
    sizes = []
    for nr in m.folio_sizes_desc:
        if nr == 2:
            continue   # THP_ORDERS_ALL_ANON excludes order 1: no 8 KiB anonymous folios
        start = vpn - vpn % nr
        if vma.start <= start and start + nr <= vma.end:
            sizes.append(nr)
    return sizes


def do_anonymous_page(m, mm, vpn: int, write: bool) -> None:
    """`do_anonymous_page()`: a read fault maps the shared zero page (semantics §11: MTE VMAs
    too); a write fault allocates the largest allowed folio whose aligned range has no PTE at
    all (`alloc_anon_folio`, `pte_range_none`), zeroed, and maps all of it writable."""
    vma = mm.find_vma(vpn)
    if not write:
        if m.tracing: m.log("do_anonymous_page", f"pid={mm.pid} vpn={vpn} read: map the zero page")
        set_ptes(m, mm, vpn, ZERO_PFN, 1, vma.vm_mte, False, "do_anonymous_page")
        m.count("zero_page_maps")
        return
    if m.tracing: m.log("do_anonymous_page", f"pid={mm.pid} vpn={vpn} write")
    anon_vma_prepare(mm, vma)                 # vmf_anon_prepare: not for the zero page
    for nr in thp_vma_suitable_orders(m, mm, vma, vpn):
        start = vpn - vpn % nr
        if mm.ptes.ents[start:start + nr].count(0) != nr:    # pte_range_none
            continue
        # Order 0 in a VM_MTE VMA is allocated with __GFP_ZEROTAGS; a large folio is zeroed
        # (folio_zero_user) and gets zero tags from mte_sync_tags in set_ptes.
        folio = alloc_folio(m, nr, zerotags=vma.vm_mte and nr == 1, why="alloc_anon_folio")
        if folio is None:
            continue
        m.frame_data[folio.pfn:folio.pfn + nr] = array("q", bytes(8 * nr))   # zeroed
        folio_add_new_anon_rmap(m, folio, mm.pid, start)
        folio.dirty = True
        set_ptes(m, mm, start, folio.pfn, nr, vma.vm_mte, True, "do_anonymous_page")
        m.count("anon_fault_alloc")
        return
    raise OutOfMemory(f"no free frame for a fault at pid {mm.pid} vpn {vpn}")


def do_wp_page(m, mm, vpn: int) -> None:
    """`do_wp_page()`: write to a read-only PTE. Reuse the page if it is PG_anon_exclusive or
    `wp_can_reuse_anon_folio` says so, else copy it (`wp_page_copy`). A reused page of a large
    folio keeps the folio whole: only this PTE becomes writable."""
    e = mm.ptes[vpn]
    pfn = pte_pfn(e, vpn)
    if pfn != ZERO_PFN:
        page = m.pages[pfn]
        if page.anon_exclusive or wp_can_reuse_anon_folio(m, page.folio, mm):
            page.anon_exclusive = True
            page.folio.dirty = True
            mm.ptes[vpn] = pte_mkwrite(e)
            if m.tracing: m.log("wp_page_reuse", f"pid={mm.pid} vpn={vpn} pfn={pfn}")
            return
    wp_page_copy(m, mm, vpn)


def wp_can_reuse_anon_folio(m, folio, mm) -> bool:
    """`wp_can_reuse_anon_folio()`: a small folio only if this is its sole mapping, after
    trying to free its swap cache (`folio_free_swap`). A large folio: never on 6.12; on 7.2
    (`__wp_can_reuse_large_anon_folio`, "mm: Copy-on-Write (COW) reuse support for PTE-mapped
    THP", v6.16) when more than one of its pages is mapped, every mapping is this process's
    (the folio's MM-ids are not marked shared) and mappings are its only references, after
    trying to free its swap cache as for a small folio (`folio_free_swap`, which fails while
    a slot is still referenced; fuzz-13-0046, 7.2 / ssd, step 19: SwapCached -68 kB and the
    folio reused whole)."""
    if folio.nr > 1:
        return m.config.kernel != "6.12" and _large_folio_exclusive(m, folio, mm)
    if m.folio_mapcount(folio) != 1:
        return False
    if folio.swapcache:
        folio_free_swap(m, folio)
    return not folio.swapcache


def _large_folio_exclusive(m, folio, mm) -> bool:
    """7.2's test: mapcount above 1, no other process maps it (`folio_maybe_mapped_shared`),
    then no swap-cache reference once `folio_free_swap` was tried."""
    if m.folio_mapcount(folio) <= 1 or folio_maybe_mapped_shared(m, folio):
        return False
    if folio.swapcache:
        folio_free_swap(m, folio)
    return not folio.swapcache


def wp_page_copy(m, mm, vpn: int) -> None:
    """`wp_page_copy()`: a new order-0 page for this PTE. From the zero page it is allocated
    zeroed (with __GFP_ZEROTAGS in a VM_MTE VMA); otherwise `copy_user_highpage` →
    `copy_highpage` copies data and, if the source is tagged, tags."""
    old_pfn = pte_pfn(mm.ptes[vpn], vpn)
    vma = mm.find_vma(vpn)
    anon_vma_prepare(mm, vma)                 # vmf_anon_prepare
    from_zero = old_pfn == ZERO_PFN
    folio = alloc_folio(m, 1, zerotags=from_zero and vma.vm_mte, why="wp_page_copy")
    if folio is None:
        raise OutOfMemory(f"no free frame for CoW at pid {mm.pid} vpn {vpn}")
    new = m.pages[folio.pfn]
    if from_zero:
        new.data = 0
    else:
        copy_highpage(m, new, m.pages[old_pfn])
        m.count("cow_copies")
    folio_add_anon_rmap_pte(m, new.pfn, mm.pid, vpn, exclusive=True)
    folio.dirty = True
    set_ptes(m, mm, vpn, new.pfn, 1, vma.vm_mte, True, "wp_page_copy")
    if m.tracing: m.log("wp_page_copy", f"pid={mm.pid} vpn={vpn} {old_pfn} -> {new.pfn}")
    if not from_zero:
        old_folio = m.pages[old_pfn].folio
        folio_remove_rmap_pte(m, old_pfn, mm.pid, vpn)
        free_swap_cache(m, old_folio)
        folio_put(m, old_folio)


# -- swap-in --------------------------------------------------------------------------------

def swap_pte_batch(mm, vpn: int, nr: int, e: int) -> int:
    """`swap_pte_batch()`: how many PTEs from vpn (at most nr) are swap PTEs continuing e, the
    swap PTE at vpn (offsets +1 each, same exclusive bit)."""
    # Entries + 1 at vpn + 1 with one exclusive bit: the same PTE int (pte.py encoding).
    return leading(mm.ptes.ents[vpn:vpn + nr], e)


def can_swapin_thp(m, mm, start: int, nr: int) -> bool:
    """`can_swapin_thp()` (v6.12): nr swap PTEs with contiguous entries, slots all in the
    zeromap or none of them, and none of them in the swap cache (no SWAP_HAS_CACHE)."""
    e = mm.ptes[start]
    if not is_swap_pte(e) or swap_pte_batch(mm, start, nr, e) != nr:
        return False
    si = m.swap
    start = swp_offset(pte_to_swp_entry(e, start))
    if si.zeromap:
        zero = [o in si.zeromap for o in range(start, start + nr)]
        if any(zero) and not all(zero):
            return False
    return not any_slot_has(si.swap_map[start:start + nr], SWAP_HAS_CACHE)


def alloc_swap_folio(m, mm, vma, vpn: int, entry: int, k: int = 1):
    """`alloc_swap_folio()` (v6.12, SWP_SYNCHRONOUS_IO only): the largest enabled order whose
    aligned PTE range passes `can_swapin_thp` and whose swap offset is aligned like the address
    (`thp_swap_suitable_orders`); smaller orders if frames run out; else order 0. For a batch
    (k > 1) the same size for each fault: k folios one after another (`swapin_batch`)."""
    folio = _alloc_large_swapin_folio(m, mm, vma, vpn, entry, "alloc_swap_folio", k)
    return folio or alloc_folio(m, 1, zerotags=False, why="alloc_swap_folio", k=k)


def _alloc_large_swapin_folio(m, mm, vma, vpn: int, entry: int, why: str, k: int = 1):
    """The large-folio part of `alloc_swap_folio` (6.12) and `swap_cache_alloc_folio` (7.2):
    the largest enabled size that passes the checks above and has free frames, or None."""
    if not m.config.large_swapin:
        return None
    # Orders below PMD order only (BIT(PMD_ORDER) - 1): a 2 MiB folio comes back order 0.
    sizes = [nr for nr in thp_vma_suitable_orders(m, mm, vma, vpn)
             if 1 < nr < PMD_NR and swp_offset(entry) % nr == vpn % nr]
    while sizes and not can_swapin_thp(m, mm, vpn - vpn % sizes[0], sizes[0]):
        sizes.pop(0)
    for nr in sizes:
        folio = alloc_folio(m, nr, zerotags=False, why=why, k=k)
        if folio is not None:
            return folio
    return None


def swap_cache_alloc_folio(m, mm, vma, vpn: int, entry: int):
    """7.2 only, on a SWP_SYNCHRONOUS_IO device (zram): every swap-in goes through the swap cache,
    with a large folio too, whether the entries are shared after fork (count > 1) or not (the
    swap-table series, "mm, swap: unify large folio allocation"; release not confirmed:
    `do_swap_page` passes the folio of `alloc_swap_folio` to `swapin_folio`). The largest size
    `alloc_swap_folio` would pick is added to the swap cache at its aligned entry and read;
    None if no size fits (the caller falls back to order-0 `swapin_readahead`). The folio
    stays in the swap cache while other references remain, so another process's fault finds
    it and maps it whole. A disk (ssd, rotational) still reads order 0 through
    `swapin_readahead`: the seed-13 corpus on 7.2 shows no large folio read from a disk slot
    that was not already in the swap cache (count 1 or 2, zeromap or not)."""
    folio = _alloc_large_swapin_folio(m, mm, vma, vpn, entry, "swap_cache_alloc_folio")
    if folio is None:
        return None
    start = entry - entry % folio.nr
    swapcache_prepare(m, start, folio.nr)
    add_to_swap_cache(m, folio, start)
    swap_read_folio(m, folio, start)
    if m.tracing: m.log("swap_cache_alloc_folio", f"folio={folio.pfn} order={folio.order} entry={start:#x}")
    return folio


# do_swap_page serves a batch of k faults at once when taking them together equals taking them
# one after another: each fault touches only its own slots, frames, folio and PTEs, and every
# branch below goes the same way for each of them. `swapin_batch` states those conditions.

def swapin_batch(m, mm, vpn: int, reach: int, write: bool) -> tuple[int, int]:
    """(k, nr): how many swap-in faults from vpn (below `reach`, within vpn's page-table page
    and VMA) `do_swap_page` may take together, each bringing in nr pages. (1, 1) unless k > 1.

    Faults i = 0 .. k-1 are at vpn + i*nr. For each: its swap PTEs continue those of fault 0
    (`swap_pte_batch`: entries + 1, the same exclusive bit), and its slots have one reference
    and no cache pin (`swap_map` == 1), so no other PTE or folio can see them and no branch
    that reads them (`swap_cache_get_folio`, the skip-swapcache test, `should_try_to_free_swap`
    through `folio_mapcount`) differs from fault 0's. Its frames are the next free ones from
    `first_free` (the allocator hands them out lowest first), so each fault gets the frames it
    would get alone. Then by device:
    - without SWP_SYNCHRONOUS_IO (ssd, rotational): one order-0 folio through the swap cache
      per fault (`swapin_readahead`, nr = 1). A read fault frees its slot when swap is more
      than half full (`vm_swap_full`): the batch ends before a free would change that answer.
    - zram with large swap-in (v6.12): one fresh folio of the largest mTHP size S per fault
      (nr = S, what `alloc_swap_folio` picks first): every fault's range S-aligned in address,
      swap and frames, inside the VMA, no slot in the zeromap."""
    si = m.swap
    e = mm.ptes.ents[vpn]
    off = swp_offset(pte_to_swp_entry(e, vpn))
    # Cheap refusals first: a shared or cached slot, a neighbour not continuing the run.
    # (7.2 reads every zram swap-in into the swap cache, one fault at a time: never a batch.)
    if si.swap_map[off] != 1 or (si.synchronous and m.config.kernel != "6.12"):
        return 1, 1
    nr = large_swapin_size(m) if si.synchronous and m.config.large_swapin else 1
    if si.synchronous and (nr == 1 or vpn % nr or off % nr):
        return 1, 1
    reach = min(reach, vpn - vpn % PTRS_PER_PTE + PTRS_PER_PTE)
    if mm.ptes.ents[vpn:min(vpn + nr + 1, reach):nr].count(e) < 2 \
            or si.swap_map[off:off + nr + 1:nr].count(1) < 2:
        return 1, 1
    n = swap_pte_batch(mm, vpn, min(reach, mm.find_vma(vpn).end) - vpn, e)
    n = leading(si.swap_map[off:off + n], 1)
    if not si.synchronous and not write and si.vm_swap_full():
        n = min(n, _frees_while_full(si))
    pfn = m.first_free
    if pfn % nr or (si.zeromap and not si.zeromap.isdisjoint(range(off, off + n))):
        return 1, 1
    n = leading(m.frame_order[pfn:min(pfn + n, m.config.frames)], FOLIO_FREE)
    k = n // nr
    return (k, nr) if k > 1 else (1, 1)


def _frees_while_full(si) -> int:
    """How many slots, freed one by one, find `vm_swap_full()` true before their free: the
    j-th (from 0) does while (total - inuse + j) * 2 < total."""
    total = len(si.swap_map) - 1
    return max(0, (2 * si.inuse - total + 1) // 2)


def large_swapin_size(m) -> int:
    """The folio size `alloc_swap_folio` tries first for a suitable, aligned range: the
    largest enabled size below PMD order (1 if none)."""
    return next((nr for nr in m.folio_sizes_desc if 1 < nr < PMD_NR), 1)


def do_swap_page(m, mm, vpn: int, write: bool, k: int = 1) -> None:
    """`do_swap_page()` (mm/memory.c, v6.12): find or read the folio, decide how many PTEs to
    map, then in this order: `arch_swap_restore` (I3, I4), `swap_free_nr`, maybe
    `folio_free_swap`, `set_ptes` (→ mte_sync_tags), and `swapcache_clear` for skip-swapcache.
    On 7.2 a zram swap-in goes through the swap cache too and the anon-exclusive decision
    differs (`_swapin_exclusive`).

    With k > 1, the k independent faults `swapin_batch` found (fault i at vpn + i * nr, on
    the next folio's frames and slots), each step taking all of them at once, as the kernel
    threads nr_pages through its callees; the trace reads as k faults in turn."""
    vma = mm.find_vma(vpn)
    orig = mm.ptes[vpn]
    entry = orig_entry = pte_to_swp_entry(orig, vpn)
    si = m.swap
    need_clear_cache = skipped = False
    if m.tracing:
        _trace_batch_start(m, mm, vpn, entry, write, k)
    if m.sched is not None:      # f2: lockless swap-cache lookup and swap_count read
        sched.point(m, "do_swap_page:swap_cache_get_folio", device=True)
    folio = swap_cache_get_folio(m, entry) if k == 1 else None    # a batch is not cached
    if folio is not None:
        m.count("swap_cache_hits")
        if m.tracing: m.log("swap_cache_get_folio", f"hit folio={folio.pfn} order={folio.order}")
    elif si.synchronous and si.count(swp_offset(entry)) == 1 and m.config.kernel == "6.12":
        # Skip the swap cache (SWP_SYNCHRONOUS_IO and a single reference; 6.12 only: 7.2
        # reads every zram swap-in into the swap cache, swap_cache_alloc_folio below).
        folio = alloc_swap_folio(m, mm, vma, vpn, entry, k)
        if folio is None:
            raise OutOfMemory(f"no free frame for swap-in at pid {mm.pid} vpn {vpn}")
        if folio.nr > 1:
            entry -= entry % folio.nr
        skipped = True
        if REVERT_SKIP_SWAPCACHE_PIN not in m.config.reverts:
            if m.sched is not None:      # f3: under the cluster lock
                sched.point(m, "do_swap_page:swapcache_prepare", device=True)
            if not swapcache_prepare(m, entry, folio.nr * k):
                return _swapcache_busy(m, mm, vpn, orig, folio, entry)   # concurrent only
            need_clear_cache = True
        if m.sched is not None:          # f4: the synchronous read
            sched.point(m, "do_swap_page:swap_read_folio", device=True)
        swap_read_folio(m, folio, entry, k)
    else:
        if m.sched is not None and not _can_pin(m, entry):
            return _swapcache_busy(m, mm, vpn, orig, None, entry)       # concurrent only
        folio = None
        if k == 1 and si.synchronous and m.config.kernel != "6.12":
            folio = swap_cache_alloc_folio(m, mm, vma, vpn, entry)
        if folio is None:
            folio = swapin_readahead(m, entry, k)
        if folio is None:
            raise OutOfMemory(f"no free frame for swap-in at pid {mm.pid} vpn {vpn}")

    if m.sched is not None and not _lock_and_revalidate(m, mm, vpn, orig, folio, skipped):
        if need_clear_cache:             # the kernel's out_nomap / out paths
            swapcache_clear(m, entry, folio.nr * k)
        return

    # page = folio_file_page(folio, swp_offset(entry)); map it alone unless the whole folio fits.
    fpfn, fnr = folio.pfn, folio.nr
    idx = swp_offset(orig_entry) % fnr
    page = m.pages[fpfn + idx]
    start, nr = vpn, 1
    if skipped and fnr > 1:
        start, nr = vpn - idx, fnr          # fresh large folio: map all N (v6.12)
    elif fnr > 1 and folio.swapcache and m.config.map_whole_folio:
        fstart = vpn - idx
        first = mm.ptes[fstart]
        if (vma.start <= fstart and fstart + fnr <= vma.end and is_swap_pte(first)
                and pte_to_swp_entry(first, fstart) == folio.swap
                and swap_pte_batch(mm, fstart, fnr, first) == fnr):
            start, nr = fstart, fnr         # "entirely map large folios found in swapcache"
    if nr > 1:
        entry, page = folio.swap if folio.swapcache else entry, m.pages[fpfn]
    exclusive = _swapin_exclusive(m, orig, folio)

    notes = _no_tag_notes(m, page.pfn, start, nr * k, mm) if m.track_origins else {}
    if REVERT_RESTORE_BEFORE_FREE not in m.config.reverts:
        if m.sched is not None:          # f6: the restore (local work: pinned) and swap_free_nr
            sched.point(m, "do_swap_page:arch_swap_restore", device=True)
        _restore_step(m, entry, folio, page, k, pinned=True)
        _swap_free_steps(m, folio, entry, nr * k, write, k)
    else:
        # Before the fix the restore ran from set_pte_at (mte_sync_tags of the swap PTE it
        # replaced), after swap_free and folio_free_swap had dropped the slots.
        if m.sched is not None:          # f6: the slots' references dropped first
            sched.point(m, "do_swap_page:swap_free_nr", device=True)
        _swap_free_steps(m, folio, entry, nr * k, write, k)
        _restore_step(m, entry, folio, page, k, pinned=need_clear_cache or folio.swapcache)
    if m.sched is not None:              # f6b: the PTEs, still under the PTL
        sched.point(m, "do_swap_page:set_ptes")
    # "exclusive || folio_ref_count(folio) == 1": on 6.12, once out of the swap cache and
    # mapped by nobody else, the folio is ours even if the swap PTE was shared at fork. 7.2
    # frees the swap cache only after set_ptes, so the count still holds the cache's
    # references here and the rule never applies (_swapin_exclusive).
    if m.config.kernel == "6.12":
        exclusive = exclusive or (not folio.swapcache and m.folio_mapcount(folio) == 0)
    writable = exclusive
    first_pfn = page.pfn
    folio_add_anon_rmap_ptes(m, first_pfn, nr, mm.pid, start, exclusive, k)
    if write and writable:
        folio_mark_dirty(m, folio, k)
    m.pending_notes = notes
    if m.tracing:
        m.log_range("set_ptes", "vpn", start, nr * k, lambda s, n: (
            f"pid={mm.pid} vpn={s} nr={n} pfn={first_pfn + s - start} "
            f"writable={int(writable)} exclusive={int(exclusive)}"))
    # The reason is only read by the trace and the tag origins: formatted only for them.
    why = ((lambda pfn: f"do_swap_page entry={entry + (pfn - first_pfn) // nr * nr:#x}")
           if m.tracing or m.track_origins else "do_swap_page")
    set_ptes(m, mm, start, first_pfn, nr * k, vma.vm_mte, writable, why)
    m.pending_notes = {}
    if m.sched is not None:
        _unlock_fault(m, mm, folio, skipped)
    if need_clear_cache:
        if m.sched is not None:          # f7: under the cluster lock, after the PTL
            sched.point(m, "do_swap_page:swapcache_clear", device=True)
        swapcache_clear(m, entry, fnr * k)
    if m.tracing and k > 1:
        m.end_trace_region()
    if write and not writable:
        do_wp_page(m, mm, vpn)


def _restore_step(m, entry: int, folio, page, k: int, pinned: bool) -> None:
    """The design's `arch_swap_restore` under the PTL. `pinned`: nothing another thread does
    can free the slots or their tag buffers before the restore is done (the fault's own
    reference; or, after a reverted 6dca4ac6fc91 dropped it, the skip-swapcache pin, or the
    swap cache holding the folio this fault has locked): the restore reads and writes only
    what this thread holds, local work merged into the step it is in. Otherwise (the
    reverted fix on a slot that `swap_free_nr` / `folio_free_swap` let go) it is a step of
    its own, and `mte_restore_tags` looks the buffers up in it and copies them in the next:
    another thread may reuse the slot, save other tags there or free the buffer in between
    (model/mte.py, docs/concurrency.md §2)."""
    if m.sched is None or pinned:
        m.design.arch_swap_restore(m, entry, folio, page, k)
        return
    sched.point(m, "do_swap_page:arch_swap_restore", device=True)
    sched.restore_unpinned(m, True)
    try:
        m.design.arch_swap_restore(m, entry, folio, page, k)
    finally:
        sched.restore_unpinned(m, False)


def _swap_free_steps(m, folio, entry: int, n: int, write: bool, k: int) -> None:
    """`swap_free_nr` (the slots' counts, under the cluster lock; a slot left at 0 is freed
    with its tags) and `folio_free_swap` when `should_try_to_free_swap` says so, in the step
    the caller's point opened (f6). `folio_free_swap` is a second cluster-lock section, but
    it is not a step of its own: it acts only on a swap-cache folio this fault holds locked,
    which every other path must lock (or trylock) before it changes the folio's swap-cache
    membership, and the only thing another thread can do in between, drop a reference of
    its own to one of the slots (a zap's z1), commutes with `swap_free_nr`'s decrement while
    the cache's SWAP_HAS_CACHE keeps every slot from being freed: the state `folio_free_swap`
    meets is one that running the other thread's step before f6 gives too. Making it a step
    multiplied the interleavings of the large-folio blocks (p6 under split-before-swap: 252
    to 3,432) for no new state (docs/concurrency.md §2)."""
    swap_free_nr(m, entry, n)
    if folio.swapcache and _should_try_to_free_swap(m, folio, write):
        folio_free_swap(m, folio, k)


def _swapin_exclusive(m, orig: int, folio) -> bool:
    """`do_swap_page()`'s "certainly exclusive" test (mm/memory.c), before the refcount rule.
    6.12: the swap PTE's exclusive bit, or a fresh folio that skipped the swap cache
    (SWP_SYNCHRONOUS_IO with one reference: zram). 7.2 (Kairui Song's swap-table series; the
    commit not confirmed) adds that fresh folio to the swap cache too (`swapin_folio`; the
    model reads it through `swap_cache_alloc_folio`), so only a KSM copy (not modelled) is
    fresh and the swap PTE's bit alone decides. So on 7.2 a folio swapped in from swap PTEs
    that `fork` left non-exclusive is mapped non-exclusive even when the process is its only
    user, and a write then makes only the written page exclusive (`do_wp_page` reuse); the
    next swap-out leaves swap PTEs whose exclusive bits differ, which `swap_pte_batch` will
    not take as one large folio (docs/fidelity-examples/swapin-exclusive-7.2.yaml: `pppp` on
    7.2, `Httt` on 6.12). And the folio stays in the swap cache while another process's swap
    PTEs name one of its slots, so a write copies rather than reusing it (fuzz-13-0280)."""
    if m.config.kernel == "6.12":
        return pte_swp_exclusive(orig) or not folio.swapcache
    return pte_swp_exclusive(orig)


# -- do_swap_page between other threads (only with a scheduler: model/sched.py) ---------------
# "mm/swap: fix race when skipping swapcache" (v6.8): the skip-swapcache path pins its slots
# with SWAP_HAS_CACHE (swapcache_prepare) so that no other fault reads them meanwhile.
REVERT_SKIP_SWAPCACHE_PIN = "13ddaf26be32"
# "swap: fix do_swap_page() race with swapoff" (v5.14): the fault holds a get_swap_device
# reference from its start to its end, so swapoff cannot free the device under it.
REVERT_SWAPOFF_REF = "2799e77529c2"
# "mm: call arch_swap_restore() from do_swap_page()" (v6.5): the tags are restored before
# swap_free_nr and folio_free_swap, which may free the slot and its saved tags (zram without
# a cache pin; the swap cache freed on a write fault or when swap is more than half full).
REVERT_RESTORE_BEFORE_FREE = "6dca4ac6fc91"


def _do_swap_page_holding_device(m, mm, vpn: int, write: bool) -> None:
    """`do_swap_page` between other threads: its `get_swap_device` at the start (a fault on
    a dying device backs out: swapoff replaces the PTE) and `put_swap_device` on every way
    out."""
    if REVERT_SWAPOFF_REF in m.config.reverts:
        try:
            do_swap_page(m, mm, vpn, write)
        finally:
            sched.put_folio_refs(m)
        return
    if not sched.get_swap_device(m):
        orig = mm.ptes[vpn]
        sched.wait_until(m, "do_swap_page:refault", lambda: mm.ptes[vpn] != orig)
        return
    try:
        do_swap_page(m, mm, vpn, write)
    finally:
        sched.put_folio_refs(m)
        sched.put_swap_device(m)


def _can_pin(m, entry: int) -> bool:
    """Could `__read_swap_cache_async` pin the slot now? Not when it is free (the entry went
    away since the PTE was read: -ENOENT) or when another fault's skip-swapcache pin holds
    it without a swap-cache folio (-EEXIST)."""
    si, off = m.swap, swp_offset(entry)
    if si.cache.get(off) is not None:
        return True
    return si.count(off) > 0 and not si.swap_map[off] & SWAP_HAS_CACHE


def _swapcache_busy(m, mm, vpn: int, orig: int, folio, entry: int) -> None:
    """`swapcache_prepare` lost (-EEXIST), or the slot is gone: release the folio and leave
    the fault. The kernel sleeps and refaults; here the thread blocks until the pin clears,
    the swap cache holds the slot or the PTE changed, then returns (the access refaults)."""
    if folio is not None:
        folio_put(m, folio)
    si, off = m.swap, swp_offset(entry)
    if not si.swap_map[off]:
        # -ENOENT: the slot was freed since the PTE was read, by a thread that holds the PTL
        # and has not set its PTE yet (swap_free_nr and set_ptes are separate steps). Waiting
        # for a pin to clear would return at once and refault forever; the kernel's back-out
        # takes the PTL (or refaults until the PTE changes), so wait for the PTE to change
        # or the slot to be taken again.
        sched.wait_until(m, "do_swap_page:refault",
                         lambda: si.swap_map[off] or mm.ptes[vpn] != orig)
        return
    sched.wait_until(m, "do_swap_page:refault", lambda: (
        not si.swap_map[off] & SWAP_HAS_CACHE or si.cache.get(off) is not None
        or mm.ptes[vpn] != orig))


def _lock_and_revalidate(m, mm, vpn: int, orig: int, folio, skipped: bool) -> bool:
    """The steps from the folio to the PTL: a swap-cache folio is locked (`folio_lock_or_retry`,
    blocking) and rechecked (still in the swap cache, for this entry); then the PTL is taken
    and the PTE revalidated (`pte_same`; for a fresh large folio every PTE of its range:
    `swap_pte_batch`). False: the fault backs out (folio unlocked and put, locks dropped)."""
    entry = pte_to_swp_entry(orig, vpn)
    if not skipped:
        sched.get_folio_ref(m, folio)       # taken by the lookup, in the same step
        key = sched.folio_lock_key(folio)
        sched.lock(m, "do_swap_page:folio_lock", key)
        head = m.folio_swap[folio.pfn]
        if not folio.swapcache or not head <= entry < head + folio.nr:
            sched.unlock(m, key)
            folio_put(m, folio)
            return False
    sched.lock(m, "do_swap_page:pte_same", sched.ptl(mm))
    same = mm.ptes[vpn] == orig
    if same and skipped and folio.nr > 1:
        idx = swp_offset(entry) % folio.nr
        first = mm.ptes[vpn - idx]
        same = is_swap_pte(first) and swap_pte_batch(mm, vpn - idx, folio.nr, first) == folio.nr
    if not same:
        _unlock_fault(m, mm, folio, skipped)
        folio_put(m, folio)
        return False
    return True


def _unlock_fault(m, mm, folio, skipped: bool) -> None:
    """Drop the PTL and, for a swap-cache folio, the folio lock."""
    sched.unlock(m, sched.ptl(mm))
    if not skipped:
        sched.unlock(m, sched.folio_lock_key(folio))


def _trace_batch_start(m, mm, vpn: int, entry: int, write: bool, k: int) -> None:
    """The `do_swap_page` line of each fault; for a batch, open the region that orders the
    batch's records by fault (model/trace.py)."""
    nr = 1
    if k > 1:
        nr = large_swapin_size(m) if m.swap.synchronous else 1
        m.begin_trace_region(FaultBatch(vpn, m.first_free, swp_offset(entry), nr, k))
    for i in range(k):
        m.log("do_swap_page", f"pid={mm.pid} vpn={vpn + i * nr} entry={entry + i * nr:#x} "
              f"{'write' if write else 'read'}", ("vpn", vpn + i * nr))


def _should_try_to_free_swap(m, folio, write: bool) -> bool:
    """`should_try_to_free_swap()`: when swap is more than half full, on 7.2 always on a
    synchronous device (zram), or on a write fault when nothing else maps the folio
    (refcount == 1 + nr). On 7.2 the write-fault case never holds
    for a large folio: seen on the kernel, not read in its source (HALF_UNMAPPED_WRITE in
    tests/test_kernel_versions.py: on the fault that drops a half-unmapped swap-cache folio's
    last slot reference, 6.12 frees the swap cache here and maps the page writable, 7.2
    copies the page; fuzz-13-0285, -0289). Likely because the swap table (7.x) keeps one
    swap-cache reference per folio rather than one per page, so the refcount no longer
    matches: not confirmed."""
    if m.swap.vm_swap_full():
        return True
    if m.config.kernel != "6.12" and m.swap.synchronous:
        # 7.x always tries on a SWP_SYNCHRONOUS_IO device ("mm, swap: always try to free swap
        # cache for SWP_SYNCHRONOUS_IO devices", swap table phase II): every zram swap-in goes
        # through the swap cache now, and a folio no swap PTE names any more leaves it at once
        # (folio_free_swap checks that), so a later swap-out takes new slots.
        return True
    return write and m.folio_mapcount(folio) == 0 and (folio.nr == 1 or m.config.kernel == "6.12")


def _no_tag_notes(m, pfn: int, start: int, nr: int, mm) -> dict[int, tuple[str, str]]:
    """Diagnostic only: for pages about to be mapped (frame pfn + i at start + i) whose slot
    has no saved tags, remember why, so that a later tag-check fault can say where the zero
    tags came from."""
    notes = {}
    for i in range(nr):
        e = mm.ptes[start + i]
        if is_swap_pte(e) and pte_to_swp_entry(e, start + i) not in m.mte_pages:
            off = swp_offset(pte_to_swp_entry(e, start + i))
            notes[pfn + i] = (NO_SAVED_TAGS, f"slot {off:#x} had no saved tags")
    return notes


# -- unmapping -------------------------------------------------------------------------------

def zap_pte_range(m, mm, start: int, end: int) -> None:
    """`zap_pte_range()` (madvise_dontneed_free, munmap, exit): present PTEs are unmapped
    (the folio freed when nothing else holds it); runs of swap PTEs with contiguous entries go
    to `free_swap_and_cache_nr` in one batch (`zap_nonpresent_ptes`, v6.10+). Between other
    threads the PTL is held from the first PTE to the end (one PTL per mm), and the steps of
    `free_swap_and_cache_nr` run under it."""
    if m.sched is not None:
        sched.lock(m, "zap_pte_range:pte_offset_map_lock", sched.ptl(mm))
    vpn = start
    while vpn < end:
        e = mm.ptes[vpn]
        if not e:                                   # pte_none
            vpn += 1
        elif pte_present(e):
            del mm.ptes[vpn]
            pfn = pte_pfn(e, vpn)
            if pfn != ZERO_PFN:
                folio = m.pages[pfn].folio
                folio_remove_rmap_pte(m, pfn, mm.pid, vpn)
                free_swap_cache(m, folio)
                folio_put(m, folio)
            vpn += 1
        else:
            # zap_pte_range works one page-table page at a time: a batch ends at its end.
            limit = min(end, vpn - vpn % PTRS_PER_PTE + PTRS_PER_PTE) - vpn
            nr = max(swap_pte_batch(mm, vpn, limit, e), 1)
            for v in range(vpn, vpn + nr):
                del mm.ptes[v]
            free_swap_and_cache_nr(m, pte_to_swp_entry(e, vpn), nr)
            vpn += nr
    sched.unlock(m, sched.ptl(mm))
    if m.tracing: m.log("zap_pte_range", f"pid={mm.pid} vpn={start}-{end - 1}")


def free_swap_cache(m, folio) -> None:
    """`free_swap_cache()` (mm/swap_state.c), from the mmu_gather flush after a zap
    (`free_pages_and_swap_cache`): a swap-cache folio that nothing maps any more leaves the
    swap cache if none of its slots is referenced."""
    if folio.swapcache and m.folio_mapcount(folio) == 0:
        folio_free_swap(m, folio)

