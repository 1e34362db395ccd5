"""Reverse mapping (mm/rmap.c): which PTEs map each page; mapcounts; anon exclusivity."""

from __future__ import annotations

from array import array

from mteswap.model.state import (FOLIO_PARTIALLY_MAPPED, FOLIO_SWAPCACHE, NO_RMAP,
                                  PG_ANON_EXCLUSIVE, RMAP_VPN_BITS, SET_ANON_EXCLUSIVE, ZERO_PFN,
                                  rmap_key)


def folio_add_anon_rmap_pte(m, pfn: int, pid: int, vpn: int, exclusive: bool) -> None:
    """`folio_add_anon_rmap_ptes()` / `folio_add_new_anon_rmap()`: one more PTE maps the page;
    RMAP_EXCLUSIVE sets PG_anon_exclusive."""
    if pfn == ZERO_PFN:
        return
    head = pfn & -(1 << m.frame_order[pfn])              # the folio (state.py)
    m.folio_mapcounts[head] += 1
    key = rmap_key(pid, vpn)
    if m.frame_rmap[pfn] == NO_RMAP:
        m.frame_rmap[pfn] = key - pfn
        m.folio_nr_mapped[head] += 1
    else:
        m.rmap_extra.setdefault(pfn, []).append(key)
    if exclusive:
        m.frame_flags[pfn] |= PG_ANON_EXCLUSIVE


def folio_add_anon_rmap_ptes(m, pfn: int, nr: int, pid: int, vpn: int, exclusive: bool,
                             k: int = 1) -> None:
    """`folio_add_anon_rmap_ptes(folio, page, nr, ...)`: nr consecutive pages from pfn are now
    mapped at vpn, vpn + 1, ... (one call per batch of PTEs, as do_swap_page makes). k > 1:
    the calls of a batch of faults, on k folios of nr pages one after another, none mapped yet
    (fresh folios, `swapin_batch`)."""
    if nr == 1 and k == 1:
        folio_add_anon_rmap_pte(m, pfn, pid, vpn, exclusive)
        return
    head = pfn & -(1 << m.frame_order[pfn])              # the folio (state.py)
    frame_rmap, flags, nr_mapped = m.frame_rmap, m.frame_flags, m.folio_nr_mapped
    key = rmap_key(pid, vpn)
    n = nr * k
    if frame_rmap[pfn:pfn + n].count(NO_RMAP) == n:       # none mapped yet: one pass
        frame_rmap[pfn:pfn + n] = array("q", [key - pfn]) * n    # key + i at pfn + i
        if k == 1:
            m.folio_mapcounts[head] += nr
            nr_mapped[head] += nr
        else:                                             # fresh folios: counts were 0
            heads = slice(head, head + n, nr)
            m.folio_mapcounts[heads] = nr_mapped[heads] = array("i", [nr]) * k
        if exclusive:
            flags[pfn:pfn + n] = flags[pfn:pfn + n].translate(SET_ANON_EXCLUSIVE)
        return
    m.folio_mapcounts[head] += nr
    for p in range(pfn, pfn + nr):
        if frame_rmap[p] == NO_RMAP:
            frame_rmap[p] = key - p
            nr_mapped[head] += 1
        else:
            m.rmap_extra.setdefault(p, []).append(key)
        if exclusive:
            flags[p] |= PG_ANON_EXCLUSIVE
        key += 1


def folio_add_new_anon_rmap(m, folio, pid: int, vpn: int) -> None:
    """`folio_add_new_anon_rmap()`: a folio just allocated for a fault is mapped whole at vpn
    and exclusively (RMAP_EXCLUSIVE on every page)."""
    pfn, nr = folio.pfn, folio.nr
    if nr == 1:
        folio_add_anon_rmap_pte(m, pfn, pid, vpn, exclusive=True)
        return
    # A new folio maps nothing yet (the kernel's own precondition): no rmap to look at.
    m.frame_rmap[pfn:pfn + nr] = array("q", [rmap_key(pid, vpn) - pfn]) * nr
    m.frame_flags[pfn:pfn + nr] = m.frame_flags[pfn:pfn + nr].translate(SET_ANON_EXCLUSIVE)
    m.folio_mapcounts[pfn] += nr
    m.folio_nr_mapped[pfn] += nr


