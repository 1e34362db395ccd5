"""Unit tests of single kernel operations: concrete state after each."""

from mteswap.model import tags as T
from mteswap.model.pte import is_swap_pte, pte_pfn, pte_present, pte_to_swp_entry
from mteswap.model.state import ZERO_PFN
from mteswap.model.swapinfo import SWAP_HAS_CACHE

import pytest
from helpers import kinds, runner
from helpers import scenario as make_scenario
from hypothesis import given, settings, strategies as st
from scenario_strategies import to_yaml, valid_scenarios
from mteswap.designs import BUILTIN, get_design
from mteswap.scenario.load import load_scenario, parse_scenario

MMAP16 = {"mmap": {"proc": "A", "vma": "buf", "pages": 16, "mte": True}}
WRITE16 = {"write": {"proc": "A", "vma": "buf", "pages": "0-15", "tag": "distinct"}}


def swap_ptes(mm):
    return {vpn: pte_to_swp_entry(e, vpn) for vpn, e in mm.ptes.items() if is_swap_pte(e)}


def test_anonymous_write_fault_allocates_one_aligned_large_folio_with_zeroed_tags():
    r = runner([MMAP16, {"write": {"proc": "A", "vma": "buf", "pages": 5}}])
    m = r.m
    assert list(m.folios) == [0] and m.folios[0].nr == 16
    assert all(p.mte_tagged and p.mte_lock and p.tags == 0 for p in m.pages[:16])
    assert m.counters["faults"] == 1 and m.counters["anon_fault_alloc"] == 1


def test_read_fault_maps_the_zero_page_and_a_later_write_allocates_order0():
    r = runner([MMAP16, {"read": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"write": {"proc": "A", "vma": "buf", "pages": 3}}])
    mm = r.m.mms[0]
    assert [pte_pfn(mm.ptes[v], v) for v in range(16) if v != 3] == [ZERO_PFN] * 15
    folio = r.m.pages[pte_pfn(mm.ptes[3], 3)].folio
    assert folio.nr == 1          # semantics §11: zero-page-mapped neighbours force order 0
    assert kinds(r) == []


def test_large_folio_needs_every_pte_of_the_range_empty():
    r = runner([MMAP16, {"write": {"proc": "A", "vma": "buf", "pages": 0}},
                {"dontneed": {"proc": "A", "vma": "buf", "pages": "0-15"}},
                {"read": {"proc": "A", "vma": "buf", "pages": 7}},
                {"write": {"proc": "A", "vma": "buf", "pages": 0}}])
    mm = r.m.mms[0]
    assert r.m.pages[pte_pfn(mm.ptes[0], 0)].folio.nr == 1


def test_swap_map_counts_after_fork_reclaim_and_partial_dontneed():
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"dontneed": {"proc": "A", "vma": "buf", "pages": "0-3"}}])
    si = r.m.swap
    base = 0x200   # first free cluster: slots 512..1023 (cluster 0 holds the header slot)
    assert [si.swap_map[base + i] for i in range(16)] == [1] * 4 + [2] * 12
    assert si.cache == {}
    assert sorted(r.m.mte_pages) == list(range(base, base + 16))
    r2 = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                 {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                 {"dontneed": {"proc": "A", "vma": "buf", "pages": "0-3"}},
                 {"dontneed": {"proc": "B", "vma": "buf", "pages": "0-3"}}])
    si = r2.m.swap
    assert [si.swap_map[base + i] for i in range(16)] == [0] * 4 + [2] * 12
    # mte_pages keys after the partial free: exactly the 12 slots still referenced.
    assert sorted(r2.m.mte_pages) == list(range(base + 4, base + 16))


def test_keep_cached_pins_slots_with_swap_has_cache_until_evict():
    steps = [MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all", "keep_cached": True}},
             {"dontneed": {"proc": "A", "vma": "buf", "pages": "0-3"}}]
    r = runner(steps)
    si = r.m.swap
    assert [si.swap_map[0x200 + i] for i in range(4)] == [SWAP_HAS_CACHE] * 4
    assert len(r.m.mte_pages) == 16     # cache pin keeps the buffers (S1')
    r = runner(steps + ["evict"])
    assert sorted(r.m.mte_pages) == list(range(0x204, 0x210))
    assert r.m.swap.cache == {} and 0 not in r.m.folios


