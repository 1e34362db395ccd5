"""Where a page's current allocation tags came from: a diagnostic record per frame
(`Machine.frame_origin`) and per saved buffer (`Machine.saved_origin`), kept only while the
machine tracks origins. No kernel operation reads it; the oracle explains a tag-check fault
with it (oracle.describe_origin) and the kernel comparison reads its cause (a model outcome
that rests on an earlier owner's tags needs the kernel to reuse that frame).
"""

from __future__ import annotations

from typing import NamedTuple

# Causes: what last set the tags.
NEVER_WRITTEN = "never-written"        # no one has set them since boot
UNTRACKED = "untracked"                # set while origins were not tracked (`mteswap cost`)
ZERO_PAGE = "zero-page"                # the shared zero page: tags always 0
ALLOC_ZEROED = "alloc-zeroed"          # tag_clear_highpage (__GFP_ZEROTAGS)
SYNC_ZEROED = "sync-zeroed"            # mte_sync_tags, from set_ptes
RESTORE_ZEROED = "restore-zeroed"      # a design's arch_swap_restore, for a page with no buffer
RESTORED = "restored"                  # mte_restore_tags (or a design's overwrite) from a slot
COPIED = "copied"                      # copy_highpage, from another frame
STALE = "stale"                        # left in the frame by an earlier owner (not zeroed)
STG = "stg"                            # the program's STG


class TagOrigin(NamedTuple):
    """One record (a named tuple: made per page on hot paths while origins are tracked, so it
    must cost what a tuple costs)."""
    cause: str
    step: int = -1                     # the scenario step
    function: str = ""                 # the kernel function that set them
    pfn: int | None = None             # STALE: the frame; COPIED: the source frame
    entry: int | None = None           # RESTORED: the slot's swap entry
    earlier: "TagOrigin | None" = None  # RESTORED: the origin of the tags when they were saved
    why: str = ""                      # SYNC_ZEROED: the set_ptes caller
    note: str = ""                     # why no buffer was there ("slot 0x.. had no saved tags")
    notes: tuple[str, ...] = ()        # what happened to the page since (a split's flag copy)

    def noted(self, note: str) -> "TagOrigin":
        return self._replace(notes=self.notes + (note,))

    def rests_on(self, cause: str) -> bool:
        """Whether these tags, or the saved tags they were restored from, had that cause."""
        origin = self
        while origin is not None:
            if origin.cause == cause:
                return True
            origin = origin.earlier
        return False


NEVER = TagOrigin(NEVER_WRITTEN)
UNTRACKED_ORIGIN = TagOrigin(UNTRACKED)
ZERO_PAGE_ORIGIN = TagOrigin(ZERO_PAGE)

# Why a page about to be mapped has no saved tags (`Machine.pending_notes`, read by
# mte_sync_tags): either note goes into the origin of the zero tags it gets.
NO_SAVED_TAGS, SPLIT_CLEARED = "no-saved-tags", "split-cleared"
