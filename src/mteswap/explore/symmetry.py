"""The state fingerprint and the reductions applied to it (docs/checking.md explains each and
why it cannot hide a bug).

A state is everything that decides what later steps do and what the oracle reports:
`Runner.snapshot()`, named fields only (a `RunnerSnapshot`):

* `machine` (`Machine.snapshot()`, model/snapshot.py) — frames (tags, data, the flag byte,
  reverse map), folios, address spaces (VMAs and page tables), the swap device (swap_map,
  cluster orders, contents, zeromap, the written-tag ghost), the saved tags, the
  tag-allocation count and the tags' write-generation ghost (frames', saved buffers');
* `view` — per process and page, the pointer tags and value the program holds, and the write
  generation of the tags it set (the ghost, oracle/program.py);
* `names` — which (process, VMA name) pairs were ever mapped and where (this decides whether
  `mmap` may run again and where page indices point), with names replaced by small ints so that
  the fingerprint hashes the same in every process.

Reductions (`reduce=True`):

1. **Data values renamed.** A `write` at step k stores `page_value(k, i)`, unique per step and
   page. The model only ever copies data values and compares them for equality (the oracle's
   read check) or with 0 (zero-filled detection at swap-out and split); every later write stores
   a value no earlier step used. So two states that differ by a one-to-one renaming of non-zero
   values have the same future up to that renaming, and the same violations. Values are
   renumbered 1, 2, 3... in order of first appearance (frames by pfn, then swap-slot contents
   by offset, then the program's view by pid and page), which is canonical. The tags' write
   generations (the oracle's ghost, `MachineSnapshot.tag_gens` and the view's) are numbered
   like data values (a tag-setting step's generation for a page is the value a write there
   stores: fresh for every later step) and are likewise only copied and compared for
   equality, with each other (the stale-tags check) and with 0 (kernel-zeroed); never with a
   data value. So they are renamed the same way, by a renaming of their own (frames', saved
   buffers', then the view's): states whose generations follow the same pattern merge even
   when one's tags were set with its data (generation = value) and the other's by a separate
   stg.
2. **Tag-allocation count abstracted.** `tag_allocs` only feeds the fault injection of
   `tag_alloc_fail_after` (the (N+1)-th allocation fails). Without the key it is dropped; with
   it, every count past N+1 is the same.

Fingerprints are 64-bit `hash()` values of the canonical tuple (ints, bools and tuples only, so
the same in every process regardless of PYTHONHASHSEED). Hash compaction can merge two distinct
states with probability about n^2 / 2^65 for n states (3e-8 at a million states).
"""

from __future__ import annotations

from collections import defaultdict


def _renamer() -> defaultdict:
    """A mapping numbering the values it is given 1, 2, 3... in order of first sight (0
    stays), through its `__getitem__`.

    A defaultdict whose default is its own size before the insert: a new value gets the next
    number. Its __getitem__ is C-level, where a Python function would run once per frame,
    slot and page of every explored state. Its default refers to itself: `_done` breaks that
    cycle after use, so that it is freed at once rather than by the garbage collector."""
    names: defaultdict = defaultdict()
    names.default_factory = names.__len__
    names[0] = 0
    return names


def _done(*renamers: defaultdict) -> None:
    for names in renamers:
        names.default_factory = None


def state_key(r, vma_ids: dict, reduce: bool = True, fail_after: int | None = None) -> tuple:
    """The canonical state of runner `r` (see the module docstring); `fail_after`: the
    config's `tag_alloc_fail_after`."""
    snap = r.snapshot()
    # snap.names is sorted by (pid, name) and the ids number names in sorted order: no re-sort
    names = tuple([(pid, vma_ids.get(name, -1), start, n) for pid, name, start, n in snap.names])
    if not reduce:
        return (snap.machine, snap.view, names)
    values, gens = _renamer(), _renamer()
    snap = snap.map_values(values.__getitem__, gens.__getitem__)   # data values; generations
    _done(values, gens)
    m = snap.machine
    tag_allocs = 0 if fail_after is None else min(m.tag_allocs, fail_after + 1)
    return ((m.frames, m.folios, m.mms, m.swap, m.mte_pages, tag_allocs, m.tag_gens),
            snap.view, names)


def fingerprint(r, vma_ids: dict, reduce: bool = True, fail_after: int | None = None) -> int:
    return hash(state_key(r, vma_ids, reduce, fail_after))
