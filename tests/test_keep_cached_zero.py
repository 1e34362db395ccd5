"""keep_cached stands for writeback still running; a zero-filled folio is written as zeromap
bits only (`swap_writepage`, no I/O), so `shrink_folio_list` frees it in the same pass on every
device: its pages are `S`, not `C` (fuzz-2-0013 on the virtio disk, docs/fidelity.md)."""

from __future__ import annotations

import pytest

from helpers import kinds, scenario
from mteswap.designs import get_design
from mteswap.scenario.runner import Runner


def _op(op, pages="all", **kw):
    return {op: {"proc": "A", "vma": "b", "pages": pages, **kw}}


def _run(steps, **config) -> Runner:
    r = Runner(scenario(steps, swap_device="ssd", **config), get_design("merged"), keep_states=True)
    for step in r.scenario.steps:
        r.run_step(step)
    return r


MMAP = {"mmap": {"proc": "A", "vma": "b", "pages": 16, "mte": True}}


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_a_zero_filled_folio_paged_out_with_keep_cached_is_freed_at_once(kernel):
    # stg tags the pages without storing data: the folio stays zero-filled.
    steps = [MMAP, _op("stg", tag=3), _op("pageout", keep_cached=True), _op("read")]
    r = Runner(scenario(steps, swap_device="ssd", kernel=kernel), get_design("merged"), keep_states=True)
    for step in r.scenario.steps[:3]:
        r.run_step(step)
    assert r.states[-1]["pages"] == "S" * 16
    assert len(r.m.swap.cache) == 0 and r.m.counters["pswpout"] == 16
    assert r.m.counters["swpout_zero"] == 1                 # one 64 KiB folio, no I/O
    r.run_step(r.scenario.steps[3])
    assert r.m.counters["swap_cache_hits"] == 0
    assert kinds(r) == []             # tags come back from the saved copy


def test_a_written_folio_paged_out_with_keep_cached_stays_in_the_swap_cache():
    r = _run([MMAP, _op("write", tag=3), _op("pageout", keep_cached=True), _op("read")])
    states = {s["step"]: s["pages"] for s in r.states}
    assert states[3] == "C" * 16
    assert states[4] == "H" + "t" * 15                 # the fault maps the cached folio whole
    assert r.m.counters["swap_cache_hits"] == 1 and r.m.counters["swpout_zero"] == 0


def test_only_the_zero_filled_pages_of_a_split_folio_are_freed():
    # Pages 0-3 written, 4-15 only tagged; a partial dontneed splits the folio at pageout.
    r = _run([MMAP, _op("stg", tag=2), _op("write", [0, 1, 2, 3], tag=2), _op("dontneed", [15]),
              _op("pageout", keep_cached=True)])
    assert {s["step"]: s["pages"] for s in r.states}[5] == "CCCC" + "S" * 11 + "-"


def test_a_clean_swap_cache_folio_paged_out_with_keep_cached_is_freed_at_once():
    """The first pageout writes the folios (I/O: kept, `C`); a read maps them again from the
    swap cache, clean (their copies in the swap area are current); the second pageout writes
    nothing, so nothing is under writeback and the pass frees them (`S`), as the kernel does
    (fuzz-13-0012's clean folios, docs/fidelity.md). Their tags come back from the slots."""
    r = _run([{"mmap": {"proc": "A", "vma": "b", "pages": 2, "mte": True}},
              _op("write", tag="distinct"), _op("pageout", keep_cached=True), _op("read"),
              _op("pageout", keep_cached=True), _op("read")], folio_pages=[1])
    states = {s["step"]: s["pages"] for s in r.states}
    assert (states[3], states[4], states[5], states[6]) == ("CC", "pp", "SS", "pp")
    assert kinds(r) == [] and r.m.counters["swap_outs"] == 2 and r.m.counters["swap_ins"] == 2
