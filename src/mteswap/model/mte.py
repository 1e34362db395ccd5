"""arm64 MTE page-tag primitives: arch/arm64/kernel/mte.c, arch/arm64/mm/mteswap.c,
arch/arm64/mm/copypage.c and the flag helpers of arch/arm64/include/asm/mte.h.

These are the building blocks the designs' arch hooks are made of; a design may use them as
they are or do something else.
"""

from __future__ import annotations

from mteswap.model import tags as T
from mteswap.model.mtecomp import mte_compress, mte_decompress
from mteswap.model.state import (IS_MTE_LOCK, IS_MTE_TAGGED, PG_MTE_LOCK, PG_MTE_TAGGED,
                                  SET_TAGS_INIT_TAGGED_LOCK, TAGS_INIT, UNTRACKED_ORIGIN, Page,
                                  PageRange)
from mteswap.ranges import format_ranges
from mteswap.model.swapinfo import ABSENT, SWP_TYPE_SHIFT, swp_entry, swp_offset

ENOMEM = -12
_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1   # swp_offset(entry) = entry & _OFFSET_MASK


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
    initialise the tags. False if the page was already initialised (the kernel would spin
    until PG_mte_tagged is set; initialisation never stays half-done between our steps)."""
    flags = mte_flags(m, page)
    if flags.mte_lock:
        return False
    flags.mte_lock = True
    return True


def set_page_mte_tagged(m, page: Page) -> None:
    """`set_page_mte_tagged()` (asm/mte.h): tags are now valid (after an smp_wmb)."""
    mte_flags(m, page).mte_tagged = True


def mte_clear_page_tags(page: Page, origin: tuple) -> None:
    """`mte_clear_page_tags()` (arch/arm64/lib/mte.S): zero every granule's tag."""
    page.tags = 0
    page.tags_init = True        # the oracle's I1 ghost (state.py TAGS_INIT)
    page.origin = origin


def tag_clear_highpage(m, page: Page) -> None:
    """`tag_clear_highpage()` (arch/arm64/mm/fault.c): allocation with __GFP_ZEROTAGS zeroes
    data and tags together and marks the page tagged."""
    page.data = 0
    if try_page_mte_tagging(m, page):
        mte_clear_page_tags(page, ("zeroed at allocation (__GFP_ZEROTAGS)", m.step)
                            if m.track_origins else UNTRACKED_ORIGIN)
        set_page_mte_tagged(m, page)


def mte_sync_tags(m, pages: list[Page], why: str) -> None:
    """`mte_sync_tags()` (arch/arm64/kernel/mte.c), reached from `set_ptes()` through
    `__sync_cache_and_tags()` for a tagged, user-accessible, non-special PTE: every page not
    yet initialised gets zero tags and PG_mte_tagged."""
    if m.flags_per_page and not m.track_origins:
        zeroed = _sync_frames(m, pages.pfns if isinstance(pages, PageRange)
                              else [page.pfn for page in pages])
    else:
        zeroed = _sync_pages(m, pages, why)
    if zeroed:
        if m.tracing: m.log("mte_sync_tags", f"pfn={format_ranges(zeroed)} tags zeroed, PG_mte_tagged set ({why})")


def _sync_frames(m, pfns: list[int]) -> list[int]:
    """mte_sync_tags on the frame arrays, for per-page flags without origin tracking (the
    cost runs): the same three steps per page as `_sync_pages`, without a Page view."""
    flags, tags, zeroed = m.frame_flags, m.frame_tags, []
    if isinstance(pfns, range) and len(pfns) > 1:
        a, b = pfns.start, pfns.stop
        locked = flags[a:b].translate(IS_MTE_LOCK).count(1)
        if locked == b - a:                              # every lock already taken
            return []
        if not locked:                                   # none: all three steps, as slices
            tags[a:b] = [0] * (b - a)
            flags[a:b] = flags[a:b].translate(SET_TAGS_INIT_TAGGED_LOCK)
            return list(pfns)
    for pfn in pfns:
        f = flags[pfn]
        if not f & PG_MTE_LOCK:                          # try_page_mte_tagging
            tags[pfn] = 0                                # mte_clear_page_tags
            flags[pfn] = f | PG_MTE_LOCK | PG_MTE_TAGGED | TAGS_INIT   # set_page_mte_tagged
            zeroed.append(pfn)
    return zeroed


def _sync_pages(m, pages: list[Page], why: str) -> list[int]:
    zeroed = []
    for page in pages:
        if try_page_mte_tagging(m, page):
            if m.track_origins:
                note = m.pending_notes.get(page.pfn, "")
                mte_clear_page_tags(page, ("zeroed by mte_sync_tags", m.step, why, note))
            else:
                mte_clear_page_tags(page, UNTRACKED_ORIGIN)
            set_page_mte_tagged(m, page)
            zeroed.append(page.pfn)
    return zeroed


