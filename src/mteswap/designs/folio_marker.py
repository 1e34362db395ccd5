"""`folio-marker`: David Hildenbrand's per-folio three-state marker (2023-11-20/24).

What was proposed: pass the folio and its first entry, restore all tags at once, and remember
per folio whether that happened. A folio is in one of three states: (1) sub-pages possibly
tagged, tags live in hardware; (2) tags only in the saved data structure; (3) no sub-page
tagged. Swap-out from (1) saves every page whose hardware tags are non-zero (Steven Price's
idea: look at the tags, not at PG_mte_tagged) and moves to (2); swap-in of an old swap-cache
folio does nothing in (1)/(3) and restores what is saved in (2); a fresh folio, whose marker is
lost, consults the data structure page by page. The folio lock serialises it all.

For: one restore per folio instead of per fault, no per-page flag needed on the swap path, and
all-zero tags cost nothing. Against (Barry Song): mixed states are common (allocator-style 4 KiB
MADV_DONTNEED, partial mprotect), and "restore everything" needs care where sub-pages were
freed. The model shows another hazard (kernel-semantics.md §6, S2 under V4): a never-tagged page
holding an earlier owner's tags is saved, restored and marked tagged, so a later
mprotect(PROT_MTE) exposes the stale tags. Choices made here: per-page PG_mte_tagged stays for
everything else (mte_sync_tags, copy_highpage); the marker is kept in the folio (0 = unknown,
i.e. fresh, treated as state 1 on swap-out); restoring in state (2) overwrites and marks every
page that has saved tags; a split gives each new folio the old folio's marker.
"""

from __future__ import annotations

from mteswap.designs.common import PerPageHooks, each_fault, folio_swap, write_saved_tags
from mteswap.model import tags as T
from mteswap.model.mte import (ENOMEM, mte_allocate_tag_storage, mte_flags,
                               mte_invalidate_tags, mte_store_saved_tags,
                               mte_restore_tags, set_page_mte_tagged)

UNKNOWN, TAGS_IN_HW, TAGS_SAVED, NO_TAGS = 0, 1, 2, 3
_STATE = {UNKNOWN: "unknown", TAGS_IN_HW: "tags in HW", TAGS_SAVED: "tags saved", NO_TAGS: "no tags"}


class FolioMarker(PerPageHooks):
    name = "folio-marker"
    summary = "David Hildenbrand's per-folio three-state marker, saving only non-zero tags"

    def arch_prepare_to_swap(self, m, folio) -> int:
        if folio.arch == NO_TAGS:
            return 0
        saved = 0
        for i, page in enumerate(m.folio_pages(folio)):
            if page.tags == 0:
                continue
            if not mte_allocate_tag_storage(m):
                for j in range(i - 1, -1, -1):
                    mte_invalidate_tags(m, folio.swap + j)
                return ENOMEM
            mte_store_saved_tags(m, folio.swap + i, page)
            saved += 1
            if m.tracing: m.log("mte_save_tags", f"pfn={page.pfn} entry={folio.swap + i:#x} tags={T.describe(page.tags)} (non-zero HW tags)")
        self._mark(m, folio, TAGS_SAVED if saved else NO_TAGS)
        return 0

    def arch_swap_restore(self, m, entry: int, folio, page, k: int = 1) -> None:
        for e, f, _ in each_fault(m, entry, folio, page, k):
            self._restore_folio(m, folio_swap(e, f), f)

    def _restore_folio(self, m, first: int, folio) -> None:
        m.count("restore_calls")
        if m.tracing: m.log("arch_swap_restore", f"entry={first:#x} folio={folio.pfn} nr={folio.nr} marker={_STATE[folio.arch]}", ("pfn", folio.pfn))
        if folio.arch in (TAGS_IN_HW, NO_TAGS):
            return
        for i, p in enumerate(m.folio_pages(folio)):
            if folio.arch == UNKNOWN:
                mte_restore_tags(m, first + i, p)      # fresh folio: page by page
            else:
                self._overwrite(m, first + i, p)        # state (2): restore what is saved
        self._mark(m, folio, TAGS_IN_HW)

    @staticmethod
    def _overwrite(m, entry: int, page) -> None:
        if write_saved_tags(m, entry, page):
            mte_flags(m, page).mte_lock = True
            set_page_mte_tagged(m, page)

    @staticmethod
    def _mark(m, folio, state: int) -> None:
        if folio.arch != state:
            if m.tracing: m.log("folio marker", f"folio={folio.pfn}: {_STATE[folio.arch]} -> {_STATE[state]}")
        folio.arch = state