def test_split_copies_the_head_pages_mte_flags_to_every_page():
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-15"}},
                {"mprotect": {"proc": "A", "vma": "buf", "pages": "4-7", "mte": True}}])
    assert [p.mte_tagged for p in r.m.pages[:16]] == [False] * 4 + [True] * 4 + [False] * 8
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-15"}},
                {"mprotect": {"proc": "A", "vma": "buf", "pages": "0-3", "mte": True}},
                {"split": {"proc": "A", "vma": "buf", "pages": "all"}}])
    assert [f.nr for f in r.m.folios.values()] == [1] * 16
    assert all(p.mte_tagged and p.mte_lock for p in r.m.pages[:16])


def test_frame_reuse_keeps_leftover_tags_and_vm_mte_allocation_zeroes_them():
    steps = [{"mmap": {"proc": "A", "vma": "old", "pages": 1, "mte": True}},
             {"write": {"proc": "A", "vma": "old", "pages": 0, "tag": 6}},
             {"munmap": {"proc": "A", "vma": "old"}}]
    r = runner(steps + [{"mmap": {"proc": "A", "vma": "new", "pages": 1}},
                        {"write": {"proc": "A", "vma": "new", "pages": 0}}], folio_pages=[1])
    page = r.m.pages[0]
    assert page.folio is not None and not page.mte_tagged and page.tags == T.uniform(6)
    r = runner(steps + [{"mmap": {"proc": "A", "vma": "new", "pages": 1, "mte": True}},
                        {"write": {"proc": "A", "vma": "new", "pages": 0}}], folio_pages=[1])
    assert r.m.pages[0].mte_tagged and r.m.pages[0].tags == 0   # __GFP_ZEROTAGS


def test_cow_copies_tags_with_copy_highpage():
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 1, "mte": True}},
                {"write": {"proc": "A", "vma": "buf", "pages": 0, "tag": 4}},
                {"fork": {"proc": "A", "child": "B"}},
                {"write": {"proc": "B", "vma": "buf", "pages": 0}},
                {"read": {"proc": "A", "vma": "buf", "pages": 0}}], folio_pages=[1])
    a, b = pte_pfn(r.m.mms[0].ptes[0], 0), pte_pfn(r.m.mms[1].ptes[0], 0)
    assert a != b and r.m.pages[b].tags == T.uniform(4) and r.m.pages[b].mte_tagged
    assert r.m.counters["cow_copies"] == 1 and kinds(r) == []


def test_zram_large_swapin_restores_whole_folio_in_one_fault_and_frees_slots():
    r = runner([MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": 9}}], swap_device="zram")
    c = r.m.counters
    assert (c["faults"], c["large_swap_ins"], c["restore_calls"], c["tag_restores"]) == (2, 1, 1, 16)
    mm = r.m.mms[0]
    assert all(pte_present(mm.ptes[v]) for v in range(16))
    assert r.m.mte_pages == {} and r.m.swap.inuse_pages() == 0   # swapcache_clear freed all 16


def test_shared_entries_on_zram_come_back_order0_on_6_12():
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": 9}}], swap_device="zram")
    assert r.m.counters["large_swap_ins"] == 0 and r.m.counters["swap_ins"] == 1
    assert r.m.swap.has_cache(0x209)      # order-0 readahead into the swap cache


def test_rotational_device_splits_large_folios_on_swap_out():
    r = runner([MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}],
               swap_device="rotational")
    c = r.m.counters
    assert (c["swpout_fallback"], c["splits"], c["swap_outs"], c["large_swap_outs"]) == (1, 1, 16, 0)
    assert sorted(r.m.mte_pages) == list(range(1, 17))


def test_pageout_skips_a_folio_shared_after_fork():
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"pageout": {"proc": "A", "vma": "buf", "pages": "0-7"}}])
    assert r.m.counters["splits"] == 0 and r.m.counters["swap_outs"] == 0


def test_pageout_splits_a_partially_mapped_folio_even_when_covering_all_mapped_pages():
    r = runner([MMAP16, WRITE16, {"dontneed": {"proc": "A", "vma": "buf", "pages": "0-3"}},
                {"pageout": {"proc": "A", "vma": "buf", "pages": "4-15"}}])
    assert r.m.counters["splits"] == 1 and r.m.counters["swap_outs"] == 12