def copy_highpage(m, dst: Page, src: Page) -> None:
    """`copy_highpage()` (arch/arm64/mm/copypage.c): copy data, and tags if the source is
    tagged (the destination must be fresh: the kernel WARNs if its lock was already taken)."""
    dst.data = src.data
    if page_mte_tagged(m, src):
        try_page_mte_tagging(m, dst)
        dst.tags = src.tags
        dst.tags_init = True     # the oracle's I1 ghost
        dst.origin = ("copied by copy_highpage from pfn", m.step, src.pfn)
        set_page_mte_tagged(m, dst)


# -- mteswap.c: the saved-tag store ------------------------------------------------------

def mte_allocate_tag_storage(m) -> bool:
    """`mte_allocate_tag_storage()` (mteswap.c): kmalloc(128). Fails once, on the (N+1)-th
    allocation, when the scenario sets `tag_alloc_fail_after: N`."""
    fail_after = m.config.tag_alloc_fail_after
    m.tag_allocs += 1
    if fail_after is not None and m.tag_allocs == fail_after + 1:
        m.count("tag_alloc_failures")
        if m.tracing: m.log("mte_allocate_tag_storage", "-ENOMEM (injected)")
        return False
    return True


def mte_save_tags(m, page: Page, entry: int) -> int:
    """`mte_save_tags()` (mteswap.c): store the page's tags under its swap entry if the page is
    PG_mte_tagged; a re-save replaces (and frees) the old buffer. 0 or -ENOMEM."""
    if not (m.frame_flags[page.pfn] & PG_MTE_TAGGED if m.flags_per_page
            else page_mte_tagged(m, page)):
        return 0
    if not mte_allocate_tag_storage(m):
        return ENOMEM
    mte_store_saved_tags(m, entry, page)
    if m.tracing: m.log("mte_save_tags", f"pfn={page.pfn} entry={entry:#x} tags={T.describe(page.tags)}")
    return 0


def mte_store_saved_tags(m, entry: int, page: Page) -> None:
    """The `xa_store` into mte_pages at the end of `mte_save_tags()` (a re-save replaces and
    frees the old buffer). With compressed storage (V7, mtecomp.c, unmerged) the tags are
    first run through `mte_compress`: a handle that fits is stored inline in the xarray slot
    (no kmalloc), otherwise the plain 128-byte buffer is. The allocation was already made
    (and counted for fault injection) by the caller, as in the series."""
    store = m.mte_pages
    _erase_saved(m, entry)
    tags = value = m.frame_tags[page.pfn]
    if m.compressed_tags:
        m.counters["tag_compressions"] += 1
        handle = mte_compress(tags)
        if handle is not None:
            value = -handle                      # negative: an inline handle, never a tag value
            m.counters["tag_saves_inline"] += 1
    store[entry] = value                         # xa_store
    if value >= 0:
        m.tag_heap_bytes += T.MTE_PAGE_TAG_STORAGE
    if m.track_origins:
        m.saved_origin[entry] = page.origin
    m.counters["tag_saves"] += 1
    account_tag_bytes(m)


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
    return value


def mte_restore_tags(m, entry: int, page: Page) -> bool:
    """`mte_restore_tags()` (mteswap.c): if a buffer is stored for entry and the page is not yet
    initialised, copy it into the page's tags and mark it tagged. True if tags were restored."""
    m.counters["restore_page_iterations"] += 1
    value = m.mte_pages.slots[entry]
    if value is ABSENT:
        return False
    buf = value if value >= 0 else mte_load_saved_tags(m, entry)   # decompress a handle
    # Record the read for the oracle: reading a buffer whose slot is not pinned is a
    # use-after-free race in the kernel (the buffer may be kfree'd at any moment).
    if not m.swap.swap_map[entry & _OFFSET_MASK]:   # only an unpinned read is a finding
        m.tag_reads.append((entry, 0))
    if m.flags_per_page and not m.track_origins:
        return _restore_frame(m, entry, page.pfn, buf)
    if not try_page_mte_tagging(m, page):
        return False
    page.tags = buf
    page.tags_init = True        # the oracle's I1 ghost
    page.origin = (("restored by mte_restore_tags from slot", m.step, swp_offset(entry),
                    m.saved_origin.get(entry)) if m.track_origins else UNTRACKED_ORIGIN)
    set_page_mte_tagged(m, page)
    m.count("tag_restores")
    if m.tracing: m.log("mte_restore_tags", f"entry={entry:#x} -> pfn={page.pfn} tags={T.describe(buf)}")
    return True


