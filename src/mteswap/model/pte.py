"""Page-table entries: the one place that knows how a PTE is stored (`PageTable.ents`, one
int per vpn) and the accessors everything else reads and builds PTEs with, named after the
kernel's (arch/arm64/include/asm/pgtable.h, include/linux/swapops.h, include/linux/pgtable.h).

Encoding. 0 is pte_none; the low two bits give the kind. The pfn or swap entry is stored
relative to the PTE's own vpn, so that the PTEs of a folio mapped in order (page i at vpn + i,
entry + i) are one repeated int: `set_ptes` writes a run at once, and a batch is checked
with one `count` or `ranges.leading` (Python's >> floors, so negative values decode too).

    present: (pfn - vpn + 1) << 4 | writable << 3 | tagged << 2 | PTE_PRESENT
             (the zero page, pfn -1 = ZERO_PFN, is (0 - vpn) << 4 | ...)
    swap:    (entry - vpn) << 3 | exclusive << 2 | PTE_SWAP

`tagged` is the MT_NORMAL_TAGGED memory attribute a VM_MTE mapping gets; `exclusive` the swap
PTE's SWP_EXCLUSIVE bit. Every PTE accessor takes the int and, where the value is relative,
the vpn it sits at. The span helpers at the end decode a slice of PTEs in one loop, for the
paths that walk a page-table page at a time.
"""

from __future__ import annotations

from mteswap.model.state import ZERO_PFN

_KIND = 3            # low two bits: none (0), present, swap
_PRESENT = 1
_SWAP = 2
_TAGGED = 4          # present: MT_NORMAL_TAGGED attribute (VM_MTE)
_WRITE = 8           # present: writable
_SWP_EXCLUSIVE = 4   # swap: SWP_EXCLUSIVE
_PFN_SHIFT = 4
_SWP_SHIFT = 3


# -- kinds ------------------------------------------------------------------------------------

def pte_none(e: int) -> bool:
    """`pte_none()`: nothing is mapped and nothing is swapped out here."""
    return e == 0


def pte_present(e: int) -> bool:
    """`pte_present()`: the PTE maps a frame (the shared zero page included)."""
    return e & _KIND == _PRESENT


def is_swap_pte(e: int) -> bool:
    """`is_swap_pte()` (swapops.h): not none and not present; in the model always a swap
    entry (no migration or device entries survive a step)."""
    return e & _KIND == _SWAP


# -- present PTEs ----------------------------------------------------------------------------

def mk_pte(pfn: int, tagged: bool, writable: bool, vpn: int) -> int:
    """`mk_pte()` with the VMA's protection: the present PTE at vpn mapping pfn, tagged
    (MT_NORMAL_TAGGED) and writable as given (what `set_ptes` writes)."""
    return (pfn - vpn + 1) << _PFN_SHIFT | (_WRITE if writable else 0) \
        | (_TAGGED if tagged else 0) | _PRESENT


def pte_pfn(e: int, vpn: int) -> int:
    """`pte_pfn()` of a present PTE at vpn (ZERO_PFN, -1, for the zero page)."""
    return (e >> _PFN_SHIFT) - 1 + vpn


def vm_normal_pfn(e: int, vpn: int) -> int | None:
    """`vm_normal_page()` (mm/memory.c) by frame number: the pfn a PTE at vpn maps if it is
    present and not the shared zero page (a special mapping); else None."""
    if e & _KIND != _PRESENT:
        return None
    pfn = (e >> _PFN_SHIFT) - 1 + vpn
    return None if pfn == ZERO_PFN else pfn


def pte_write(e: int) -> bool:
    """`pte_write()`: a store through this present PTE does not fault."""
    return bool(e & _WRITE)


def pte_tagged(e: int) -> bool:
    """`pte_tagged()` (arm64): the mapping has the MT_NORMAL_TAGGED attribute, so accesses
    through it are tag-checked and `set_ptes` syncs the page's tags."""
    return bool(e & _TAGGED)


def pte_access_permitted(e: int, write: bool) -> bool:
    """`pte_access_permitted()` (arm64): the MMU lets the access through without an
    exception: a present PTE, writable for a store."""
    return e & _KIND == _PRESENT and (not write or e & _WRITE != 0)


def pte_wrprotect(e: int) -> int:
    """`pte_wrprotect()`: the same present PTE, read-only (fork's `copy_present_pte`)."""
    return e & ~_WRITE


def pte_mkwrite(e: int) -> int:
    """`pte_mkwrite()`: the same present PTE, writable (`wp_page_reuse`)."""
    return e | _WRITE


# -- swap PTEs -------------------------------------------------------------------------------

def swp_entry_to_pte(entry: int, exclusive: bool, vpn: int) -> int:
    """`swp_entry_to_pte()` (+ `pte_swp_mkexclusive()` if exclusive): the swap PTE at vpn
    for a swap entry (`swapinfo.swp_entry`)."""
    return (entry - vpn) << _SWP_SHIFT | (_SWP_EXCLUSIVE if exclusive else 0) | _SWAP


def pte_to_swp_entry(e: int, vpn: int) -> int:
    """`pte_to_swp_entry()` (swapops.h) of a swap PTE at vpn."""
    return (e >> _SWP_SHIFT) + vpn


def pte_swp_exclusive(e: int) -> bool:
    """`pte_swp_exclusive()`: the page was PG_anon_exclusive when it was unmapped, so the
    swap-in may map it writable."""
    return bool(e & _SWP_EXCLUSIVE)


def pte_swp_clear_exclusive(e: int) -> int:
    """`pte_swp_clear_exclusive()`: the same swap PTE, shared (fork's `copy_nonpresent_pte`)."""
    return e & ~_SWP_EXCLUSIVE


# -- spans (model only): a slice of PTEs decoded in one loop -----------------------------------

def nr_access_permitted(ents, write: bool) -> int:
    """How many PTEs at the start of `ents` pass `pte_access_permitted` (the pages the CPU
    reaches before the next exception)."""
    need = _WRITE | _KIND if write else _KIND
    want = _WRITE | _PRESENT if write else _PRESENT
    n = 0
    for e in ents:
        if e & need != want:
            break
        n += 1
    return n


def ptes_pfns(ents, vpn: int) -> list[int]:
    """`pte_pfn` of each present PTE of `ents`, the first at vpn."""
    return [(e >> _PFN_SHIFT) - 1 + v for v, e in enumerate(ents, vpn)]


def ptes_tagged(ents) -> list[bool]:
    """`pte_tagged` of each PTE of `ents`."""
    return [e & _TAGGED != 0 for e in ents]


def tagged_normal_pfns(ents) -> list[tuple[int, int]]:
    """(vpn, pfn) of each PTE of a page table's `ents` (indexed by vpn) that is present,
    tagged and not the zero page, in vpn order (one comprehension for a whole table)."""
    return [(vpn, pfn) for vpn, e in enumerate(ents)
            if e & (_KIND | _TAGGED) == _PRESENT | _TAGGED
            and (pfn := (e >> _PFN_SHIFT) - 1 + vpn) != ZERO_PFN]


def swap_entries(ents) -> list[int]:
    """The swap entry of each swap PTE of a page table's `ents` (indexed by vpn), in vpn
    order: one comprehension for a whole table (the oracle's I7 reads every PTE of every
    process after every step)."""
    return [(e >> _SWP_SHIFT) + vpn for vpn, e in enumerate(ents) if e & _KIND == _SWAP]
