"""6.12's per-CPU swap slot cache (model/swap_slots.py, mm/swap_slots.c) and the order in
which reclaim writes the pages of a split folio (model/vmscan.py `_queue_tails`), with
concrete slots, swap_map values and page states. Every expectation here was also seen on the
real kernels (`mteswap kernel run`, docs/model.md "Kernel versions")."""

from __future__ import annotations

import pytest

from helpers import kinds, runner, scenario
from mteswap.designs import get_design
from mteswap.model.pte import pte_to_swp_entry
from mteswap.model.swapinfo import SWAP_HAS_CACHE, swp_offset
from mteswap.scenario.runner import Runner


def _mmap(vma, pages, mte=True):
    return {"mmap": {"proc": "A", "vma": vma, "pages": pages, "mte": mte}}


def _op(op, vma, pages="all", **kw):
    return {op: {"proc": "A", "vma": vma, "pages": pages, **kw}}


def _slots(r, vma) -> list[int]:
    """The swap slot each page of A's VMA names (its swap PTE)."""
    mm = r.m.mms[r.pids["A"]]
    start, pages = r.vmas[(r.pids["A"], vma)]
    return [swp_offset(pte_to_swp_entry(mm.ptes[v], v)) for v in range(start, start + pages)]


SWAP_TWO = [_mmap("v", 2, mte=True), _op("write", "v", tag=3), _op("pageout", "v")]


def test_6_12_first_order0_swap_out_takes_a_batch_of_64_slots():
    r = runner(SWAP_TWO, swap_device="zram")
    si = r.m.swap
    assert si.slots_cache_active
    assert [si.count(o) for o in (512, 513)] == [1, 1]           # pages 0 and 1
    assert si.slots_cache == tuple(range(514, 576))              # the rest of the batch waits
    assert {si.swap_map[o] for o in range(514, 576)} == {SWAP_HAS_CACHE}
    assert sorted(si.allocated) == list(range(512, 576))
    assert si.nr_swap_pages() == 1023 - 64
    assert kinds(r) == []                                        # I5 knows the cache's slots


def test_7_2_has_no_slot_cache():
    r = runner(SWAP_TWO, swap_device="zram", kernel="7.2")
    si = r.m.swap
    assert not si.has_slots_cache and si.slots_cache == () and si.slots_ret == ()
    assert sorted(si.allocated) == [1, 2]


def test_a_freed_slot_waits_on_the_return_list_with_its_tags_and_is_not_reused():
    # Page 0 faults back (zram: its slot's last reference goes), then page 1 is written again.
    r = runner(SWAP_TWO + [_op("read", "v", 0), _op("write", "v", 0, tag=3),
                           _op("pageout", "v", 0)], swap_device="zram")
    si, m = r.m.swap, r.m
    assert si.slots_ret == (512,)
    assert si.swap_map[512] == SWAP_HAS_CACHE and 512 not in si.cache
    assert 512 in m.mte_pages                     # arch_swap_invalidate_page not called yet
    assert si.count(514) == 1                     # the next slot of the batch, not 512
    assert si.slots_cache == tuple(range(515, 576))
    assert kinds(r) == []


def test_the_return_list_is_freed_when_full():
    # 65 pages out (the batch of 64, then a refill) and back in: the 65th free flushes 64.
    steps = [_mmap("v", 65), _op("write", "v", tag=2), _op("pageout", "v"), _op("read", "v")]
    r = runner(steps, swap_device="zram", folio_pages=[1], frames=256)
    si, m = r.m.swap, r.m
    assert si.slots_ret == (576,)
    assert all(si.swap_map[o] == 0 for o in range(512, 576))
    assert sorted(m.mte_pages) == [576]
    assert si.slots_cache == tuple(range(577, 640))
    assert si.cluster_order[1] == 0               # still held: never free again by itself


def test_the_cache_turns_on_only_above_640_free_slots_with_two_cpus():
    # The short last cluster (512-640) is a partly used one, after cluster 0 (setup_clusters
    # counts the slots past the end): order-0 pages start at slot 1, as 6.12 does.
    off = runner(SWAP_TWO, swap_device="zram", swap_slots=641)    # 640 free: not above
    assert not off.m.swap.slots_cache_active and off.m.swap.slots_cache == ()
    assert sorted(off.m.swap.allocated) == [1, 2]
    on = runner(SWAP_TWO, swap_device="zram", swap_slots=642)     # 641 free
    assert on.m.swap.slots_cache_active and on.m.swap.slots_cache == tuple(range(3, 65))


