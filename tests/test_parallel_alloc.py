"""The cluster allocator's reclaim of cache-only slots and its lock drop (mm/swapfile.c
`cluster_scan_range` / `cluster_reclaim_range`), and 0ec8bc9e880e "mm, swap: fix allocation
and scanning race with swapoff" (docs/concurrency.md §2, §6; p14)."""

from dataclasses import replace

import pytest

from helpers import invoke
from mteswap.bundled import parallel_files
from mteswap.designs import BUILTIN, get_design
from mteswap.model.reverts import REVERTS
from mteswap.model.swapinfo import SWAP_HAS_CACHE, SwapInfo
from mteswap.scenario.load import ScenarioError, load_scenario, parse_scenario
from mteswap.scenario.runner import Runner, run_scenario

REVERT = "0ec8bc9e880e"
P14 = next(p for p in parallel_files() if p.stem == "p14-alloc-reclaim-vs-swapoff-ssd")
# CPU0 drops the locks to reclaim slot 0x1; swapoff runs whole; CPU0's lockless read
SHORTEST = (0, 0, 1, 1, 1, 1, 1, 0)
UAF = ("swap device (swap_map) freed by swapoff, then read by "
       "cluster_reclaim_range:__try_to_reclaim_swap on CPU0")
# swapoff clears SWP_WRITEOK, then CPU0 reclaims and relocks
RELOCK_AFTER_WRITEOK = (0, 0, 1, 0, 0, 0)
# CPU0 relocks after try_to_unuse is done, before swapoff frees swap_map
RELOCK_AFTER_UNUSE = (0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1)
RECLAIM_STEPS = ["cluster_reclaim_range:__try_to_reclaim_swap",
                 "__try_to_reclaim_swap:folio_trylock", "cluster_reclaim_range:spin_lock"]


def _reverted(sc, *commits):
    return replace(sc, config=replace(sc.config, revert=commits))


def _cpu(res, lane):
    return [name for ln, name in res.blocks[0].steps if ln == lane]


# -- sequential: the allocator reclaims a cache-only slot while swap is more than half full --

# p14's steps with the parallel block written one after another: the pageout of page 4 first
SEQ = P14.read_text().split("steps:")[0].split("expect:")[0] + """steps:
  - mmap:     {proc: A, vma: buf, pages: 5, mte: true}
  - write:    {proc: A, vma: buf, pages: 0-4, tag: 3}
  - pageout:  {proc: A, vma: buf, pages: 0}
  - read:     {proc: A, vma: buf, pages: 0}
  - pageout:  {proc: A, vma: buf, pages: 1-4}
  - read:     {proc: A, vma: buf, pages: 4}
  - pageout:  {proc: A, vma: buf, pages: 4}
"""


def _run_steps(text: str, kernel: str = "6.12"):
    sc = parse_scenario(text.replace("frames: 16", f"frames: 16\n  kernel: '{kernel}'"))
    r = Runner(sc, get_design("merged"))
    r.run()
    return r


@pytest.mark.parametrize("kernel", ["6.12", "7.2"])
def test_a_full_swap_reclaims_the_cache_only_slot_the_scan_meets_first(kernel):
    """Slot 0x1 holds page 0's swap-cache folio only (SWAP_HAS_CACHE, page 0 mapped), slot 0x5
    is free, swap is more than half full: the scan of the nonfull cluster from its first slot
    reclaims 0x1 (TTRS_ANYWAY: the mapped folio leaves the swap cache) and takes it."""
    r = _run_steps(SEQ, kernel)
    si = r.m.swap
    assert 0x1 not in si.cache                          # page 0's folio was reclaimed
    assert si.swap_map[1] == 1 and si.swap_map[5] == 0  # page 4 went to slot 0x1
    assert r.oracle.violations == []


def test_swap_at_most_half_full_keeps_the_cache_only_slot():
    """With room (64 slots), `cluster_scan_range` does not reclaim: page 4 gets a free slot and
    page 0's folio stays in the swap cache."""
    r = _run_steps(SEQ.replace("swap_slots: 6", "swap_slots: 64"))
    si = r.m.swap
    assert 0x1 in si.cache and si.swap_map[1] == SWAP_HAS_CACHE
    assert r.oracle.violations == []


def test_find_slots_without_a_successful_reclaim_places_as_before():
    """The reclaim only adds candidates: when it frees nothing, find_slots chooses what it
    chose without one (and it is not called while swap is at most half full)."""
    def fresh():
        si = SwapInfo(8, "ssd")
        for off in range(1, 8):
            si.take_slot(off, SWAP_HAS_CACHE if off in (2, 3) else 1)
        si.release_slot(6)
        return si
    calls = []
    refuse = lambda off, nr: calls.append(off) or False
    assert fresh().find_slots(1, refuse) == fresh().find_slots(1) == 6
    assert calls == [2, 3]                     # met first, in order, and both refused
    roomy = SwapInfo(64, "ssd")
    roomy.take_slot(1, SWAP_HAS_CACHE)
    assert roomy.find_slots(1, lambda off, nr: pytest.fail("reclaim while not full")) is not None


# -- between threads: the fix --------------------------------------------------------------

@pytest.mark.parametrize("design", list(BUILTIN))
def test_p14_passes_with_the_fix(design):
    res = run_scenario(load_scenario(P14), get_design(design))
    assert res.verdict == "pass" and res.interleavings == 95


def test_the_allocation_drops_its_locks_to_reclaim_in_three_steps():
    res = run_scenario(load_scenario(P14), get_design("merged"), schedule=(0,) * 8)
    assert res.verdict == "pass"
    assert _cpu(res, 0)[:5] == ["pageout proc=A vma=buf pages=4",
                                "shrink_folio_list:folio_trylock"] + RECLAIM_STEPS


