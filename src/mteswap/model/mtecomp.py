"""MTE tag compression for swapped pages: a model of Alexander Potapenko's series
"Implement MTE tag compression for swapped pages" (v8-v10-mte, Dec 2023), which adds
`arch/arm64/mm/mtecomp.c` and `Documentation/arch/arm64/mte-tag-compression.rst`
(CONFIG_ARM64_MTE_COMP). The series was acked but is **not in mainline** as far as we know
(kernel-semantics.md §4 V7); this is an independent re-implementation of the described
behaviour, 4 KiB pages only.

The codec is run-length based. A page's 256 granule tags become runs (tag, size). The size of
the largest run is not stored (it is 256 minus the others), only its index. Up to six runs fit
into one 64-bit value with bit 0 set, which the `mte_pages` xarray can hold in place of a
pointer (kmalloc'd pointers have bit 0 clear, so bit 0 tells them apart). Since v8 there is no
out-of-line compressed form: a page with seven or more runs keeps its plain 128-byte buffer.

Inline handle layout (bit 0 = least significant):

    bit  0      1                      (marks "compressed", never set in a pointer)
    bits 1-3    largest_idx            (index of the run whose size is left out)
    bits 4-27   tag of run 0..5        (4 bits each; unused runs 0)
    bits 28-62  size of the runs other than largest_idx, in run order
                                       (7 bits each; unused slots 0)
    bit  63     0                      (keeps the value a valid xarray value)

Tags are the canonical ints of `mteswap.model.tags` (uniform 0..15 or MIXED|packed).
Standard library only.
"""

from __future__ import annotations

from itertools import groupby

from mteswap.model.tags import (
    GRANULES_PER_PAGE,
    MTE_PAGE_TAG_STORAGE,
    TAG_BITS,
    from_granules,
    granules,
    UNKNOWN,
    is_uniform,
)

MTE_MAX_RANGES = 6            # 1 + 3 + 6*4 + 5*7 = 63 bits: the most runs that fit in 63 bits
BITS_PER_LARGEST_IDX = 3      # indexes 0..5 need 3 bits
BITS_PER_SIZE = 7             # sizes other than the largest are <= 128; 128 itself wraps to 0
HALF = GRANULES_PER_PAGE // 2  # 128: the one size that does not fit in 7 bits

_IDX_SHIFT = 1
_TAGS_SHIFT = _IDX_SHIFT + BITS_PER_LARGEST_IDX                 # 4
_SIZES_SHIFT = _TAGS_SHIFT + TAG_BITS * MTE_MAX_RANGES          # 28
_TOP_BIT = 1 << 63
_TAG_MASK = (1 << TAG_BITS) - 1
_SIZE_MASK = (1 << BITS_PER_SIZE) - 1
_IDX_MASK = (1 << BITS_PER_LARGEST_IDX) - 1


def tag_runs(tags: int) -> list[tuple[int, int]]:
    """Maximal runs (tag, size) of equal consecutive granule tags, granule 0 first;
    the sizes sum to 256."""
    if is_uniform(tags):
        return [(tags, GRANULES_PER_PAGE)]   # skip building the 256-element list
    return [(tag, sum(1 for _ in run)) for tag, run in groupby(granules(tags))]


def mte_is_compressed(handle: int) -> bool:
    """Does this xarray value hold inline compressed tags (bit 0) rather than a pointer?"""
    return bool(handle & 1)


def _largest_index(sizes: list[int]) -> int:
    # First maximum: the decoder's two-halves special case relies on index 0 winning a tie.
    return sizes.index(max(sizes))