def test_the_cache_is_drained_below_256_free_slots():
    # 800 order-0 pages on 1023 free slots: once fewer than 256 are free the cache turns
    # off and its waiting slots are freed; only the pages' own slots stay in use.
    steps = [_mmap("v", 800), _op("write", "v", tag=2), _op("pageout", "v")]
    r = runner(steps, swap_device="zram", folio_pages=[1], frames=1024)
    si = r.m.swap
    assert not si.slots_cache_active and si.slots_cache == () and si.slots_ret == ()
    assert si.inuse == 800 and si.nr_swap_pages() == 223
    assert all(si.count(o) == 1 for o in si.allocated)
    assert kinds(r) == []


def test_swapoff_drains_the_return_list_and_its_tags():
    r = runner(SWAP_TWO + [_op("read", "v", 0), {"swapoff": None}], swap_device="zram")
    si, m = r.m.swap, r.m
    assert si.slots_ret == () and si.slots_cache == () and not si.slots_cache_enabled
    assert not m.mte_pages and si.inuse == 0
    assert kinds(r) == []


def test_tags_on_the_return_list_after_the_last_exit_are_not_a_leak():
    # Page 0's slot goes at its fault, page 1's at the exit (one slot: `__swap_entry_free`;
    # two slots of count 1 would be freed together, at once).
    r = runner(SWAP_TWO + [_op("read", "v", 0), {"exit": {"proc": "A"}}], swap_device="zram")
    si, m = r.m.swap, r.m
    assert si.slots_ret == (512, 513) and sorted(m.mte_pages) == [512, 513]
    assert kinds(r) == []


BIG = [_mmap("b", 16), _op("write", "b", tag="distinct")]


def test_two_slots_dropped_together_at_exit_are_freed_at_once():
    r = runner(SWAP_TWO + [{"exit": {"proc": "A"}}], swap_device="zram")
    si = r.m.swap
    assert si.slots_ret == () and [si.swap_map[o] for o in (512, 513)] == [0, 0]
    assert not r.m.mte_pages


def test_a_large_folio_swapped_whole_frees_its_slots_at_once_on_6_12():
    # free_swap_and_cache_nr drops 16 slots of count 1 together: no slot cache, the cluster
    # is free again for the next large folio.
    r = runner(BIG + [_op("pageout", "b"), {"munmap": {"proc": "A", "vma": "b", "pages": "all"}}],
               swap_device="ssd")
    si = r.m.swap
    assert r.m.counters["large_swap_outs"] == 1
    assert si.slots_ret == () and si.inuse == 0 and si.cluster_order[1] is None
    assert not r.m.mte_pages


def test_a_cached_large_folio_frees_its_slots_at_once_through_put_swap_folio():
    r = runner(BIG + [_op("pageout", "b", keep_cached=True),
                      {"munmap": {"proc": "A", "vma": "b", "pages": "all"}}], swap_device="ssd")
    si = r.m.swap
    assert r.m.counters["large_swap_outs"] == 1
    assert si.slots_ret == () and si.inuse == 0 and si.cluster_order[1] is None


# A 4-page folio that cannot get a cluster (one cluster, the header's) falls back to order 0
# after three order-0 pages took slots 1-3; then page 0 faults back on zram.
SPLIT_ORDER = [_mmap("small", 3), _op("write", "small", tag=1), _op("pageout", "small"),
               _mmap("buf", 4), _op("write", "buf", tag="distinct"), _op("pageout", "buf"),
               _op("read", "buf", 0)]


def test_6_12_writes_a_split_folios_tails_in_order_so_zram_brings_it_back_whole():
    r = Runner(scenario(SPLIT_ORDER, swap_device="zram", swap_slots=512, folio_pages=[1, 4]),
               get_design("merged"), keep_states=True)
    for step in r.scenario.steps[:6]:
        r.run_step(step)
    assert r.m.counters["swpout_fallback"] == 1
    assert _slots(r, "buf") == [4, 5, 6, 7]       # head first, then pages 1, 2, 3
    r.run_step(r.scenario.steps[6])
    assert r.m.counters["large_swap_ins"] == 1
    assert [s["pages"] for s in r.states if s["vma"] == "buf"][-2:] == ["SSSS", "Httt"]


