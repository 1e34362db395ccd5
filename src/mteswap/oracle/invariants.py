"""The invariants of kernel-semantics.md §5 that one machine state can show, one function each.

Each function reads the machine between two steps and yields one line of detail per place
the state breaks its invariant (nothing when it holds). `@invariant(name)` lists it in
INVARIANTS, in the order the registry (registry.py) runs them; the first line of its
docstring says what is checked, the rest what the kernel guarantees and where. The registry
also says why I3, I4, I6 and I11 have no function here.
"""

from __future__ import annotations

from typing import Callable

from mteswap.model import tags as T
from mteswap.model.sched import tagging_in_progress
from mteswap.model.mte import mte_flags, page_mte_tagged, saved_tags
from mteswap.model.pte import swap_entries, tagged_normal_pfns
from mteswap.model.state import PG_MTE_LOCK, PG_MTE_TAGGED, TAGS_INIT
from mteswap.model.swapinfo import SWAP_HAS_CACHE, swp_offset

# Flag bytes (state.py) breaking I1 with per-page flags: PG_mte_tagged without the TAGS_INIT
# ghost; and breaking I1-lock: one of PG_mte_tagged, PG_mte_lock without the other. Read
# with one `translate` of the whole frame array, as most states break neither.
_TAGGED_UNINIT = bytes(1 if f & PG_MTE_TAGGED and not f & TAGS_INIT else 0 for f in range(256))
_HALF_LOCKED = bytes(1 if bool(f & PG_MTE_TAGGED) != bool(f & PG_MTE_LOCK) else 0
                     for f in range(256))

INVARIANTS: list[tuple[str, Callable]] = []     # (name, function), in registry order


def invariant(name: str):
    """List the decorated function in INVARIANTS under `name`."""
    def add(fn: Callable) -> Callable:
        INVARIANTS.append((name, fn))
        return fn
    return add


def _marked_frames(m, table: bytes) -> list[int]:
    """pfns whose flag byte `table` maps to 1 (the zero page's slot, last, is never marked:
    its flags stay 0)."""
    marks = m.frame_flags.translate(table)
    if not marks.count(1):
        return []
    return [pfn for pfn, bad in enumerate(marks) if bad]


@invariant("I1")
def i1_init_before_valid(m):
    """PG_mte_tagged only on pages whose tags were zeroed, copied or restored.

    I1, init-before-valid: `PG_mte_tagged` is set only after the page's tags were zeroed
    (`mte_sync_tags`, arch/arm64/kernel/mte.c; `tag_clear_highpage`, arch/arm64/mm/fault.c),
    copied (`copy_highpage`, arch/arm64/mm/copypage.c) or restored (`mte_restore_tags`,
    arch/arm64/mm/mteswap.c); `set_page_mte_tagged` (asm/mte.h) orders the flag after the tag
    writes with smp_wmb. Read against the TAGS_INIT ghost (model/state.py), which those
    writes set and freeing clears: a page the design calls tagged (`page_mte_tagged`) whose
    frame's tags nobody initialised since it was allocated breaks it, e.g. a tail page given
    the head's flag by a folio split (`__split_folio_to_order`, mm/huge_memory.c; S5)."""
    if m.flags_per_page:
        pfns = _marked_frames(m, _TAGGED_UNINIT)
    else:
        pfns = [page.pfn for folio in m.folios.values() for page in m.folio_pages(folio)
                if page_mte_tagged(m, page) and not page.tags_init]
    busy = tagging_in_progress(m)     # a lane's initialisation under way (model/sched.py)
    for pfn in pfns:
        if pfn in busy:
            continue
        yield (f"pfn {pfn} is PG_mte_tagged but its tags were not zeroed, copied or restored "
               f"since it was allocated")


