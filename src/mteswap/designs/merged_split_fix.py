"""`merged-split-fix`: `merged` plus a folio split that keeps each page's own PG_mte_tagged and
PG_mte_lock instead of copying the head page's.

What it is: the kernel change section 11 of kernel-semantics.md points to. Real 6.12 and 7.2
kernels lose tags (untagged head, tagged tails: remapping zeroes the tails' tags) or expose an
earlier owner's tags (tagged head, never-tagged tails) when a mixed-tagged folio is split, by
`MADV_PAGEOUT` over a partly mprotect'ed folio, by reclaim of a partly unmapped one, by a swap
slot shortage, or by `split_huge_pages`. In `__split_folio_to_order` (mm/huge_memory.c) the arch
flags PG_arch_2/PG_arch_3 would be carried per page rather than taken from the head.

For: mixed-tagged folios only arise through partial mprotect(PROT_MTE) (S2), and the per-page
flags already say the truth; the fix is local to the split. Against: it touches generic mm code
for an arm64 flag (the arch would need a hook or the flags would leave the "copied from head"
mask), and nothing else changes: a split remains a split.
"""

from __future__ import annotations

from mteswap.designs.merged import Merged


class MergedSplitFix(Merged):
    name = "merged-split-fix"
    summary = "merged, and a folio split keeps each page's own PG_mte_tagged/PG_mte_lock"

    def split_page_mte_flags(self, m, head, page) -> tuple[bool, bool]:
        return page.mte_tagged, page.mte_lock
