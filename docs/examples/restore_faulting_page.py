"""`restore-faulting-page`: the merged design, except that a fault on a large folio found in the
swap cache restores the tags of the faulting page only.

The idea (a kernel developer's reply to Barry Song's "16 x 16" concern): a large folio that is
still in the swap cache never left RAM, so its pages kept their tags and PG_mte_tagged and
`arch_swap_restore()` walking all nr pages on each of the nr faults only finds pages it must
skip. So when `do_swap_page()` / `unuse_pte()` get the folio from the swap cache, restore just
the page that the PTE maps (`mte_restore_tags(entry, page)`, which itself skips a page that is
already tagged); a folio that was just read from the device (not in the swap cache, v6.12's
large swap-in on zram) still gets the whole-folio restore, because all its PTEs are mapped at
once and none of its pages has tags yet.

Load it with:
    mteswap compare --designs merged,docs/examples/restore_faulting_page.py:RestoreFaultingPage
"""

from mteswap.designs.merged import Merged
from mteswap.model.mte import mte_restore_tags


class RestoreFaultingPage(Merged):
    name = "restore-faulting-page"
    summary = "merged, but a fault on a swap-cache folio restores only the faulting page"

    def arch_swap_restore(self, m, entry: int, folio, page=None, k: int = 1) -> None:
        if not folio.swapcache or folio.nr == 1:
            # Fresh from the device, or small folios: merged's folio-wide restore (a batch of
            # k such faults included).
            return super().arch_swap_restore(m, entry, folio, page, k)
        # A swap-cache folio is met one fault at a time (k == 1). `entry` is the faulting
        # PTE's swap entry and `page` the page of `folio` it maps (when do_swap_page maps the
        # whole folio, the folio's first entry and head page).
        m.count("restore_calls")
        m.log("arch_swap_restore", f"entry={entry:#x} pfn={page.pfn} (swap-cache folio: this page only)")
        mte_restore_tags(m, entry, page)
