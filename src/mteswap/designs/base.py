"""The arch-hook interface every design implements.

The generic kernel (mteswap.model) calls these at the places Linux calls the arm64 hooks;
a design is the arm64 side of that contract. A design is a class with these members; all
take the machine `m` first, as kernel code reaches global state.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Design(Protocol):
    name: str       # short name used on the command line
    summary: str    # one line for `mteswap designs`

    def thp_swap_supported(self, m) -> bool:
        """`arch_thp_swp_supported()` (include/linux/huge_mm.h): may a large folio get
        contiguous swap slots and be swapped out whole? False makes reclaim split it first."""

    def prepare_to_swap(self, m, folio) -> int:
        """`arch_prepare_to_swap(folio)`, called by `swap_writepage()` (mm/page_io.c) with the
        folio locked, in the swap cache, slots folio.swap .. folio.swap+nr-1. 0 or -ENOMEM."""

    def swap_restore(self, m, entry: int, folio, page) -> None:
        """The `arch_swap_restore` call site of `do_swap_page()` (mm/memory.c) and `unuse_pte()`
        (mm/swapfile.c): `entry` is the swap entry of the faulting PTE and `page` the page of
        `folio` it maps (`folio_file_page`). The design chooses what the hook sees, e.g. the
        merged code passes `folio_swap(entry, folio)` and the whole folio."""

    def swap_invalidate_page(self, m, type_: int, offset: int) -> None:
        """`arch_swap_invalidate_page()`, from `swap_range_free()` (mm/swapfile.c) for every
        slot whose swap_map byte went to 0."""

    def swap_invalidate_area(self, m, type_: int) -> None:
        """`arch_swap_invalidate_area()`, from `swapoff()` (mm/swapfile.c)."""

    def split_page_mte_flags(self, m, head, page) -> tuple[bool, bool]:
        """(PG_mte_tagged, PG_mte_lock) that `page` has after its large folio is split, by
        `__split_folio_to_order` / `__split_huge_page_tail` (mm/huge_memory.c)."""

    def mte_flag_page(self, m, page):
        """The page whose PG_mte_tagged/PG_mte_lock describe `page` (asm/mte.h helpers):
        the page itself with per-page flags."""

    def sync_tags(self, m, pages: list, why: str) -> None:
        """What `set_ptes()` → `__sync_cache_and_tags()` does for a tagged PTE mapping
        `pages`: `mte_sync_tags()` (arch/arm64/kernel/mte.c) in the kernel."""
