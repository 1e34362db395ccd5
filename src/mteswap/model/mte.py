"""arm64 MTE page-tag primitives: arch/arm64/kernel/mte.c, arch/arm64/mm/mteswap.c,
arch/arm64/mm/copypage.c and the flag helpers of arch/arm64/include/asm/mte.h.

These are the building blocks the designs' arch hooks are made of; a design may use them as
they are or do something else.
"""

from __future__ import annotations

from array import array

from mteswap.model import sched
from mteswap.model import tags as T
from mteswap.model.mtecomp import mte_compress, mte_decompress
from mteswap.model.origin import (ALLOC_ZEROED, COPIED, RESTORED, SPLIT_CLEARED, SYNC_ZEROED,
                                   UNTRACKED_ORIGIN, TagOrigin)
from mteswap.model.state import (IS_MTE_LOCK, IS_MTE_TAGGED, PG_MTE_LOCK, PG_MTE_TAGGED,
                                  SET_TAGS_INIT_TAGGED_LOCK, TAGS_INIT, Page, PageRange)
from mteswap.ranges import format_ranges
from mteswap.model.swapinfo import ABSENT, SWP_TYPE_SHIFT, swp_entry, swp_offset

ENOMEM = -12
_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1   # swp_offset(entry) = entry & _OFFSET_MASK


def page_itself(design, m, page: Page) -> Page:
    """The kernel's answer to "whose PG_mte_tagged/PG_mte_lock stand for this page": the page
    itself (per-page flags, asm/mte.h, semantics §1.2). Designs that keep the kernel's flags
    use this function as their `mte_flag_page` hook; the machine then reads the flag bytes
    directly (`Machine.flags_per_page`). A design that overrides the hook is always asked."""
    return page


def mte_flags(m, page: Page) -> Page:
    """The page whose PG_mte_tagged/PG_mte_lock stand for `page`: the page itself in the
    kernel (per-page flags, semantics §1.2); a design may say otherwise (a per-folio flag)."""
    return page if m.flags_per_page else m.design.mte_flag_page(m, page)


def page_mte_tagged(m, page: Page) -> bool:
    """`page_mte_tagged()` (asm/mte.h): are this page's tags valid?"""
    if m.flags_per_page:
        return bool(m.frame_flags[page.pfn] & PG_MTE_TAGGED)
    return m.design.mte_flag_page(m, page).mte_tagged


def try_page_mte_tagging(m, page: Page) -> bool:
    """`try_page_mte_tagging()` (asm/mte.h): take PG_mte_lock; True if this caller must now
    initialise the tags. False if another caller took it: the kernel spins
    (`smp_cond_load_acquire`) until that caller sets PG_mte_tagged. Alone, an initialisation
    is never half done between two steps; between threads the loser blocks until the flag is
    set (a wait, not a busy loop)."""
    flags = mte_flags(m, page)
    if flags.mte_lock:
        if m.sched is not None and not flags.mte_tagged:
            sched.wait_until(m, "try_page_mte_tagging:smp_cond_load_acquire",
                             lambda: flags.mte_tagged)
        return False
    flags.mte_lock = True
    return True


def set_page_mte_tagged(m, page: Page) -> None:
    """`set_page_mte_tagged()` (asm/mte.h): tags are now valid (after an smp_wmb)."""
    mte_flags(m, page).mte_tagged = True


def mte_clear_page_tags(page: Page, origin: TagOrigin) -> None:
    """`mte_clear_page_tags()` (arch/arm64/lib/mte.S): zero every granule's tag."""
    page.tags = 0
    page.tags_init = True        # the oracle's I1 ghost (state.py TAGS_INIT)
    page.tag_gen = 0             # the write-generation ghost: the kernel's tags, no write's
    page.origin = origin


def tag_clear_highpage(m, page: Page) -> None:
    """`tag_clear_highpage()` (arch/arm64/mm/fault.c): allocation with __GFP_ZEROTAGS zeroes
    data and tags together and marks the page tagged."""
    page.data = 0
    if try_page_mte_tagging(m, page):
        mte_clear_page_tags(page, TagOrigin(ALLOC_ZEROED, m.step, "tag_clear_highpage")
                            if m.track_origins else UNTRACKED_ORIGIN)
        set_page_mte_tagged(m, page)


