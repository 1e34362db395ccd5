"""Installing PTEs: `set_ptes()` (arch/arm64/include/asm/pgtable.h) with its MTE side effect.
The PTE encoding and accessors are in model/pte.py."""

from __future__ import annotations

from array import array

from mteswap.model.pte import mk_pte
from mteswap.model.state import ZERO_PFN, PageRange


def set_ptes(m, mm, vpn: int, pfn: int, nr: int, tagged: bool, writable: bool, why: str) -> None:
    """`set_ptes(mm, addr, ptep, pte, nr)`: install nr present PTEs from vpn on, mapping pfn,
    pfn + 1, ... (nr is 1 for the zero page). arm64's `__sync_cache_and_tags()` calls
    `mte_sync_tags()` first when the PTE is tagged (MT_NORMAL_TAGGED, i.e. VM_MTE),
    user-accessible and not special (the zero page is)."""
    if tagged and pfn != ZERO_PFN:
        m.design.sync_tags(m, PageRange(m, pfn, nr), why)
    e = mk_pte(pfn, tagged, writable and pfn != ZERO_PFN, vpn)
    if nr == 1:
        mm.ptes.ents[vpn] = e
    else:   # page i at vpn + i: one repeated int (pte.py encoding)
        mm.ptes.ents[vpn:vpn + nr] = array("q", [e]) * nr
    mm.ptes.written.update(range(vpn, vpn + nr))    # for the oracle's scoped checks