def mte_compress(tags: int) -> int | None:
    """The inline 64-bit handle of a page's tags, or None if they form more than six runs
    (the caller then keeps the uncompressed 128-byte buffer). Unknown tags (tags.UNKNOWN)
    could hold any runs, so they are never taken as compressible: their buffer stays plain."""
    if tags == UNKNOWN:
        return None
    runs = tag_runs(tags)
    if len(runs) > MTE_MAX_RANGES:
        return None
    if len(runs) == 1:
        # A uniform page becomes two halves, so there is always a run whose size is stored.
        runs = [(runs[0][0], HALF), (runs[0][0], HALF)]
    sizes = [size for _, size in runs]
    largest = _largest_index(sizes)
    handle = 1 | largest << _IDX_SHIFT
    for i, (tag, _) in enumerate(runs):
        handle |= tag << (_TAGS_SHIFT + TAG_BITS * i)
    stored = sizes[:largest] + sizes[largest + 1:]
    for j, size in enumerate(stored):
        # Only the second of two 128-halves can be 128 here; masking stores it as 0.
        handle |= (size & _SIZE_MASK) << (_SIZES_SHIFT + BITS_PER_SIZE * j)
    return handle


def _fields(handle: int) -> tuple[int, list[int], list[int]]:
    """(largest_idx, six tags, five stored sizes) of a handle, without interpreting them."""
    largest = (handle >> _IDX_SHIFT) & _IDX_MASK
    tags = [(handle >> (_TAGS_SHIFT + TAG_BITS * i)) & _TAG_MASK for i in range(MTE_MAX_RANGES)]
    stored = [(handle >> (_SIZES_SHIFT + BITS_PER_SIZE * j)) & _SIZE_MASK
              for j in range(MTE_MAX_RANGES - 1)]
    return largest, tags, stored


def _run_sizes(largest: int, stored: list[int]) -> list[int]:
    """All run sizes: the stored ones up to the first 0 (padding), with the largest put back."""
    if largest == 0 and stored[0] == 0:
        stored = [HALF]        # the two-halves case: its second 128 was stored as 0
    else:
        stored = stored[:stored.index(0)] if 0 in stored else stored
    if largest > len(stored):
        raise ValueError(f"largest_idx {largest} but only {len(stored) + 1} runs")
    rest = sum(stored)
    if rest >= GRANULES_PER_PAGE:
        raise ValueError(f"stored run sizes sum to {rest}, leaving nothing for the largest run")
    return stored[:largest] + [GRANULES_PER_PAGE - rest] + stored[largest:]


def mte_decompress(handle: int) -> int:
    """The canonical tags value an inline handle stands for.

    Raises ValueError for anything `mte_compress` cannot have produced: not a 64-bit value,
    bit 0 clear (a pointer, not compressed data), bit 63 set, largest_idx past the last run,
    sizes that leave no room for the largest run, or a non-canonical encoding (nonzero
    padding, mergeable neighbours, largest_idx not the first largest run).
    """
    if not 0 <= handle < 1 << 64:
        raise ValueError(f"handle {handle:#x} is not a 64-bit value")
    if not mte_is_compressed(handle):
        raise ValueError(f"handle {handle:#x} has bit 0 clear: not inline compressed tags")
    if handle & _TOP_BIT:
        raise ValueError(f"handle {handle:#x} has bit 63 set")
    largest, run_tags, stored = _fields(handle)
    sizes = _run_sizes(largest, stored)
    out: list[int] = []
    for tag, size in zip(run_tags, sizes):
        out.extend([tag] * size)
    tags = from_granules(out)
    # The kernel's decoder stops at about the checks above; re-encoding also rejects handles
    # that decode to something but that compression never emits (stricter than the kernel).
    if mte_compress(tags) != handle:
        raise ValueError(f"handle {handle:#x} is not the canonical encoding of its tags")
    return tags


def storage_bytes(tags: int) -> int:
    """Heap bytes one swapped-out page's tags cost with compression: 0 when the handle is
    stored inline in the xarray slot, else the uncompressed kmalloc-128 buffer (xarray node
    overhead not counted, as without compression)."""
    return 0 if mte_compress(tags) is not None else MTE_PAGE_TAG_STORAGE