def initialise_tags(m, pfn: int, values: list, fn: str = "mte_sync_tags",
                    own: int = 0, gens: array | None = None) -> list[int]:
    """For frames pfn + i, i < len(values), that `values[i]` is not ABSENT for: take
    PG_mte_lock (`try_page_mte_tagging`) and, if this caller got it, write `values[i]` as the
    tags and set PG_mte_tagged (`set_page_mte_tagged`). The pfns initialised, in order.
    `gens`: the write generations of the values (the oracle's ghost, Machine.frame_tgen),
    or None for tags the kernel makes (zeroes: generation 0). The
    three steps `mte_sync_tags` and `mte_restore_tags` (`fn`, for the step names) perform per
    page; with per-page flags and no other thread, one pass over the arrays when every frame
    takes them, or none does.

    Between threads (docs/concurrency.md §2), a page whose folio another PTE maps is
    reachable by another thread's set_ptes or CoW copy, so the three are atomic steps of
    their own (`_claim_between_threads`, the tag write, `_publish_between_threads`); `own`
    is how many of the folio's mappings are the caller's (the PTEs set_ptes installs, whose
    rmap is already counted, or the one mprotect rewrites). A page nothing else maps is
    private to this thread or under the folio lock every other initialiser of it takes, so
    its initialisation is local work merged into the running step."""
    nr = len(values)
    flags, tags = m.frame_flags, m.frame_tags
    if m.flags_per_page:
        if m.sched is None:
            locked = flags[pfn:pfn + nr].translate(IS_MTE_LOCK).count(1)
            if locked == nr:                               # every lock already taken
                return []
            if not locked and values.count(ABSENT) == 0:
                tags[pfn:pfn + nr] = values
                m.frame_tgen[pfn:pfn + nr] = array("q", bytes(8 * nr)) if gens is None else gens
                flags[pfn:pfn + nr] = flags[pfn:pfn + nr].translate(SET_TAGS_INIT_TAGGED_LOCK)
                return range(pfn, pfn + nr)
        flag_pfn = None
    else:
        flag_pfn = m.design.mte_flag_page                  # whose flags stand for the page
    done = []
    for p, value in enumerate(values, pfn):
        if value is ABSENT:
            continue
        fp = p if flag_pfn is None else flag_pfn(m, Page(m, p)).pfn
        stepped = m.sched is not None and _mapped_elsewhere(m, p, own)
        if stepped:
            if not _claim_between_threads(m, p, fp, fn):
                continue
            sched.point(m, f"{fn}:{_TAG_WRITE.get(fn, 'tag write')}")
        else:
            f = flags[fp]
            if f & PG_MTE_LOCK:                            # try_page_mte_tagging: taken
                continue
            flags[fp] = f | PG_MTE_LOCK
        tags[p] = value
        flags[p] |= TAGS_INIT                              # the oracle's I1 ghost (state.py)
        m.frame_tgen[p] = 0 if gens is None else gens[p - pfn]   # ... and the generation
        if stepped:
            _publish_between_threads(m, p, fp, fn)
        else:
            flags[fp] |= PG_MTE_TAGGED                     # set_page_mte_tagged
        done.append(p)
    return done


# Fixes of tag initialisation between threads (model/reverts.py). Read only with a scheduler
# and for pages another thread can reach: alone, every form gives the same tags and flags.
# "arm64: mte: Fix/clarify the PG_mte_tagged semantics" (v6.2): before it, mte_sync_tags and
# mte_restore_tags took PG_mte_tagged with test_and_set_bit *before* writing the tags, so a
# second mapper saw the flag and mapped the page with its old tags.
REVERT_TAGGED_AFTER_INIT = "e059853d14ca"
# "arm64: mte: Lock a page for MTE tag initialisation" (v6.2): before it (and after the fix
# above), PG_mte_tagged was tested, the tags written, then the flag set, with no lock: two
# initialisers could both write, the later one over tags set since.
REVERT_TAGGING_LOCK = "d77e59a8fccd"
_TAG_WRITE = {"mte_sync_tags": "mte_clear_page_tags", "mte_restore_tags": "mte_restore_page_tags"}


def _mapped_elsewhere(m, pfn: int, own: int) -> bool:
    """Does a PTE other than the caller's `own` map the folio of frame pfn (so that another
    thread may reach the page)?"""
    return m.folio_mapcounts[pfn & -(1 << m.frame_order[pfn])] > own


