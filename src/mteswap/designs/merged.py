"""`merged`: the design Linux took in v6.10 (Barry Song, "arm64: mm: swap: support THP_SWAP on
hardware with MTE"), with v6.11's whole-folio mapping around it.

What was proposed: `arch_prepare_to_swap(folio)` saves every tagged page of the folio and rolls
back everything it saved if one allocation fails; `arch_swap_restore(entry, folio)` takes the
*first* entry of the folio and restores every page that has a saved buffer and is not yet
initialised; callers compute that entry with `folio_swap(entry, folio)` (Ryan Roberts asked
that the callee not guess the position of the entry inside the folio). Per-page PG_mte_tagged
stays, so partial MADV_DONTNEED and partial mprotect(PROT_MTE) keep working.

For: whole-folio restore is the only hook that stays correct once do_swap_page maps a freshly
read large folio at once (v6.12); every slot it reads is pinned (I5). Against: while a fault
maps one page (v6.10), refaulting a large swap-cache folio costs nr x nr iterations, mostly
early exits (Barry's 16 x 16); a folio split still copies the head's flags (S5).
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, folio_swap, log_restore_calls, save_folio_tags
from mteswap.model.mte import mte_restore_tags


class Merged(PerPageHooks):
    name = "merged"
    summary = "the design Linux merged in v6.10: folio-wide save and restore, per-page flags"

    def arch_prepare_to_swap(self, m, folio) -> int:
        return save_folio_tags(m, folio)

    def arch_swap_restore(self, m, entry: int, folio, page=None, k: int = 1) -> None:
        """`arch_swap_restore(folio_swap(entry, folio), folio)` (arch/arm64/mm/mteswap.c): one
        `mte_restore_tags` per page, entry + i. The k folios of a batch lie one after another
        in frames and slots, so their pages are restored as one range."""
        first = folio_swap(entry, folio)
        log_restore_calls(m, first, folio, k,
                          lambda e, pfn: f"entry={e:#x} folio={pfn} nr={folio.nr}")
        mte_restore_tags(m, first, m.pages[folio.pfn], folio.nr * k)
