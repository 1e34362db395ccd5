"""The tags' write-generation ghost (docs/concurrency.md §4): every tag the program sets carries
the generation of the write (or stg) that set it, numbered as that write's data values are
(scenario/runner.py `page_value`), and the ghost travels wherever the tags travel (save,
restore, compressed storage, copy, swapoff). An access that meets the tags the program expects
but of another write is a `stale-tags` violation: data of one write mapped with the equal tags
of another, which no check that compares values can see."""

from array import array
from dataclasses import replace

import pytest
from helpers import runner, scenario

from mteswap.designs import get_design
from mteswap.model.pte import pte_pfn
from mteswap.oracle import registry
from mteswap.scenario.load import parse_scenario
from mteswap.scenario.runner import Runner, run_scenario
from test_parallel_lifetimes import MIX

MMAP = {"mmap": {"proc": "A", "vma": "buf", "pages": 2, "mte": True}}
WRITE5 = {"write": {"proc": "A", "vma": "buf", "pages": "0-1", "tag": 5}}     # step 2
PAGEOUT = {"pageout": {"proc": "A", "vma": "buf", "pages": "0-1"}}
READ = {"read": {"proc": "A", "vma": "buf", "pages": "0-1"}}
SMALL = dict(folio_pages=[1], frames=16)


def found(r) -> list[tuple[str, int, int | None]]:
    return [(v.check, v.step, v.page) for v in r.oracle.violations]


def pfn_of(r, vpn: int, proc: str = "A") -> int:
    mm = r.m.mms[r.pids[proc]]
    return pte_pfn(mm.ptes[vpn], vpn)


def run(steps, corrupt=None, after=None, design="merged", **config):
    """Run `steps`; after step number `after` (1-based), call corrupt(r) on the runner."""
    r = Runner(scenario(steps, **config), get_design(design))
    for step in r.scenario.steps:
        r.run_step(step)
        if step.index == after:
            corrupt(r)
    return r


# -- the ghost follows the tags -------------------------------------------------------------

def test_a_write_with_tag_gives_its_tags_the_generation_of_the_values_it_stores():
    r = runner([MMAP, WRITE5, {"stg": {"proc": "A", "vma": "buf", "pages": 1, "tag": 5}}],
               **SMALL)
    assert [r.m.frame_tgen[pfn_of(r, v)] for v in (0, 1)] == [2 << 19 | 1, 3 << 19 | 2]
    assert [r.m.frame_data[pfn_of(r, v)] for v in (0, 1)] == [2 << 19 | 1, 2 << 19 | 2]
    view = r.oracle.expect.view[0]
    assert list(view.gens[:2]) == [2 << 19 | 1, 3 << 19 | 2]
    assert r.oracle.violations == []


@pytest.mark.parametrize("tag_storage", ["plain", "compressed"])
def test_the_generation_is_saved_with_the_tags_and_restored_with_them(tag_storage):
    r = runner([MMAP, WRITE5, PAGEOUT], tag_storage=tag_storage, **SMALL)
    assert sorted(r.m.saved_tgen.slots[e] for e in r.m.mte_pages) == [2 << 19 | 1, 2 << 19 | 2]
    r = runner([MMAP, WRITE5, PAGEOUT, READ], tag_storage=tag_storage, **SMALL)
    assert r.oracle.violations == []
    assert [r.m.frame_tgen[pfn_of(r, v)] for v in (0, 1)] == [2 << 19 | 1, 2 << 19 | 2]


def test_a_cow_copy_takes_the_generation_with_the_tags():
    r = runner([MMAP, WRITE5, {"fork": {"proc": "A", "child": "B"}},
                {"write": {"proc": "B", "vma": "buf", "pages": 0}},
                {"read": {"proc": "B", "vma": "buf", "pages": "0-1"}}], **SMALL)
    assert pfn_of(r, 0, "B") != pfn_of(r, 0, "A")              # B's write copied the page
    assert r.m.frame_tgen[pfn_of(r, 0, "B")] == 2 << 19 | 1    # ... and the tags' generation
    assert r.oracle.violations == []


@pytest.mark.parametrize("design", ["merged", "folio-marker", "per-folio-flag",
                                    "restore-all-unmarked"])
