"""The arch-hook interface every design implements.

The generic kernel (mteswap.model) calls these at the places Linux calls the arm64 hooks, under
the names arm64 gives them (arch/arm64/include/asm/pgtable.h, arch/arm64/mm/mteswap.c,
include/linux/huge_mm.h); a design is the arm64 side of that contract. A design is a class with
these members; all take the machine `m` first, as kernel code reaches global state. Every hook a
design defines is called: the model never skips or replaces one. Designs written against the
interface before these names (`prepare_to_swap`, `swap_restore`, ...) are adapted when loaded
(designs/legacy.py, docs/designs.md).

Where the model serves several independent faults at once (`do_swap_page` with a batch of k,
model/memory.py), `arch_swap_restore` is given the whole batch: it must do what k calls, one
per fault in turn, would do. The model-only hooks (`arch_swap_invalidate_range`,
`split_page_mte_flags`, `mte_flag_page`, `sync_tags`) stand for arm64 code that generic mm
calls without a hook of its own.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Design(Protocol):
    name: str       # short name used on the command line
    summary: str    # one line for `mteswap designs`

    def arch_thp_swp_supported(self, m) -> bool:
        """`arch_thp_swp_supported()` (include/linux/huge_mm.h): may a large folio get
        contiguous swap slots and be swapped out whole? False makes reclaim split it first."""

    def arch_prepare_to_swap(self, m, folio) -> int:
        """`arch_prepare_to_swap(folio)`, called by `swap_writepage()` (mm/page_io.c) with the
        folio locked, in the swap cache, slots folio.swap .. folio.swap+nr-1. 0 or -ENOMEM."""

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        """The `arch_swap_restore` call of `do_swap_page()` (mm/memory.c) and `unuse_pte()`
        (mm/swapfile.c), for k independent faults. Fault i (i < k) has the swap entry
        entry + i * folio.nr of its faulting PTE, the folio of folio.nr pages at
        folio.pfn + i * folio.nr, and the page of that folio it maps first, page.pfn +
        i * folio.nr (`folio_file_page`). The design chooses what the kernel hook sees, e.g. the
        merged code passes `folio_swap(entry, folio)` and the whole folio. k is 1 except where
        do_swap_page proved the faults independent (designs/common.py `each_fault`)."""

    def arch_swap_invalidate_page(self, m, type_: int, offset: int) -> None:
        """`arch_swap_invalidate_page()`, from `swap_range_free()` (mm/swapfile.c) for every
        slot whose swap_map byte went to 0."""

    def arch_swap_invalidate_range(self, m, type_: int, offset: int, nr: int) -> None:
        """Model-only: `arch_swap_invalidate_page` of each of nr slots from offset, in order,
        as `swap_range_free` calls it for a run of slots (designs/common.py loops)."""

    def arch_swap_invalidate_area(self, m, type_: int) -> None:
        """`arch_swap_invalidate_area()`, from `swapoff()` (mm/swapfile.c)."""

    def split_page_mte_flags(self, m, head, page) -> tuple[bool, bool]:
        """(PG_mte_tagged, PG_mte_lock) that `page` has after its large folio is split, by
        `__split_folio_to_order` / `__split_huge_page_tail` (mm/huge_memory.c)."""

    def mte_flag_page(self, m, page):
        """The page whose PG_mte_tagged/PG_mte_lock describe `page` (asm/mte.h helpers):
        the page itself with per-page flags (`model.mte.page_itself`)."""

    def sync_tags(self, m, pages, why: str) -> None:
        """What `set_ptes()` → `__sync_cache_and_tags()` does for tagged PTEs mapping
        `pages`: `mte_sync_tags()` (arch/arm64/kernel/mte.c) in the kernel."""
