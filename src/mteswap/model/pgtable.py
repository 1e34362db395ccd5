"""Installing and clearing PTEs: `set_ptes()` (arch/arm64/include/asm/pgtable.h) with its MTE
side effect, and the PTE helpers the rest of the model uses."""

from __future__ import annotations

from mteswap.model.state import PTE_PRESENT, PTE_SWAP, ZERO_PFN


def set_ptes(m, mm, vpn: int, pfns: list[int], tagged: bool, writable: bool, why: str) -> None:
    """`set_ptes(mm, addr, ptep, pte, nr)`: install len(pfns) present PTEs from vpn on. arm64's
    `__sync_cache_and_tags()` calls `mte_sync_tags()` first when the PTE is tagged
    (MT_NORMAL_TAGGED, i.e. VM_MTE), user-accessible and not special (the zero page is)."""
    if tagged:
        pages = [m.pages[p] for p in pfns if p != ZERO_PFN]
        if pages:
            m.design.sync_tags(m, pages, why)
    for i, pfn in enumerate(pfns):
        mm.ptes[vpn + i] = (PTE_PRESENT, pfn, tagged, writable and pfn != ZERO_PFN)


def pte_present(pte) -> bool:
    return pte is not None and pte[0] == PTE_PRESENT


def pte_swap(pte) -> bool:
    return pte is not None and pte[0] == PTE_SWAP


def mk_swap_pte(entry: int, exclusive: bool) -> tuple:
    """`swp_entry_to_pte()` (+ `pte_swp_mkexclusive()`)."""
    return (PTE_SWAP, entry, exclusive)
