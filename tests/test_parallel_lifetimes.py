"""do_swap_page's f6 split (arch_swap_restore / swap_free_nr / folio_free_swap / set_ptes),
tag-store buffers as objects with a lifetime, and 6dca4ac6fc91's race
(docs/concurrency.md §2, §3, §4, §6)."""

from dataclasses import replace

import pytest

from mteswap.bundled import parallel_files
from mteswap.designs import get_design
from mteswap.model import sched as S
from mteswap.scenario.load import load_scenario, parse_scenario
from mteswap.scenario.runner import run_scenario

P13 = next(p for p in parallel_files() if p.stem == "p13-restore-after-free-vs-swapoff-ssd")
P13_SCHEDULE = (0, 0, 0, 0, 0, 0, 1, 0)
P13_UAF = ("tag buffer of entry 0x200 freed by mte_invalidate_tags (swapoff on CPU1), then "
           "read by mte_restore_tags:mte_restore_page_tags on CPU0")


def _reverted(sc, *commits):
    return replace(sc, config=replace(sc.config, revert=commits))


def _first(res):
    first = res.first()
    return None if first is None else (first.kind, first.step, first.thread)


# -- the steps ------------------------------------------------------------------------------

def test_with_the_fix_the_restore_is_local_work_before_swap_free_and_set_ptes_is_a_step():
    """With the fix the fault's reference pins the slot through the restore: lookup and
    copy stay in f6 with swap_free_nr and folio_free_swap; set_ptes is a step of its own."""
    res = run_scenario(load_scenario(P13), get_design("merged"), schedule=(0,) * 6)
    assert res.verdict == "pass"
    cpu0 = [name for lane, name in res.blocks[0].steps if lane == 0]
    assert cpu0 == ["write proc=A vma=buf pages=0 tag=5", "do_swap_page:swap_cache_get_folio",
                    "do_swap_page:folio_lock", "do_swap_page:pte_same",
                    "do_swap_page:arch_swap_restore", "do_swap_page:set_ptes"]


def test_reverted_the_restore_comes_after_swap_free_and_folio_free_swap_in_two_steps():
    sc = _reverted(load_scenario(P13), "6dca4ac6fc91")
    res = run_scenario(sc, get_design("merged"), schedule=(0,) * 8)
    assert res.verdict == "pass"          # swapoff ran after the fault: nothing freed between
    cpu0 = [name for lane, name in res.blocks[0].steps if lane == 0]
    assert cpu0[3:] == ["do_swap_page:pte_same", "do_swap_page:swap_free_nr",
                        "do_swap_page:arch_swap_restore",
                        "mte_restore_tags:mte_restore_page_tags", "do_swap_page:set_ptes"]


# -- tag buffers: use-after-free --------------------------------------------------------------

@pytest.mark.parametrize("reverts, want", [
    ((), None),
    (("13ddaf26be32",), None),                       # the ssd path never skips the cache
    (("6dca4ac6fc91",), ("use-after-free", 4, 0)),
    (("6dca4ac6fc91", "13ddaf26be32"), ("use-after-free", 4, 0)),
])
def test_p13_swapoff_frees_the_tag_buffer_between_lookup_and_copy_only_reverted(reverts, want):
    res = run_scenario(_reverted(load_scenario(P13), *reverts), get_design("merged"))
    assert _first(res) == want
    if want:
        first = res.first()
        assert first.detail == P13_UAF
        assert first.schedule == P13_SCHEDULE          # the shortest: one preemption
        assert res.blocks[0].steps[-2:] == [(1, "swapoff"),
                                            (0, "mte_restore_tags:mte_restore_page_tags")]
        assert len(res.violations) == 1                # the interleaving stopped there


def test_p13_use_after_free_replays_as_a_schedule():
    sc = _reverted(load_scenario(P13), "6dca4ac6fc91")
    res = run_scenario(sc, get_design("merged"), schedule=P13_SCHEDULE)
    assert (_first(res), res.first().detail) == (("use-after-free", 4, 0), P13_UAF)
    # swapoff before the lookup instead: the buffer is gone, nothing is read (no UAF)
    res = run_scenario(sc, get_design("merged"), schedule=(0,) * 5 + (1, 0))
    assert all(v.kind != "use-after-free" for v in res.violations)


# zram, one page: the skip-swapcache path. Its SWAP_HAS_CACHE pin (13ddaf26be32) keeps the
# slot through swap_free_nr, so reverting 6dca4ac6fc91 alone leaves the restore pinned.
ZRAM = P13.read_text().replace("swap_device: ssd", "swap_device: zram").replace(
    "- write: {proc: A, vma: buf, pages: 0, tag: 5}", "- read: {proc: A, vma: buf, pages: 0}")


@pytest.mark.parametrize("reverts, want", [
    (("6dca4ac6fc91",), None),
    (("13ddaf26be32",), None),
    (("6dca4ac6fc91", "13ddaf26be32"), ("use-after-free", 4, 0)),
])
def test_on_zram_the_skip_swapcache_pin_closes_the_window_too(reverts, want):
    res = run_scenario(_reverted(parse_scenario(ZRAM), *reverts), get_design("merged"))
    assert _first(res) == want
    if want:
        assert res.first().detail == P13_UAF
        assert res.first().schedule == (0, 0, 0, 0, 0, 0, 1, 0)