def test_swapoff_leaves_no_saved_tags_and_disables_swap():
    r = runner([MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}, "swapoff",
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}])
    assert r.m.mte_pages == {} and not r.m.swap.active
    assert all(pte_present(e) for _, e in r.m.mms[0].ptes.items())
    assert kinds(r) == []


def test_tag_alloc_failure_rolls_back_and_keeps_the_folio_in_the_swap_cache():
    r = runner([MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": "all"}}], tag_alloc_fail_after=5)
    c = r.m.counters
    assert c["tag_alloc_failures"] == 1 and c["tag_saves"] == 5 and c["tag_invalidations"] == 5
    assert r.m.mte_pages == {} and c["swap_outs"] == 0
    assert kinds(r) == []      # the folio stayed resident; refaults hit the swap cache


def test_snapshot_is_hashable_ints_and_tuples_only():
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all", "keep_cached": True}}])
    snap = r.m.snapshot()
    hash(snap)

    def walk(x):
        if isinstance(x, tuple):
            for y in x:
                walk(y)
        else:
            assert type(x) in (int, bool), type(x)
    walk(snap)
    assert r.m.snapshot() == snap        # canonical: taking it twice gives the same value
    r.m.pages[3].mte_tagged = False
    assert r.m.snapshot() != snap


def test_write_refault_of_shared_swapcache_folio_takes_it_whole_once_unshared():
    # After B exits, A's write fault frees the swap cache (should_try_to_free_swap) and the
    # refcount-1 rule maps the whole folio writable: no CoW, no partial mapping, no split.
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all", "keep_cached": True}},
                {"exit": {"proc": "B"}},
                {"write": {"proc": "A", "vma": "buf", "pages": 0}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": "all"}}])
    c = r.m.counters
    assert (c["cow_copies"], c["splits"], c["large_swap_outs"]) == (0, 0, 2)
    assert kinds(r) == []


def test_cow_of_the_last_mapping_drops_the_old_folio_from_the_swap_cache():
    r = runner([MMAP16, WRITE16, {"fork": {"proc": "A", "child": "B"}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": "all", "keep_cached": True}},
                {"read": {"proc": "A", "vma": "buf", "pages": 0}},
                {"exit": {"proc": "B"}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-15"}},
                {"exit": {"proc": "A"}}])
    assert r.m.counters["cow_copies"] == 16
    assert kinds(r) == [] and r.m.mte_pages == {} and r.m.swap.inuse_pages() == 0


def test_no_order1_anonymous_folios_and_no_pmd_sized_swapin():
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 2, "mte": True}},
                {"write": {"proc": "A", "vma": "buf", "pages": 0}}], folio_pages=[1, 2])
    assert [f.nr for f in r.m.folios.values()] == [1]
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 512, "mte": True}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-3", "tag": 5}},
                {"reclaim": {"proc": "A", "vma": "buf", "pages": 0}},
                {"read": {"proc": "A", "vma": "buf", "pages": 2}}],
               folio_pages=[1, 512], swap_device="zram", frames=1024)
    assert r.m.counters["large_swap_outs"] == 1 and r.m.counters["large_swap_ins"] == 0
    assert kinds(r) == []


def test_rollback_after_a_failed_tag_allocation_merged_vs_rfc_v2():
    steps = [MMAP16, WRITE16, {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}]
    merged = runner(steps, design="merged", tag_alloc_fail_after=5)
    v2 = runner(steps, design="rfc-v2", tag_alloc_fail_after=5)
    # Pages 0-4 saved, page 5's allocation fails. merged erases 4..0 ("while (i--)");
    # RFC v2's "while (--i)" erases 4..1 and leaves page 0's buffer behind.
    assert merged.m.mte_pages == {}
    assert sorted(v2.m.mte_pages) == [0x200]
    for r in (merged, v2):
        folio = r.m.folios[0]
        assert folio.swapcache and folio.dirty and r.m.counters["swap_outs"] == 0
        assert r.m.counters["tag_saves"] == 5 and r.m.counters["tag_alloc_failures"] == 1
    # Refaults hit the cached folio; the next reclaim succeeds (allocations work again) and
    # every tag survives.
    for design in ("merged", "rfc-v2"):
        r = runner(steps + [{"read": {"proc": "A", "vma": "buf", "pages": "all"}},
                            {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}},
                            {"read": {"proc": "A", "vma": "buf", "pages": "all"}}],
                   design=design, tag_alloc_fail_after=5)
        assert kinds(r) == [] and r.m.counters["swap_outs"] == 1


