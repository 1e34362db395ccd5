"""VMAs and their anon_vma (model/vma.py): fork copies page tables only of VMAs that have an
anon_vma (`vma_needs_copy`), mprotect(PROT_MTE) leaves pages that already have VM_MTE alone and
merges into neighbours as `vma_merge_existing_range` / `is_mergeable_anon_vma` allow, per kernel.
Asserted on page states (the `--states` letters), VMA bounds and anon_vma ids."""

from __future__ import annotations

import pytest

from helpers import kinds, scenario
from mteswap.designs import get_design
from mteswap.model.machine import _vmas_snapshot
from mteswap.model.pte import pte_pfn
from mteswap.model.state import Vma
from mteswap.scenario.runner import Runner
from mteswap.scenario.states import vma_states


def _mmap(vma, pages, mte=True, proc="A"):
    return {"mmap": {"proc": proc, "vma": vma, "pages": pages, "mte": mte}}


def _op(op, vma, pages="all", proc="A", **kw):
    return {op: {"proc": proc, "vma": vma, "pages": pages, **kw}}


def _fork(child, proc="A"):
    return {"fork": {"proc": proc, "child": child}}


def _run(steps, **config) -> Runner:
    r = Runner(scenario(steps, **config), get_design("merged"), keep_states=True)
    for step in r.scenario.steps:
        r.run_step(step)
    return r


def _pages(r, proc, name="b") -> str:
    """The `pages` letters of VMA `name` of process `proc` now."""
    mm = r.m.mms[r.pids[proc]]
    start, pages = r.vmas[(mm.pid, name)]
    return vma_states(r.m, mm, name, start, pages)[0]


def _bounds(r, proc="A") -> list[tuple[int, int, bool]]:
    """(first page, end page, VM_MTE) of each VMA of `proc`, relative to the mapping's start."""
    mm = r.m.mms[r.pids[proc]]
    return [(v.start - v.orig_start, v.end - v.orig_start, v.vm_mte) for v in mm.vmas]


def _states(r) -> dict[int, str]:
    return {s["step"]: s["pages"] for s in r.states}


# -- fork: vma_needs_copy -------------------------------------------------------------------

def test_fork_of_a_vma_that_only_mapped_the_zero_page_copies_no_ptes():
    r = _run([_mmap("b", 16), _op("read", "b"), _fork("B")])
    assert _pages(r, "A") == "z" * 16
    assert _pages(r, "B") == "-" * 16                   # no anon_vma: page tables not copied
    assert [v.anon_vma for v in r.m.mms[0].vmas] == [0]
    assert [v.anon_vma for v in r.m.mms[1].vmas] == [0]


def test_the_child_faults_the_zero_page_in_again_and_its_write_gets_a_fresh_folio():
    r = _run([_mmap("b", 16), _op("read", "b"), _fork("B"), _op("read", "b", [3], proc="B"),
              _op("write", "b", proc="B", tag=5), _op("read", "b")])
    states = _states(r)
    assert states[4] == "---z" + "-" * 12
    # Every PTE but page 3's is none: no 64 KiB range is empty, so small pages (pte_range_none).
    assert states[5] == "p" * 16
    assert states[6] == "z" * 16                        # the parent kept its zero-page PTEs
    assert kinds(r) == []


def test_fork_copies_every_pte_of_a_vma_with_an_anonymous_page_zero_page_ones_too():
    r = _run([_mmap("b", 16), _op("read", "b"), _op("write", "b", [2]), _fork("B")])
    assert _pages(r, "A") == "zzp" + "z" * 13            # wp_page_copy gave the VMA an anon_vma
    assert _pages(r, "B") == "zzp" + "z" * 13
    parent, child = r.m.mms[0].vmas[0], r.m.mms[1].vmas[0]
    assert (parent.anon_vma, parent.anon_fork) == (1, False)
    assert child.anon_vma != 0 and child.anon_fork is True


def test_a_vma_without_anon_vma_is_skipped_while_the_one_beside_it_is_copied():
    r = _run([_mmap("b", 16), _mmap("c", 16), _op("read", "b"), _op("write", "c", tag=3),
              _fork("B")])
    assert _pages(r, "B", "b") == "-" * 16
    assert _pages(r, "B", "c") == "H" + "t" * 15
    assert _pfn(r, "B", "c") == _pfn(r, "A", "c")        # shared copy-on-write
    assert r.m.folio_mapcount(r.m.folio_at(_pfn(r, "A", "c"))) == 32


def _pfn(r, proc, name):
    mm = r.m.mms[r.pids[proc]]
    start = r.vmas[(mm.pid, name)][0]
    return pte_pfn(mm.ptes[start], start)


def test_grandchild_of_a_vma_without_anon_vma_gets_no_ptes_either():
    r = _run([_mmap("b", 16), _op("read", "b"), _fork("B"), _op("read", "b", proc="B"),
              _fork("C", proc="B")])
    assert _pages(r, "B") == "z" * 16
    assert _pages(r, "C") == "-" * 16


# -- mprotect: no-op where VM_MTE is set, merges ----------------------------------------------