@invariant("I1-lock")
def i1_lock_pairs_flag(m):
    """PG_mte_tagged and PG_mte_lock both set or both clear.

    I1's second half: exactly one initialiser wins, through `try_page_mte_tagging`
    (asm/mte.h), which takes `PG_mte_lock` before the tags are written and
    `set_page_mte_tagged` after. Between two steps no initialisation is half done, so every
    page's flag page (`mte_flags`) has both flags or neither; inside a parallel block a lane
    may be between the two (model/mte.py `initialise_tags`): those frames
    (`sched.tagging_in_progress`) are left to the oracle, which judges what other threads
    do with them. The same holds for I1."""
    if m.flags_per_page:
        pages = [m.pages[pfn] for pfn in _marked_frames(m, _HALF_LOCKED)]
    else:
        pages = [page for folio in m.folios.values() for page in m.folio_pages(folio)]
    busy = tagging_in_progress(m)     # a lane between try_page_mte_tagging and set_page_mte_tagged
    for page in pages:
        flags = mte_flags(m, page)
        if flags.pfn in busy:
            continue
        if flags.mte_tagged and not flags.mte_lock:
            yield f"pfn {page.pfn} is PG_mte_tagged without PG_mte_lock"
        if flags.mte_lock and not flags.mte_tagged:
            yield (f"pfn {page.pfn} left locked for tag initialisation "
                   f"(PG_mte_lock without PG_mte_tagged)")


@invariant("I2")
def i2_tagged_pte_maps_tagged_page(m):
    """A present tagged PTE (not the zero page) maps a PG_mte_tagged page.

    I2: before a PTE with `MT_NORMAL_TAGGED` and user access becomes visible, its pages
    are `PG_mte_tagged`: `set_ptes` → `__sync_cache_and_tags` (arch/arm64/include/asm/
    pgtable.h) → `mte_sync_tags` (arch/arm64/kernel/mte.c). The zero page is special and
    exempt (its tags are zero from boot)."""
    flags = m.frame_flags
    for mm in m.mms:
        for vpn, pfn in tagged_normal_pfns(mm.ptes.ents):      # not the zero page
            if not (flags[pfn] & PG_MTE_TAGGED if m.flags_per_page
                    else page_mte_tagged(m, m.pages[pfn])):
                yield i2_detail(mm, vpn, pfn)


def i2_detail(mm, vpn: int, pfn: int) -> str:
    return f"pid {mm.pid} vpn {vpn}: tagged PTE maps pfn {pfn} without PG_mte_tagged"


@invariant("I5")
def i5_cache_pins_slots(m):
    """SWAP_HAS_CACHE set exactly on the slots the swap cache holds.

    I5: a slot whose buffer may be read is pinned by `SWAP_HAS_CACHE`, which the swap
    cache holds for each slot of a folio it holds (`swapcache_prepare` → `add_to_swap_cache`,
    mm/swap_state.c; dropped by `put_swap_folio`/`swapcache_clear`, mm/swapfile.c). Checked
    as: the bit is set exactly on the slots the swap cache holds, apart from the slots 6.12's
    per-CPU slot cache holds (mm/swap_slots.c: handed out or returned, no folio yet or any
    more)."""
    si = m.swap
    swap_map, cache = si.swap_map, si.cache
    if not cache and not si.allocated:     # no slot in use: nothing pinned, nothing held
        return
    pinned = {off for off in si.allocated if swap_map[off] & SWAP_HAS_CACHE}
    if si.slots_cache or si.slots_ret:
        pinned.difference_update(si.slots_cache, si.slots_ret)
    held = set(cache.keys())
    if pinned == held:                 # the usual case: one set comparison
        return
    for off in sorted(pinned ^ held):  # other slots hold 0, uncached
        yield i5_detail(si, off, off in pinned)


def i5_detail(si, off: int, pinned: bool) -> str:
    return (f"slot {off:#x}: SWAP_HAS_CACHE is {int(pinned)} but the swap cache "
            f"{'holds' if off in si.cache else 'lacks'} it")


