"""Tags nobody initialised are unknown (tags.UNKNOWN), not 0: an access that meets them is a
tag-check fault whatever the pointer tag, so no verdict rests on what a frame held before."""

from __future__ import annotations

from mteswap.model import mtecomp
from mteswap.model import tags as T
from mteswap.model.state import ZERO_PFN
from helpers import kinds, runner


def test_unknown_is_neither_form_and_equals_no_program_tag():
    assert all(T.UNKNOWN != t for t in range(16)) and not T.is_uniform(T.UNKNOWN)
    assert T.UNKNOWN > T.MIXED | T.packed(T.from_granules([g % 16 for g in range(256)]))
    assert T.first_difference(5, T.UNKNOWN) == (0, 5, T.UNKNOWN_TAG)
    assert T.first_difference(T.UNKNOWN, T.UNKNOWN) is None
    assert (T.describe(T.UNKNOWN), T.tag_text(T.UNKNOWN_TAG), T.tag_text(0)) == ("unknown", "unknown", "0")
    assert mtecomp.mte_compress(T.UNKNOWN) is None        # kept in a plain buffer


def test_frames_start_unknown_but_the_zero_page_is_cleared_at_boot():
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                {"write": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"mmap": {"proc": "A", "vma": "t", "pages": 16, "mte": True}},
                {"write": {"proc": "A", "vma": "t", "pages": "all"}}])
    m = r.m
    assert m.frame_tags[ZERO_PFN] == 0
    assert m.frame_tags[0:16] == [T.UNKNOWN] * 16          # no VM_MTE: tags never touched
    assert m.frame_tags[16:32] == [0] * 16                 # VM_MTE: zeroed at allocation
    assert m.frame_tags[32] == T.UNKNOWN                   # never allocated
    assert r.oracle.violations == []


# S5, tagged head: PROT_MTE on pages 0-3 of a folio allocated without it; the split copies
# the head's PG_mte_tagged to pages 4-15, whose tags nobody set, and a later mprotect keeps them.
S5_TAGGED_HEAD = [{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                  {"write": {"proc": "A", "vma": "buf", "pages": "all"}},
                  {"mprotect": {"proc": "A", "vma": "buf", "pages": "0-3", "mte": True}},
                  {"split": {"proc": "A", "vma": "buf", "pages": "all"}},
                  {"mprotect": {"proc": "A", "vma": "buf", "pages": "4-7", "mte": True}},
                  {"read": {"proc": "A", "vma": "buf", "pages": "4-7"}}]


def test_a_tagged_load_of_never_initialised_tags_is_a_tag_check_fault():
    r = runner(S5_TAGGED_HEAD)
    assert [k for k in kinds(r) if k[0] == "tag-check-fault"] == [("tag-check-fault", 6, p) for p in range(4, 8)]
    v = next(v for v in r.oracle.violations if v.kind == "tag-check-fault")
    assert v.detail.startswith("expected tag 0, found unknown: tags never initialised since boot")
    assert v.check == "tag-check-fault"


def test_the_split_fix_initialises_nothing_it_does_not_flag():
    # merged-split-fix keeps each page's own flag: pages 4-7 are zeroed by the mprotect.
    r = runner(S5_TAGGED_HEAD, design="merged-split-fix")
    assert r.oracle.violations == []