def test_mprotect_of_pages_that_already_have_vm_mte_keeps_one_vma_so_the_write_is_one_folio():
    r = _run([_mmap("b", 16), _op("mprotect", "b", list(range(4, 8)), mte=True),
              _op("write", "b", tag=2)])
    assert _bounds(r) == [(0, 16, True)]
    assert _states(r)[3] == "H" + "t" * 15


def test_mprotect_of_both_halves_of_a_faulted_vma_merges_them_back():
    # The write gives the VMA its anon_vma; both halves keep it when split, so they merge.
    steps = [_mmap("b", 16, mte=False), _op("write", "b"),
             _op("mprotect", "b", list(range(8)), mte=True)]
    r = _run(steps)
    assert _bounds(r) == [(0, 8, True), (8, 16, False)]
    r = _run(steps + [_op("mprotect", "b", list(range(8, 16)), mte=True), _op("dontneed", "b"),
                      _op("write", "b", tag=1)])
    assert _bounds(r) == [(0, 16, True)]
    assert _states(r)[6] == "H" + "t" * 15


def test_mprotect_merges_a_part_into_the_previous_piece_and_shrinks_the_rest():
    r = _run([_mmap("b", 16, mte=False), _op("mprotect", "b", list(range(4)), mte=True),
              _op("mprotect", "b", list(range(4, 8)), mte=True)])
    assert _bounds(r) == [(0, 8, True), (8, 16, False)]
    r = _run([_mmap("b", 16, mte=False), _op("mprotect", "b", list(range(12, 16)), mte=True),
              _op("mprotect", "b", list(range(8, 12)), mte=True)])
    assert _bounds(r) == [(0, 8, False), (8, 16, True)]


def test_mprotect_of_the_middle_merges_three_pieces_into_one():
    r = _run([_mmap("b", 16, mte=False), _op("mprotect", "b", [0, 1, 2, 3, 12, 13, 14, 15], mte=True),
              _op("mprotect", "b", list(range(4, 12)), mte=True)])
    assert _bounds(r) == [(0, 16, True)]


# The second half faulted (anon_vma), the first half not: may it merge into the first?
FAULTED_INTO_UNFAULTED = [_mmap("b", 16, mte=False), _op("mprotect", "b", list(range(8)), mte=True),
                          _op("write", "b", [8]), _op("mprotect", "b", list(range(8, 16)), mte=True),
                          _op("dontneed", "b"), _op("write", "b", tag=4)]


@pytest.mark.parametrize(("kernel", "bounds", "pages"), [
    ("6.12", [(0, 8, True), (8, 16, True)], "p" * 16),    # target has no anon_vma: refused
    ("7.2", [(0, 16, True)], "H" + "t" * 15),             # v6.16 allows it
])
def test_a_faulted_range_merges_into_an_unfaulted_neighbour_only_on_7_2(kernel, bounds, pages):
    r = _run(FAULTED_INTO_UNFAULTED, kernel=kernel)
    assert _bounds(r) == bounds
    assert _states(r)[3] == "--------p-------"
    assert _states(r)[6] == pages
    assert kinds(r) == []


def test_anon_vma_prepare_reuses_the_anon_vma_of_a_compatible_neighbour():
    # 6.12 leaves two VM_MTE pieces side by side (above); the first's fault takes the second's.
    r = _run(FAULTED_INTO_UNFAULTED[:4] + [_op("write", "b", [0])])
    first, second = r.m.mms[0].vmas
    assert second.anon_vma != 0 and first.anon_vma == second.anon_vma


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_a_forked_child_does_not_merge_pieces_that_shared_an_anon_vma_in_the_parent(kernel):
    # In the child each piece got its own anon_vma at fork: different ones never merge.
    steps = [_mmap("b", 16, mte=False), _op("write", "b"), _op("mprotect", "b", list(range(8)), mte=True),
             _fork("B"), _op("mprotect", "b", list(range(8, 16)), mte=True),
             _op("mprotect", "b", list(range(8, 16)), proc="B", mte=True)]
    r = _run(steps, kernel=kernel)
    assert _bounds(r, "A") == [(0, 16, True)]
    assert _bounds(r, "B") == [(0, 8, True), (8, 16, True)]
    child = r.m.mms[1].vmas
    assert child[0].anon_vma != child[1].anon_vma and child[0].anon_fork and child[1].anon_fork


def test_the_snapshot_renumbers_anon_vma_ids_by_first_appearance():
    a = [Vma("b", 0, 8, 0, True, 7, False), Vma("b", 8, 16, 0, True, 3, True), Vma("c", 32, 48, 32, False)]
    b = [Vma("b", 0, 8, 0, True, 1, False), Vma("b", 8, 16, 0, True, 2, True), Vma("c", 32, 48, 32, False)]
    assert _vmas_snapshot(a) == _vmas_snapshot(b)
    assert [v[4] for v in _vmas_snapshot(a)] == [1, 2, 0]
    b[1].anon_vma = 1                                    # sharing differs: the snapshot too
    assert _vmas_snapshot(a) != _vmas_snapshot(b)
