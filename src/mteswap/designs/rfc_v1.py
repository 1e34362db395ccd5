"""`rfc-v1`: Barry Song's first RFC (2023-11-02/03, inline in Ryan Roberts' "Swap-out
small-sized THP" thread).

What was proposed: drop `arch_thp_swp_supported()` so large folios swap out whole;
`arch_prepare_to_swap(page)` loops over the folio's pages but returns the result of the first
`mte_save_tags` call, so only page 0 is ever saved; `arch_swap_restore(entry, folio)` loops over
every page but passes the same `entry` each time. Ryan's review: saving stops after the first
page, errors are not rolled back, and restore "sets every page in the folio to use the same
tags as the first page".

For: minimal change. Against: pages 1..nr-1 lose their tags on every whole-folio swap-out;
hidden while refaults hit a resident swap-cache folio (its pages are still tagged, so restore
is a no-op). Choice made here: the entry passed is the one the caller has (the faulting
entry, or the folio's first entry when v6.11+ maps the whole folio).
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, each_fault
from mteswap.model.mte import mte_restore_tags, mte_save_tags


class RfcV1(PerPageHooks):
    name = "rfc-v1"
    summary = "RFC v1 (2023-11): saves only page 0, restores every page from one entry"

    def arch_prepare_to_swap(self, m, folio) -> int:
        # "for (i = 0; i < nr; i++) return mte_save_tags(page_i)": returns after page 0.
        return mte_save_tags(m, m.pages[folio.pfn], folio.swap)

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            m.count("restore_calls")
            if m.tracing: m.log("arch_swap_restore", f"entry={e:#x} folio={f.pfn} nr={f.nr} (same entry for every page)", ("pfn", f.pfn))
            for p in m.folio_pages(f):
                mte_restore_tags(m, e, p)