def _restore_frame(m, entry: int, pfn: int, buf: int) -> bool:
    """The rest of mte_restore_tags on the frame arrays (per-page flags, no origins)."""
    flags = m.frame_flags
    f = flags[pfn]
    if f & PG_MTE_LOCK:                                   # try_page_mte_tagging: taken
        return False
    m.frame_tags[pfn] = buf
    flags[pfn] = f | PG_MTE_LOCK | PG_MTE_TAGGED | TAGS_INIT   # set_page_mte_tagged
    m.counters["tag_restores"] += 1
    if m.tracing: m.log("mte_restore_tags", f"entry={entry:#x} -> pfn={pfn} tags={T.describe(buf)}")
    return True


def mte_invalidate_tags(m, entry: int) -> None:
    """`mte_invalidate_tags()` (mteswap.c): erase and free the buffer of one entry, if any."""
    if m.mte_pages.slots[entry] is ABSENT:             # nothing saved
        return
    if m.track_origins:
        m.saved_origin.pop(entry, None)
    value = _erase_saved(m, entry)
    m.count("tag_invalidations")
    if value < 0:
        m.counters["tag_invalidations_inline"] += 1
    account_tag_bytes(m)
    if m.tracing: m.log("mte_invalidate_tags", f"entry={entry:#x}")


# -- the same operations over a run of pages, for the common case at scale -----------------
# `arch_prepare_to_swap`, `arch_swap_restore` and `swap_range_free` call the per-page
# functions above once per page of a folio. When nothing in those calls can differ from page
# to page except the data (per-page flags, plain storage, no injected allocation failure, no
# trace or origins to record), the run helpers below do what that loop does in one pass over
# the arrays: same stores, flags, counters and peaks. They return False (nothing done) when a
# condition does not hold, and the caller runs the per-page loop.

def _runs_allowed(m) -> bool:
    return (m.flags_per_page and not m.track_origins and not m.tracing
            and not m.compressed_tags and m.config.tag_alloc_fail_after is None)


def mte_save_tags_run(m, pfn: int, entry: int, nr: int) -> bool:
    """`mte_save_tags` of pages pfn + i under entry + i, i < nr, when no entry holds tags
    yet (a re-save frees the old buffer first: left to the per-page loop)."""
    if not _runs_allowed(m) or m.mte_pages.slots[entry:entry + nr].count(ABSENT) != nr:
        return False
    slots = m.mte_pages.writable_slots()
    tagged = m.frame_flags[pfn:pfn + nr].translate(IS_MTE_TAGGED)   # page_mte_tagged each
    tags = m.frame_tags[pfn:pfn + nr]
    saved = tagged.count(1)
    if saved == nr:
        slots[entry:entry + nr] = tags                 # xa_store of each copied buffer
    else:
        for i, t in enumerate(tagged):
            if t:
                slots[entry + i] = tags[i]
    m.mte_pages.n += saved
    m.mte_pages.noted(entry + i for i, t in enumerate(tagged) if t)
    m.tag_allocs += saved                              # mte_allocate_tag_storage each
    m.tag_heap_bytes += saved * T.MTE_PAGE_TAG_STORAGE
    m.counters["tag_saves"] += saved
    account_tag_bytes(m)                               # the peak is at the end of the run
    return True


def mte_restore_tags_run(m, entry: int, pfn: int, nr: int) -> bool:
    """`mte_restore_tags(entry + i, page pfn + i)` for i < nr."""
    if not _runs_allowed(m):
        return False
    slots, swap_map = m.mte_pages.slots, m.swap.swap_map
    flags, tags = m.frame_flags, m.frame_tags
    c = m.counters
    c["restore_page_iterations"] += nr
    values = slots[entry:entry + nr]
    off = entry & _OFFSET_MASK
    if (values.count(ABSENT) == 0 and swap_map[off:off + nr].count(0) == 0
            and flags[pfn:pfn + nr].translate(IS_MTE_LOCK).count(1) == 0):
        # Every page has saved tags, every slot is pinned, no page is initialised yet.
        tags[pfn:pfn + nr] = values
        flags[pfn:pfn + nr] = flags[pfn:pfn + nr].translate(SET_TAGS_INIT_TAGGED_LOCK)
        c["tag_restores"] += nr
        return True
    for i, value in enumerate(values):
        if value is ABSENT:
            continue
        if not swap_map[(entry + i) & _OFFSET_MASK]:  # an unpinned read, for the oracle
            m.tag_reads.append((entry + i, 0))
        _restore_frame(m, entry + i, pfn + i, value)
    return True


def mte_invalidate_tags_run(m, entry: int, nr: int) -> bool:
    """`mte_invalidate_tags(entry + i)` for i < nr (what `arch_swap_invalidate_page` does
    for each slot `swap_range_free` frees)."""
    if not _runs_allowed(m):
        return False
    held = m.mte_pages.clear_range(entry, nr)          # xa_erase + kfree each
    if held:
        m.tag_heap_bytes -= held * T.MTE_PAGE_TAG_STORAGE
        m.counters["tag_invalidations"] += held
        account_tag_bytes(m)
    return True


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