# -- derived folio counters (mapcount, nr_mapped) -------------------------------------------

def _steps_keep_derived_counters(scenario, design) -> None:
    from mteswap.model.machine import derived_state_errors
    from mteswap.scenario.runner import Runner
    r = Runner(scenario, get_design(design))
    for step in scenario.steps:
        r.run_step(step)
        errors = derived_state_errors(r.m)
        assert not errors, f"{scenario.name} step {step.index} ({step.op}): {errors}"


def _on_bundled(design, check) -> None:
    """check(scenario, design) on every bundled scenario."""
    from mteswap.bundled import bundled_files
    for path in bundled_files():
        check(load_scenario(path), design)


@pytest.mark.parametrize("design", list(BUILTIN))
def test_folio_mapcounts_match_the_rmaps_after_every_bundled_step(design):
    _on_bundled(design, _steps_keep_derived_counters)


@settings(max_examples=150, deadline=None)
@given(doc=valid_scenarios(), design=st.sampled_from(sorted(BUILTIN)))
def test_folio_mapcounts_match_the_rmaps_on_generated_scenarios(doc, design):
    _on_generated(doc, design, _steps_keep_derived_counters)


def _on_generated(doc, design, check) -> None:
    """check(scenario, design) on a generated scenario document; documents the loader rejects
    and runs that stop on bad input (the generator may run a machine out of memory: exit 2)
    are skipped."""
    from mteswap.scenario.load import ScenarioError
    try:
        scenario = parse_scenario(to_yaml(doc), "<generated>")
    except ScenarioError:
        return
    try:
        check(scenario, design)
    except ScenarioError:
        pass


@pytest.mark.parametrize("design", list(BUILTIN))
def test_untracked_origins_change_only_the_detail_of_tag_check_faults(design):
    """Runner(track_origins=False), as `mteswap cost` runs: same violations (kind, step, page)
    and counters on every bundled scenario; a detail differs only by saying the origin is
    unknown."""
    from mteswap.bundled import bundled_files
    from mteswap.scenario.runner import Runner
    for path in bundled_files():
        s = load_scenario(path)
        full = Runner(s, get_design(design)).run()
        bare = Runner(s, get_design(design), track_origins=False).run()
        assert [(v.kind, v.step, v.page) for v in bare.violations] == \
            [(v.kind, v.step, v.page) for v in full.violations]
        assert bare.counters == full.counters
        for v, w in zip(bare.violations, full.violations):
            # Cheap origins (program STG, leftovers, split notes) are still given.
            assert v.detail == w.detail or "origins are not tracked" in v.detail, v.detail


def test_only_designs_with_per_page_flags_skip_the_flag_hook():
    from mteswap.model import Machine, MachineConfig
    per_page = {name: Machine(MachineConfig(), get_design(name)).flags_per_page
                for name in BUILTIN}
    assert per_page == {name: name != "per-folio-flag" for name in BUILTIN}


# -- diagnostics never choose the code: origins and the trace on or off -----------------------

def _whole_state(r) -> tuple:
    """Everything a later step can read: the canonical snapshot plus what it leaves out
    (the folios' derived counters, the allocator's cursor, the tag heap) and the counters."""
    m = r.m
    return (m.snapshot(), bytes(m.frame_order), bytes(m.folio_flags), m.folio_swap.tobytes(),
            m.folio_mapcounts.tobytes(), m.folio_nr_mapped.tobytes(), m.first_free,
            m.tag_heap_bytes, dict(m.counters), kinds(r))


def _diagnostics_agree(scenario, design) -> None:
    """With origins tracked and the trace kept, and with neither (as `mteswap cost` runs), the
    same code runs: after every step the two machines are in the same state, counters and
    derived counters included, with the same violations."""
    from mteswap.scenario.runner import Runner
    full = Runner(scenario, get_design(design))
    bare = Runner(scenario, get_design(design), keep_trace=False, track_origins=False)
    for step in scenario.steps:
        full.run_step(step)
        bare.run_step(step)
        where = f"{scenario.name} step {step.index} ({step.op}) under {design}"
        assert _whole_state(bare) == _whole_state(full), where


