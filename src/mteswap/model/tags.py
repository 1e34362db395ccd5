"""MTE allocation tags of one 4 KiB page, packed into one Python int.

A page has 256 granules of 16 bytes, each with a 4-bit tag: 1024 bits, the 128-byte buffer that
`mte_save_page_tags` (arch/arm64/lib/mte.S) fills. We pack granule g into bits 4g..4g+3 of an int:
a fixed bijection (the kernel's nibble order is not modelled, see kernel-semantics.md §1.1). An int
is immutable, hashable and compares in one operation, which the explorer's state hashing needs.
"""

GRANULES_PER_PAGE = 256          # 4096 / MTE_GRANULE_SIZE (16)
TAG_BITS = 4                     # MTE_TAG_SIZE
MTE_PAGE_TAG_STORAGE = 128       # bytes of saved tags per 4 KiB page (two tags per byte)
_NIBBLE_MASK = 0xF
_ONES = int("1" * GRANULES_PER_PAGE, 16)   # 0x111...1: one in every nibble


def uniform(tag: int) -> int:
    """Packed tags of a page whose every granule carries `tag` (what STG over a page gives)."""
    return tag * _ONES


def granule(tags: int, g: int) -> int:
    """Tag of granule g."""
    return (tags >> (TAG_BITS * g)) & _NIBBLE_MASK


def first_difference(expected: int, found: int) -> tuple[int, int, int] | None:
    """(granule, expected tag, found tag) of the first granule that differs, or None."""
    diff = expected ^ found
    if not diff:
        return None
    g = ((diff & -diff).bit_length() - 1) // TAG_BITS
    return g, granule(expected, g), granule(found, g)


def describe(tags: int) -> str:
    """Short human form: `9` for a uniform page, else `mixed(3,4,...)`."""
    first = tags & _NIBBLE_MASK
    if tags == uniform(first):
        return str(first)
    shown = [str(granule(tags, g)) for g in range(4)]
    return "mixed(" + ",".join(shown) + ",...)"
