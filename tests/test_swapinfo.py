"""The slot allocator's indexes (`room`, `free_list`) choose exactly what a scan of every
cluster in index order, with the kernel's free-cluster list kept by hand, chooses (the
allocator as first written, kept here as the reference)."""

from hypothesis import given, settings, strategies as st

from mteswap.model.swapinfo import SWAP_HAS_CACHE, SWAPFILE_CLUSTER, SwapInfo


def reference_find_slots(si: SwapInfo, nr: int, fifo: list) -> int | None:
    """7.2: from this order's `next` offset to the end of its cluster (unless the cluster was
    freed since); else the lowest cluster serving this order with an aligned
    free run, else the first free cluster of `fifo` (full-size only for nr > 1; the short
    last cluster comes last), else for order 0 any free slot."""
    order = nr.bit_length() - 1
    if nr > 1 and not si.large_slots:
        return None
    nxt = si.next_off.get(order)
    if nxt is not None:
        ci = nxt // SWAPFILE_CLUSTER
        rng = si.cluster_range(ci)
        if si.cluster_order[ci] == order and (nr == 1 or len(rng) == SWAPFILE_CLUSTER):
            for off in range(nxt, rng.stop - nr + 1, nr):
                if all(si.swap_map[o] == 0 for o in range(off, off + nr)):
                    return off

    def eligible(ci):
        return nr == 1 or si.cluster_is_full_size(ci)

    for ci in sorted(c for c in range(si.nclusters) if si.cluster_order[c] == order):
        if not eligible(ci):
            continue
        rng = si.cluster_range(ci)
        if si.cluster_used[ci] + nr > len(rng):
            continue
        for off in range(rng.start, rng.stop - nr + 1, nr):
            if all(si.swap_map[o] == 0 for o in range(off, off + nr)):
                return off
    last = si.nclusters - 1
    for ci in list(fifo) + ([last] if si.last_partial else []):
        if si.cluster_order[ci] is None and si.cluster_used[ci] == 0 and eligible(ci):
            return ci * SWAPFILE_CLUSTER
    if nr == 1:
        return next((o for o in range(1, len(si.swap_map)) if si.swap_map[o] == 0), None)
    return None


def update_fifo(si: SwapInfo, fifo: list) -> None:
    """The kernel's free-cluster list, kept by hand: full-size clusters in index order at
    swapon; a cluster taken leaves it, one freed again goes to the tail."""
    fifo[:] = [ci for ci in fifo if si.cluster_order[ci] is None]
    for ci in range(1, si.nclusters):
        if si.cluster_order[ci] is None and ci not in fifo and si.cluster_is_full_size(ci):
            fifo.append(ci)


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
    fifo = []
    update_fifo(si, fifo)
    for op, nr, pick in ops:
        if op == "alloc":
            want = reference_find_slots(si, nr, fifo)
            got = si.find_slots(nr)                 # once: it moves `next` on
            assert got == want
            for o in range(got, got + nr) if got is not None else ():
                si.take_slot(o, SWAP_HAS_CACHE)
        elif si.allocated:
            _free(si, sorted(si.allocated)[pick % len(si.allocated)])
        update_fifo(si, fifo)


def test_sequential_folios_fill_clusters_in_order_and_a_freed_cluster_goes_to_the_tail():
    si = SwapInfo(5 * SWAPFILE_CLUSTER, "ssd", "7.2")
    firsts = [_alloc(si, 16) for _ in range(64)]     # cluster 0 has the header: order 0 only
    assert firsts == list(range(512, 1536, 16))
    for o in range(512, 1024):                        # cluster 1 empties
        _free(si, o)
    # the free list is [3, 4, 1]: never-used clusters first (fuzz-13-0093)
    assert [_alloc(si, 16) for _ in range(32)] == list(range(1536, 2048, 16))
    assert [_alloc(si, 16) for _ in range(33)] == list(range(2048, 2560, 16)) + [512]
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