def _claim_between_threads(m, pfn: int, fp: int, fn: str) -> bool:
    """The first step of one page's initialisation between threads, `fn` being
    mte_sync_tags or mte_restore_tags: True if this thread now writes the tags. A flag page
    already PG_mte_tagged stays so while the page is mapped: that read is no step. Otherwise
    a step of its own, one atomic access to the page flags: `try_page_mte_tagging` (the
    loser waits for PG_mte_tagged); with e059853d14ca reverted `test_and_set_bit` of
    PG_mte_tagged itself (v6.1; the model sets PG_mte_lock with it, as I1-lock pairs them);
    with d77e59a8fccd reverted only the test of PG_mte_tagged (no lock)."""
    flags, reverts = m.frame_flags, m.config.reverts
    if flags[fp] & PG_MTE_TAGGED:
        return False
    if REVERT_TAGGED_AFTER_INIT in reverts:
        sched.point(m, f"{fn}:test_and_set_bit")
        if flags[fp] & PG_MTE_TAGGED:
            return False
        flags[fp] |= PG_MTE_TAGGED | PG_MTE_LOCK
    elif REVERT_TAGGING_LOCK in reverts:
        sched.point(m, f"{fn}:page_mte_tagged")
        if flags[fp] & PG_MTE_TAGGED:
            return False
    else:
        sched.point(m, f"{fn}:try_page_mte_tagging")
        if not try_page_mte_tagging(m, Page(m, fp)):
            return False
    m.sched.tagging.update((pfn, fp))
    return True


def _publish_between_threads(m, pfn: int, fp: int, fn: str) -> None:
    """The last step of one page's initialisation between threads: `set_page_mte_tagged`
    after the tag write (with d77e59a8fccd reverted it sets the flag the lock stood for).
    With e059853d14ca reverted the flag went up before the write: nothing left to do."""
    if REVERT_TAGGED_AFTER_INIT not in m.config.reverts:
        sched.point(m, f"{fn}:set_page_mte_tagged")
        m.frame_flags[fp] |= PG_MTE_TAGGED | PG_MTE_LOCK
    m.sched.tagging.difference_update((pfn, fp))


def mte_sync_tags(m, pages, why: str) -> None:
    """`mte_sync_tags()` (arch/arm64/kernel/mte.c), reached from `set_ptes()` through
    `__sync_cache_and_tags()` for a tagged, user-accessible, non-special PTE: every page not
    yet initialised gets zero tags and PG_mte_tagged. `pages`: a PageRange (the PTEs of one
    set_ptes) or a list of pages."""
    if isinstance(pages, PageRange):
        n = len(pages.pfns)
        zeroed = initialise_tags(m, pages.pfns.start, [0] * n, own=n)
    else:
        zeroed = [p for page in pages for p in initialise_tags(m, page.pfn, [0], own=1)]
    if not zeroed:
        return
    if m.track_origins:
        origins = m.frame_origin
        for pfn in zeroed:
            origins[pfn] = sync_zeroed(m, set_ptes_reason(why, pfn), m.pending_notes.get(pfn))
    if m.tracing:
        def fmt(s: int, n: int) -> str | None:
            part = [p for p in zeroed if s <= p < s + n]
            return part and (f"pfn={format_ranges(part)} tags zeroed, PG_mte_tagged set "
                             f"({set_ptes_reason(why, s)})")
        m.log_range("mte_sync_tags", "pfn", zeroed[0], zeroed[-1] + 1 - zeroed[0], fmt)


def sync_zeroed(m, why: str, pending: tuple[str, str] | None, note: str = "") -> TagOrigin:
    """The origin of tags mte_sync_tags zeroed for `why`, with the note left for the page
    (why it had no saved tags, or that a split cleared its flag)."""
    if pending is None:
        return TagOrigin(SYNC_ZEROED, m.step, "mte_sync_tags", why=why, note=note)
    kind, text = pending
    if kind == SPLIT_CLEARED:
        return TagOrigin(SYNC_ZEROED, m.step, "mte_sync_tags", why=why, note=note, notes=(text,))
    return TagOrigin(SYNC_ZEROED, m.step, "mte_sync_tags", why=why, note=text)


def set_ptes_reason(why, pfn: int) -> str:
    """A `set_ptes` reason: a string, or a function of the pfn for a batch of faults."""
    return why if isinstance(why, str) else why(pfn)


