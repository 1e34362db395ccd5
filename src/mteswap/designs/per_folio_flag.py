"""`per-folio-flag`: Ryan Roberts' proposal (2023-11-20): PG_mte_tagged on the head page only.

What was proposed: make `arch_swap_restore()` take a folio, restore the tags of *all* its
pages, and "repurpose [PG_mte_tagged] to be per-folio (so head page only)", exiting early when
the folio flag is already set; the existing MTE code already serialises tag initialisation.
Matthew Wilcox was removing per-page flags at the time. Ryan withdrew it a week later
(2023-11-27): MTE can be enabled on individual pages with mprotect, and tags of individual
pages can be thrown away (partial MADV_DONTNEED), so "we have to continue to handle tags
per-page".

For: no per-page flags, one check per folio. Against: a folio flag can only be right if the
first tagging of any page initialises every page of the folio, which costs a tag clear of every
page and saves/restores of pages that never used MTE (12 x 128 bytes extra per swap-out in S2).
Choices made here, following the v6.13 hugetlb precedent (the one place Linux did adopt a
folio flag): `mte_sync_tags` clears the tags of every page of the folio on its first tagging;
`arch_swap_restore` of an untagged folio writes the saved tags of each page and zeroes the
others, then sets the folio flag; `copy_highpage` and the swap-out path read the folio flag; a
split gives each new folio the old head's flag (as `__split_folio_to_order` does).
"""

from __future__ import annotations

from mteswap.designs.common import (PerPageHooks, each_fault, folio_swap, save_folio_tags,
                                    write_saved_tags)
from mteswap.model.mte import (mte_clear_page_tags, set_page_mte_tagged, set_ptes_reason,
                               sync_zeroed, try_page_mte_tagging)
from mteswap.model.origin import RESTORE_ZEROED, TagOrigin


class PerFolioFlag(PerPageHooks):
    name = "per-folio-flag"
    summary = "Ryan Roberts' head-page-only PG_mte_tagged (hugetlb-style whole-folio init)"

    def mte_flag_page(self, m, page):
        folio = page.folio
        return page if folio is None else m.pages[folio.pfn]

    def sync_tags(self, m, pages: list, why: str) -> None:
        done = set()
        for page in pages:
            folio = page.folio
            if folio.pfn in done:
                continue
            done.add(folio.pfn)
            if try_page_mte_tagging(m, page):
                for p in m.folio_pages(folio):
                    mte_clear_page_tags(p, sync_zeroed(m, set_ptes_reason(why, folio.pfn), None,
                                                       "the whole folio on its first tagging"))
                set_page_mte_tagged(m, page)
                if m.tracing: m.log("mte_sync_tags", f"folio={folio.pfn} nr={folio.nr}: every page zeroed, folio tagged ({set_ptes_reason(why, folio.pfn)})", ("pfn", folio.pfn))

    def arch_prepare_to_swap(self, m, folio) -> int:
        return save_folio_tags(m, folio)

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            self._restore_folio(m, folio_swap(e, f), f)

    def _restore_folio(self, m, first: int, folio) -> None:
        m.count("restore_calls")
        head = m.pages[folio.pfn]
        if not try_page_mte_tagging(m, head):
            if m.tracing: m.log("arch_swap_restore", f"entry={first:#x} folio={folio.pfn}: folio already tagged", ("pfn", folio.pfn))
            return
        if m.tracing: m.log("arch_swap_restore", f"entry={first:#x} folio={folio.pfn} nr={folio.nr}", ("pfn", folio.pfn))
        for i, p in enumerate(m.folio_pages(folio)):
            if not write_saved_tags(m, first + i, p):
                mte_clear_page_tags(p, TagOrigin(RESTORE_ZEROED, m.step, "arch_swap_restore",
                                                 note="no saved tags"))
        set_page_mte_tagged(m, head)
