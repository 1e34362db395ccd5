"""Named views of `Machine.snapshot()`: the canonical state the explorer hashes.

Named tuples, so a snapshot is still ints and tuples only (it compares and hashes exactly as
the plain tuple would), while a reader names the fields it needs instead of unpacking by
position, and `map_data` renames data values for the explorer's reductions
(explore/symmetry.py) without the explorer knowing where they are stored.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

_new = tuple.__new__


FRAME_FIELDS = ("tags", "data", "flags", "rmap")   # MachineSnapshot.frames, in columns:
# each frame's allocation tags, data value and flag byte (PG_mte_tagged, PG_mte_lock,
# PG_anon_exclusive bits and the TAGS_INIT ghost, state.py), each a tuple by pfn, then the
# reverse map (first key of each frame, relative to its pfn, as a tuple by pfn; the later
# keys of frames mapped more than once). Columns rather than a tuple per frame: built and
# renamed with C-level slices and maps (the explorer builds one per transition);
# `MachineSnapshot.map_data` is the accessor for what it needs.


class SwapSnapshot(NamedTuple):
    """The swap device: whether it is on, (offset, swap_map count) of every used slot, the
    slot allocator's state (each cluster's order, the per-order `next` offsets, the free
    list's order), the slots' contents, the zeromap and the tags written with each slot."""
    active: bool
    used: tuple
    cluster_order: tuple
    contents: tuple
    zeromap: tuple
    written_tags: tuple


class MachineSnapshot(NamedTuple):
    """The whole machine (`Machine.snapshot()`); diagnostics are left out."""
    frames: tuple          # FRAME_FIELDS, each a column by pfn
    folios: tuple
    mms: tuple
    swap: SwapSnapshot
    mte_pages: tuple       # (swap entry, saved tags)
    tag_allocs: int
    # The write-generation ghost (Machine.frame_tgen, saved_tgen): (each frame's, by pfn;
    # each saved buffer's, in mte_pages order). Generations are numbered as data values are.
    tag_gens: tuple

    def map_data(self, fn, gen_fn=None) -> "MachineSnapshot":
        """The same state with every data value v replaced by fn(v), and every tag write
        generation g (the oracle's ghost) by gen_fn(g) (default fn); each sees its values in
        a canonical order (data: frames by pfn, then swap-slot contents by offset;
        generations: the frames', then the saved buffers')."""
        # tuple.__new__ rather than _replace or the class call (both Python-level): the
        # explorer calls this once per transition.
        tags, data, flags, rmap = self.frames
        frames = (tags, tuple(map(fn, data)), flags, rmap)
        sw = self.swap
        swap = swap_snapshot((sw.active, sw.used, sw.cluster_order,
                                   tuple([(off, fn(v)) for off, v in sw.contents]), sw.zeromap,
                                   sw.written_tags))
        frame_gens, saved_gens = self.tag_gens
        gen_fn = fn if gen_fn is None else gen_fn
        tag_gens = (tuple(map(gen_fn, frame_gens)), tuple(map(gen_fn, saved_gens)))
        return machine_snapshot((frames, self.folios, self.mms, swap, self.mte_pages,
                                      self.tag_allocs, tag_gens))


# Builders taking one tuple of the fields in order, for the hot paths (every explored state):
# C-level calls, where the class call and _make run Python code.
machine_snapshot = partial(_new, MachineSnapshot)
swap_snapshot = partial(_new, SwapSnapshot)