@invariant("I7")
def i7_count_is_references(m):
    """A slot's swap_map count equals the swap PTEs naming it.

    I7: a slot's buffer is freed exactly when its `swap_map` byte goes to 0
    (`swap_range_free` → `arch_swap_invalidate_page`, mm/swapfile.c), which is sound only if
    the count is the number of swap PTEs naming the slot: `swap_duplicate` at fork
    (`copy_nonpresent_pte`, mm/memory.c), `swap_free_nr` at swap-in and zap."""
    si = m.swap
    refs: dict[int, int] = {}
    for mm in m.mms:
        for entry in swap_entries(mm.ptes.ents):
            off = swp_offset(entry)
            refs[off] = refs.get(off, 0) + 1
    swap_map = si.swap_map
    counts = {off: c for off in si.allocated if (c := swap_map[off] & ~SWAP_HAS_CACHE)}
    if counts == refs:                 # the usual case: one dict comparison
        return
    for off in sorted(counts.keys() | refs.keys()):   # other slots hold 0, unnamed
        count = counts.get(off, 0)
        if count != refs.get(off, 0):
            yield f"slot {off:#x}: swap_map count {count} but {refs.get(off, 0)} swap PTE(s) refer to it"


def _settled_writes(m, written_slots=None):
    """(offset, tags written, tags saved now) of each slot written from a PG_mte_tagged page
    (vmscan.py's ghost `written_tags`) whose swap-cache folio has no rewrite pending; with
    `written_slots` (the scoped checks, oracle/scoped.py), only those and the swap cache's."""
    si = m.swap
    if not si.written_tags:
        return
    for off, written in si.written_tags.items():
        folio = si.cache.get(off)
        if written is None or (folio is not None and folio.dirty):
            continue   # nothing tagged was written, or a rewrite is pending
        if written_slots is not None and folio is None and off not in written_slots:
            continue   # not written since the last check, and no cache folio
        yield off, written, saved_tags(m, off)


@invariant("I8")
def i8_saved_at_write(m, written_slots=None):
    """A slot written from a PG_mte_tagged page with non-zero tags has saved tags.

    I8: every page written to slot S while `PG_mte_tagged` has its tags stored at key S
    before the I/O is issued: `swap_writepage` (mm/page_io.c) → `arch_prepare_to_swap` →
    `mte_save_tags` (arch/arm64/mm/mteswap.c). All-zero tags may go unsaved: `mte_sync_tags`
    recreates them on swap-in."""
    for off, written, saved in _settled_writes(m, written_slots):
        if saved is None and written != 0:
            yield f"slot {off:#x} holds a page written while PG_mte_tagged, but no saved tags"


@invariant("I9")
def i9_saved_match_written(m, written_slots=None):
    """Saved tags equal the tags the page had when written.

    I9: the buffer at key S describes the data most recently written to S: `mte_save_tags`
    (arch/arm64/mm/mteswap.c) replaces on a re-save, and a slot is reused only after
    `swap_range_free` erased its buffer (I7)."""
    for off, written, saved in _settled_writes(m, written_slots):
        if saved is not None and saved != written:
            yield (f"saved tags of slot {off:#x} ({T.describe(saved)}) differ from the tags "
                   f"written with it ({T.describe(written)})")


@invariant("I10")
def i10_aligned_slots(m):
    """A swap-cache folio's slots are aligned to its size and pinned.

    I10: a large folio in the swap cache occupies slots [S, S + nr) with S % nr == 0
    (one cluster order per cluster, `cluster_alloc_swap_entry`, mm/swapfile.c), each pinned
    by SWAP_HAS_CACHE; `folio_swap()` and `folio_file_page()` (mm/internal.h, mm/swap.h)
    compute entries and pages from it."""
    si = m.swap
    if not si.cache:
        return
    for off, folio in si.cache.items():
        start = swp_offset(folio.swap)
        if folio.swap % folio.nr or not start <= off < start + folio.nr:
            yield f"folio {folio.pfn} (nr {folio.nr}) at entry {folio.swap:#x} is not naturally aligned"
        elif not si.swap_map[off] & SWAP_HAS_CACHE:
            yield f"slot {off:#x} of swap-cache folio {folio.pfn} lacks SWAP_HAS_CACHE"