def copy_highpage(m, dst: Page, src: Page) -> None:
    """`copy_highpage()` (arch/arm64/mm/copypage.c): copy data, and tags if the source is
    tagged (the destination must be fresh: the kernel WARNs if its lock was already taken)."""
    dst.data = src.data
    if page_mte_tagged(m, src):
        try_page_mte_tagging(m, dst)
        dst.tags = src.tags
        dst.tags_init = True     # the oracle's I1 ghost
        dst.tag_gen = src.tag_gen    # the write-generation ghost goes with the tags
        dst.origin = TagOrigin(COPIED, m.step, "copy_highpage", pfn=src.pfn)
        set_page_mte_tagged(m, dst)


# -- mteswap.c: the saved-tag store ------------------------------------------------------

def tag_allocs_before_failure(m, nr: int) -> int:
    """How many of the next nr tag-buffer allocations succeed: all of them, unless the
    scenario's `tag_alloc_fail_after: N` makes the (N+1)-th allocation fail among them."""
    fail_after = m.config.tag_alloc_fail_after
    first = m.tag_allocs + 1
    if fail_after is not None and first <= fail_after + 1 < first + nr:
        return fail_after + 1 - first
    return nr


def mte_allocate_tag_storage(m, nr: int = 1) -> bool:
    """`mte_allocate_tag_storage()` (mteswap.c): kmalloc(128), nr times in a row. False when
    one fails (once, on the (N+1)-th allocation when the scenario sets
    `tag_alloc_fail_after: N`); callers split a range there (`tag_allocs_before_failure`)."""
    got = tag_allocs_before_failure(m, nr)
    m.tag_allocs += nr if got == nr else got + 1
    if got < nr:
        m.count("tag_alloc_failures")
        if m.tracing: m.log("mte_allocate_tag_storage", "-ENOMEM (injected)")
        return False
    return True


def mte_save_tags(m, page: Page, entry: int, nr: int = 1) -> int:
    """`mte_save_tags()` (mteswap.c) for pages page.pfn + i under entry + i, i < nr: 0, or
    -ENOMEM when an allocation fails (`save_tags_upto` says where)."""
    return 0 if save_tags_upto(m, page, entry, nr) == nr else ENOMEM


def save_tags_upto(m, page: Page, entry: int, nr: int) -> int:
    """`mte_save_tags()` of each page in turn, as arch_prepare_to_swap loops: store the tags
    of each PG_mte_tagged page (a re-save replaces and frees the old buffer). Returns nr, or
    the index of the page whose allocation failed (the pages before it are saved)."""
    pfn = page.pfn
    if m.flags_per_page:
        mask = m.frame_flags[pfn:pfn + nr].translate(IS_MTE_TAGGED)     # page_mte_tagged each
        tagged = (range(pfn, pfn + nr) if mask.count(1) == nr
                  else [p for p, t in enumerate(mask, pfn) if t])
    else:
        tagged = [p for p in range(pfn, pfn + nr) if page_mte_tagged(m, Page(m, p))]
    if not tagged:
        return nr
    got = tag_allocs_before_failure(m, len(tagged))
    if got:
        mte_allocate_tag_storage(m, got)
        if got == nr:
            mte_store_saved_tags(m, entry, page, nr)       # every page: one range
        else:
            for p in tagged[:got]:
                mte_store_saved_tags(m, entry + p - pfn, Page(m, p))
        if m.tracing:
            for p in tagged[:got]:
                m.log("mte_save_tags", f"pfn={p} entry={entry + p - pfn:#x} "
                      f"tags={T.describe(m.frame_tags[p])}", ("pfn", p))
    if got < len(tagged):
        mte_allocate_tag_storage(m)                        # the one that fails
        return tagged[got] - pfn
    return nr


