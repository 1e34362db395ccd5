"""Reverse mapping (mm/rmap.c): which PTEs map each page; mapcounts; anon exclusivity."""

from __future__ import annotations

from mteswap.model.state import ZERO_PFN


def folio_add_anon_rmap_pte(m, pfn: int, pid: int, vpn: int, exclusive: bool) -> None:
    """`folio_add_anon_rmap_ptes()` / `folio_add_new_anon_rmap()`: one more PTE maps the page;
    RMAP_EXCLUSIVE sets PG_anon_exclusive."""
    if pfn == ZERO_PFN:
        return
    page = m.pages[pfn]
    page.rmap.append((pid, vpn))
    folio = page.folio
    folio.mapcount += 1
    if len(page.rmap) == 1:
        folio.nr_mapped += 1
    if exclusive:
        page.anon_exclusive = True


def folio_remove_rmap_pte(m, pfn: int, pid: int, vpn: int) -> None:
    """`folio_remove_rmap_pte()`: one PTE no longer maps the page. A large folio left partly
    mapped is queued for deferred split (`deferred_split_folio(folio, true)`), unless it is in
    the swap cache, which `deferred_split_folio` excludes. The deferred split itself is not run:
    on 6.12 and 7.2 it was never seen to (semantics §11)."""
    if pfn == ZERO_PFN:
        return
    page = m.pages[pfn]
    folio = page.folio
    _unmap_page(page, folio, pid, vpn)
    if folio.nr > 1 and not folio.swapcache and not folio.partially_mapped:
        if folio.mapcount and folio.nr_mapped < folio.nr:
            folio.partially_mapped = True


def _unmap_page(page, folio, pid: int, vpn: int) -> None:
    """Drop one (pid, vpn) from the page's rmap and the folio's mapcounts."""
    page.rmap.remove((pid, vpn))
    folio.mapcount -= 1
    if not page.rmap:
        page.anon_exclusive = False
        folio.nr_mapped -= 1


def folio_rmap_walk(m, folio) -> list[tuple[int, int, int]]:
    """`rmap_walk_anon()`: every (pid, vpn, pfn) mapping a page of the folio, in process then
    address order (the anon_vma interval tree order is not modelled)."""
    found = [(pid, vpn, page.pfn) for page in m.folio_pages(folio) for pid, vpn in page.rmap]
    return sorted(found)