def test_swapoff_and_large_folios_keep_the_generations(design):
    steps = [{"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": True}},
             {"write": {"proc": "A", "vma": "buf", "pages": "0-3", "tag": 5}},
             {"pageout": {"proc": "A", "vma": "buf", "pages": "0-3"}}, "swapoff",
             {"read": {"proc": "A", "vma": "buf", "pages": "0-3"}}]
    r = runner(steps, design=design, folio_pages=[1, 4], frames=16)
    assert r.oracle.violations == []
    assert [r.m.frame_tgen[pfn_of(r, v)] for v in range(4)] == [2 << 19 | i + 1 for i in range(4)]


def test_kernel_zeroed_tags_have_generation_0_as_the_program_expects_of_fresh_memory():
    r = runner([MMAP, {"read": {"proc": "A", "vma": "buf", "pages": "0-1"}},
                {"write": {"proc": "A", "vma": "buf", "pages": "0-1"}}], **SMALL)
    assert r.oracle.violations == []
    assert [r.m.frame_tgen[pfn_of(r, v)] for v in (0, 1)] == [0, 0]


# -- stale-tags: the expected tags of another write -----------------------------------------

def test_tags_of_another_page_of_the_same_write_are_stale():
    """Page 1's tags (of the same write, the same value 5) on page 0: every tag compare
    passes; the generation says whose they are."""
    def corrupt(r):
        r.m.frame_tgen[pfn_of(r, 0)] = r.m.frame_tgen[pfn_of(r, 1)]
    r = run([MMAP, WRITE5, READ], corrupt=corrupt, after=2, **SMALL)
    assert found(r) == [("stale-tags", 3, 0)]
    assert r.oracle.violations[0].detail.startswith(
        "tags 5 of generation 0x100002 met where the program set them at generation 0x100001: ")


def test_saved_tags_of_another_write_restored_are_stale_at_the_access_that_meets_them():
    """The buffer saved for page 0 replaced by one of an earlier write with the same tag
    (tags 5, generation of step 2): the restore puts them back and the read meets them."""
    steps = [MMAP, {"write": {"proc": "A", "vma": "buf", "pages": "0-1", "tag": 5}},
             WRITE5, PAGEOUT, READ]           # the write of step 3 sets the tags read back

    def corrupt(r):
        entry = min(r.m.mte_pages)
        r.m.saved_tgen.set_range(entry, array("q", [2 << 19 | 1]))
    r = run(steps, corrupt=corrupt, after=4, **SMALL)
    assert found(r) == [("stale-tags", 5, 0)]
    assert "of generation 0x100001 met where the program set them at generation 0x180001" \
        in r.oracle.violations[0].detail
    assert "tags restored at step 5" in r.oracle.violations[0].detail


def test_a_store_meeting_stale_tags_is_reported_too():
    def corrupt(r):
        r.m.frame_tgen[pfn_of(r, 1)] = 0
    r = run([MMAP, WRITE5, {"write": {"proc": "A", "vma": "buf", "pages": "0-1"}}],
            corrupt=corrupt, after=2, **SMALL)
    assert found(r) == [("stale-tags", 3, 1)]
    assert "generation 0 (kernel-zeroed) met where the program set them at generation " \
           "0x100002" in r.oracle.violations[0].detail


def test_tags_that_differ_stay_a_tag_check_fault_and_not_also_stale():
    def corrupt(r):
        r.m.frame_tags[pfn_of(r, 0)] = 9
        r.m.frame_tgen[pfn_of(r, 0)] = 0
    r = run([MMAP, WRITE5, READ], corrupt=corrupt, after=2, **SMALL)
    assert found(r) == [("tag-check-fault", 3, 0)]


def test_through_an_untagged_mapping_no_generation_is_checked():
    def corrupt(r):
        r.m.frame_tgen[pfn_of(r, 0)] = 77
    r = run([{"mmap": {"proc": "A", "vma": "buf", "pages": 2, "mte": False}},
             {"write": {"proc": "A", "vma": "buf", "pages": "0-1"}}, READ],
            corrupt=corrupt, after=2, **SMALL)
    assert r.oracle.violations == []


def test_the_stale_tags_check_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(registry, "DISABLED", frozenset({"stale-tags"}))

    def corrupt(r):
        r.m.frame_tgen[pfn_of(r, 0)] = 0
    r = run([MMAP, WRITE5, READ], corrupt=corrupt, after=2, **SMALL)
    assert r.oracle.violations == []