def test_with_the_fix_swapoff_waits_for_the_scanning_allocator():
    """SWP_SCANNING: swapoff:free_swap_map is not enabled while CPU0 is between its lock drop
    and its relock, so the shortest reverted schedule is refused."""
    with pytest.raises(ScenarioError, match="--schedule"):
        run_scenario(load_scenario(P14), get_design("merged"), schedule=SHORTEST)


def test_with_the_fix_a_relock_after_swapoff_cleared_writeok_takes_no_slot():
    res = run_scenario(load_scenario(P14), get_design("merged"), schedule=RELOCK_AFTER_WRITEOK)
    assert res.verdict == "pass"
    assert _cpu(res, 0)[2:] == RECLAIM_STEPS           # no try_to_unmap: add_to_swap failed
    assert res.counters["swap_slot_alloc_fails"] == 1


# -- between threads: reverted -------------------------------------------------------------

def test_reverts_lists_the_fix_with_its_title():
    assert REVERTS[REVERT] == "mm, swap: fix allocation and scanning race with swapoff"
    res = invoke("reverts")
    assert res.exit_code == 0
    assert f"{REVERT}  mm, swap: fix allocation and scanning race with swapoff" in res.output


def test_reverted_a_relock_after_writeok_cleared_takes_a_slot_on_the_dying_device():
    """The reverted path runs: no SWP_WRITEOK recheck, CPU0 goes on to unmap and write."""
    sc = _reverted(load_scenario(P14), REVERT)
    res = run_scenario(sc, get_design("merged"), schedule=RELOCK_AFTER_WRITEOK)
    assert _cpu(res, 0)[2:] == RECLAIM_STEPS + [
        "try_to_unmap:try_to_unmap_one", "swap_writepage:arch_prepare_to_swap",
        "shrink_folio_list:__remove_mapping"]
    assert res.counters.get("swap_slot_alloc_fails", 0) == 0


@pytest.mark.parametrize("design", list(BUILTIN))
def test_reverted_swapoff_frees_swap_map_under_the_scanning_allocator(design):
    res = run_scenario(_reverted(load_scenario(P14), REVERT), get_design(design))
    first = res.first()
    assert (first.kind, first.step, first.thread, first.detail) == ("use-after-free", 7, 0, UAF)
    assert first.schedule == SHORTEST and res.interleavings == 301
    assert res.blocks[0].steps[-2:] == [(1, "swapoff:free_swap_map"),
                                        (0, "cluster_reclaim_range:__try_to_reclaim_swap")]
    assert len(res.violations) == 1                    # the interleaving stopped there


def test_reverted_an_entry_taken_after_try_to_unuse_loses_its_tags_to_swapoff():
    """CPU0 relocks after try_to_unuse finished and swaps page 4 out to slot 0x1 of the dying
    device; swapoff then frees the area's tags (arch_swap_invalidate_area): I8 at the block,
    and the later read of page 4 meets zeroed tags."""
    sc = _reverted(load_scenario(P14), REVERT)
    res = run_scenario(sc, get_design("merged"), schedule=RELOCK_AFTER_UNUSE)
    got = [(v.kind, v.step, v.page) for v in res.violations if v.check != "linearizability"]
    assert ("invariant", 7, None) in got and ("tag-check-fault", 8, 4) in got
    i8 = next(v for v in res.violations if v.kind == "invariant")
    assert i8.detail.startswith("I8: slot 0x1 holds a page written while PG_mte_tagged")
    with pytest.raises(ScenarioError, match="--schedule"):     # with the fix: refused
        run_scenario(load_scenario(P14), get_design("merged"), schedule=RELOCK_AFTER_UNUSE)


def test_cli_schedule_replays_the_use_after_free():
    sched = ",".join(map(str, SHORTEST))
    res = invoke("run", P14, "--revert", REVERT, "--schedule", sched)
    assert res.exit_code == 1
    assert f"use-after-free at step 7 (parallel): {UAF}" in res.output
    assert f"found on CPU0 in interleaving {sched}" in res.output
    fixed = invoke("run", P14, "--schedule", sched)
    assert fixed.exit_code == 2 and "CPU1 cannot run here" in fixed.output


def test_on_a_rotational_disk_the_revert_changes_nothing():
    """6.12's rotational disk allocates through scan_swap_map_slots, which kept SWP_SCANNING
    and the SWP_WRITEOK check: the revert is about the cluster path only."""
    sc = parse_scenario(P14.read_text().replace("swap_device: ssd", "swap_device: rotational"))
    res = run_scenario(_reverted(sc, REVERT), get_design("merged"))
    assert res.verdict == "pass"


def test_cpu_columns_line_up_when_a_step_name_is_longer_than_the_default_width():
    # cluster_reclaim_range:__try_to_reclaim_swap (43 characters) runs in CPU0's column: the
    # column widens to it, so every row's bar stays under the header's
    res = invoke("run", str(P14), "--revert", "0ec8bc9e880e")
    assert res.exit_code == 1
    lines = res.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["CPU0", "|", "CPU1"])
    bar = lines[head].index("|")
    rows = lines[head + 2:head + 2 + 8]
    assert rows[-1].split() == ["cluster_reclaim_range:__try_to_reclaim_swap", "|"]
    assert bar == lines[head].index("CPU0") + len("cluster_reclaim_range:__try_to_reclaim_swap") + 1
    assert all(row.index("|") == bar for row in rows)
