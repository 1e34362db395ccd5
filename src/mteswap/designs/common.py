"""Pieces several designs share: the merged kernel's per-page helpers built on mteswap.c."""

from __future__ import annotations

from mteswap.model import tags as T
from mteswap.model.mte import (mte_invalidate_tags, mte_invalidate_tags_area, mte_restore_tags,
                               mte_restore_tags_run, mte_save_tags, mte_save_tags_run,
                               mte_load_saved_tags, mte_sync_tags)
from mteswap.model.state import UNTRACKED_ORIGIN
from mteswap.model.swapinfo import SWP_TYPE_SHIFT, swp_offset


def folio_swap(entry: int, folio) -> int:
    """`folio_swap()` (mm/internal.h): the folio's first entry from any entry inside it,
    relying on natural alignment of a large folio's slots (invariant I10)."""
    return entry - (entry % folio.nr)


class PerPageHooks:
    """Hooks that stay per page and per slot in every design since v5.10."""

    def thp_swap_supported(self, m) -> bool:
        return True

    def swap_invalidate_page(self, m, type_: int, offset: int) -> None:
        mte_invalidate_tags(m, type_ << SWP_TYPE_SHIFT | offset)    # swp_entry(type_, offset)
    # Tells the machine this hook is mte_invalidate_tags and nothing else, so that
    # swap_range_free may invalidate a run of slots at once (mte.mte_invalidate_tags_run).
    swap_invalidate_page.mte_invalidate_tags = True

    def swap_invalidate_area(self, m, type_: int) -> None:
        mte_invalidate_tags_area(m, type_)

    def mte_flag_page(self, m, page):
        return page
    # Tells the machine the flags are per page, so `mte_flags` skips this call (a hot path).
    mte_flag_page.per_page = True

    def sync_tags(self, m, pages: list, why: str) -> None:
        mte_sync_tags(m, pages, why)
    # Tells the machine this hook is mte_sync_tags, page by page: a run of order-0 swap-ins
    # may then sync all their pages in one call (swapin_run.py).
    sync_tags.per_page = True

    def split_page_mte_flags(self, m, head, page) -> tuple[bool, bool]:
        # Each new folio's PG_arch_2/PG_arch_3 are cleared and then copied from the head
        # page (mm/huge_memory.c, semantics §3.10; seen on 6.12 and 7.2, §11).
        return head.mte_tagged, head.mte_lock


def restore_pages(m, entry: int, pfn: int, nr: int) -> None:
    """`mte_restore_tags(entry + i, page pfn + i)` for i < nr: in one pass when nothing can
    differ from the per-page calls (mte.mte_restore_tags_run), else page by page."""
    if not mte_restore_tags_run(m, entry, pfn, nr):
        for i in range(nr):
            mte_restore_tags(m, entry + i, m.pages[pfn + i])


def restore_folios_run(m, entry: int, pfn: int, nr: int, k: int) -> None:
    """What `swap_restore` does for k fresh folios of nr pages, folio i at pfn + i * nr read
    for entries entry + i * nr .., one fault after another, in designs whose hook for such a
    folio is one `arch_swap_restore` call restoring every page from the folio's first entry
    (`merged`; marked `swap_restore.folio_run = restore_folios_run`)."""
    m.counters["restore_calls"] += k
    restore_pages(m, entry, pfn, nr * k)


def restore_order0_run(m, entry: int, pfn: int, nr: int) -> None:
    """The same for nr fresh order-0 folios, in designs whose hook for an order-0 folio is one
    `arch_swap_restore` call running `mte_restore_tags(entry, page)`. Such a design marks its
    hook with it (`swap_restore.order0_run = restore_order0_run`); a subclass overriding
    swap_restore loses the mark, so its own hook is called on every fault."""
    restore_folios_run(m, entry, pfn, 1, nr)


def save_folio_tags(m, folio) -> int:
    """`arch_prepare_to_swap()` of the merged code (arch/arm64/mm/mteswap.c): save every
    page of the folio; on failure erase what this call saved and return the error."""
    if mte_save_tags_run(m, folio.pfn, folio.swap, folio.nr):
        return 0                             # the loop below, in one pass (cannot fail)
    for i, page in enumerate(m.folio_pages(folio)):
        err = mte_save_tags(m, page, folio.swap + i)
        if err:
            for j in range(i - 1, -1, -1):   # roll back pages i-1 .. 0
                mte_invalidate_tags(m, folio.swap + j)
            return err
    return 0


def write_saved_tags(m, entry: int, page) -> bool:
    """For designs whose restore ignores PG_mte_lock: copy the buffer saved for `entry` into
    the page's tags, whatever the page held. Returns False when nothing is saved there."""
    m.count("restore_page_iterations")
    buf = mte_load_saved_tags(m, entry)
    if buf is None:
        return False
    if not m.swap.swap_map[swp_offset(entry)]:      # an unpinned read: for the UAF check
        m.tag_reads.append((entry, 0))
    page.tags = buf
    page.tags_init = True        # the oracle's I1 ghost (model/state.py TAGS_INIT)
    page.origin = (("restored by mte_restore_tags from slot", m.step, swp_offset(entry),
                    m.saved_origin.get(entry)) if m.track_origins else UNTRACKED_ORIGIN)
    m.count("tag_restores")
    if m.tracing: m.log("mte_restore_tags", f"entry={entry:#x} -> pfn={page.pfn} tags={T.describe(buf)} (overwrite)")
    return True
