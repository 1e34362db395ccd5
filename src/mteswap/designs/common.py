"""Pieces several designs share: the merged kernel's per-page helpers built on mteswap.c."""

from __future__ import annotations

from mteswap.designs.legacy import LegacyNames
from mteswap.model import tags as T
from mteswap.model.mte import (ENOMEM, copy_after_lookup, mte_invalidate_tags,
                               mte_invalidate_tags_area, mte_load_saved_tags,
                               save_tags_upto, mte_sync_tags, note_tag_reads,
                               page_itself, restored)
from mteswap.model.origin import UNTRACKED_ORIGIN
from mteswap.model.state import Folio
from mteswap.model.swapinfo import SWP_TYPE_SHIFT


def folio_swap(entry: int, folio) -> int:
    """`folio_swap()` (mm/internal.h): the folio's first entry from any entry inside it,
    relying on natural alignment of a large folio's slots (invariant I10)."""
    return entry - (entry % folio.nr)


def each_fault(m, entry: int, folio, page, k: int):
    """The k faults of an `arch_swap_restore` batch, one after another: (entry, folio, page)
    of fault i, as the hook would be called for it alone (base.py)."""
    nr = folio.nr
    for i in range(k):
        yield entry + i * nr, Folio(m, folio.pfn + i * nr, nr), m.pages[page.pfn + i * nr]


class PerPageHooks(LegacyNames):
    """Hooks that stay per page and per slot in every design since v5.10."""

    def arch_thp_swp_supported(self, m) -> bool:
        return True

    def arch_swap_invalidate_page(self, m, type_: int, offset: int) -> None:
        mte_invalidate_tags(m, type_ << SWP_TYPE_SHIFT | offset)    # swp_entry(type_, offset)

    def arch_swap_invalidate_range(self, m, type_: int, offset: int, nr: int) -> None:
        if type(self).arch_swap_invalidate_page is PerPageHooks.arch_swap_invalidate_page:
            # The per-slot hook is mteswap.c's: its range form is mte_invalidate_tags of nr.
            mte_invalidate_tags(m, type_ << SWP_TYPE_SHIFT | offset, nr)
            return
        for off in range(offset, offset + nr):       # an override: called for every slot
            self.arch_swap_invalidate_page(m, type_, off)

    def arch_swap_invalidate_area(self, m, type_: int) -> None:
        mte_invalidate_tags_area(m, type_)

    mte_flag_page = page_itself                     # per-page flags (model/mte.py)

    def sync_tags(self, m, pages, why: str) -> None:
        mte_sync_tags(m, pages, why)

    def split_page_mte_flags(self, m, head, page) -> tuple[bool, bool]:
        # Each new folio's PG_arch_2/PG_arch_3 are cleared and then copied from the head
        # page (mm/huge_memory.c, semantics §3.10; seen on 6.12 and 7.2, §11).
        return head.mte_tagged, head.mte_lock


def save_folio_tags(m, folio) -> int:
    """`arch_prepare_to_swap()` of the merged code (arch/arm64/mm/mteswap.c): save every
    page of the folio; on failure erase what this call saved (pages before the failing one,
    last first) and return the error."""
    failed = save_tags_upto(m, m.pages[folio.pfn], folio.swap, folio.nr)
    if failed == folio.nr:
        return 0
    for j in range(failed - 1, -1, -1):             # roll back pages failed-1 .. 0
        mte_invalidate_tags(m, folio.swap + j)
    return ENOMEM


def log_restore_calls(m, entry: int, folio, k: int, text) -> None:
    """Count k `arch_swap_restore` calls and trace one line per fault, `text(entry_i, pfn_i)`."""
    m.counters["restore_calls"] += k
    if m.tracing:
        nr = folio.nr
        for i in range(k):
            m.log("arch_swap_restore", text(entry + i * nr, folio.pfn + i * nr),
                  ("pfn", folio.pfn + i * nr))


def write_saved_tags(m, entry: int, page) -> bool:
    """For designs whose restore ignores PG_mte_lock: copy the buffer saved for `entry` into
    the page's tags, whatever the page held. Returns False when nothing is saved there."""
    m.count("restore_page_iterations")
    buf = mte_load_saved_tags(m, entry)
    if buf is None:
        return False
    gen = m.saved_tgen.slots[entry]          # the write-generation ghost, read with the buffer
    if m.sched is not None:                                      # lookup, then copy
        copy_after_lookup(m, entry, m.mte_pages.slots[entry:entry + 1])
    note_tag_reads(m, entry, [buf])
    page.tags = buf
    page.tags_init = True        # the oracle's I1 ghost (model/state.py TAGS_INIT)
    page.tag_gen = gen
    page.origin = restored(m, entry) if m.track_origins else UNTRACKED_ORIGIN
    m.count("tag_restores")
    if m.tracing: m.log("mte_restore_tags", f"entry={entry:#x} -> pfn={page.pfn} tags={T.describe(buf)} (overwrite)", ("pfn", page.pfn))
    return True