@pytest.mark.parametrize("design", list(BUILTIN))
def test_origins_and_trace_do_not_change_the_state_on_bundled_scenarios(design):
    _on_bundled(design, _diagnostics_agree)


@settings(max_examples=100, deadline=None)
@given(doc=valid_scenarios(), design=st.sampled_from(sorted(BUILTIN)))
def test_origins_and_trace_do_not_change_the_state_on_generated_scenarios(doc, design):
    _on_generated(doc, design, _diagnostics_agree)


def test_a_batch_restores_its_pages_with_one_range_call(monkeypatch):
    """At scale a batch of faults is one arch_swap_restore and, under merged, one
    mte_restore_tags over every page of it: four 16-page folios on zram, 64 pages."""
    import mteswap.designs.merged as merged
    from mteswap.scenario.runner import Runner
    from helpers import scenario as make
    calls = []
    real = merged.mte_restore_tags

    def counted(m, entry, page, nr=1):
        calls.append(nr)
        return real(m, entry, page, nr)
    monkeypatch.setattr(merged, "mte_restore_tags", counted)
    s = make([{"mmap": {"proc": "A", "vma": "v", "pages": 64, "mte": True}},
              {"write": {"proc": "A", "vma": "v", "pages": "all", "tag": "distinct"}},
              {"reclaim": {"proc": "A", "vma": "v", "pages": "all"}},
              {"read": {"proc": "A", "vma": "v", "pages": "all"}}],
             folio_pages=[1, 16], swap_device="zram")
    r = Runner(s, get_design("merged"), check_state=False, track_origins=False)
    r.run()
    c = r.m.counters
    assert calls == [64]
    assert (c["tag_saves"], c["tag_restores"], c["tag_invalidations"], c["restore_calls"]) == \
        (64, 64, 64, 4)
    assert kinds(r) == []


# -- batches of swap-in faults (memory.py swapin_batch) --------------------------------------

def _mte(vma, pages, mte=True):
    return {"mmap": {"proc": "A", "vma": vma, "pages": pages, "mte": mte}}


def _op(op, vma, pages="all", proc="A", **more):
    return {op: {"proc": proc, "vma": vma, "pages": pages, **more}}


# Each takes the run path at least once (checked below) and covers one branch of it.
SWAPIN_RUNS = {
    # Swap at most half full: read faults leave every slot cached; a later write run frees.
    "cached": ([_mte("v", 64), _op("write", "v", tag="distinct"), _op("reclaim", "v"),
                _op("read", "v"), _op("reclaim", "v", "0-31"), _op("write", "v"),
                _op("read", "v")], {}),
    # More than half full: read faults free their slots until half is free, then keep them.
    "full": ([_mte("v", 64), _op("write", "v", tag="distinct"), _op("reclaim", "v"),
              _op("read", "v"), _op("reclaim", "v"), _op("write", "v", "0-40"),
              _op("read", "v")], {"swap_slots": 90}),
    # Slots shared after fork (count 2) fault one at a time; after the child exits, runs
    # (a write run makes the pages exclusive although their swap PTEs were not).
    "shared": ([_mte("v", 32), _op("write", "v", tag="distinct"),
                {"fork": {"proc": "A", "child": "B"}}, _op("reclaim", "v"),
                _op("read", "v", "0-7"), {"exit": {"proc": "B"}}, _op("write", "v", "8-19"),
                _op("read", "v"), _op("write", "v")], {}),
    # Free frames in two runs (a hole below), zero-filled slots, an untagged VMA beside.
    "fragmented": ([_mte("o", 16, mte=False), _op("write", "o"), _mte("v", 32),
                    _op("stg", "v", "0-15", tag=3), _op("write", "v", "16-31", tag=5),
                    _op("reclaim", "v"), _op("dontneed", "o", "4-7"), _op("read", "v"),
                    _op("reclaim", "o"), _op("write", "o")], {}),
}