def mte_store_saved_tags(m, entry: int, page: Page, nr: int = 1) -> None:
    """The `xa_store` into mte_pages at the end of `mte_save_tags()`, for pages page.pfn + i
    under entry + i, i < nr (a re-save replaces and frees the old buffer). With compressed
    storage (V7, mtecomp.c, unmerged) the tags are first run through `mte_compress`: a handle
    that fits is stored inline in the xarray slot (no kmalloc), otherwise the plain 128-byte
    buffer is. The allocations were already made (and counted for fault injection) by the
    caller, as in the series."""
    pfn, store, c = page.pfn, m.mte_pages, m.counters
    if store.slots[entry:entry + nr].count(ABSENT) != nr:
        for e in range(entry, entry + nr):
            _erase_saved(m, e)
    values = m.frame_tags[pfn:pfn + nr]
    if m.compressed_tags:
        c["tag_compressions"] += nr
        values = [_compressed(c, tags) for tags in values]
    store.set_range(entry, values)                # xa_store each
    m.saved_tgen.set_range(entry, m.frame_tgen[pfn:pfn + nr])   # the ghost goes along
    m.tag_heap_bytes += T.MTE_PAGE_TAG_STORAGE * (nr - sum(1 for v in values if v < 0)
                                                  if m.compressed_tags else nr)
    c["tag_saves"] += nr
    if m.track_origins:
        for i in range(nr):
            m.saved_origin[entry + i] = Page(m, pfn + i).origin
    account_tag_bytes(m)


def _compressed(c, tags: int) -> int:
    """The mte_pages value of `tags` under compressed storage: a negated inline handle (a
    handle is odd, so never 0) when `mte_compress` gives one, else the tags themselves."""
    handle = mte_compress(tags)
    if handle is None:
        return tags
    c["tag_saves_inline"] += 1
    return -handle


def _tags_of(value: int | None) -> int | None:
    """Tags of an mte_pages value: the value itself, or its inline handle decompressed."""
    return value if value is None or value >= 0 else mte_decompress(-value)


def saved_tags(m, entry: int) -> int | None:
    """The tags saved for entry (decompressed when stored inline), or None. A pure read, for
    the oracle and traces; restore paths use `mte_load_saved_tags`."""
    return _tags_of(m.mte_pages.get(entry))


def mte_load_saved_tags(m, entry: int) -> int | None:
    """The `xa_load` of `mte_restore_tags()`; with compressed storage an inline handle is
    decompressed into a temporary buffer (`mte_decompress`) before the copy."""
    value = m.mte_pages.slots[entry]
    if value is ABSENT:
        return None
    if value < 0:
        m.counters["tag_decompressions"] += 1
        return mte_decompress(-value)
    return value


def _erase_saved(m, entry: int) -> int | None:
    """`xa_erase` + `mte_free_tag_storage` (which skips inline handles): the stored value
    removed (negative for an inline handle), or None."""
    value = m.mte_pages.pop(entry, None)
    if value is not None and value >= 0:
        m.tag_heap_bytes -= T.MTE_PAGE_TAG_STORAGE
    if value is not None and value >= 0 and m.sched is not None:
        sched.tag_buffers_freed(m, (entry,), "mte_save_tags")
    return value


def note_tag_reads(m, entry: int, values: list) -> None:
    """Record reads of saved tags whose slot is not pinned, for the oracle: in the kernel the
    buffer may be kfree'd at any moment (a use-after-free race). Reads of a pinned slot are
    fine and not recorded."""
    off = entry & _OFFSET_MASK
    swap_map = m.swap.swap_map
    if swap_map[off:off + len(values)].count(0):
        m.tag_reads.extend((entry + i, 0) for i, v in enumerate(values)
                           if v is not ABSENT and not swap_map[off + i])


# The step of `mte_restore_tags()` that copies the buffers it looked up into the pages
# (`mte_restore_page_tags`), when another thread may run between the lookup and the copy.
RESTORE_COPY_STEP = "mte_restore_tags:mte_restore_page_tags"


def mte_restore_tags(m, entry: int, page: Page, nr: int = 1) -> int:
    """`mte_restore_tags()` (mteswap.c) for entry + i into page.pfn + i, i < nr: if a buffer is
    stored for the entry and the page is not yet initialised, copy it into the page's tags and
    mark it tagged. How many pages got tags (0: none).

    Between other threads, when the caller holds no reference to the slots any more (a
    reverted 6dca4ac6fc91: the restore runs after `swap_free_nr`), the `xa_load` of the
    buffers and the copy from them are two steps (`sched.copy_tag_buffers`): a buffer freed
    in between is a use-after-free. With a reference held nothing can free them, and the
    two stay one step (docs/concurrency.md §2)."""
    m.counters["restore_page_iterations"] += nr
    values = m.mte_pages.slots[entry:entry + nr]
    if values.count(ABSENT) == nr:
        return 0
    gens = m.saved_tgen.slots[entry:entry + nr]       # the ghost, read with the buffers
    if m.sched is not None:
        copy_after_lookup(m, entry, values)
    note_tag_reads(m, entry, values)
    if m.compressed_tags:                              # decompress inline handles (xa_load)
        values = [v if v is ABSENT or v >= 0 else mte_load_saved_tags(m, entry + i)
                  for i, v in enumerate(values)]
    pfn = page.pfn
    done = initialise_tags(m, pfn, values, "mte_restore_tags", gens=gens)
    m.counters["tag_restores"] += len(done)
    if done and m.track_origins:
        for p in done:
            m.frame_origin[p] = restored(m, entry + p - pfn)
    if done and m.tracing:
        for p in done:
            m.log("mte_restore_tags", f"entry={entry + p - pfn:#x} -> pfn={p} "
                  f"tags={T.describe(m.frame_tags[p])}", ("pfn", p))
    return len(done)


