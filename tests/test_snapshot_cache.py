"""The machine snapshot's caches (issue 16, incremental state): a page table keeps its last
snapshot between writes (`PageTable.snapshot`), and the explorer hashes the cached form. After
every step of every bundled scenario, of parallel blocks (after each atomic step) and of
random walks through the explorer's model (a clone per step, as searches take them), the
cached snapshot equals one built afresh (`Machine.snapshot(cached=False)`). And the
comparison can fail: with an invalidation left out, it finds the stale snapshot."""

from __future__ import annotations

import random
import tempfile

import pytest

from mteswap.bundled import bundled_files, parallel_files
from mteswap.designs import get_design
from mteswap.explore.check import Options, make_problem
from mteswap.explore.model import get_model
from mteswap.model.state import PageTable
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import Runner


def _same(m, where) -> None:
    assert m.snapshot() == m.snapshot(cached=False), where


def _scenario_steps(sc, design: str) -> int:
    """Run `sc` step by step, comparing after each step; how many steps ran."""
    r = Runner(sc, get_design(design))
    for step in sc.steps:
        r.run_step(step)
        _same(r.m, (sc.name, design, step.index))
        r.m.snapshot()                 # fill the caches the next step must invalidate
    return len(sc.steps)


@pytest.mark.parametrize("design", ["merged", "rfc-v1", "folio-marker"])
def test_bundled_sequential_scenarios_cached_snapshot_is_fresh(design):
    steps = sum(_scenario_steps(load_scenario(p), design) for p in bundled_files()
                if all(s.op != "parallel" for s in load_scenario(p).steps))
    assert steps > 100


def test_bundled_parallel_scenarios_cached_snapshot_is_fresh():
    """Inside a block: after every atomic step (of the first interleaving), where the
    partial-order reduction compares snapshots taken mid-block (parallel.shared_state)."""
    checked = 0
    for p in parallel_files():
        sc = load_scenario(p)
        r = Runner(sc, get_design("merged"))
        seen = []

        def hook(lane, name, r=r, seen=seen):
            _same(r.m, (sc.name, lane, name))
            seen.append(name)
        r.on_atomic_step = hook
        for step in sc.steps:
            r.run_step(step)
            _same(r.m, (sc.name, step.index))
            if r.par.stopped:
                break
        checked += len(seen)
    assert checked > 50


def _walks(preset: str, design: str, walks: int, length: int, seed: int = 0) -> int:
    """Random walks through the explorer's model; after each step the child's cached
    snapshot is compared (the fingerprint fills the caches as a search does)."""
    model = get_model(make_problem(Options(out=tempfile.mkdtemp(), design=design,
                                           model=preset, progress=False)))
    rng = random.Random(seed)
    compared = 0
    for _ in range(walks):
        r = model.init()
        model.fingerprint(r)
        for _ in range(length):
            child = model.step(r, rng.choice(model.actions(r)))
            if child is None:
                continue
            _same(child.m, (preset, design))
            _same(r.m, (preset, design, "parent"))
            model.fingerprint(child)
            compared += 1
            r = child
    return compared


@pytest.mark.parametrize("preset", ["small", "zram"])
def test_random_walks_cached_snapshot_is_fresh(preset):
    assert _walks(preset, "merged-split-fix", walks=40, length=12) > 300


def test_a_missed_invalidation_is_caught(monkeypatch):
    """Emptying a page table's write log without dropping its cached snapshot (the one
    invalidation point) leaves a stale snapshot, which the comparison above reports."""
    def forget_only_the_log(self):
        self.written.clear()
    monkeypatch.setattr(PageTable, "forget_writes", forget_only_the_log)
    with pytest.raises(AssertionError, match="merged-split-fix"):
        _walks("small", "merged-split-fix", walks=40, length=12)


# -- no reference cycles: a discarded clone is freed at once ---------------------------------

def _swapped_runner():
    from helpers import runner as run_steps
    return run_steps([{"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": True}},
                      {"write": {"proc": "A", "vma": "buf", "pages": [0, 1, 2, 3], "tag": 3}},
                      {"reclaim": {"proc": "A", "vma": "buf", "pages": [0, 1, 2, 3],
                                   "keep_cached": True}}],
                     frames=16, swap_slots=1024, folio_pages=[1, 4])


def test_a_discarded_clone_is_freed_without_the_garbage_collector():
    """The explorer discards a clone per transition: with no reference cycle in a runner
    (machine views made on access, the swap cache's machine held weakly, the renamers
    unlinked), reference counting frees it, and the fingerprint leaves nothing behind."""
    import gc
    import weakref
    r = _swapped_runner()
    assert r.m.swap.cache and r.m.folios.values()
    model = get_model(make_problem(Options(out=tempfile.mkdtemp(), progress=False)))
    gc.disable()
    try:
        c = r.clone()
        model.fingerprint(c)
        gone = weakref.ref(c.m), weakref.ref(c.m.swap), weakref.ref(c.oracle)
        del c
        assert [ref() for ref in gone] == [None, None, None]
    finally:
        gc.enable()


def test_deepcopy_keeps_the_swap_cache_with_its_machine():
    import copy
    r = _swapped_runner()
    d = copy.deepcopy(r)
    assert d.m.swap.cache.m is d.m and r.m.swap.cache.m is r.m
    assert all(f.m is d.m for _, f in d.m.swap.cache.items())
    assert d.m.snapshot() == r.m.snapshot()


# -- the swap device's slot allocator, shared by clones until one writes ---------------------

def _allocator(si) -> tuple:
    import copy
    return copy.deepcopy(tuple(getattr(si, name) for name in si.ALLOCATOR))


def _allocator_walks(preset: str, walks: int = 30, length: int = 14) -> tuple[int, int]:
    """Random walks through the explorer's model: stepping a clone leaves its parent's
    allocator as it was. Returns (steps that changed the child's allocator, steps that
    left it shared)."""
    model = get_model(make_problem(Options(out=tempfile.mkdtemp(), design="merged-split-fix",
                                           model=preset, progress=False)))
    rng = random.Random(7)
    wrote = shared = 0
    for _ in range(walks):
        r = model.init()
        for _ in range(length):
            before = _allocator(r.m.swap)
            child = model.step(r, rng.choice(model.actions(r)))
            if child is None:
                continue
            assert _allocator(r.m.swap) == before, preset
            if child.m.swap.cluster_order is r.m.swap.cluster_order:
                shared += 1
            elif _allocator(child.m.swap) != before:
                wrote += 1
            r = child
    return wrote, shared


@pytest.mark.parametrize("preset", ["small", "zram"])
def test_clones_share_the_allocator_until_one_writes(preset):
    wrote, shared = _allocator_walks(preset)
    assert wrote > 10 and shared > 100


def test_an_allocator_write_without_a_copy_is_caught(monkeypatch):
    from mteswap.model.swapinfo import SwapInfo
    monkeypatch.setattr(SwapInfo, "_own_allocator", lambda self: None)
    with pytest.raises(AssertionError, match="small"):
        _allocator_walks("small")
