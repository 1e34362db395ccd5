"""Behaviours that differ between the 6.12 and 7.2 kernels (docs/model.md, "Kernel versions"),
each with concrete slots, counters and pages, under `config.kernel` and `--kernel`."""

from __future__ import annotations

import json

import pytest

from helpers import invoke, kinds, runner, scenario
from mteswap.designs import get_design
from mteswap.scenario.runner import Runner


def _mmap(vma, pages, mte=True):
    return {"mmap": {"proc": "A", "vma": vma, "pages": pages, "mte": mte}}


def _op(op, vma, pages="all", **kw):
    return {op: {"proc": "A", "vma": vma, "pages": pages, **kw}}


def _slots(m) -> list[int]:
    """Slots in use for pages: allocated, apart from those 6.12's slot cache holds."""
    return sorted(o for o in m.swap.allocated if not m.swap.in_slot_caches(o))


# A one-page folio paged out, then a 64 KiB one, on the smallest device with two clusters.
ORDER0_THEN_LARGE = [_mmap("o", 1), _op("write", "o"), _mmap("buf", 16),
                     _op("write", "buf", tag="distinct"), _op("pageout", "o"),
                     _op("pageout", "buf")]


def test_6_12_one_order0_swap_out_takes_the_free_cluster_so_a_64k_folio_splits():
    r = runner(ORDER0_THEN_LARGE, swap_slots=1024)
    c = r.m.counters
    assert (c["swpout_fallback"], c["large_swap_outs"], c["swap_outs"]) == (1, 0, 17)
    # 512 for o, 513-528 for the split pages, all from the per-CPU slot cache's batch of 64
    # (512-575), whose rest waits there pinned (mm/swap_slots.c)
    assert _slots(r.m) == list(range(512, 529))
    assert r.m.swap.slots_cache == tuple(range(529, 576))
    assert sorted(r.m.swap.allocated) == list(range(512, 576))
    assert r.m.swap.cluster_order == [0, 0]


def test_7_2_places_the_order0_page_in_cluster_0_and_swaps_the_64k_folio_whole():
    r = runner(ORDER0_THEN_LARGE, swap_slots=1024, kernel="7.2")
    c = r.m.counters
    assert (c["swpout_fallback"], c["large_swap_outs"], c["swap_outs"]) == (0, 1, 2)
    assert _slots(r.m) == [1] + list(range(512, 528))
    assert r.m.swap.cluster_order == [0, 4]


# A 64 KiB folio split, its pages paged out one by one, then one page faulted back on zram.
SPLIT_THEN_SWAPIN = [_mmap("buf", 16), _op("write", "buf", tag="distinct"), _op("split", "buf"),
                     _op("pageout", "buf"), _op("read", "buf", 5), _op("read", "buf")]


@pytest.mark.parametrize(("kernel", "slots", "large"), [
    ("6.12", list(range(512, 528)), 1),     # contiguous, aligned: one fault brings all 16 back
    ("7.2", list(range(1, 17)), 0),         # slot 1 is not 16-aligned: order 0, one by one
])
def test_zram_swaps_in_a_large_folio_from_order0_slots_only_where_they_are_aligned(kernel, slots, large):
    r = Runner(scenario(SPLIT_THEN_SWAPIN, swap_device="zram", kernel=kernel), get_design("merged"))
    for step in r.scenario.steps[:4]:
        r.run_step(step)
    assert _slots(r.m) == slots
    assert r.m.counters["swpout_fallback"] == 0 and r.m.counters["splits"] == 1
    for step in r.scenario.steps[4:]:
        r.run_step(step)
    c = r.m.counters
    assert (c["large_swap_ins"], c["swap_ins"]) == (large, 1 if large else 16)
    assert kinds(r) == []


def test_kernel_option_overrides_the_files_kernel_in_run_json(tmp_path):
    f = tmp_path / "k.yaml"
    f.write_text(json.dumps({"version": 1, "name": "k", "config": {"kernel": "7.2"},
                             "steps": ORDER0_THEN_LARGE}))
    got = {}
    for kernel in (None, "6.12", "7.2"):
        args = ["run", "--json", f] + ([] if kernel is None else ["--kernel", kernel])
        result = invoke(*args)
        assert result.exit_code == 0, result.stderr
        got[kernel] = json.loads(result.stdout)["counters"]["swpout_fallback"]
    assert got == {None: 0, "6.12": 1, "7.2": 0}