def test_7_2_writes_a_split_folios_tails_from_the_last_down_so_page_0_comes_back_alone():
    r = Runner(scenario(SPLIT_ORDER, swap_device="zram", swap_slots=512, folio_pages=[1, 4],
                        kernel="7.2"), get_design("merged"), keep_states=True)
    for step in r.scenario.steps[:6]:
        r.run_step(step)
    assert _slots(r, "buf") == [4, 7, 6, 5]          # head first, then pages 3, 2, 1
    r.run_step(r.scenario.steps[6])
    assert r.m.counters["large_swap_ins"] == 0
    assert [s["pages"] for s in r.states if s["vma"] == "buf"][-2:] == ["SSSS", "pSSS"]


# -- the per-CPU `next` offset of each order (swapinfo.find_slots), both kernels ------------

def test_7_2_order0_goes_on_after_the_last_slot_past_a_freed_one():
    # Pages 0 and 1 at slots 1 and 2; page 0 faults back (slot 1 freed at once: no slot
    # cache on 7.2); page 2 then goes to slot 3, after the last one, not to slot 1.
    steps = [_mmap("v", 3), _op("write", "v", tag=3), _op("pageout", "v", "0-1"),
             _op("read", "v", 0), _op("pageout", "v", 2)]
    r = runner(steps, swap_device="zram", folio_pages=[1], kernel="7.2")
    assert r.m.swap.swap_map[1] == 0
    assert sorted(r.m.swap.allocated) == [2, 3]
    assert r.m.swap.next_off == {0: 4}


LARGE_NEXT = [_mmap("a", 8), _mmap("b", 8), _mmap("c", 8)] + [
    _op("write", v, tag="distinct") for v in "abc"] + [
    _op("pageout", "a"), _op("pageout", "b"), {"munmap": {"proc": "A", "vma": "a", "pages": "all"}},
    _op("pageout", "c")]


def test_a_large_folio_goes_after_the_last_one_of_its_order_past_freed_slots():
    for kernel in ("6.12", "7.2"):
        r = runner(LARGE_NEXT, swap_device="ssd", folio_pages=[1, 8], kernel=kernel)
        assert r.m.counters["large_swap_outs"] == 3
        assert (_slots(r, "b"), _slots(r, "c")) == (list(range(520, 528)), list(range(528, 536)))
        assert all(r.m.swap.swap_map[o] == 0 for o in range(512, 520))   # a's, freed


@pytest.mark.parametrize(("kernel", "slots"), [
    ("6.12", list(range(528, 536))),     # alloc_swap_scan_cluster goes on from next[3] = 528
    ("7.2", list(range(1024, 1032))),    # the emptied cluster went to the free list's tail
])
def test_a_next_offset_in_a_cluster_emptied_since(kernel, slots):
    # a and b (512-527) both freed: cluster 1 is empty again when c is paged out. The kernels
    # differ as test_kernel_versions.py's LARGE_AGAIN saw them on the kernels (64 KiB folios,
    # zram); this 32 KiB case on an ssd was not itself run on a kernel.
    steps = LARGE_NEXT[:8] + [{"munmap": {"proc": "A", "vma": v, "pages": "all"}} for v in "ab"] \
        + [_op("pageout", "c")]
    r = runner(steps, swap_device="ssd", folio_pages=[1, 8], kernel=kernel, swap_slots=2048)
    assert _slots(r, "c") == slots


# Two 4-page folios fall back in one pageout: each folio's tails are written right after its
# head, before the next folio (the old model wrote both heads first).
TWO_SPLITS = [_mmap("small", 3), _op("write", "small", tag=1), _op("pageout", "small"),
              _mmap("buf", 8), _op("write", "buf", tag="distinct"), _op("pageout", "buf"),
              _op("read", "buf", 4)]


def test_each_split_folios_tails_come_before_the_next_folio():
    want = {"6.12": ([4, 5, 6, 7, 8, 9, 10, 11], "SSSSHttt"),
            "7.2": ([4, 7, 6, 5, 8, 11, 10, 9], "SSSSpSSS")}
    for kernel, (slots, after) in want.items():
        r = Runner(scenario(TWO_SPLITS, swap_device="zram", swap_slots=512, folio_pages=[1, 4],
                            kernel=kernel), get_design("merged"), keep_states=True)
        for step in r.scenario.steps[:6]:
            r.run_step(step)
        assert r.m.counters["swpout_fallback"] == 2
        assert _slots(r, "buf") == slots, kernel
        r.run_step(r.scenario.steps[6])
        assert r.states[-1]["pages"] == after, kernel
