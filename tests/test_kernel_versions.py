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


@pytest.mark.parametrize("device", ["ssd", "zram"])
def test_6_12_swaps_shared_entries_in_as_order0_pages(device):
    r = runner(SHARED_SWAPIN, swap_device=device)
    c = r.m.counters
    assert (c["large_swap_ins"], c["swap_ins"]) == (0, 16) and kinds(r) == []


@pytest.mark.parametrize("device", ["ssd", "zram"])
def test_7_2_swaps_shared_entries_in_as_one_large_folio_both_processes_map(device):
    r = Runner(scenario(SHARED_SWAPIN, swap_device=device, kernel="7.2"), get_design("merged"))
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