def test_compare_kernel_option_changes_the_cell_of_s3z_under_split_before_swap():
    from mteswap.bundled import BUNDLED_DIR
    s3z = BUNDLED_DIR / "s3z-fresh-large-swapin-zram.yaml"
    cells = {}
    for kernel in ("6.12", "7.2"):
        result = invoke("compare", "--json", "--designs", "split-before-swap", "--kernel", kernel, s3z)
        (cell,) = json.loads(result.stdout)["cells"]
        cells[kernel] = (cell["verdict"], cell["first"] and cell["first"]["kind"])
    assert cells == {"6.12": ("fail", "tag-check-fault"), "7.2": ("pass", None)}


# After fork and the child's exit, a write to a page of a 64 KiB folio the parent still maps
# whole (its pages lost PG_anon_exclusive at fork).
FORK_EXIT_WRITE = [_mmap("buf", 16), _op("write", "buf", tag="distinct"),
                   {"fork": {"proc": "A", "child": "B"}}, {"exit": {"proc": "B"}},
                   _op("write", "buf", "3-4", tag="distinct"), _op("read", "buf")]


def _folio_sizes(m, pfns):
    return [m.folio_at(p).nr for p in pfns]


def test_6_12_copies_one_page_of_a_large_folio_no_longer_shared():
    r = runner(FORK_EXIT_WRITE)
    c = r.m.counters
    assert c["cow_copies"] == 2
    mm = r.m.mms[0]
    from mteswap.model.pte import pte_pfn
    pfns = [pte_pfn(mm.ptes[v], v) for v in range(16)]
    assert pfns[3:5] == [16, 17] and _folio_sizes(r.m, [16, 17]) == [1, 1]
    assert _folio_sizes(r.m, [0]) == [16] and kinds(r) == []


def test_7_2_reuses_the_large_folio_no_longer_shared_whole():
    r = runner(FORK_EXIT_WRITE, kernel="7.2")
    assert r.m.counters["cow_copies"] == 0
    mm = r.m.mms[0]
    from mteswap.model.pte import pte_pfn, pte_write
    assert [pte_pfn(mm.ptes[v], v) for v in range(16)] == list(range(16))
    assert [bool(pte_write(mm.ptes[v])) for v in range(16)] == [v in (3, 4) for v in range(16)]
    assert _folio_sizes(r.m, [0]) == [16] and r.m.pages[3].anon_exclusive
    assert kinds(r) == []


def test_7_2_still_copies_while_the_other_process_maps_the_folio():
    steps = FORK_EXIT_WRITE[:3] + FORK_EXIT_WRITE[4:]
    r = runner(steps, kernel="7.2")
    assert r.m.counters["cow_copies"] == 2 and kinds(r) == []


