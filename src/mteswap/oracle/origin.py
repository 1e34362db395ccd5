"""Human account of a page's tag origin (model/origin.py `TagOrigin`, kept in Page.origin)."""

from __future__ import annotations

from mteswap.model import origin as O
from mteswap.model.swapinfo import swp_offset

_PLAIN = {
    O.NEVER_WRITTEN: "tags never initialised since boot (unknown: whatever the frame held before the scenario)",
    O.UNTRACKED: "of unknown origin (origins are not tracked in this run; "
                 "replay it as a scenario with mteswap run to see where they came from)",
    O.ZERO_PAGE: "the shared zero page (tags always 0)",
}
_AT_STEP = {   # causes told as "tags <what> at step N"
    O.ALLOC_ZEROED: "zeroed at allocation (__GFP_ZEROTAGS)",
    O.STG: "set by the program (STG)",
    O.RESTORE_ZEROED: "zeroed by arch_swap_restore",
}


def describe_origin(origin: O.TagOrigin) -> str:
    """Human account of where a page's current tags came from (model/origin.py), then what
    happened to the page since (a split's flag copy)."""
    cause = origin.cause
    if cause == O.SYNC_ZEROED:
        text = f"tags zeroed by mte_sync_tags at step {origin.step} ({origin.why})"
        if origin.note:
            text += f": {origin.note}"
    elif cause == O.RESTORED:
        text = f"tags restored at step {origin.step} from slot {swp_offset(origin.entry):#x}"
        if origin.earlier is not None:
            text += f" [saved there from a page whose {describe_origin(origin.earlier)}]"
    elif cause == O.STALE:
        text = (f"stale tags left in pfn {origin.pfn} by an earlier owner "
                f"(page allocated at step {origin.step} without zeroing)")
    elif cause == O.COPIED:
        text = f"tags copied at step {origin.step} from pfn {origin.pfn} by copy_highpage"
    elif cause in _AT_STEP:
        text = f"tags {_AT_STEP[cause]} at step {origin.step}"
    else:
        text = _PLAIN[cause]
    return "; ".join((text,) + origin.notes)
