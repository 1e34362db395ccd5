"""`split-before-swap` (V0): arm64 before the series, v6.0 to v6.9.

What it was: Barry Song's "arm64: enable THP_SWAP for arm64" (v6.0) made
`arch_thp_swp_supported()` return false whenever MTE is present, so no large folio ever gets
contiguous swap slots: reclaim splits every large folio and swaps its pages one by one. The
hooks stay one page wide: `arch_prepare_to_swap(page)` saves one page and
`arch_swap_restore(entry, folio)` restores `&folio->page` from the faulting entry.

For: every slot belongs to one small folio, so save and restore are exact per page, and the
discussion's S1, S3 and S4 cannot go wrong. Against: MTE systems lose THP swap-out (Ryan
Roberts measured 64 KiB swap-out 13.6 % slower than 4 KiB before his series) and the split,
which copies the head page's PG_mte_tagged to every tail (§3.10), loses tags or exposes stale
ones in a mixed-tagged folio (S5) on every swap-out. Choice made here: the pre-v6.10 caller
passed the faulting entry and the hook restored the folio's first page; combined with v6.12
large swap-in (which V0 never met) that restores only one page of a large folio.
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, each_fault, save_folio_tags
from mteswap.model.mte import mte_restore_tags


class SplitBeforeSwap(PerPageHooks):
    name = "split-before-swap"
    summary = "V0, v6.0-v6.9: no THP swap with MTE, large folios split before swap-out"

    def arch_thp_swp_supported(self, m) -> bool:
        return False    # arch_thp_swp_supported() = !system_supports_mte()

    def arch_prepare_to_swap(self, m, folio) -> int:
        # Only order-0 folios reach here; saving "every page" is saving the one page.
        return save_folio_tags(m, folio)

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            m.count("restore_calls")
            if m.tracing: m.log("arch_swap_restore", f"entry={e:#x} folio={f.pfn} (first page only)", ("pfn", f.pfn))
            mte_restore_tags(m, e, m.pages[f.pfn])
