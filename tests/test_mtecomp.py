"""mteswap.model.mtecomp: the inline MTE tag codec of Potapenko's unmerged compression series."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mteswap.model import tags as T
from mteswap.model.mtecomp import (
    mte_compress,
    mte_decompress,
    mte_is_compressed,
    storage_bytes,
    tag_runs,
)

PAGE = 256
BIT63 = 1 << 63


def page(runs):
    """Canonical tags of a page given as [(tag, size), ...] (sizes must sum to 256)."""
    assert sum(size for _, size in runs) == PAGE
    return T.from_granules([tag for tag, size in runs for _ in range(size)])


def merged(runs):
    """What tag_runs must report for `runs`: neighbours with the same tag joined."""
    out = []
    for tag, size in runs:
        if out and out[-1][0] == tag:
            out[-1] = (tag, out[-1][1] + size)
        else:
            out.append((tag, size))
    return out


@st.composite
def run_lists(draw, min_runs, max_runs, distinct_neighbours=True):
    """1..max_runs runs with sizes summing to 256; neighbours differ unless told otherwise."""
    n = draw(st.integers(min_runs, max_runs))
    cuts = sorted(draw(st.sets(st.integers(1, PAGE - 1), min_size=n - 1, max_size=n - 1)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, PAGE])]
    run_tags = [draw(st.integers(0, 15))]
    for _ in range(n - 1):
        if distinct_neighbours:   # a nonzero step mod 16 never repeats the previous tag
            run_tags.append((run_tags[-1] + draw(st.integers(1, 15))) % 16)
        else:
            run_tags.append(draw(st.integers(0, 15)))
    return list(zip(run_tags, sizes))


def check_inline(runs):
    """Compress the page of `runs`, which must fit; check the handle and the round trip."""
    tags = page(runs)
    handle = mte_compress(tags)
    assert handle is not None, runs
    assert handle & 1 == 1 and mte_is_compressed(handle)
    assert not handle & BIT63 and 0 < handle < BIT63
    assert mte_decompress(handle) == tags
    assert storage_bytes(tags) == 0
    return handle


# --- round trips ------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(run_lists(1, 6))
def test_round_trip_up_to_six_runs(runs):
    assert tag_runs(page(runs)) == runs
    check_inline(runs)


@settings(max_examples=300, deadline=None)
@given(run_lists(1, 12, distinct_neighbours=False))
def test_fits_exactly_when_at_most_six_runs_after_merging(runs):
    tags = page(runs)
    assert tag_runs(tags) == merged(runs)
    handle = mte_compress(tags)
    if len(merged(runs)) <= 6:
        assert handle is not None and mte_decompress(handle) == tags
        assert storage_bytes(tags) == 0
    else:
        assert handle is None and storage_bytes(tags) == 128


@pytest.mark.parametrize("tag", range(16))
def test_uniform_page_of_every_tag(tag):
    tags = T.uniform(tag)
    assert tag_runs(tags) == [(tag, 256)]
    handle = check_inline([(tag, 256)])
    # Split into two halves of 128: largest_idx 0, tags[0] = tags[1] = tag, the second half's
    # 128 wraps to 0 in its 7-bit field, everything else 0.
    assert handle == 1 | tag << 4 | tag << 8
    assert T.is_uniform(mte_decompress(handle))


@pytest.mark.parametrize("first", range(1, 256))
def test_every_two_run_split(first):
    check_inline([(0xE, first), (0x0, 256 - first)])


@pytest.mark.parametrize("a, b", [(0, 1), (7, 9), (15, 0), (9, 7)])
def test_two_halves_of_128(a, b):
    handle = check_inline([(a, 128), (b, 128)])
    assert handle == 1 | a << 4 | b << 8      # like a uniform page, but two different tags
    assert mte_decompress(handle) != T.uniform(a)


@pytest.mark.parametrize("runs", [
    [(2, 128), (3, 64), (4, 64)],
    [(2, 64), (3, 128), (4, 64)],
    [(2, 1), (3, 127), (4, 128)],
    [(2, 128), (3, 1), (4, 1), (5, 1), (6, 1), (7, 124)],
    [(1, 127), (2, 129)],
    [(1, 129), (2, 127)],
])
def test_run_of_exactly_128_next_to_others(runs):
    check_inline(runs)


@pytest.mark.parametrize("big_at", range(6))
def test_runs_of_size_one_with_the_large_run_anywhere(big_at):
    sizes = [1] * 6
    sizes[big_at] = 251
    check_inline(list(zip([3, 4, 5, 6, 7, 8], sizes)))


def alternating(n):
    """n runs alternating tags 0xA / 0x5, sizes as even as possible."""
    sizes = [PAGE // n + (i < PAGE % n) for i in range(n)]
    return [(0xA if i % 2 == 0 else 0x5, s) for i, s in enumerate(sizes)]


@pytest.mark.parametrize("n", [5, 6])
def test_alternating_runs_up_to_six_fit(n):
    assert len(tag_runs(page(alternating(n)))) == n
    check_inline(alternating(n))


@pytest.mark.parametrize("n", [7, 8, 64, 256])
def test_alternating_runs_from_seven_do_not_fit(n):
    tags = page(alternating(n))
    assert len(tag_runs(tags)) == n
    assert mte_compress(tags) is None
    assert storage_bytes(tags) == 128


def test_six_runs_fit_but_splitting_one_more_does_not():
    six = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 251)]
    seven = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 250), (1, 1)]
    assert storage_bytes(page(six)) == 0
    assert mte_compress(page(seven)) is None
    assert storage_bytes(page(seven)) == 128


@settings(max_examples=200, deadline=None)
@given(run_lists(7, 40))
def test_seven_or_more_runs_do_not_fit(runs):
    tags = page(runs)
    assert len(tag_runs(tags)) == len(runs)
    assert mte_compress(tags) is None
    assert storage_bytes(tags) == 128


def test_fully_random_pages_do_not_fit():
    rng = random.Random(20231214)
    for _ in range(200):
        tags = T.from_granules([rng.randrange(16) for _ in range(PAGE)])
        # With 256 independent tags, <= 6 runs has probability below 1e-280.
        assert len(tag_runs(tags)) > 6
        assert mte_compress(tags) is None
        assert storage_bytes(tags) == 128


# --- exact handles, worked out by hand --------------------------------------------------------

def test_handle_uniform_tag_5():
    # Runs [(5,256)] -> split [(5,128),(5,128)]; largest_idx 0 (first of the tie).
    #   bit 0      = 1                               -> 0x1
    #   bits 1-3   = largest_idx 0                   -> 0x0
    #   bits 4-7   = tag 5, bits 8-11 = tag 5        -> 0x550
    #   bits 28-34 = size of run 1: 128 & 0x7f = 0   -> 0
    assert mte_compress(T.uniform(5)) == 0x551
    assert mte_decompress(0x551) == 5


def test_handle_two_runs():
    # Runs [(3,10),(0xC,246)]; largest_idx 1 (246).
    #   bit 0 = 1, bits 1-3 = 1 (0b001 << 1 = 0x2)   -> low nibble 0x3
    #   bits 4-7 = 3, bits 8-11 = 0xC                -> 0xC30
    #   bits 28-34 = 10 (only run 0's size stored)   -> 10 << 28 = 0xA000_0000
    tags = page([(3, 10), (0xC, 246)])
    assert mte_compress(tags) == 0xA000_0C33
    assert mte_decompress(0xA000_0C33) == tags


def test_handle_six_runs_largest_in_the_middle():
    # Runs [(1,1),(2,2),(3,200),(4,3),(5,40),(6,10)]; largest_idx 2 (200).
    #   bit 0 = 1, bits 1-3 = 2 (0b010 << 1 = 0x4)   -> low nibble 0x5
    #   bits 4-27 = tags 1..6, one per nibble         -> 0x654_3210
    #   sizes stored, skipping run 2: 1, 2, 3, 40, 10
    #     1 << 28  = 0x0000_0000_1000_0000
    #     2 << 35  = 0x0000_0010_0000_0000   (2^36)
    #     3 << 42  = 0x0000_0C00_0000_0000   (3 * 2^42)
    #     40 << 49 = 0x0050_0000_0000_0000   (5 * 2^52)
    #     10 << 56 = 0x0A00_0000_0000_0000
    #   total      = 0x0A50_0C10_1000_0000 + 0x654_3215
    tags = page([(1, 1), (2, 2), (3, 200), (4, 3), (5, 40), (6, 10)])
    assert mte_compress(tags) == 0x0A50_0C10_1654_3215
    assert mte_decompress(0x0A50_0C10_1654_3215) == tags


def test_handle_tie_picks_the_first_largest_run():
    # Runs [(1,100),(2,100),(3,56)]: runs 0 and 1 tie, largest_idx 0.
    #   bit 0 = 1, bits 1-3 = 0                       -> 0x1
    #   bits 4-15 = tags 1, 2, 3                      -> 0x3210
    #   sizes stored: 100 << 28 = 0x6_4000_0000, 56 << 35 = 0x1C0_0000_0000
    tags = page([(1, 100), (2, 100), (3, 56)])
    assert mte_compress(tags) == 0x1C6_4000_3211


# --- handles and pointers ---------------------------------------------------------------------

def test_is_compressed_is_bit_0():
    assert mte_is_compressed(0x551)
    assert not mte_is_compressed(0xFFFF_0000_1234_5680)   # a kmalloc-128 pointer: aligned
    assert not mte_is_compressed(0x550)


# (handle, what is wrong with it, the part of the error message that says so)
@pytest.mark.parametrize("handle, why, says", [
    (0x550, "bit 0 clear: a pointer", "bit 0 clear"),
    (0x0, "bit 0 clear", "bit 0 clear"),
    (0x551 | BIT63, "bit 63 set", "bit 63"),
    (0xA000_0C33 | BIT63, "bit 63 set", "bit 63"),
    (-1, "negative", "not a 64-bit"),
    (1 << 64 | 0x551, "wider than 64 bits", "not a 64-bit"),
    (0xC | 1, "largest_idx 6: there are at most six runs", "largest_idx 6"),
    (0xE | 1 | 0x654321 << 4 | 0x0204081 << 28 | 1 << 56, "largest_idx 7, five sizes",
     "largest_idx 7"),
    (0x2 | 1 | 0x210, "largest_idx 1 but a single stored size of 0: one run", "largest_idx 1"),
    (0x4 | 1 | 0x210 | 10 << 28, "largest_idx 2 but only two runs", "largest_idx 2"),
    # four runs, idx 3: stored 127 + 127 + 2 = 256 leave 0 for the largest run
    (0x6 | 1 | 0x4321 << 4 | 127 << 28 | 127 << 35 | 2 << 42, "sizes sum to 256", "sum to 256"),
    # four runs, idx 3: stored 3 * 127 = 381 > 256
    (0x6 | 1 | 0x4321 << 4 | 127 << 28 | 127 << 35 | 127 << 42, "sizes sum past 256",
     "sum to 381"),
    # three runs, largest_idx 2: stored sizes 127 + 127 = 254 leave 2, not the largest
    (0x4 | 1 | 0x321 << 4 | 127 << 28 | 127 << 35, "largest run is not the largest",
     "not the canonical"),
    (0x2 | 1 | 0x33 << 4 | 10 << 28, "neighbouring runs with the same tag", "not the canonical"),
    (0x2 | 1 | 0x5C3 << 4 | 10 << 28, "nonzero tag in an unused run", "not the canonical"),
    (0x2 | 1 | 0xC3 << 4 | 10 << 28 | 7 << 42, "nonzero size after the zero terminator",
     "not the canonical"),
    # three runs, largest_idx 0, stored 120 and 30: run 0 gets 106 < 120
    (0x1 | 0x321 << 4 | 120 << 28 | 30 << 35, "largest_idx names a smaller run",
     "not the canonical"),
    # the tie example above with largest_idx 1: compression picks the first of a tie
    (0x2 | 1 | 0x321 << 4 | 100 << 28 | 56 << 35, "largest_idx not the first largest",
     "not the canonical"),
])
def test_malformed_handles_raise(handle, why, says):
    with pytest.raises(ValueError, match=says):
        mte_decompress(handle)


@pytest.mark.parametrize("handle, runs", [
    # near misses of the malformed cases above, which are well formed
    (0x2 | 1 | 0x21 << 4 | 10 << 28, [(1, 10), (2, 246)]),
    (0x1 | 0x321 << 4 | 100 << 28 | 56 << 35, [(1, 100), (2, 100), (3, 56)]),
    (0x4 | 1 | 0x321 << 4 | 60 << 28 | 30 << 35, [(1, 60), (2, 30), (3, 166)]),
    (0x6 | 1 | 0x4321 << 4 | 100 << 28 | 27 << 35 | 1 << 42, [(1, 100), (2, 27), (3, 1), (4, 128)]),
])
def test_well_formed_handles_decode(handle, runs):
    assert mte_decompress(handle) == page(runs)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, (1 << 64) - 1))
def test_any_64_bit_value_decodes_only_to_its_own_preimage(handle):
    _decodes_only_to_its_preimage(handle)


def _decodes_only_to_its_preimage(handle):
    """The tags a handle decodes to (None if it is rejected), which compress back to it."""
    try:
        tags = mte_decompress(handle)
    except ValueError:
        return None
    assert mte_compress(tags) == handle
    return tags


@st.composite
def field_handles(draw):
    """Handles assembled from field values: bit 0 set, bit 63 clear, n runs' worth of tags and
    n - 1 nonzero sizes, the unused fields 0 unless `noise` fills them too."""
    n = draw(st.integers(1, 6))
    noise = draw(st.booleans())
    handle = 1 | draw(st.integers(0, 7)) << 1
    for i in range(6):
        handle |= draw(st.integers(0, 15) if i < n or noise else st.just(0)) << (4 + 4 * i)
    for j in range(5):
        size = st.integers(1, 127) if j < n - 1 else st.integers(0, 127) if noise else st.just(0)
        handle |= draw(size) << (28 + 7 * j)
    return handle


@settings(max_examples=300, deadline=None)
@given(field_handles())
def test_structured_handles_decode_only_to_their_own_preimage(handle):
    tags = _decodes_only_to_its_preimage(handle)
    if tags is None:
        return
    assert sum(size for _, size in tag_runs(tags)) == PAGE


def test_tag_runs_of_a_mixed_page():
    tags = page([(0, 16), (0xF, 224), (0, 16)])
    assert tag_runs(tags) == [(0, 16), (0xF, 224), (0, 16)]
    assert sum(size for _, size in tag_runs(T.uniform(9))) == 256
