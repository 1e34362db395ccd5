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

from mteswap.designs.common import (PerPageHooks, folio_swap, restore_folios_run,
                                    restore_order0_run, restore_pages, save_folio_tags)


class Merged(PerPageHooks):
    name = "merged"
    summary = "the design Linux merged in v6.10: folio-wide save and restore, per-page flags"

    def prepare_to_swap(self, m, folio) -> int:
        return save_folio_tags(m, folio)

    def swap_restore(self, m, entry: int, folio, page) -> None:
        self.arch_swap_restore(m, folio_swap(entry, folio), folio)
    # For an order-0 folio: one call, mte_restore_tags of its page; for a fresh large folio:
    # one call, every page from the first entry (common.py).
    swap_restore.order0_run = restore_order0_run
    swap_restore.folio_run = restore_folios_run

    def arch_swap_restore(self, m, first_entry: int, folio) -> None:
        """`arch_swap_restore()` (arch/arm64/mm/mteswap.c): one restore per page, entry + i."""
        m.count("restore_calls")
        if m.tracing: m.log("arch_swap_restore", f"entry={first_entry:#x} folio={folio.pfn} nr={folio.nr}")
        restore_pages(m, first_entry, folio.pfn, folio.nr)
