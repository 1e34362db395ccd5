"""Scoped state checks: after a step, examine only what the step wrote.

The model records its writes: each page table the vpns written (`PageTable.written`), the
swap device the offsets whose swap_map value, swap-cache folio, written tags or saved tags
changed (`SwapInfo.written`, filled by the SlotMaps' `log` and the swap_map writers). The
rest of what the checks read is compared with what the oracle saw at its previous check
(`Seen`): the frames' MTE flag bits (one C translate), the device's SWP_WRITEOK, which
processes are alive, and 6.12's slot-cache lists.

Why a scoped form reports what the full form reports (docs/checking.md, "Scoped state
checks", states the induction): the oracle reports a keyed problem once. If, after the
previous check, every problem of the previous state had been reported, then a problem of
the new state that no scoped form yields involves only objects the step did not write, so
it was a problem of the previous state with the same detail: already reported. The scoped
forms yield the rest in the order the full forms do. A check whose answer could change
without a recorded write to its objects runs in full (`full` below), as does every check
after a step in which some check did not run (a parallel block's atomic steps, a runner
that skipped the state check) and the first check of an oracle.
"""

from __future__ import annotations

from mteswap.model.pte import pte_tagged, vm_normal_pfn
from mteswap.model.state import PG_MTE_LOCK, PG_MTE_TAGGED, TAGS_INIT
from mteswap.model.swapinfo import SWAP_HAS_CACHE
from mteswap.oracle import invariants as inv
from mteswap.oracle.tag_storage import leaks_among, tag_storage_leaks

# The flag bits the frame checks read (I1, I1-lock, I2): each frame's byte masked to them.
_MTE_BITS = bytes(f & (PG_MTE_TAGGED | PG_MTE_LOCK | TAGS_INIT) for f in range(256))


class Seen(tuple):
    """What the oracle saw at its last check, beyond the write logs (immutable, so clones of
    the oracle share it): (MTE flag bits of every frame, SWP_WRITEOK, alive per process,
    slot cache, slot-cache return list)."""
    __slots__ = ()


def seen(m) -> Seen:
    si = m.swap
    return Seen((m.frame_flags.translate(_MTE_BITS), si.active,
                 tuple([mm.alive for mm in m.mms]), si.slots_cache, si.slots_ret))


class Touched:
    """What changed since the last check: `slots` (offsets), `ptes` ((mm, sorted vpns) per
    process with PTEs written), `frames` (some frame's MTE flag bits), `untagged` (some frame
    lost PG_mte_tagged), `wide` (swapoff, or a process exited or appeared), `nothing` (none
    of these), and `now`, the Seen to keep for the next check."""

    __slots__ = ("slots", "ptes", "frames", "untagged", "wide", "now", "nothing")

    def __init__(self, m, before: Seen):
        self.now = now = seen(m)
        bits, active, alive, cache, ret = before
        self.frames = now[0] != bits
        # PG_mte_tagged set before and clear now, for some frame: a bitwise test of the
        # whole byte strings, only when some flag changed
        self.untagged = self.frames and bool(
            int.from_bytes(bits, "little") & ~int.from_bytes(now[0], "little")
            & _tagged_mask(len(bits)))
        self.wide = (active, alive) != (now[1], now[2])
        slots = m.swap.written
        if (cache, ret) != (now[3], now[4]):     # slots entering or leaving the slot caches
            slots = slots | set(cache).symmetric_difference(now[3]) \
                | set(ret).symmetric_difference(now[4])
        self.slots = slots
        self.ptes = [(mm, sorted(mm.ptes.written)) for mm in m.mms if mm.ptes.written]
        # Nothing the scoped forms read changed (an access without a fault, a step that found
        # nothing to do: half of the explorer's transitions): with per-page flags and an
        # empty swap cache, each would yield nothing (Oracle.check_state skips them).
        self.nothing = not (slots or self.ptes or self.frames or self.wide)


_MASKS: dict[int, int] = {}


def _tagged_mask(n: int) -> int:
    """PG_mte_tagged in each of n bytes, as one int (made once per machine size)."""
    mask = _MASKS.get(n)
    if mask is None:
        mask = _MASKS[n] = int.from_bytes(bytes([PG_MTE_TAGGED]) * n, "little")
    return mask


def forget_writes(m) -> None:
    """Empty the write logs: the next check starts from here."""
    m.swap.written.clear()
    for mm in m.mms:
        mm.ptes.forget_writes()       # and the page table's cached snapshot with them