def test_cost_kernel_option_sets_the_workloads_kernel_and_rejects_others(tmp_path):
    from mteswap.scenario.load import load_scenario
    out = tmp_path / "w.yaml"
    result = invoke("cost", "--pages", 64, "--designs", "merged", "--kernel", "7.2",
                    "--write-scenario", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert load_scenario(out).config.kernel == "7.2"
    result = invoke("cost", "--pages", 64, "--kernel", "7")
    assert result.exit_code == 2 and result.stdout == ""
    assert "--kernel: expected one of 6.12, 7.2, got '7'" in result.stderr


# Swap entries shared after fork (count 2): reclaim unmaps the folio from both processes.
SHARED_SWAPIN = [_mmap("buf", 16), _op("write", "buf", tag="distinct"),
                 {"fork": {"proc": "A", "child": "B"}}, _op("reclaim", "buf"),
                 _op("read", "buf", 9), {"read": {"proc": "B", "vma": "buf", "pages": "all"}},
                 _op("read", "buf")]


@pytest.mark.parametrize(("device", "kernel"), [("ssd", "6.12"), ("zram", "6.12"),
                                                ("ssd", "7.2"), ("rotational", "7.2")])
def test_shared_entries_come_back_as_order0_pages_except_from_zram_on_7_2(device, kernel):
    # On 7.2 the disk reads order 0 too (the seed-13 corpus: no large folio from an uncached
    # disk slot); the 64 KiB folio was swapped out whole on every device here.
    r = runner(SHARED_SWAPIN, swap_device=device, kernel=kernel)
    assert r.m.counters["large_swap_outs"] == 1
    c = r.m.counters
    assert (c["large_swap_ins"], c["swap_ins"]) == (0, 16) and kinds(r) == []


def test_7_2_swaps_shared_zram_entries_in_as_one_large_folio_both_processes_map():
    r = Runner(scenario(SHARED_SWAPIN, swap_device="zram", kernel="7.2"), get_design("merged"))
    for step in r.scenario.steps[:5]:
        r.run_step(step)
    m = r.m
    folio = m.folio_at(m.swap.cache.get(0x209).pfn)
    assert (folio.nr, folio.swap, m.folio_mapcount(folio)) == (16, 0x200, 16)   # A maps all 16
    assert m.counters["large_swap_ins"] == 1
    for step in r.scenario.steps[5:]:
        r.run_step(step)
    c = m.counters
    assert (c["large_swap_ins"], c["swap_ins"], c["swap_cache_hits"]) == (1, 1, 1)
    assert m.folio_mapcount(m.folio_at(folio.pfn)) == 32 and kinds(r) == []


# A 64 KiB tagged folio paged out on a rotational disk (kept in the swap cache, as one
# MADV_PAGEOUT pass on the virtio disk leaves it), then read back.
ROTATIONAL_ROUNDTRIP = [_mmap("buf", 16), _op("write", "buf", tag="distinct"),
                        _op("pageout", "buf", keep_cached=True), _op("read", "buf", 4)]


@pytest.mark.parametrize(("kernel", "slots", "fallback", "after_pageout", "after_read"), [
    # 6.12: no cluster info on a rotational disk, the folio is split, its pages take slots 1-16
    ("6.12", list(range(1, 17)), 1, "C" * 16, "CCCCpCCCCCCCCCCC"),
    # 7.2: clusters on every device: swapped whole, found in the swap cache and mapped whole
    ("7.2", list(range(512, 528)), 0, "C" * 16, "H" + "t" * 15),
])
def test_rotational_disk_takes_a_large_folio_whole_only_on_7_2(kernel, slots, fallback,
                                                               after_pageout, after_read):
    r = Runner(scenario(ROTATIONAL_ROUNDTRIP, swap_device="rotational", kernel=kernel),
               get_design("merged"), keep_states=True)
    for step in r.scenario.steps[:3]:
        r.run_step(step)
    assert _slots(r.m) == slots and r.m.counters["swpout_fallback"] == fallback
    r.run_step(r.scenario.steps[3])
    assert [s["pages"] for s in r.states[2:]] == [after_pageout, after_read]
    assert kinds(r) == []


# Order-0 pages swapped out, swapped back in on zram (freeing their slots, and so the whole
# cluster), then more order-0 pages swapped out.
REFILL = [_mmap("buf", 8), _op("write", "buf"), _op("pageout", "buf", "0-4"),
          _op("read", "buf", "0-4"), _op("pageout", "buf", "5-7")]


@pytest.mark.parametrize(("kernel", "slots"), [
    # 6.12: the per-CPU `next` (517) is scanned from even though its cluster became free
    # (alloc_swap_scan_cluster does not look at the cluster's state; fuzz-13-0219, step 13)
    ("6.12", [517, 518, 519]),
    # 7.2: `next` (6) goes on in cluster 0 past the freed 1-5 as well (fuzz-13-0219, 7.2,
    # step 13: slots 6 and up)
    ("7.2", [6, 7, 8]),
])
def test_order0_slots_after_their_cluster_was_freed(kernel, slots):
    r = runner(REFILL, folio_pages=[1], swap_device="zram", kernel=kernel)
    assert _slots(r.m) == slots and kinds(r) == []


# A 64 KiB folio swapped out and back in on zram (its cluster empties), then swapped out again.
LARGE_AGAIN = [_mmap("buf", 16), _op("write", "buf", tag="distinct"), _op("pageout", "buf"),
               _op("read", "buf"), _op("pageout", "buf")]


@pytest.mark.parametrize(("kernel", "slots"), [
    # both seen on the kernels (zram): 6.12 scans on from next[4] = 528 though the cluster
    # emptied; on 7.2 the emptied cluster went behind the never-used ones on the free list
    ("6.12", list(range(528, 544))),
    ("7.2", list(range(1024, 1040))),
])
def test_a_large_folio_swapped_out_again_after_its_cluster_emptied(kernel, slots):
    r = runner(LARGE_AGAIN, swap_device="zram", kernel=kernel, swap_slots=2048)
    assert r.m.counters["large_swap_outs"] == 2 and r.m.counters["large_swap_ins"] == 1
    assert _slots(r.m) == slots and kinds(r) == []


# A 64 KiB folio kept in the swap cache on a disk, mapped whole again by A after fork (read:
# read-only, still in the swap cache), B exits, then A writes one page.
CACHED_REUSE = [_mmap("buf", 16), _op("write", "buf", tag="distinct"),
                _op("pageout", "buf", keep_cached=True), {"fork": {"proc": "A", "child": "B"}},
                _op("read", "buf"), {"exit": {"proc": "B"}}, _op("write", "buf", 3, tag="distinct")]


@pytest.mark.parametrize(("kernel", "pages", "cached"), [
    ("6.12", "Http" + "t" * 12, True),                   # one page copied
    # 7.2 frees the folio's swap cache (no slot is referenced any more) and reuses it whole
    # (fuzz-13-0046, 7.2 / ssd, step 19)
    ("7.2", "H" + "t" * 15, False),
])
def test_write_to_a_large_swap_cache_folio_no_longer_shared(kernel, pages, cached):
    r = Runner(scenario(CACHED_REUSE, swap_device="ssd", kernel=kernel), get_design("merged"),
               keep_states=True)
    r.run()
    assert r.states[-1]["pages"] == pages
    assert bool(r.m.swap.cache) == cached and kinds(r) == []


# A 16 KiB folio whose head only A maps and whose tails only B maps, then A pages out a range
# holding part of it (fuzz-13-0110, 7.2 / zram, step 20).
SPLIT_SHARED = [_mmap("buf", 8), _op("write", "buf", "0-3", tag=1), {"fork": {"proc": "A", "child": "B"}},
                _op("dontneed", "buf", "1-3"), {"dontneed": {"proc": "B", "vma": "buf", "pages": 0}},
                _op("pageout", "buf", "0-1")]


@pytest.mark.parametrize(("kernel", "pages", "splits"), [
    ("6.12", "S-------", 1),   # folio_likely_mapped_shared: its first page is mapped once
    ("7.2", "H-------", 0),    # folio_maybe_mapped_shared: B maps its tails, so skipped
])
def test_pageout_of_part_of_a_folio_another_process_maps(kernel, pages, splits):
    r = Runner(scenario(SPLIT_SHARED, folio_pages=[1, 4], swap_device="zram", kernel=kernel),
               get_design("merged"), keep_states=True)
    r.run()
    assert r.states[-1]["pages"] == pages
    assert r.m.counters["splits"] == splits and kinds(r) == []


# A 64 KiB folio whose PTEs were shared at fork (B exited), kept in the swap cache on a disk,
# half unmapped (so no fault can map it whole), then written page by page. Seen on both
# kernels (virtio-blk): on the fault that drops the last slot reference 6.12 frees the swap
# cache and maps that page writable; 7.2 copies it like the others.
HALF_UNMAPPED_WRITE = [_mmap("v", 16), _op("write", "v", tag="distinct"),
                       {"fork": {"proc": "A", "child": "B"}}, {"exit": {"proc": "B"}},
                       _op("pageout", "v", keep_cached=True), _op("munmap", "v", "8-15"),
                       _op("write", "v", "0-7", tag=3)]


@pytest.mark.parametrize(("kernel", "pages"), [("6.12", "ppppppptxxxxxxxx"),
                                               ("7.2", "ppppppppxxxxxxxx")])
def test_write_faults_on_a_large_swap_cache_folio_mapped_page_by_page(kernel, pages):
    r = Runner(scenario(HALF_UNMAPPED_WRITE, swap_device="ssd", kernel=kernel),
               get_design("merged"), keep_states=True)
    r.run()
    assert r.states[-1]["pages"] == pages
    assert r.m.counters["cow_copies"] == (7 if kernel == "6.12" else 8) and kinds(r) == []


# docs/fidelity-examples/swapcache-free-zram-7.2.yaml, seen on both kernels (zram): entries
# shared after fork, read by A (into the swap cache), then by B, whose fault drops the last
# swap reference; after B exits, A's pages go out again.
SWAPCACHE_FREE_ZRAM = [_mmap("v", 4), _op("write", "v", tag=0), _op("pageout", "v"),
                       {"fork": {"proc": "A", "child": "B"}}, _op("read", "v"),
                       _op("read", "v", proc="B"), {"exit": {"proc": "B"}}, _op("pageout", "v")]


@pytest.mark.parametrize(("kernel", "cached_after_b", "slots_at_end", "writes"), [
    ("6.12", [512, 513, 514, 515], [512, 513, 514, 515], 4),   # clean in the cache: no I/O
    ("7.2", [], [5, 6, 7, 8], 8),                               # freed at B's fault: new slots
])
def test_7_2_frees_the_swap_cache_on_zram_when_no_swap_pte_is_left(kernel, cached_after_b,
                                                                     slots_at_end, writes):
    """7.2 always tries folio_free_swap after a zram swap-in ("mm, swap: always try to free
    swap cache for SWP_SYNCHRONOUS_IO devices"); 6.12 only on a write fault."""
    sc = scenario(SWAPCACHE_FREE_ZRAM, folio_pages=[1], swap_device="zram", kernel=kernel)
    r = Runner(sc, get_design("merged"))
    for step in sc.steps:
        r.run_step(step)
        if step.index == 6:
            assert sorted(r.m.swap.cache.keys()) == cached_after_b
    si = r.m.swap      # slots waiting in 6.12's swap slot cache (swap_slots.py) are not the folio's
    assert [o for o in sorted(si.allocated) if not si.in_slot_caches(o)] == slots_at_end
    assert r.m.counters["pswpout"] == writes
    assert kinds(r) == []


# docs/fidelity-examples/swapin-exclusive-7.2.yaml (seen on both kernels, zram): after fork
# and A's exit, B's 16 KiB folio goes out with swap PTEs fork left non-exclusive, comes back
# whole on a write to page 2, goes out again and is read.
SWAPIN_NOT_EXCLUSIVE = [_mmap("v", 4, mte=False), _op("write", "v", tag=0),
                        {"fork": {"proc": "A", "child": "B"}}, {"exit": {"proc": "A"}},
                        _op("pageout", "v", proc="B"), _op("write", "v", 2, proc="B", tag=0),
                        _op("pageout", "v", proc="B"), _op("read", "v", proc="B")]


@pytest.mark.parametrize(("kernel", "exclusive", "last"), [
    # the fresh skip-swapcache folio is exclusive: every page writable, swapped in whole again
    ("6.12", [True] * 4, "Httt"),
    # 7.2 maps the swap-cache folio as the swap PTE says (not exclusive); the write reuses the
    # folio and makes page 2 alone exclusive, so swap_pte_batch stops at it: order 0
    ("7.2", [False, False, True, False], "pppp"),
])
def test_swap_in_from_swap_ptes_fork_left_non_exclusive(kernel, exclusive, last):
    from mteswap.model.pte import pte_pfn, pte_swp_exclusive, pte_write
    sc = scenario(SWAPIN_NOT_EXCLUSIVE, folio_pages=[1, 4], swap_device="zram", kernel=kernel)
    r = Runner(sc, get_design("merged"), keep_states=True)
    for step in sc.steps:
        r.run_step(step)
        mm = r.m.mms[-1]
        if step.index == 6:
            assert [r.m.pages[pte_pfn(mm.ptes[v], v)].anon_exclusive
                    for v in range(4)] == exclusive
            assert [bool(pte_write(mm.ptes[v])) for v in range(4)] == exclusive
        if step.index == 7:
            assert [bool(pte_swp_exclusive(mm.ptes[v])) for v in range(4)] == exclusive
    assert [(s["step"], s["pages"]) for s in r.states] == [
        (1, "----"), (2, "Httt"), (5, "SSSS"), (6, "Httt"), (7, "SSSS"), (8, last)]
    assert r.states[-1]["mte"] == "...." and kinds(r) == []


# docs/fidelity-examples/swapin-shared-slot-7.2.yaml (fuzz-13-0280's step 21; seen on both
# kernels, zram): a 16 KiB folio shared after fork, A drops pages 0-1, reclaim swaps it out of
# both, B reads page 0 (count 1) and writes pages 0-1.
SWAPIN_SHARED_SLOT = [_mmap("v", 4, mte=False), _op("write", "v", tag=0),
                      {"fork": {"proc": "A", "child": "B"}}, _op("dontneed", "v", "0-1"),
                      _op("reclaim", "v", proc="B"), _op("read", "v", 0, proc="B"),
                      _op("write", "v", "0-1", proc="B", tag=0)]


@pytest.mark.parametrize(("kernel", "last", "cached", "copies"), [
    ("6.12", "Httt", [], 0),     # a fresh exclusive folio (skip-swapcache): written in place
    # through the swap cache, where A's swap PTEs (slots 514-515) keep it: not reusable, copied
    ("7.2", "pptt", [512, 513, 514, 515], 2),
])
def test_zram_swap_in_of_a_folio_another_process_still_names(kernel, last, cached, copies):
    sc = scenario(SWAPIN_SHARED_SLOT, folio_pages=[1, 4], swap_device="zram", kernel=kernel)
    r = Runner(sc, get_design("merged"), keep_states=True)
    r.run()
    assert [(s["step"], s["pages"]) for s in r.states][-2:] == [(6, "Httt"), (7, last)]
    assert sorted(r.m.swap.cache) == cached
    assert r.m.counters["cow_copies"] == copies and kinds(r) == []