# The same on zram, where 6.12 swaps in whole 16-page folios (batches of nr = 16).
ZRAM = {"swap_device": "zram"}
LARGE_SWAPIN_RUNS = {
    # Runs of four folios; a write run leaves them dirty.
    "zram-whole": ([_mte("v", 64), _op("write", "v", tag="distinct"), _op("reclaim", "v"),
                    _op("read", "v"), _op("reclaim", "v"), _op("write", "v"),
                    _op("read", "v")], ZRAM),
    # A span starting inside a folio faults alone, the aligned rest as a run; zero-filled
    # slots (in the zeromap) and an untagged VMA beside.
    "zram-partial": ([_mte("o", 32, mte=False), _op("write", "o"), _mte("v", 64),
                      _op("stg", "v", "0-15", tag=3), _op("write", "v", "16-63", tag=5),
                      _op("reclaim", "v"), _op("reclaim", "o"), _op("read", "v", "40-63"),
                      _op("read", "v"), _op("read", "o")], ZRAM),
    # Shared slots (count 2) go through the swap cache one page at a time; after the child
    # exits, runs; a first free frame that is not folio-aligned stops them.
    "zram-shared": ([_mte("o", 1), _op("write", "o"), _mte("v", 64),
                     _op("write", "v", tag="distinct"), {"fork": {"proc": "A", "child": "B"}},
                     _op("reclaim", "v"), _op("read", "v", "0-15"), {"exit": {"proc": "B"}},
                     _op("read", "v"), _op("reclaim", "v"), _op("dontneed", "o"),
                     _op("read", "v")], ZRAM),
    # Split pages swapped out one by one: slots aligned with a zero-filled half in the
    # zeromap (`can_swapin_thp` refuses a mixed range: order 0) beside a whole one (a large
    # fault); then slots contiguous but not aligned like the addresses (order 0 each), with
    # aligned free frames.
    "zram-split": ([_mte("o", 15), _op("write", "o"), _op("pageout", "o"), _mte("v", 64),
                    _op("write", "v", "8-63", tag="distinct"), _op("split", "v"),
                    _op("pageout", "v", "0-31"), _op("read", "v"), _mte("w", 48),
                    _op("write", "w", tag="distinct"), _op("split", "w"),
                    _op("pageout", "w", "2-47"), _op("dontneed", "v"), _op("dontneed", "o"),
                    _op("read", "w", "16-47"), _op("read", "w"), _op("dontneed", "w"),
                    # again, a span starting where the address is not aligned but the slot is
                    _mte("x", 64), _op("write", "x", tag="distinct"), _op("split", "x"),
                    _op("pageout", "x", "2-63"), _op("dontneed", "x", "0-1"),
                    _op("read", "x", "17-63"), _op("read", "x")], ZRAM),
}


# -- one do_swap_page for k faults: taken together equals taken in turn ---------------------

def _batches_taken(monkeypatch) -> list:
    """Record (k, nr) of every swap-in fault batch handle_mm_fault takes with k > 1."""
    import mteswap.model.memory as memory
    taken = []
    real = memory.swapin_batch

    def record(*args):
        got = real(*args)
        if got[0] > 1:
            taken.append(got)
        return got
    monkeypatch.setattr(memory, "swapin_batch", record)
    return taken


def _batched_equals_in_turn(scenario, design) -> None:
    """The stated property of `do_swap_page`'s batches: k independent faults taken together
    leave what k faults taken one after another leave. The second runner is made to take
    every fault alone (swapin_batch answers (1, 1)); after every step the whole state
    (derived counters included), the counters, the violations and the trace are equal."""
    import mteswap.model.memory as memory
    from mteswap.scenario.runner import Runner
    batched = Runner(scenario, get_design(design))
    in_turn = Runner(scenario, get_design(design))
    real = memory.swapin_batch
    for step in scenario.steps:
        batched.run_step(step)
        memory.swapin_batch = lambda *a: (1, 1)
        try:
            in_turn.run_step(step)
        finally:
            memory.swapin_batch = real
        where = f"{scenario.name} step {step.index} ({step.op}) under {design}"
        assert _whole_state(batched) == _whole_state(in_turn), where
        assert batched.m.trace == in_turn.m.trace, where


@settings(max_examples=150, deadline=None)
@given(doc=valid_scenarios(), design=st.sampled_from(sorted(BUILTIN)))
def test_k_faults_taken_together_equal_k_faults_in_turn(doc, design):
    _on_generated(doc, design, _batched_equals_in_turn)


