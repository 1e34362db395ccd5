"""`rfc-v3`: Barry Song's RFC v3 (2023-11-14) and [PATCH] (2023-12-08).

What was proposed: `arch_prepare_to_swap(folio)` as merged (rollback fixed: `while (i--)`);
`arch_swap_restore(swp_entry_t entry, struct page *page)`: one page, the exact entry, with
`do_swap_page`, `unuse_pte` and shmem passing the page they map. Justification: swap-in works
per base page, a large swap-cache folio can be partly unmapped (some sub-pages' tags freed),
and mprotect can enable MTE on part of a folio, so whole-folio restore means O(nr) loops with
early exits per fault. Ryan Roberts preferred it (2023-11-27); Matthew Wilcox "strongly
disagree[d] with changing the interface ... from folio to page".

For: exact, cheap (one iteration per fault). Against: once do_swap_page maps nr pages of a
freshly read large folio in one set_ptes (v6.12), a hook called for the faulting page only
leaves nr-1 pages unrestored and mte_sync_tags zeroes them (S3'). Barry anticipated needing a
second, folio-wide helper for that case; none is modelled here. Choice made here: the page
passed is the one the caller maps first (the folio's first page when the whole folio is
mapped), with its own entry.
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, each_fault, save_folio_tags
from mteswap.model.mte import mte_restore_tags


class RfcV3(PerPageHooks):
    name = "rfc-v3"
    summary = "RFC v3 (2023-11/12): folio save with rollback, restore(entry, page) of one page"

    def arch_prepare_to_swap(self, m, folio) -> int:
        return save_folio_tags(m, folio)

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, _, p in each_fault(m, entry, folio, page, k):
            m.count("restore_calls")
            if m.tracing: m.log("arch_swap_restore", f"entry={e:#x} page={p.pfn}", ("pfn", p.pfn))
            mte_restore_tags(m, e, p)