def copy_after_lookup(m, entry: int, values) -> None:
    """Between threads, a restore by a thread that no longer references the slots (a
    reverted 6dca4ac6fc91): the lookup of the saved buffers (`values`, mte_pages from entry)
    and the copy from them are two accesses another thread can come between."""
    if sched.restoring_unpinned(m):
        sched.copy_tag_buffers(m, _buffers(entry, values), RESTORE_COPY_STEP)


def _buffers(entry: int, values) -> list[int]:
    """The entries among entry + i whose mte_pages value is a kmalloc'd buffer: not absent,
    and not an inline handle of compressed storage (negative: kept in the xarray slot itself,
    never freed)."""
    return [entry + i for i, v in enumerate(values) if v is not ABSENT and v >= 0]


def restored(m, entry: int) -> TagOrigin:
    """The origin of tags restored from entry's saved buffer."""
    return TagOrigin(RESTORED, m.step, "mte_restore_tags", entry=entry,
                     earlier=m.saved_origin.get(entry))


def mte_invalidate_tags(m, entry: int, nr: int = 1) -> None:
    """`mte_invalidate_tags()` (mteswap.c) for entry + i, i < nr: erase and free the buffer of
    each entry that has one."""
    store = m.mte_pages
    values = store.slots[entry:entry + nr]
    held = nr - values.count(ABSENT)
    if not held:                                       # nothing saved
        return
    if m.compressed_tags or m.tracing or m.track_origins:
        present = [entry + i for i, v in enumerate(values) if v is not ABSENT]
    store.clear_range(entry, nr)                       # xa_erase each
    if m.sched is not None:                            # ... and kfree: a buffer's end of life
        sched.tag_buffers_freed(m, _buffers(entry, values), "mte_invalidate_tags")
    inline = sum(1 for v in values if v is not ABSENT and v < 0) if m.compressed_tags else 0
    m.tag_heap_bytes -= (held - inline) * T.MTE_PAGE_TAG_STORAGE
    m.counters["tag_invalidations"] += held
    if inline:
        m.counters["tag_invalidations_inline"] += inline
    if m.track_origins:
        for e in present:
            m.saved_origin.pop(e, None)
    account_tag_bytes(m)
    if m.tracing:
        for e in present:
            m.log("mte_invalidate_tags", f"entry={e:#x}", ("slot", e & _OFFSET_MASK))


def mte_invalidate_tags_area(m, type_: int) -> None:
    """`mte_invalidate_tags_area()` (mteswap.c): erase every buffer of one swap device."""
    lo, hi = swp_entry(type_, 0), swp_entry(type_ + 1, 0)
    for entry in sorted(e for e in m.mte_pages if lo <= e < hi):
        mte_invalidate_tags(m, entry)
    if m.tracing: m.log("mte_invalidate_tags_area", f"type={type_}")


def account_tag_bytes(m) -> None:
    """Track the bytes held in mte_pages and their peak (kmalloc-128 per buffer, 0 inline);
    with compressed storage also what plain storage would hold (128 per entry)."""
    c = m.counters
    c["tag_bytes"] = now = m.tag_heap_bytes
    if now > c["tag_bytes_peak"]:
        c["tag_bytes_peak"] = now
    if m.compressed_tags:
        c["tag_bytes_plain"] = plain = len(m.mte_pages) * T.MTE_PAGE_TAG_STORAGE
        if plain > c["tag_bytes_plain_peak"]:
            c["tag_bytes_plain_peak"] = plain


assert SWP_TYPE_SHIFT > 32   # entries of one device are offset-contiguous (semantics §1.5)
