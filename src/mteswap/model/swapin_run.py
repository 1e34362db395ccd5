"""Runs of swap-in faults taken in one pass: what `do_swap_page()` (mm/memory.c, v6.12) does
for a program touching swapped-out memory one page after another, when each fault is
independent of the others.

A fault here touches only its own slots, frames, folio and PTEs: its slots have one reference
and no cache pin, its frames are the next free ones, the design's restore and `set_ptes`
hooks work page by page (marked so, designs/common.py), and nothing is traced or tracked
(`mte._runs_allowed`). Then taking the faults of a run one after another, each as
`do_swap_page` would, leaves the same frames, slots, PTEs, flags, folios and counters as the
per-fault path, and that is what these functions do, in one pass over the arrays
(tests/test_model_ops.py compares them with one fault at a time). `uaccess.user_span` takes
a run before the span's accesses: each fault touching only its own memory, the accesses see
the same data and tags.

- `do_swap_page_run`: a device without SWP_SYNCHRONOUS_IO (ssd, rotational): one order-0
  folio per page through the swap cache (`swapin_readahead`).
- `do_swap_page_large_run`: zram (SWP_SYNCHRONOUS_IO) with large swap-in (v6.12): one fresh
  folio of the largest mTHP size per fault, read around the swap cache (`swapcache_prepare`
  .. `swapcache_clear`).
"""

from __future__ import annotations

from array import array

from mteswap.model.memory import PMD_NR, swap_pte_batch
from mteswap.model.mte import _runs_allowed
from mteswap.model.page_alloc import advance_first_free
from mteswap.model.pgtable import set_ptes
from mteswap.model.pte import pte_swp_exclusive, pte_to_swp_entry
from mteswap.model.state import (FOLIO_DIRTY, FOLIO_FREE, FOLIO_SWAPCACHE, SET_ANON_EXCLUSIVE,
                                  rmap_key)
from mteswap.model.swap_state import read_slots
from mteswap.model.swapfile import _clear_and_free
from mteswap.model.swapinfo import SWAP_HAS_CACHE, swp_offset
from mteswap.ranges import leading


