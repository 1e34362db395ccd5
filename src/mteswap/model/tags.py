"""MTE allocation tags of one 4 KiB page, as one canonical Python int.

A page has 256 granules of 16 bytes, each with a 4-bit tag: 1024 bits, the 128-byte buffer that
`mte_save_page_tags` (arch/arm64/lib/mte.S) fills. Two canonical forms, never equal to each other:

- a page whose granules all carry the same tag t (what STG over a whole page gives, by far the
  common case) is the small int t, 0..15: CPython shares small ints, so such a page costs no
  memory of its own (issue 6: compact storage at 1 GiB scale);
- any other page is `MIXED | packed`, granule g in bits 4g..4g+3 of `packed` (a fixed bijection;
  the kernel's nibble order is not modelled, see kernel-semantics.md §1.1) plus marker bit 1024.

A third value, `UNKNOWN`, stands for tags nobody in the scenario has set since boot: what the
frame holds then depends on its history before the scenario (firmware, boot, an earlier
program), so the model assumes nothing. It is neither form above, equals no program tag, and
is copied, saved and restored like any other value; an access that meets it is a tag-check
fault whatever the pointer tag.

Values are immutable, hashable and compare in one operation, which the explorer's state hashing
needs; two pages have the same tags exactly when their values are equal.
"""

GRANULES_PER_PAGE = 256          # 4096 / MTE_GRANULE_SIZE (16)
TAG_BITS = 4                     # MTE_TAG_SIZE
MTE_PAGE_TAG_STORAGE = 128       # bytes of saved tags per 4 KiB page (two tags per byte)
_NIBBLE_MASK = 0xF
_ONES = int("1" * GRANULES_PER_PAGE, 16)   # 0x111...1: one in every nibble
MIXED = 1 << (TAG_BITS * GRANULES_PER_PAGE)  # marker of the packed (non-uniform) form
UNKNOWN = MIXED << 1             # tags no one initialised: above every packed value
UNKNOWN_TAG = -1                 # a granule of an UNKNOWN page, as first_difference reports it


def uniform(tag: int) -> int:
    """Tags of a page whose every granule carries `tag` (what STG over a page gives)."""
    return tag


def uniform_each(tags: list[int]) -> list[int]:
    """`uniform` of each tag, for a run of pages (the same list: the form is the tag)."""
    return tags


def is_uniform(tags: int) -> bool:
    return tags < MIXED


def packed(tags: int) -> int:
    """The 1024-bit packing of either form (granule g in bits 4g..4g+3)."""
    return tags * _ONES if tags < MIXED else tags - MIXED


def from_packed(bits: int) -> int:
    """Canonical value of a 1024-bit packing."""
    first = bits & _NIBBLE_MASK
    return first if bits == first * _ONES else MIXED | bits


def from_granules(granule_tags) -> int:
    """Canonical value of a sequence of 256 granule tags (granule 0 first)."""
    bits = 0
    for g, tag in enumerate(granule_tags):
        bits |= (tag & _NIBBLE_MASK) << (TAG_BITS * g)
    return from_packed(bits)


def granule(tags: int, g: int) -> int:
    """Tag of granule g."""
    if tags < MIXED:
        return tags
    return (tags >> (TAG_BITS * g)) & _NIBBLE_MASK


def granules(tags: int) -> list[int]:
    """The 256 granule tags, granule 0 first."""
    if tags < MIXED:
        return [tags] * GRANULES_PER_PAGE
    return [(tags >> (TAG_BITS * g)) & _NIBBLE_MASK for g in range(GRANULES_PER_PAGE)]


def first_difference(expected: int, found: int) -> tuple[int, int, int] | None:
    """(granule, expected tag, found tag) of the first granule that differs, or None; a
    granule of an UNKNOWN page is UNKNOWN_TAG (granule 0: every granule is unknown)."""
    if expected == found:
        return None
    if UNKNOWN in (expected, found):
        return (0, UNKNOWN_TAG if expected == UNKNOWN else granule(expected, 0),
                UNKNOWN_TAG if found == UNKNOWN else granule(found, 0))
    diff = packed(expected) ^ packed(found)
    g = ((diff & -diff).bit_length() - 1) // TAG_BITS
    return g, granule(expected, g), granule(found, g)


def tag_text(tag: int) -> str:
    """One granule's tag as text: `9`, or `unknown` for UNKNOWN_TAG."""
    return "unknown" if tag == UNKNOWN_TAG else str(tag)


def describe(tags: int) -> str:
    """Short human form: `9` for a uniform page, `unknown`, else `mixed(3,4,...)`."""
    if tags == UNKNOWN:
        return "unknown"
    if tags < MIXED:
        return str(tags)
    shown = [str(granule(tags, g)) for g in range(4)]
    return "mixed(" + ",".join(shown) + ",...)"