@pytest.mark.parametrize("design", list(BUILTIN))
def test_k_faults_taken_together_equal_k_faults_in_turn_on_bundled_scenarios(design):
    _on_bundled(design, _batched_equals_in_turn)


@pytest.mark.parametrize("case", sorted(SWAPIN_RUNS))
@pytest.mark.parametrize("design", list(BUILTIN))
def test_order0_batches_equal_one_fault_at_a_time(case, design, monkeypatch):
    steps, config = SWAPIN_RUNS[case]
    taken = _batches_taken(monkeypatch)
    _batched_equals_in_turn(make_scenario(steps, folio_pages=[1, 16], **config), design)
    # Every design is given the batch (its hook is always called): order-0 batches only.
    assert taken and all(nr == 1 for _, nr in taken), taken


@pytest.mark.parametrize("case", sorted(LARGE_SWAPIN_RUNS))
@pytest.mark.parametrize("design", list(BUILTIN))
def test_large_batches_equal_one_fault_at_a_time(case, design, monkeypatch):
    steps, config = LARGE_SWAPIN_RUNS[case]
    taken = _batches_taken(monkeypatch)
    _batched_equals_in_turn(make_scenario(steps, folio_pages=[1, 16], **config), design)
    # In zram-split no range qualifies (misaligned, mixed zeromap); the others batch whole
    # 16-page folios, at least two at a time. split-before-swap swaps every page out alone:
    # on 6.12 those pages get slots from the slot cache's batch, each folio's head then its
    # tails in order (vmscan._queue_tails), aligned, so its ranges batch too.
    assert bool(taken) == (case != "zram-split"), taken
    assert all(nr == 16 and k >= 2 for k, nr in taken), taken


def test_large_swapin_run_counts_one_fault_per_folio():
    """64 pages on zram read back: 4 write faults, then 4 swap-in faults of 16 pages (taken
    as one batch), 4 arch_swap_restore calls, 64 tags restored, every slot freed."""
    from mteswap.scenario.runner import Runner
    steps, _ = LARGE_SWAPIN_RUNS["zram-whole"]
    r = Runner(make_scenario(steps[:4], folio_pages=[1, 16], **ZRAM), get_design("merged"),
               track_origins=False)
    r.run()
    c = r.m.counters
    assert (c["faults"], c["restore_calls"], c["tag_restores"], c["swap_ins"],
            c["large_swap_ins"], c["pswpin"]) == (4 + 4, 4, 64, 4, 4, 64)
    assert r.m.swap.inuse == 0 and len(r.m.mte_pages) == 0 and kinds(r) == []


def test_swapin_run_counts_one_fault_restore_and_swap_in_per_page():
    """64 pages written with distinct tags, reclaimed to an ssd and read back: 64 faults, 64
    restores in 64 arch_swap_restore calls, every slot still cached (swap not half full)."""
    from mteswap.scenario.runner import Runner
    steps, _ = SWAPIN_RUNS["cached"]
    r = Runner(make_scenario(steps[:4], folio_pages=[1, 16]), get_design("merged"),
               track_origins=False)
    r.run()
    c = r.m.counters
    assert (c["faults"], c["restore_calls"], c["tag_restores"], c["swap_ins"], c["pswpin"]) == \
        (64 + 4, 64, 64, 64, 64)            # 4 write faults of 16-page folios first
    assert r.m.swap.inuse == 64 and r.m.swap.cache.n == 64 and kinds(r) == []


def _pfns(r, vma_pages=16):
    from mteswap.model.pte import pte_pfn, pte_present
    mm = r.m.mms[0]
    start = mm.vmas[0].start
    return [pte_pfn(mm.ptes[v], v) if pte_present(mm.ptes[v]) else None
            for v in range(start, start + vma_pages)]


