"""Human account of a page's tag origin (the diagnostic tuple kept in Page.origin)."""

from __future__ import annotations


def describe_origin(origin: tuple) -> str:
    """Human account of where a page's current tags came from (the diagnostic tuple kept in
    Page.origin: a description, the step, arguments, then notes)."""
    head, *rest = origin
    notes = [r for r in rest if isinstance(r, str) and r.startswith("the split")]
    args = [r for r in rest if not (isinstance(r, str) and r.startswith("the split"))]
    if head == "zeroed by mte_sync_tags":
        step, why, note = (args + ["", "", ""])[:3]
        text = f"tags zeroed by mte_sync_tags at step {step} ({why})"
        if note:
            text += f": {note}"
    elif head == "restored by mte_restore_tags from slot":
        text = f"tags restored at step {args[0]} from slot {args[1]:#x}"
        if len(args) > 2 and args[2]:
            text += f" [saved there from a page whose {describe_origin(args[2])}]"
    elif head == "left over from an earlier owner of pfn":
        text = (f"stale tags left in pfn {args[1]} by an earlier owner "
                f"(page allocated at step {args[0]} without zeroing)")
    elif head == "copied by copy_highpage from pfn":
        text = f"tags copied at step {args[0]} from pfn {args[1]} by copy_highpage"
    elif args:
        text = f"tags {head} at step {args[0]}"
    else:
        text = head
    return "; ".join([text] + notes)