def test_a_buffer_freed_between_lookup_and_copy_is_a_use_after_free_naming_both_functions():
    """Direct: CPU0 looks entry 0x7's buffer up, CPU1 frees it, CPU0's copy raises."""
    class _M:
        sched = None

    m = _M()

    def restorer():
        S.copy_tag_buffers(m, [0x7], "mte_restore_tags:mte_restore_page_tags")

    def freer():
        S.tag_buffers_freed(m, [0x7], "mte_invalidate_tags")

    picks = [0, 1, 0]
    s = S.Scheduler(m, [("do_swap_page:arch_swap_restore", restorer),
                        ("swap_free_nr", freer)], lambda enabled, last: picks.pop(0))
    with pytest.raises(S.UseAfterFree) as err:
        s.run()
    assert (err.value.obj, err.value.freer, err.value.reader, err.value.lane) == (
        "tag buffer of entry 0x7", "mte_invalidate_tags (swap_free_nr on CPU1)",
        "mte_restore_tags:mte_restore_page_tags", 0)


def test_a_buffer_saved_again_after_the_copy_started_is_a_new_object():
    """Freed before the lookup, saved again: the lookup finds the new buffer, no UAF."""
    class _M:
        sched = None

    m = _M()
    done = []

    def restorer():
        S.copy_tag_buffers(m, [0x7], "copy")
        done.append(True)

    def freer():
        S.tag_buffers_freed(m, [0x7], "mte_invalidate_tags")

    picks = [1, 0, 0]
    S.Scheduler(m, [("lookup", restorer), ("free", freer)],
                lambda enabled, last: picks.pop(0)).run()
    assert done == [True]


# -- 6dca4ac6fc91 alone, sequentially: memory pressure -----------------------------------------

PRESSURE = """\
version: 1
name: restore-after-free-under-pressure
config: {folio_pages: [1], swap_device: ssd, swap_slots: 4, frames: 16}
steps:
  - mmap:     {proc: A, vma: buf, pages: 4, mte: true}
  - write:    {proc: A, vma: buf, pages: 0-3, tag: 3}
  - pageout:  {proc: A, vma: buf, pages: 0-3}
  - read:     {proc: A, vma: buf, pages: 0}
"""


@pytest.mark.parametrize("reverts, want", [((), None),
                                           (("6dca4ac6fc91",), ("tag-check-fault", 4, 0))])
def test_swap_more_than_half_full_frees_the_slot_before_a_reverted_restore(reverts, want):
    """vm_swap_full(): the read fault frees the swap cache (folio_free_swap); with no slot
    cache (too little swap) the slot and its tags go at once, and the restore that the
    revert moves after it finds nothing (the "tags lost under memory pressure" of the fix)."""
    res = run_scenario(_reverted(parse_scenario(PRESSURE), *reverts), get_design("merged"))
    first = res.first()
    assert (None if first is None else (first.kind, first.step, first.page)) == want


# -- data and tags of different writes mapped together (docs/concurrency.md §4) ---------------

MIX = """\
version: 1
name: restore-after-free-slot-reused
config: {folio_pages: [1], swap_device: ssd, swap_slots: 3, frames: 16}
steps:
  - mmap:     {proc: A, vma: buf, pages: 1, mte: true}
  - fork:     {proc: A, child: B}
  - mmap:     {proc: B, vma: own, pages: 2, mte: true}
  - write:    {proc: A, vma: buf, pages: 0, tag: 3}
  - write:    {proc: B, vma: own, pages: 0-1, tag: 7}
  - pageout:  {proc: A, vma: buf, pages: 0}
  - pageout:  {proc: B, vma: own, pages: 1}
  - parallel:
      - read: {proc: A, vma: buf, pages: 0}
      - pageout: {proc: B, vma: own, pages: 0}
  - read:     {proc: A, vma: buf, pages: 0}
"""


def test_data_of_one_write_with_tags_of_another_is_caught_by_the_existing_checks():
    """Reverted 6dca4ac6fc91: A's fault frees its slot, B's pageout reuses it and saves B's
    tags (7) there, then A's restore reads them: A's data (step 4's write) mapped with the
    tags of step 5's write. The access check and linearizability both report it."""
    sc = _reverted(parse_scenario(MIX), "6dca4ac6fc91")
    res = run_scenario(sc, get_design("merged"), schedule=(0,) * 5 + (1,) * 5 + (0, 0, 0))
    first = res.first()
    assert (first.kind, first.step, first.proc, first.page) == ("tag-check-fault", 8, "A", 0)
    assert first.detail.startswith("expected tag 3, found 7")
    lin = [v for v in res.violations if v.check == "linearizability"]
    assert len(lin) == 1 and "holds value 0x200001 with tags 7" in lin[0].detail
    assert run_scenario(parse_scenario(MIX), get_design("merged")).verdict == "pass"