# -- a reverted fix mixes two writes of the same tag (docs/concurrency.md §4, §6) --------------

# tests/test_parallel_lifetimes.py's MIX with both writes tagged 3: A's data (step 4) and B's
# tags (step 5) are equal in value, so only the generation tells them apart.
MIX_SAME_TAG = MIX.replace("slot-reused", "slot-reused-same-tag").replace("tag: 7", "tag: 3")
# A's fault frees its slot (swap more than half full), B's pageout reuses it and saves its
# tags, A's restore (after the free, with the revert) reads them.
MIX_SCHEDULE = (0,) * 5 + (1,) * 5 + (0, 0, 0)


def _reverted(sc, *commits):
    return replace(sc, config=replace(sc.config, revert=commits))


def test_reverted_6dca4ac6fc91_maps_a_data_with_the_equal_tags_of_b_write_stale_tags():
    sc = _reverted(parse_scenario(MIX_SAME_TAG), "6dca4ac6fc91")
    res = run_scenario(sc, get_design("merged"), schedule=MIX_SCHEDULE)
    first = res.first()
    assert (first.kind, first.step, first.proc, first.page, first.thread) == \
        ("stale-tags", 8, "A", 0, 0)
    assert first.detail.startswith("tags 3 of generation 0x280001 met where the program set "
                                   "them at generation 0x200001: tags restored at step 8")
    assert first.schedule == MIX_SCHEDULE
    # the read after the block meets them again; the data are A's own (no data-corruption)
    assert [(v.kind, v.step) for v in res.violations if v.check != "linearizability"] == \
        [("stale-tags", 8), ("stale-tags", 9)]
    assert run_scenario(parse_scenario(MIX_SAME_TAG), get_design("merged")).verdict == "pass"


def test_before_the_ghost_the_same_mix_passed_every_check_that_compares_values(monkeypatch):
    """With the check off the interleaving's accesses raise nothing: the gap §4 named."""
    monkeypatch.setattr(registry, "DISABLED", frozenset({"stale-tags"}))
    sc = _reverted(parse_scenario(MIX_SAME_TAG), "6dca4ac6fc91")
    r = Runner(sc, get_design("merged"))
    r.par.prefix = MIX_SCHEDULE
    r.run()
    assert [v.check for v in r.oracle.violations if v.step == 8 and v.page == 0
            and v.check != "linearizability"] == []


# -- linearizability compares the generation -------------------------------------------------

LIN = """\
version: 1
name: two-readers
config: {folio_pages: [1], swap_device: ssd, frames: 16}
steps:
  - mmap:     {proc: A, vma: buf, pages: 1, mte: true}
  - write:    {proc: A, vma: buf, pages: 0, tag: 4}
  - fork:     {proc: A, child: B}
  - mmap:     {proc: B, vma: own, pages: 1, mte: true}
  - write:    {proc: B, vma: own, pages: 0, tag: 4}
  - parallel:
      - read: {proc: A, vma: buf, pages: 0}
      - read: {proc: B, vma: own, pages: 0}
"""


def test_an_interleaving_whose_final_tags_come_from_no_admissible_write_is_not_linearizable():
    """A corruption after the lanes' accesses (so no access meets it): A's page ends with
    the equal tags of B's write. Every serial order gives A's own generation: the block is
    not linearizable, and only the generation says so (kind stale-tags)."""
    r = Runner(parse_scenario(LIN), get_design("merged"))
    steps = []

    def after(lane, name):
        steps.append(lane)
        if len(steps) == 2:                    # both reads done: the block's last step
            r.m.frame_tgen[pfn_of(r, 0)] = 5 << 19 | 1
    r.on_atomic_step = after
    r.par.prefix = (0, 1)
    r.run()
    assert [(v.kind, v.check, v.step, v.proc, v.page) for v in r.oracle.violations] == \
        [("stale-tags", "linearizability", 6, "A", 0)]
    assert r.oracle.violations[0].detail == (
        "not linearizable: after the block A buf page 0 holds value 0x100001 with tags 4 of "
        "generation 0x280001; the serial order CPU0.1, CPU1.1 gives 0x100001 with tags 4 of "
        "generation 0x100001")
