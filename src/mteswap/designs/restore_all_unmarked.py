"""`restore-all-unmarked`: restore every page of the folio on every fault, with no marker.

What was proposed: David Hildenbrand's first suggestion (2023-11-16): keep the folio-typed
hooks, pass the entry of the folio's first page (computable from any entry since slots are
contiguous) and "restore all tags at once", without the per-folio "already restored" marker he
added later, and without consulting PG_mte_tagged.

For: simple interface, no sub-page bookkeeping. Against (Barry Song, 2023-11-17): do_swap_page
maps one page per fault, so a 64 KiB folio costs 16 restores x 16 faults; and a restore that
rewrites pages already live in memory overwrites tags the program changed after the first
refault (S3), since nothing says "already restored". Choice made here: every page with a
saved buffer gets it written and PG_mte_tagged set, whether or not it was already tagged;
pages without a buffer are left as they are.
"""

from __future__ import annotations

from mteswap.designs.common import (PerPageHooks, each_fault, folio_swap, save_folio_tags,
                                    write_saved_tags)
from mteswap.model.mte import mte_flags, set_page_mte_tagged


class RestoreAllUnmarked(PerPageHooks):
    name = "restore-all-unmarked"
    summary = "restore every page of the folio on every fault, no marker (the 16 x 16 concern)"

    def arch_prepare_to_swap(self, m, folio) -> int:
        return save_folio_tags(m, folio)

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            self._restore_folio(m, folio_swap(e, f), f)

    @staticmethod
    def _restore_folio(m, first: int, folio) -> None:
        m.count("restore_calls")
        if m.tracing: m.log("arch_swap_restore", f"entry={first:#x} folio={folio.pfn} nr={folio.nr} (unconditional)", ("pfn", folio.pfn))
        for i, p in enumerate(m.folio_pages(folio)):
            if write_saved_tags(m, first + i, p):
                mte_flags(m, p).mte_lock = True
                set_page_mte_tagged(m, p)