def folio_remove_rmap_pte(m, pfn: int, pid: int, vpn: int) -> None:
    """`folio_remove_rmap_pte()`: one PTE no longer maps the page. A large folio left partly
    mapped is queued for deferred split (`deferred_split_folio(folio, true)`), unless it is in
    the swap cache, which `deferred_split_folio` excludes. The queue is split by the shrinker,
    `deferred_split_scan` (huge_memory.py), when a scenario drops caches; reclaim and
    MADV_PAGEOUT split such a folio themselves when they reach it."""
    if pfn == ZERO_PFN:
        return
    nr = 1 << m.frame_order[pfn]
    head = pfn & -nr                                     # the folio (state.py)
    unmap_page(m, pfn, head, pid, vpn)
    flags = m.folio_flags
    if nr > 1 and not flags[head] & (FOLIO_SWAPCACHE | FOLIO_PARTIALLY_MAPPED):
        if m.folio_mapcounts[head] and m.folio_nr_mapped[head] < nr:
            flags[head] |= FOLIO_PARTIALLY_MAPPED


def rmap_drop(m, pfn: int, pid: int, vpn: int) -> bool:
    """Remove (pid, vpn) from the frame's rmap; True if the frame is now mapped by nobody.
    ValueError if (pid, vpn) did not map it (a model bug, as list.remove would say)."""
    key = rmap_key(pid, vpn)
    extra = m.rmap_extra.get(pfn)
    if m.frame_rmap[pfn] + pfn == key:
        if extra:
            m.frame_rmap[pfn] = extra.pop(0) - pfn
            if not extra:
                del m.rmap_extra[pfn]
            return False
        m.frame_rmap[pfn] = NO_RMAP
        return True
    if not extra or key not in extra:
        raise ValueError(f"pfn {pfn} is not mapped at pid {pid} vpn {vpn}")
    extra.remove(key)
    if not extra:
        del m.rmap_extra[pfn]
    return False


def unmap_page(m, pfn: int, head: int, pid: int, vpn: int) -> None:
    """Drop one (pid, vpn) from the page's rmap and the mapcounts of its folio (head pfn)."""
    m.folio_mapcounts[head] -= 1
    if rmap_drop(m, pfn, pid, vpn):
        m.frame_flags[pfn] &= ~PG_ANON_EXCLUSIVE
        m.folio_nr_mapped[head] -= 1


def folio_rmap_walk(m, folio) -> list[tuple[int, int, int]]:
    """`rmap_walk_anon()`: every (pid, vpn, pfn) mapping a page of the folio, in process then
    address order (the anon_vma interval tree order is not modelled)."""
    found = []
    frame_rmap, extra = m.frame_rmap, m.rmap_extra
    for pfn in range(folio.pfn, folio.pfn + folio.nr):
        key = frame_rmap[pfn]
        if key == NO_RMAP:
            continue
        key += pfn
        found.append((key, pfn))
        for k in extra.get(pfn, ()):
            found.append((k, pfn))
    found.sort()
    mask = (1 << RMAP_VPN_BITS) - 1
    return [(key >> RMAP_VPN_BITS, key & mask, pfn) for key, pfn in found]


def folio_maybe_mapped_shared(m, folio) -> bool:
    """`folio_maybe_mapped_shared()` (include/linux/mm.h, 7.2; "mm/rmap: basic MM owner
    tracking for large folios", v6.15, which replaced 6.12's `folio_likely_mapped_shared`
    guess from the first page): more than one mapping, and the folio's MM-id tracking marks
    it shared, that is another process maps some page of it. The kernel keeps two MM ids
    and the shared mark while a third process maps it; the model asks the rmap (exact with
    at most two processes)."""
    if m.folio_mapcount(folio) <= 1:
        return False
    return len({pid for pid, _, _ in folio_rmap_walk(m, folio)}) > 1
