"""The slot allocator's indexes (`room`, `free_heap`) choose exactly what a scan of every
cluster in index order chooses (the allocator as first written, kept here as the reference)."""

from hypothesis import given, settings, strategies as st

from mteswap.model.swapinfo import SWAP_HAS_CACHE, SWAPFILE_CLUSTER, SwapInfo


def reference_find_slots(si: SwapInfo, nr: int) -> int | None:
    """Lowest cluster serving this order with an aligned free run, else the lowest free
    cluster (full-size only for nr > 1), else for order 0 any free slot."""
    order = nr.bit_length() - 1
    if nr > 1 and si.rotational:
        return None

    def eligible(ci):
        return nr == 1 or si.cluster_is_full_size(ci)

    for want in (order, None):
        for ci in range(si.nclusters):
            if not eligible(ci):
                continue
            if want is None and si.cluster_used[ci] != 0:
                continue
            if want is not None and si.cluster_order[ci] != want:
                continue
            rng = si.cluster_range(ci)
            if si.cluster_used[ci] + nr > len(rng):
                continue
            for off in range(rng.start, rng.stop - nr + 1, nr):
                if all(si.swap_map[o] == 0 for o in range(off, off + nr)):
                    return off
    if nr == 1:
        return next((o for o in range(1, len(si.swap_map)) if si.swap_map[o] == 0), None)
    return None


def _alloc(si: SwapInfo, nr: int):
    off = si.find_slots(nr)
    for o in range(off, off + nr):
        si.take_slot(o, SWAP_HAS_CACHE)
    return off


def _free(si: SwapInfo, off: int):
    si.release_slot(off)
    si.release_cluster_if_free(off)


OPS = st.lists(st.tuples(st.sampled_from(("alloc", "free")), st.sampled_from((1, 1, 4, 16)),
                         st.integers(0, 10 ** 6)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(nslots=st.sampled_from((1024, 1536, 1300, 2048, 600)), ops=OPS)
def test_find_slots_matches_a_scan_of_every_cluster(nslots, ops):
    si = SwapInfo(nslots, "ssd", "7.2")
    for op, nr, pick in ops:
        if op == "alloc":
            # Without the per-CPU `next` offsets (test_swap_slots.py), which make find_slots
            # depend on the previous allocation: only the indexes are compared with the scan.
            si.next_offset.clear()
            want = reference_find_slots(si, nr)
            assert si.find_slots(nr) == want
            if want is not None:
                si.next_offset.clear()
                _alloc(si, nr)
        elif si.allocated:
            _free(si, sorted(si.allocated)[pick % len(si.allocated)])


def test_sequential_folios_fill_clusters_in_order_and_reuse_the_lowest_free_one():
    si = SwapInfo(4 * SWAPFILE_CLUSTER, "ssd", "7.2")
    firsts = [_alloc(si, 16) for _ in range(64)]     # cluster 0 has the header: order 0 only
    assert firsts == list(range(512, 1536, 16))
    for o in range(512, 1024):                        # cluster 1 empties
        _free(si, o)
    assert si.find_slots(16) == 512                    # the lowest free cluster: 1 again
    assert si.find_slots(1) == 1                       # order 0 stays in cluster 0


# 6.12's order-0 placement (cluster_alloc_swap_entry before the 6.14 allocator rework): the
# per-CPU cluster from its `next` offset, else a free cluster, else partly used ones.

def test_6_12_first_order0_slot_takes_a_free_cluster_and_then_leaves_none_for_a_large_folio():
    si = SwapInfo(2 * SWAPFILE_CLUSTER, "ssd", "6.12")
    assert [_alloc(si, 1) for _ in range(3)] == [512, 513, 514]
    assert si.cluster_order == [0, 0]
    assert si.find_slots(16) is None                   # a 64 KiB folio falls back to a split
    si72 = SwapInfo(2 * SWAPFILE_CLUSTER, "ssd", "7.2")
    assert [_alloc(si72, 1) for _ in range(3)] == [1, 2, 3]
    assert si72.find_slots(16) == 512


def test_6_12_order0_goes_on_from_next_past_freed_slots_then_to_the_next_free_cluster():
    si = SwapInfo(4 * SWAPFILE_CLUSTER, "ssd", "6.12")
    assert [_alloc(si, 1) for _ in range(3)] == [512, 513, 514]
    _free(si, 513)
    assert _alloc(si, 1) == 515                         # not the freed 513
    for off in range(516, 1024):
        assert _alloc(si, 1) == off
    assert _alloc(si, 1) == 1024                        # a free cluster before cluster 0
    assert si.find_slots(16) == 1536                    # the last free one serves order 4


def test_6_12_order0_uses_the_header_cluster_once_no_cluster_is_free():
    si = SwapInfo(2 * SWAPFILE_CLUSTER, "ssd", "6.12")
    for off in range(512, 1024):
        assert _alloc(si, 1) == off
    assert _alloc(si, 1) == 1                           # cluster 1 full: cluster 0, from slot 1
    assert _alloc(si, 1) == 2
    _free(si, 700)
    for off in range(3, 512):
        assert _alloc(si, 1) == off
    assert _alloc(si, 1) == 700                         # then whatever is free anywhere