def _frees_while_full(si) -> int:
    """How many slots, freed one by one, find `vm_swap_full()` true before their free: the
    j-th (from 0) does while (total - inuse + j) * 2 < total."""
    total = len(si.swap_map) - 1
    return max(0, (2 * si.inuse - total + 1) // 2)


def _independent_pages(m, mm, vpn: int, end: int, e: int) -> int:
    """Pages from vpn (below end and the VMA's end) whose swap PTEs continue e, the swap PTE
    at vpn (`swap_pte_batch`), and whose slots have one reference and no cache pin."""
    n = swap_pte_batch(mm, vpn, min(end, mm.find_vma(vpn).end) - vpn, e)
    off = swp_offset(pte_to_swp_entry(e, vpn))
    return leading(m.swap.swap_map[off:off + n], 1)


# -- order-0, through the swap cache (ssd, rotational) ----------------------------------------

def swapin_run_length(m, mm, vpn: int, end: int, write: bool) -> int:
    """How many pages from vpn (below end) `do_swap_page_run` can fault in: 0 unless at least
    two independent pages with as many consecutive free frames at `first_free`."""
    si = m.swap
    e = mm.ptes.ents[vpn]
    off = swp_offset(pte_to_swp_entry(e, vpn))
    # Cheap refusals first (a shared slot, a neighbour not continuing the run): the scan
    # below reads up to a page-table page, and most faults of a forked workload refuse.
    if si.swap_map[off] != 1 or si.synchronous or m.swap_restore_order0 is None \
            or not m.sync_per_page or not _runs_allowed(m):
        return 0
    if mm.ptes.ents[vpn:min(vpn + 2, end)].count(e) < 2 or si.swap_map[off:off + 2].count(1) < 2:
        return 0
    n = _independent_pages(m, mm, vpn, end, e)
    if not write and si.vm_swap_full():
        # Every fault frees its slot (`should_try_to_free_swap`) while swap stays more than
        # half full: the run ends where a free would find it no longer full, so that each
        # page of the run takes the same branch.
        n = min(n, _frees_while_full(si))
    pfn = m.first_free
    n = leading(m.frame_order[pfn:min(pfn + n, m.config.frames)], FOLIO_FREE)
    return n if n > 1 else 0


def do_swap_page_run(m, mm, vpn: int, n: int, write: bool) -> None:
    """`do_swap_page()` for the pages vpn .. vpn + n - 1 in turn (n from `swapin_run_length`),
    as order-0 swap-ins: `swapin_readahead` of each entry into a fresh folio at the next free
    frame, `arch_swap_restore` (the design's run of them), `swap_free_nr`, `folio_free_swap`
    when `should_try_to_free_swap` says so (a write fault: nothing else maps the fresh folio;
    or swap more than half full), rmap, `set_ptes`."""
    si, c, vma = m.swap, m.counters, mm.find_vma(vpn)
    free = write or si.vm_swap_full()
    e = mm.ptes.ents[vpn]
    entry, exclusive = pte_to_swp_entry(e, vpn), pte_swp_exclusive(e)
    off, pfn = swp_offset(entry), m.first_free
    c["faults"] += n
    # swapin_readahead → __read_swap_cache_async, per entry: alloc_folio(order 0),
    # swapcache_prepare, add_to_swap_cache, swap_read_folio.
    m.frame_order[pfn:pfn + n] = bytes(n)               # n order-0 folios
    m.folio_flags[pfn:pfn + n] = bytes([FOLIO_SWAPCACHE]) * n
    m.folio_swap[pfn:pfn + n] = array("q", range(entry, entry + n))
    m.folios.n += n
    advance_first_free(m)
    si.swap_map[off:off + n] = array("q", [1 | SWAP_HAS_CACHE]) * n
    si.cache.add_order0_run(off, pfn, n)
    m.frame_data[pfn:pfn + n] = read_slots(si, off, n)
    c["swap_ins"] += n
    c["pswpin"] += n
    m.swap_restore_order0(m, entry, pfn, n)
    si.swap_map[off:off + n] = array("q", [SWAP_HAS_CACHE]) * n   # swap_free_nr: count 0
    if free:
        si.cache.clear_range(off, n)                   # folio_free_swap → delete_from_swap_cache
        m.folio_flags[pfn:pfn + n] = bytes([FOLIO_DIRTY]) * n
        m.folio_swap[pfn:pfn + n] = array("q", bytes(8 * n))
        _clear_and_free(m, off, n, SWAP_HAS_CACHE, 0)  # put_swap_folio: the slots are free
        exclusive = True                               # out of the swap cache, unmapped
    # folio_add_anon_rmap_ptes of one page each
    m.folio_mapcounts[pfn:pfn + n] = m.folio_nr_mapped[pfn:pfn + n] = array("i", [1]) * n
    _map_run(m, mm, vma, vpn, pfn, n, exclusive)


def _map_run(m, mm, vma, vpn: int, pfn: int, n: int, exclusive: bool) -> None:
    """The rmap, PG_anon_exclusive and `set_ptes` (→ `sync_tags`) of n pages from pfn at vpn,
    writable if exclusive (the folios' mapcounts already counted)."""
    m.frame_rmap[pfn:pfn + n] = array("q", [rmap_key(mm.pid, vpn) - pfn]) * n
    if exclusive:
        m.frame_flags[pfn:pfn + n] = m.frame_flags[pfn:pfn + n].translate(SET_ANON_EXCLUSIVE)
    set_ptes(m, mm, vpn, pfn, n, vma.vm_mte, exclusive, "do_swap_page")


# -- large folios, around the swap cache (zram, v6.12) ---------------------------------------

def large_swapin_size(m) -> int:
    """The folio size `alloc_swap_folio` tries first for a suitable, aligned range: the
    largest enabled size below PMD order (0 if none)."""
    return next((nr for nr in m.folio_sizes_desc if 1 < nr < PMD_NR), 0)


def large_swapin_run_length(m, mm, vpn: int, end: int, write: bool) -> int:
    """How many pages from vpn (below end) `do_swap_page_large_run` can fault in: 0 unless
    at least two whole folios of size S (`large_swapin_size`), each S-aligned in the address
    space and in swap, every slot independent and none in the zeromap, with as many
    S-aligned free frames at `first_free`. Each fault then allocates S pages
    (`alloc_swap_folio`: its `can_swapin_thp` holds) and maps all of them."""
    si, size = m.swap, large_swapin_size(m)
    if not (si.synchronous and m.config.large_swapin and size and vpn % size == 0
            and m.swap_restore_folios is not None and m.sync_per_page and _runs_allowed(m)):
        return 0
    e = mm.ptes.ents[vpn]
    off = swp_offset(pte_to_swp_entry(e, vpn))
    if off % size or mm.ptes.ents[vpn:min(vpn + size + 1, end):size].count(e) < 2 \
            or si.swap_map[off] != 1:
        return 0        # cheap refusals first (misaligned, a next folio not continuing)
    n = _independent_pages(m, mm, vpn, end, e)
    if si.zeromap and not si.zeromap.isdisjoint(range(off, off + n)):
        return 0
    pfn = m.first_free
    if pfn % size:
        return 0
    n = leading(m.frame_order[pfn:min(pfn + n, m.config.frames)], FOLIO_FREE)
    n -= n % size                                       # whole folios only
    return n if n >= 2 * size else 0


def do_swap_page_large_run(m, mm, vpn: int, n: int, write: bool) -> None:
    """`do_swap_page()` for n // S faults at vpn, vpn + S, ... (n from
    `large_swapin_run_length`), each on zram with one reference: `alloc_swap_folio` of S pages
    at the next free frames, `swapcache_prepare`, `swap_read_folio`, `arch_swap_restore` (the
    design's run of them), `swap_free_nr`, rmap, `set_ptes` of all S (a fresh folio is
    exclusive), `swapcache_clear` (the slots are free)."""
    si, c, vma = m.swap, m.counters, mm.find_vma(vpn)
    size = large_swapin_size(m)
    k = n // size
    entry = pte_to_swp_entry(mm.ptes.ents[vpn], vpn)
    off, pfn = swp_offset(entry), m.first_free
    c["faults"] += k
    m.frame_order[pfn:pfn + n] = bytes([size.bit_length() - 1]) * n   # k folios of S
    heads = slice(pfn, pfn + n, size)
    m.folio_flags[heads] = bytes([FOLIO_DIRTY if write else 0]) * k   # dirty on a write
    m.folio_swap[heads] = array("q", bytes(8 * k))
    m.folio_mapcounts[heads] = m.folio_nr_mapped[heads] = array("i", [size]) * k
    m.folios.n += k
    advance_first_free(m)
    si.swap_map[off:off + n] = array("q", [1 | SWAP_HAS_CACHE]) * n   # swapcache_prepare
    m.frame_data[pfn:pfn + n] = read_slots(si, off, n)
    c["swap_ins"] += k
    c["pswpin"] += n
    c["large_swap_ins"] += k
    m.swap_restore_folios(m, entry, pfn, size, k)
    si.swap_map[off:off + n] = array("q", [SWAP_HAS_CACHE]) * n   # swap_free_nr: count 0
    _map_run(m, mm, vma, vpn, pfn, n, True)
    _clear_and_free(m, off, n, SWAP_HAS_CACHE, 0)      # swapcache_clear: the slots are free