# -- the scoped forms: each scoped(m, t) yields what its check's full form would, minus
# problems the previous check already saw (module docstring) ---------------------------------

def leaks(m, t: Touched):
    """A leak depends on its entry's slot (swap_map, cache, return list: logged or compared),
    on SWP_WRITEOK and on whether any process is alive (`wide`: then every entry)."""
    if not m.mte_pages:
        return ()
    if t.wide:
        return tag_storage_leaks(m)
    if not t.slots:
        return ()
    saved = m.mte_pages
    return leaks_among(m, sorted(off for off in t.slots if off in saved))


def i1(m, t: Touched):
    """I1 (per-page flags) reads each frame's PG_mte_tagged and TAGS_INIT bits only: when no
    frame's bits changed, its problems are the previous state's. Else the full form, one C
    translate of the flag array. A design with per-folio flags reads its own state through
    its hook: full."""
    if m.flags_per_page and not t.frames:
        return ()
    return inv.i1_init_before_valid(m)


def i1_lock(m, t: Touched):
    """I1-lock: as I1, over the PG_mte_tagged and PG_mte_lock bits."""
    if m.flags_per_page and not t.frames:
        return ()
    return inv.i1_lock_pairs_flag(m)


def i2(m, t: Touched):
    """I2 relates a present tagged PTE to its frame's PG_mte_tagged. A problem needs a PTE
    written by the step, or a frame that lost the flag (then every PTE: the model keeps no
    index from frames to the PTEs mapping them, and an unsound design may leave a PTE the
    rmap does not know). A design with per-folio flags: full."""
    if not m.flags_per_page or t.untagged:
        return inv.i2_tagged_pte_maps_tagged_page(m)
    return _i2_written(m, t.ptes) if t.ptes else ()


def _i2_written(m, ptes):
    flags = m.frame_flags
    for mm, vpns in ptes:
        ents = mm.ptes.ents
        for vpn in vpns:
            e = ents[vpn]
            pfn = vm_normal_pfn(e, vpn)
            if pfn is not None and pte_tagged(e) and not flags[pfn] & PG_MTE_TAGGED:
                yield inv.i2_detail(mm, vpn, pfn)


def i5(m, t: Touched):
    """I5 compares, per slot, its SWAP_HAS_CACHE bit (and slot-cache membership) with the
    swap cache's entry: all logged (or compared) per slot."""
    if not t.slots:
        return ()
    si = m.swap
    swap_map, index = si.swap_map, si.cache.index.slots
    # as the full form: one set comparison in the usual case (slot 0, the header, never
    # has SWAP_HAS_CACHE)
    pinned = {off for off in t.slots if swap_map[off] & SWAP_HAS_CACHE}
    if si.slots_cache or si.slots_ret:
        pinned.difference_update(si.slots_cache, si.slots_ret)
    held = {off for off in t.slots if index[off]}
    if pinned == held:
        return ()
    return [inv.i5_detail(si, off, off in pinned) for off in sorted(pinned ^ held)]


def i7(m, t: Touched):
    """I7 relates a slot's count to every swap PTE naming it. The model keeps no index from
    slots to swap PTEs, so when a count or any PTE changed, every PTE is counted (full);
    when neither did (an access, an madvise that found nothing), nothing can be new."""
    if not t.slots and not t.ptes:
        return ()
    return inv.i7_count_is_references(m)


def i8(m, t: Touched):
    """I8 reads, per slot, its written tags, saved tags and cache folio's dirty bit: the
    written slots, and every slot of the swap cache (no log follows a folio's dirty bit; the
    cache is small). Nothing when no slot was written and the cache is empty."""
    si = m.swap
    if not si.written_tags or not (t.slots or si.cache):
        return ()
    return inv.i8_saved_at_write(m, t.slots)


def i9(m, t: Touched):
    """I9: as I8."""
    si = m.swap
    if not si.written_tags or not (t.slots or si.cache):
        return ()
    return inv.i9_saved_match_written(m, t.slots)


# Checks with no scoped form, and why: their full form is already as narrow.
FULL = {
    "tag-storage-use-after-free": "reads only this step's tag reads (m.tag_reads)",
    "I10": "walks the swap cache only, whose folios' size and entry change without a slot "
           "write (a split); that is what a scoped form would walk",
}

SCOPED = {
    "tag-storage-leak": leaks,
    "I1": i1,
    "I1-lock": i1_lock,
    "I2": i2,
    "I5": i5,
    "I7": i7,
    "I8": i8,
    "I9": i9,
}