def test_pageout_without_swap_splits_a_large_folio_and_maps_its_zero_filled_pages_to_the_zero_page():
    # shrink_folio_list: add_to_swap fails after swapoff, so the folio is split as a swap-out
    # fallback; the split maps never-written pages of an untagged folio to the zero page.
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-7"}}, "swapoff",
                {"pageout": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": "all"}}])
    c = r.m.counters
    assert (c["swpout_fallback"], c["splits"], c["swap_outs"], c["swap_slot_allocs"]) == (1, 1, 0, 0)
    assert _pfns(r) == list(range(8)) + [ZERO_PFN] * 8
    assert sorted(r.m.folios) == list(range(8)) and r.oracle.violations == []


def test_pageout_without_swap_splits_a_tagged_folio_and_keeps_every_page_and_tag():
    r = runner([MMAP16, {"write": {"proc": "A", "vma": "buf", "pages": "all", "tag": "distinct"}},
                "swapoff", {"pageout": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"read": {"proc": "A", "vma": "buf", "pages": "all"}}])
    c = r.m.counters
    assert (c["swpout_fallback"], c["splits"], c["swap_outs"]) == (1, 1, 0)
    assert _pfns(r) == list(range(16))
    assert all(m.folio_at(p).nr == 1 for m in [r.m] for p in range(16))
    assert r.oracle.violations == []


def test_reclaim_without_swap_leaves_anonymous_folios_alone():
    r = runner([MMAP16, WRITE16, "swapoff", {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}])
    assert (r.m.counters["splits"], r.m.counters["swpout_fallback"]) == (0, 0)
    assert r.m.folio_at(0).nr == 16


# The deferred-split queue and its shrinker (drop_caches → deferred_split_scan).

def test_partial_dontneed_queues_the_folio_and_drop_caches_splits_it_freeing_the_dropped_pages():
    steps = [MMAP16, WRITE16, {"dontneed": {"proc": "A", "vma": "buf", "pages": "8-15"}}]
    r = runner(steps)
    assert r.m.folio_at(0).nr == 16 and r.m.folio_at(0).partially_mapped
    r = runner(steps + ["drop_caches", {"read": {"proc": "A", "vma": "buf", "pages": "0-7"}}])
    assert r.m.counters["splits"] == 1
    assert sorted(r.m.folios) == list(range(8))          # pages 8-15 were freed by the split
    assert _pfns(r) == list(range(8)) + [None] * 8
    assert r.oracle.violations == []


def test_drop_caches_splits_only_partially_mapped_folios():
    r = runner([MMAP16, WRITE16, {"mmap": {"proc": "A", "vma": "two", "pages": 16, "mte": True}},
                {"write": {"proc": "A", "vma": "two", "pages": "all"}},
                {"munmap": {"proc": "A", "vma": "two", "pages": "0-3"}}, "drop_caches"])
    assert r.m.counters["splits"] == 1
    assert r.m.folio_at(0).nr == 16 and not r.m.folio_at(0).partially_mapped   # buf: whole
    assert [r.m.folio_at(p).nr for p in range(20, 32)] == [1] * 12               # two: split
    assert all(r.m.folio_at(p) is None for p in range(16, 20))


def test_deferred_split_of_an_untagged_head_loses_the_tagged_tails_tags():
    # S5 through the shrinker: PROT_MTE added to pages 4-7 only, a hole punched at 12-15, then
    # drop_caches splits the folio; the tails get the head's clear flag and their tags are
    # zeroed when remapped, so the next tagged load faults.
    r = runner([{"mmap": {"proc": "A", "vma": "buf", "pages": 16}},
                {"write": {"proc": "A", "vma": "buf", "pages": "all"}},
                {"mprotect": {"proc": "A", "vma": "buf", "pages": "4-7", "mte": True}},
                {"stg": {"proc": "A", "vma": "buf", "pages": "4-7", "tag": 5}},
                {"dontneed": {"proc": "A", "vma": "buf", "pages": "12-15"}},
                {"read": {"proc": "A", "vma": "buf", "pages": "4-7"}}, "drop_caches",
                {"read": {"proc": "A", "vma": "buf", "pages": "4-7"}}])
    assert kinds(r)[0] == ("tag-check-fault", 8, 4)


def test_drop_caches_is_traced_as_deferred_split_scan():
    from mteswap.scenario.runner import run_scenario
    sc = make_scenario([MMAP16, WRITE16, {"dontneed": {"proc": "A", "vma": "buf", "pages": 0}},
                        "drop_caches"])
    res = run_scenario(sc, get_design("merged"), keep_trace=True)
    index, text, lines = res.trace[-1]
    assert (index, text) == (4, "drop_caches")
    assert [f for f, _ in lines][:2] == ["deferred_split_scan", "split_folio"]
    assert lines[1][1] == "folio=0 order=4 (deferred_split_scan)"
