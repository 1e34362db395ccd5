"""`rfc-v2`: Barry Song's RFC v2 (2023-11-04).

What was proposed: `arch_prepare_to_swap(folio)` saves every page, with the rollback loop
written `while (--i) invalidate(page i)`; `arch_swap_restore(entry, folio)` keeps the folio
type but restores one page, `folio_file_page(folio, swp_offset(entry))`, from the exact entry,
on the grounds that a large folio can only be met as a swap-cache hit. Barry: "everybody in the
discussion hated it" (a folio-typed hook silently working on one sub-page).

For: per-page save and restore, exact entries: S1, S2, S3 are right. Against: the rollback is
off by one, it never erases page 0's buffer, and if page 0 itself fails it walks out of bounds
(i = -1, -2, ...); and once a fresh large folio is swapped in whole (v6.12, S3'), only the
faulting page is restored, so set_ptes zeroes the other pages' tags. Choice made here: the
out-of-bounds walk is modelled as its first iteration, erasing the buffer of the entry just
before the folio (`folio->swap - 1`); the real loop runs on through memory.
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, each_fault
from mteswap.model.mte import mte_invalidate_tags, mte_restore_tags, mte_save_tags


class RfcV2(PerPageHooks):
    name = "rfc-v2"
    summary = "RFC v2 (2023-11): per-page save with an off-by-one rollback, one-page restore"

    def arch_prepare_to_swap(self, m, folio) -> int:
        for i, page in enumerate(m.folio_pages(folio)):
            err = mte_save_tags(m, page, folio.swap + i)
            if err:
                self._rollback(m, folio, i)
                return err
        return 0

    @staticmethod
    def _rollback(m, folio, i: int) -> None:
        """`while (--i) __mte_invalidate_tags(folio_page(folio, i))`."""
        i -= 1
        if i < 0:
            if m.tracing: m.log("arch_prepare_to_swap", "rollback walks out of bounds (page -1)")
            mte_invalidate_tags(m, folio.swap - 1)
            return
        while i > 0:
            mte_invalidate_tags(m, folio.swap + i)
            i -= 1

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            m.count("restore_calls")
            target = m.pages[f.pfn + e % f.nr]                 # folio_file_page(folio, offset)
            if m.tracing: m.log("arch_swap_restore", f"entry={e:#x} folio={f.pfn} -> pfn={target.pfn} only", ("pfn", f.pfn))
            mte_restore_tags(m, e, target)
