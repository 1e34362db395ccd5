"""Parallel blocks (issue 14): the baton-passing scheduler, the parallel syntax, one given
interleaving, the exhaustive exploration with its linearizability oracle, and the revert of
13ddaf26be32 (docs/concurrency.md)."""

import json
import threading
from dataclasses import replace

import pytest

from mteswap.bundled import parallel_files
from mteswap.designs import BUILTIN, get_design
from mteswap.model import sched as S
from mteswap.scenario.load import ScenarioError, load_scenario, parse_scenario
from mteswap.scenario.parallel import serial_orders
from mteswap.scenario.runner import run_scenario

ABA = next(p for p in parallel_files() if p.stem == "p1-skip-swapcache-aba-zram")
# CPU0 reads the slot; CPU1 faults, writes tag 5 and pages out to the same slot (reclaim's
# r1-r4: folio_trylock, try_to_unmap_one, arch_prepare_to_swap, __remove_mapping); CPU0's
# pte_same passes: old data, new tags (18 steps, one preemption; each fault ends with its
# set_ptes step)
ABA_SCHEDULE = (0, 0, 0) + (1,) * 12 + (0, 0, 0)
# the shortest (17 steps, two preemptions): CPU0's pte_same and restore run between
# reclaim's try_to_unmap_one and its arch_prepare_to_swap, before the new tags are saved
ABA_SHORTEST = (0, 0, 0) + (1,) * 10 + (0, 0, 0, 1)
SWAPOFF = next(p for p in parallel_files() if p.stem == "p2-fault-vs-swapoff-zram")
SHARED = next(p for p in parallel_files() if p.stem == "p3-two-processes-fault-shared-entry-ssd")


class _M:
    sched = None


def _run_lanes(bodies, schedule, after=None, m=None):
    """Run fake lane bodies under a Scheduler following `schedule` (then lowest lane)."""
    m = m or _M()
    picks = list(schedule)

    def choose(enabled, last):
        return picks.pop(0) if picks else enabled[0]

    s = S.Scheduler(m, bodies, choose, after)
    s.run()
    return s


# -- the scheduler ---------------------------------------------------------------------------

def test_points_are_no_ops_without_a_scheduler():
    m = _M()
    S.point(m, "x")
    S.lock(m, "x", "L")
    S.unlock(m, "L")
    S.wait_until(m, "x", lambda: False)      # would block forever with a scheduler
    assert S.trylock(m, "L")


def test_two_threads_follow_a_fixed_schedule():
    m_holder = {}
    log = []

    def lane(tag):
        def body():
            m = m_holder["m"]
            log.append(f"{tag}1")
            S.point(m, f"{tag}-second")
            log.append(f"{tag}2")
            S.point(m, f"{tag}-third")
            log.append(f"{tag}3")
        return body

    m = _M()
    m_holder["m"] = m
    picks = [1, 0, 0, 1, 1, 0]
    s = S.Scheduler(m, [("a-first", lane("a")), ("b-first", lane("b"))],
                    lambda enabled, last: picks.pop(0))
    s.run()
    assert log == ["b1", "a1", "a2", "b2", "b3", "a3"]
    assert s.steps == [(1, "b-first"), (0, "a-first"), (0, "a-second"), (1, "b-second"),
                       (1, "b-third"), (0, "a-third")]
    assert m.sched is None


def test_a_held_lock_disables_the_thread_that_wants_it():
    holder = {}
    enabled_seen = []

    def a():
        m = holder["m"]
        S.lock(m, "a-locked", "L")
        S.point(m, "a-inside")
        S.unlock(m, "L")

    def b():
        S.lock(holder["m"], "b-locked", "L")
        S.unlock(holder["m"], "L")

    m = _M()
    holder["m"] = m
    picks = [1, 0, 0]

    def choose(enabled, last):
        enabled_seen.append(tuple(enabled))
        return picks.pop(0) if picks else enabled[0]

    s = S.Scheduler(m, [("a", a), ("b", b)], choose)
    s.run()
    # CPU1 waits for L; once CPU0 took it (step 3), only CPU0 is enabled until it drops L.
    assert enabled_seen[:4] == [(0, 1), (0, 1), (0, 1), (0,)]
    assert s.steps == [(1, "b"), (0, "a"), (0, "a-locked"), (0, "a-inside"), (1, "b-locked")]


def test_deadlock_is_reported_and_threads_unwound():
    holder = {}

    def lane(first, second):
        def body():
            m = holder["m"]
            S.lock(m, f"take {first}", first)
            S.lock(m, f"take {second}", second)
        return body

    m = _M()
    holder["m"] = m
    picks = [0, 1, 0, 1]
    s = S.Scheduler(m, [("a", lane("L1", "L2")), ("b", lane("L2", "L1"))],
                    lambda enabled, last: picks.pop(0) if picks else enabled[0])
    with pytest.raises(S.Deadlock) as err:
        s.run()
    assert err.value.waiting == [(0, "take L2"), (1, "take L1")]
    # the parked lanes were unwound: their workers are idle again, no thread is left waiting
    assert S.busy_workers() == 0 and all(lane.done for lane in s.lanes)
    assert m.sched is None


def test_wait_until_blocks_until_the_condition_holds():
    holder = {"flag": False}

    def waiter():
        S.wait_until(holder["m"], "woken", lambda: holder["flag"])

    def setter():
        S.point(holder["m"], "set")
        holder["flag"] = True

    m = _M()
    holder["m"] = m
    s = _run_lanes([("w", waiter), ("s", setter)], [0, 1, 1, 0], m=m)
    assert [(i, n) for i, n in s.steps] == [(0, "w"), (1, "s"), (1, "set"), (0, "woken")]


def test_a_lane_exception_reaches_the_caller():
    def bad():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        _run_lanes([("bad", bad), ("ok", lambda: None)], [0])


# -- syntax ----------------------------------------------------------------------------------

def _doc(steps: str) -> str:
    return "version: 1\nname: t\nsteps:\n  - mmap: {proc: A, vma: b, pages: 2}\n" + steps


def test_parallel_block_parses_into_lanes():
    sc = parse_scenario(_doc(
        "  - parallel:\n"
        "      - read: {proc: A, vma: b, pages: 0}\n"
        "      - [write: {proc: A, vma: b, pages: 1}, pageout: {proc: A, vma: b, pages: 1}]\n"
        "      - swapoff\n"))
    block = sc.steps[1]
    assert block.op == "parallel" and block.index == 2
    lanes = block.args["lanes"]
    assert [[s.op for s in lane] for lane in lanes] == [["read"], ["write", "pageout"], ["swapoff"]]
    assert all(s.index == 2 for lane in lanes for s in lane)
    # write values of lane steps are numbered after every step of the file: unique
    assert [s.value_base for lane in lanes for s in lane] == [3, 4, 5, 6]


@pytest.mark.parametrize("body, field, message", [
    ("      - fork: {proc: A, child: B}\n      - read: {proc: A, vma: b, pages: 0}\n",
     "parallel[0]", "fork cannot run in a parallel lane"),
    ("      - read: {proc: A, vma: b, pages: 0}\n      - [exit: {proc: A}]\n",
     "parallel[1]", "exit cannot run in a parallel lane"),
    ("      - read: {proc: A, vma: b, pages: 0}\n",
     "parallel", "expected a list of 2 to 3 lanes"),
    ("      - read: {proc: A, vma: b, pages: 0}\n      - []\n",
     "parallel[1]", "expected a step or a non-empty list"),
])
def test_bad_parallel_blocks_name_file_step_and_field(body, field, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_doc("  - parallel:\n" + body), "f.yaml")
    text = str(err.value)
    assert "f.yaml" in text and "step 2" in text and f"'{field}'" in text and message in text


def test_unknown_revert_is_bad_input():
    with pytest.raises(ScenarioError, match="config.revert"):
        parse_scenario("version: 1\nname: t\nconfig: {revert: [deadbeef]}\n"
                       "steps:\n  - evict\n")


def test_bad_schedule_is_bad_input():
    sc = load_scenario(ABA)
    with pytest.raises(ScenarioError, match="--schedule: schedule position 9: CPU0 cannot "
                                            "run here"):
        # CPU0's lane (one read: 8 atomic steps) has ended after 8 steps
        run_scenario(sc, get_design("merged"), schedule=(0,) * 8 + (0,))


# -- one interleaving ------------------------------------------------------------------------

def _reverted(sc, *commits):
    return replace(sc, config=replace(sc.config, revert=commits))


def test_with_the_fix_the_second_fault_loses_swapcache_prepare_and_waits():
    sc = load_scenario(ABA)
    # CPU0 pins the slot (3 steps), CPU1 faults, loses -EEXIST and blocks; CPU0 finishes.
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1, 1, 0, 0, 0, 0))
    assert res.verdict == "pass"
    steps = res.blocks[0].steps
    assert steps[:6] == [(0, "read proc=A vma=buf pages=0"),
                         (0, "do_swap_page:swap_cache_get_folio"),
                         (0, "do_swap_page:swapcache_prepare"),
                         (1, "read proc=A vma=buf pages=0"),
                         (1, "do_swap_page:swap_cache_get_folio"),
                         (1, "do_swap_page:swapcache_prepare")]
    # CPU1's refault runs only after CPU0's swapcache_clear
    refault = steps.index((1, "do_swap_page:refault"))
    assert steps.index((0, "do_swap_page:swapcache_clear")) < refault
    assert res.schedule[:10] == (0, 0, 0, 1, 1, 1, 0, 0, 0, 0)


def test_reverted_fix_replays_the_aba_schedule_to_data_corruption():
    sc = _reverted(load_scenario(ABA), "13ddaf26be32")
    res = run_scenario(sc, get_design("merged"), schedule=ABA_SCHEDULE)
    first = res.first()
    assert (first.kind, first.step, first.page, first.thread) == ("data-corruption", 4, 0, 0)
    assert first.schedule == ABA_SCHEDULE
    assert first.detail == "expected value 0x400001, found 0x100001"   # step 2's data
    lin = [v for v in res.violations if v.check == "linearizability"]
    assert len(lin) == 1 and lin[0].kind == "data-corruption"
    assert "holds value 0x100001 with tags 5" in lin[0].detail       # old data, new tags


def test_the_same_schedule_with_the_fix_is_refused_at_the_lost_prepare():
    # With the fix CPU1 cannot reach pte_same while CPU0 holds the pin: the ABA schedule
    # names a blocked lane.
    sc = load_scenario(ABA)
    with pytest.raises(ScenarioError, match="--schedule"):
        run_scenario(sc, get_design("merged"), schedule=ABA_SCHEDULE)


# -- every interleaving ----------------------------------------------------------------------

def test_serial_orders_keep_each_lanes_order():
    lanes = (("a1", "a2"), ("b1",))
    assert serial_orders(lanes) == [((0, 0), (0, 1), (1, 0)), ((0, 0), (1, 0), (0, 1)),
                                    ((1, 0), (0, 0), (0, 1))]


@pytest.mark.parametrize("design", list(BUILTIN))
@pytest.mark.parametrize("path", parallel_files(), ids=lambda p: p.stem)
def test_bundled_parallel_scenarios_give_their_expect(path, design):
    sc = load_scenario(path)
    res = run_scenario(sc, get_design(design))
    assert res.matches_expect(), (res.verdict, [v.short() for v in res.violations])
    assert res.interleavings > 10


def test_exploration_finds_the_shortest_aba_with_the_revert():
    sc = _reverted(load_scenario(ABA), "13ddaf26be32")
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.detail) == (
        "tag-check-fault", 4, "expected tag 5, found 0: tags zeroed by mte_sync_tags at step 4 "
        "(do_swap_page entry=0x1): slot 0x1 had no saved tags")
    assert first.schedule == ABA_SHORTEST and res.schedule == ABA_SHORTEST
    lin = [v for v in res.violations if v.check == "linearizability"]
    assert len(lin) == 1 and "holds value 0x100001 with tags 0" in lin[0].detail


def test_preemption_bound_zero_misses_the_aba_and_one_finds_it():
    sc = _reverted(load_scenario(ABA), "13ddaf26be32")
    none = run_scenario(sc, get_design("merged"), preemptions=0)
    assert none.verdict == "pass" and none.interleavings == 2      # lane order only
    one = run_scenario(sc, get_design("merged"), preemptions=1)
    assert one.first().kind == "data-corruption" and one.first().schedule == ABA_SCHEDULE


@pytest.mark.parametrize("path", parallel_files(), ids=lambda p: p.stem)
def test_serial_interleavings_equal_the_steps_run_one_after_another(path):
    """Each lane run to its end before the next: the same machine state, counters and
    violations as the lanes' steps written one after another (after the first lane ends, the
    schedule goes on with the lowest lane left: each lane first, the others in order)."""
    from mteswap.scenario.runner import Runner
    sc = load_scenario(path)
    at = next(i for i, s in enumerate(sc.steps) if s.op == "parallel")
    lanes = sc.steps[at].args["lanes"]
    assert len(lanes) in (2, 3)
    every = range(len(lanes))
    for order in [(f,) + tuple(ln for ln in every if ln != f) for f in every]:
        flat = tuple(s for ln in order for s in lanes[ln])
        r_seq = Runner(replace(sc, steps=sc.steps[:at] + flat + sc.steps[at + 1:]),
                       get_design("merged"))
        r_seq.run()
        r_par = Runner(sc, get_design("merged"))
        for st in sc.steps[:at]:
            r_par.run_step(st)
        r_par.par.prefix = (order[0],)        # then no preemption: that lane to its end
        r_par.run_remaining()
        assert [ln for ln, _ in r_par.par.blocks[0].steps] == sorted(
            (ln for ln, _ in r_par.par.blocks[0].steps), key=order.index)
        assert r_par.m.snapshot() == r_seq.m.snapshot(), order
        assert dict(r_par.m.counters) == dict(r_seq.m.counters), order
        assert r_par.violations == r_seq.violations == []


# -- the command line ------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner
    from mteswap.cli import app
    return CliRunner().invoke(app, list(map(str, args)))


def test_cli_run_with_revert_prints_the_cpu_columns_then_the_violation():
    res = _cli("run", ABA, "--revert", "13ddaf26be32")
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[0].startswith("# p1-skip-swapcache-aba-zram: interleaving "
                               "0,0,0,1,1,1,1,1,1,1,1,1,1,0,0,0,1 (17 atomic steps")
    assert lines[2].split() == ["CPU0", "|", "CPU1"]
    # CPU1's pageout unmaps, in the right column, then CPU0's stale pte_same in the left
    assert lines[14].split() == ["|", "pageout", "proc=A", "vma=buf", "pages=0"]
    assert lines[16].split() == ["|", "try_to_unmap:try_to_unmap_one"]
    assert lines[17].split() == ["do_swap_page:pte_same", "|"]
    assert lines[20].split() == ["|", "swap_writepage:arch_prepare_to_swap"]
    assert "tag-check-fault at step 4 (read A buf page 0)" in res.output
    assert "found on CPU0 in interleaving 0,0,0,1,1,1,1,1,1,1,1,1,1,0,0,0,1" in res.output


def test_cli_run_schedule_replays_and_json_carries_schedule_and_thread():
    res = _cli("run", ABA, "--revert", "13ddaf26be32", "--json",
               "--schedule", ",".join(map(str, ABA_SCHEDULE)))
    assert res.exit_code == 1
    out = json.loads(res.output.splitlines()[0])
    first = out["violations"][0]
    assert (first["kind"], first["step"], first["schedule"], first["thread"]) == \
        ("data-corruption", 4, list(ABA_SCHEDULE), 0)


def test_cli_without_revert_passes():
    res = _cli("run", ABA, "--preemptions", "2")
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output


@pytest.mark.parametrize("args, message", [
    (("--schedule", "0,1,7"), "--schedule: expected lane numbers 0-2"),
    (("--revert", "0bcac06f27d7"), "--revert: expected one of 13ddaf26be32"),
])
def test_cli_bad_parallel_options_exit_2(args, message):
    res = _cli("run", ABA, *args)
    assert res.exit_code == 2 and message in res.output


def test_cli_reverts_lists_titles():
    res = _cli("reverts")
    assert res.exit_code == 0
    assert "13ddaf26be32  mm/swap: fix race when skipping swapcache" in res.output
    assert ("82b1c07a0af6  mm: swap: fix race between free_swap_and_cache() and swapoff()"
            in res.output)


# -- swapoff and the device's lifetime; the folio lock ---------------------------------------

@pytest.mark.parametrize("reverts", [("2799e77529c2",), ("2799e77529c2", "13ddaf26be32")])
def test_fault_vs_swapoff_without_get_swap_device_is_a_use_after_free(reverts):
    sc = _reverted(load_scenario(SWAPOFF), *reverts)
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.thread) == ("use-after-free", 4, 0)
    assert first.schedule == (0, 1, 1, 1, 0)
    assert first.detail == ("swap device (swap_map) freed by swapoff, then read by "
                            "do_swap_page:swap_cache_get_folio on CPU0")
    assert res.blocks[0].steps[-1] == (0, "do_swap_page:swap_cache_get_folio")
    assert len(res.violations) == 1           # the interleaving stopped there


def test_with_get_swap_device_swapoff_waits_for_the_fault():
    sc = load_scenario(SWAPOFF)
    # CPU0 holds its reference from the fault's start and has chosen the skip-swapcache path;
    # CPU1's unuse_pte brings the page back (the slot is freed), then swapoff waits for CPU0.
    # CPU0's swapcache_prepare finds the slot free (-ENOENT) and its refault finds the page.
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 1, 1))
    assert res.verdict == "pass"
    assert res.blocks[0].steps[2:] == [(1, "swapoff"), (1, "try_to_unuse:unuse_pte"),
                                       (0, "do_swap_page:swapcache_prepare"),
                                       (0, "do_swap_page:refault"),
                                       (1, "swapoff:free_swap_map")]
    assert res.schedule == (0, 0, 1, 1, 0, 0, 1)    # CPU1 could not run at position 5
    assert res.counters["swap_ins"] == 1            # only unuse_pte read the slot


def test_swapoff_unuse_waits_for_the_skip_swapcache_pin():
    sc = load_scenario(SWAPOFF)
    # CPU0 pins the slot (swapcache_prepare); swapoff's unuse_pte cannot read it in
    # (__read_swap_cache_async: -EEXIST) and waits; the fault completes, and unuse finds the
    # PTE mapped.
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1))
    assert res.verdict == "pass"
    steps = res.blocks[0].steps
    wait = steps.index((1, "try_to_unuse:__read_swap_cache_async"))
    assert steps.index((0, "do_swap_page:swapcache_clear")) == wait - 1
    assert res.counters["swap_ins"] == 1            # only the fault read the slot


# After CPU0's first three steps (it has read the page into the swap cache and holds its
# folio lock), CPU1's fault finds the folio in the swap cache and blocks on folio_lock until
# CPU0 has restored the tags; then it locks, rechecks the PTE and restores in turn.
SECOND_FAULT_WAITS_ON_FOLIO_LOCK = [
    (1, "read proc=B vma=buf pages=0"), (1, "do_swap_page:swap_cache_get_folio"),
    (0, "do_swap_page:pte_same"), (0, "do_swap_page:arch_swap_restore"),   # CPU1 blocked
    (0, "do_swap_page:set_ptes"),
    (1, "do_swap_page:folio_lock"), (1, "do_swap_page:pte_same"),
    (1, "do_swap_page:arch_swap_restore"), (1, "do_swap_page:set_ptes")]


def test_second_fault_on_a_shared_entry_waits_on_the_folio_lock():
    sc = load_scenario(SHARED)
    # CPU0 reads the page into the swap cache and takes its folio lock; CPU1 finds the
    # folio and cannot lock it until CPU0's fault is done.
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1))
    assert res.verdict == "pass"
    assert res.blocks[0].steps[3:] == SECOND_FAULT_WAITS_ON_FOLIO_LOCK
    assert res.counters["swap_ins"] == 1


def test_a_block_whose_threads_deadlock_reports_deadlock_with_its_schedule(monkeypatch):
    """Two ops patched to take two locks in opposite orders: the exploration finds the
    interleaving where each holds one, and reports `deadlock` with that schedule."""
    from mteswap.scenario.runner import Runner

    def locker(first, second):
        def op(self, step, ctx, a):
            S.lock(self.m, f"take {first}", first)
            S.lock(self.m, f"take {second}", second)
            S.unlock(self.m, second)
            S.unlock(self.m, first)
        return op

    monkeypatch.setattr(Runner, "op_evict", locker("L1", "L2"))
    monkeypatch.setattr(Runner, "op_drop_caches", locker("L2", "L1"))
    sc = parse_scenario("version: 1\nname: d\nsteps:\n  - parallel: [evict, drop_caches]\n")
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.thread) == ("deadlock", 1, 0)
    assert first.schedule == (0, 0, 1, 1)
    assert first.detail == "no thread can run: CPU0 waits at take L2; CPU1 waits at take L1"
    assert len(res.violations) == 1        # the interleaving stopped there


# -- 6dca4ac6fc91: harmless while the skip-swapcache pin holds the slot ------------------------

def _roundtrip_large_zram():
    from mteswap.bundled import bundled_files
    return load_scenario(next(p for p in bundled_files() if p.stem == "roundtrip-large-zram"))


@pytest.mark.parametrize("reverts, want", [
    ((), None),
    (("6dca4ac6fc91",), None),                     # swap_free leaves the pinned slot alone
    (("13ddaf26be32",), None),                     # alone, the restore still comes first
    (("6dca4ac6fc91", "13ddaf26be32"), ("tag-check-fault", 4, 3)),   # tags freed first
])
def test_restore_after_swap_free_loses_tags_only_without_the_pin(reverts, want):
    res = run_scenario(_reverted(_roundtrip_large_zram(), *reverts), get_design("merged"))
    first = res.first()
    assert (None if first is None else (first.kind, first.step, first.page)) == want


def test_both_reverts_on_the_aba_scenario_give_stale_tags_not_stale_data_first():
    sc = _reverted(load_scenario(ABA), "6dca4ac6fc91", "13ddaf26be32")
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.page) == ("tag-check-fault", 4, 0)
    assert first.schedule is not None


def test_cli_compare_with_revert_reports_the_mismatch_with_expect():
    res = _cli("compare", ABA, "--designs", "merged,folio-marker", "--revert", "13ddaf26be32",
               "--json")
    assert res.exit_code == 1                       # the file's expect says pass
    cells = json.loads(res.output)["cells"]
    assert [(c["design"], c["first"]["kind"], c["matches"]) for c in cells] == \
        [("merged", "tag-check-fault", False), ("folio-marker", "tag-check-fault", False)]
    assert _cli("compare", ABA, "--designs", "merged").exit_code == 0


# -- the thread's cases: David's folio-lock claim with large folios (docs/discussion.md) ------

def _bundled_parallel(stem):
    return load_scenario(next(p for p in parallel_files() if p.stem == stem))


@pytest.mark.parametrize("design", ["merged", "folio-marker", "per-folio-flag",
                                    "restore-all-unmarked"])
def test_shared_large_folio_read_once_second_fault_waits_on_its_folio_lock(design):
    """p6 (7.2, zram): CPU0 reads the shared 16 KiB folio into the swap cache and takes its
    folio lock; CPU1 finds it and cannot lock it until CPU0 has restored and mapped."""
    sc = _bundled_parallel("p6-shared-large-folio-swapped-out-zram-72")
    res = run_scenario(sc, get_design(design), schedule=(0, 0, 0, 1, 1))
    assert res.verdict == "pass"
    assert res.blocks[0].steps[3:] == SECOND_FAULT_WAITS_ON_FOLIO_LOCK
    assert (res.counters["swap_ins"], res.counters["large_swap_ins"]) == (1, 1)
    # the folio's 4 pages restored once; restore-all-unmarked restores them again on the
    # second fault (unconditionally, as it does sequentially), still under the folio lock
    assert res.counters["tag_restores"] == (8 if design == "restore-all-unmarked" else 4)


def test_shared_large_folio_in_the_swap_cache_restores_in_turn_under_the_folio_lock():
    sc = _bundled_parallel("p7-shared-large-folio-in-swapcache-ssd")
    res = run_scenario(sc, get_design("folio-marker"), schedule=(0, 0, 0, 1, 1))
    assert res.verdict == "pass"
    steps = res.blocks[0].steps
    assert steps.index((1, "do_swap_page:folio_lock")) == \
        steps.index((0, "do_swap_page:set_ptes")) + 1
    assert res.counters["swap_ins"] == 0 and res.counters["restore_calls"] == 2


def test_two_threads_faulting_one_large_zram_folio_the_second_loses_swapcache_prepare():
    sc = _bundled_parallel("p8-two-threads-fault-large-folio-zram")
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1, 1))
    assert res.verdict == "pass"
    steps = res.blocks[0].steps
    assert steps[5] == (1, "do_swap_page:swapcache_prepare")    # -EEXIST on the 4 slots
    assert steps[-1] == (1, "do_swap_page:refault")
    assert steps.index((0, "do_swap_page:swapcache_clear")) == len(steps) - 2
    assert (res.counters["swap_ins"], res.counters["large_swap_ins"]) == (1, 1)


@pytest.mark.parametrize("stem,design,want", [
    ("p8-two-threads-fault-large-folio-zram", "rfc-v2", ("tag-check-fault", 4, 2)),
    ("p8-two-threads-fault-large-folio-zram", "split-before-swap", ("tag-check-fault", 4, 2)),
    ("p6-shared-large-folio-swapped-out-zram-72", "rfc-v3", ("tag-check-fault", 5, 1)),
])
def test_large_folio_designs_that_fail_fail_with_the_lanes_run_in_order(stem, design, want):
    """The failures of these designs on the large-folio blocks are sequential: the
    shortest failing interleaving runs CPU0 to its end first (no preemption)."""
    res = run_scenario(_bundled_parallel(stem), get_design(design))
    first = res.first()
    assert (first.kind, first.step, first.page) == want
    assert list(first.schedule) == sorted(first.schedule)      # CPU0's steps, then CPU1's


# -- zap as steps z1-z3 against swapoff: 82b1c07a0af6 ---------------------------------------

ZAPS = next(p for p in parallel_files() if p.stem == "p9-zaps-of-swapcache-large-folio-vs-swapoff-ssd")
# David Hildenbrand's schedule (82b1c07a0af6's message): A's zap drops slot 0 to
# SWAP_HAS_CACHE (z1) and is preempted; B's zap drops slot 1 and reclaims the folio (z1-z3:
# every slot freed); swapoff starts, finds nothing in use, and waits; A reads swap_map (z2).
DAVID = (0, 0, 0, 1, 1, 1, 1, 1, 2)


def test_zap_steps_are_critical_sections_under_the_ptl():
    res = run_scenario(load_scenario(ZAPS), get_design("merged"), schedule=DAVID)
    assert res.verdict == "pass"
    assert res.blocks[0].steps == [
        (0, "dontneed proc=A vma=buf pages=0"), (0, "zap_pte_range:pte_offset_map_lock"),
        (0, "free_swap_and_cache_nr:__swap_entries_free"),
        (1, "dontneed proc=B vma=buf pages=1"), (1, "zap_pte_range:pte_offset_map_lock"),
        (1, "free_swap_and_cache_nr:__swap_entries_free"),
        (1, "free_swap_and_cache_nr:__try_to_reclaim_swap"),
        (1, "__try_to_reclaim_swap:folio_trylock"),
        (2, "swapoff"),
        # swapoff waits (CPU0's get_swap_device reference, and its PTL for synchronize_rcu)
        (0, "free_swap_and_cache_nr:__try_to_reclaim_swap"),
        (2, "swapoff:free_swap_map")]


@pytest.mark.parametrize("reverts", [(), ("82b1c07a0af6",)])
def test_zap_vs_swapoff_passes_with_the_fix_and_reverted_synchronize_rcu_closes_it(reverts):
    res = run_scenario(_reverted(load_scenario(ZAPS), *reverts), get_design("merged"),
                       schedule=DAVID)
    assert res.verdict == "pass"
    assert res.blocks[0].steps[-2:] == [(0, "free_swap_and_cache_nr:__try_to_reclaim_swap"),
                                        (2, "swapoff:free_swap_map")]


def test_without_the_rcu_wait_the_reverted_zap_reads_freed_swap_map(monkeypatch):
    """What synchronize_rcu closes: with no wait for PTL holders, the reverted zap (no
    get_swap_device reference) reads swap_map after swapoff freed it."""
    monkeypatch.setattr(S, "rcu_readers", lambda s: False)
    sc = _reverted(load_scenario(ZAPS), "82b1c07a0af6")
    res = run_scenario(sc, get_design("merged"), schedule=DAVID + (2, 0))
    first = res.first()
    assert (first.kind, first.step, first.thread) == ("use-after-free", 8, 0)
    assert first.detail == ("swap device (swap_map) freed by swapoff, then read by "
                            "free_swap_and_cache_nr:__try_to_reclaim_swap on CPU0")
    assert first.schedule == DAVID + (2, 0)
    # and the fix alone (its reference) holds swapoff back on the same schedule
    with pytest.raises(ScenarioError, match="CPU2 cannot run here"):
        run_scenario(load_scenario(ZAPS), get_design("merged"), schedule=DAVID + (2, 0))


def test_without_the_rcu_wait_exploration_finds_a_shorter_window(monkeypatch):
    """Exhaustively, the shortest use-after-free needs no second zap: swapoff's own
    try_to_unuse unmaps B's page and frees the cache-only folio between A's z1 and z2."""
    monkeypatch.setattr(S, "rcu_readers", lambda s: False)
    sc = _reverted(load_scenario(ZAPS), "82b1c07a0af6")
    res = run_scenario(sc, get_design("merged"), preemptions=1)
    first = res.first()
    assert (first.kind, first.thread, first.schedule) == ("use-after-free", 0,
                                                          (0, 0, 0, 2, 2, 2, 0))


def test_swapoff_synchronize_rcu_waits_for_a_ptl_holder():
    class _Fake:
        locks = {("ptl", 1): 0}
    assert S.rcu_readers(_Fake())
    _Fake.locks = {("folio", 3): 0}
    assert not S.rcu_readers(_Fake())


# -- reclaim as steps r1-r4; Barry Song's shared-folio case (S1) as an interleaving ----------

BARRY = next(p for p in parallel_files()
             if p.stem == "p10-reclaim-vs-dontneed-refault-shared-folio-ssd")
# reclaim unmaps A; A zaps pages 0-1 and refaults page 2 (blocked on the folio lock);
# reclaim unmaps B, writes the folio (tags saved) and fails __remove_mapping
BARRY_SCHEDULE = (0, 0, 0, 1, 1, 1, 1, 1, 1, 1)


def test_barry_case_reclaim_unmaps_a_then_a_zaps_and_refaults_then_reclaim_unmaps_b():
    res = run_scenario(load_scenario(BARRY), get_design("merged"), schedule=BARRY_SCHEDULE)
    assert res.verdict == "pass"
    assert res.blocks[0].steps == [
        (0, "reclaim proc=A vma=buf pages=0-3"), (0, "shrink_folio_list:folio_trylock"),
        (0, "try_to_unmap:try_to_unmap_one"),                       # A's PTEs
        (1, "dontneed proc=A vma=buf pages=0-1"), (1, "zap_pte_range:pte_offset_map_lock"),
        (1, "free_swap_and_cache_nr:__swap_entries_free"),
        (1, "free_swap_and_cache_nr:__try_to_reclaim_swap"),
        (1, "__try_to_reclaim_swap:folio_trylock"),                 # reclaim holds it: no
        (1, "read proc=A vma=buf pages=2"), (1, "do_swap_page:swap_cache_get_folio"),
        (0, "try_to_unmap:try_to_unmap_one"),                       # B's PTEs
        (0, "swap_writepage:arch_prepare_to_swap"),
        (0, "shrink_folio_list:__remove_mapping"),                  # A's fault holds a ref
        (1, "do_swap_page:folio_lock"), (1, "do_swap_page:pte_same"),
        (1, "do_swap_page:arch_swap_restore"), (1, "do_swap_page:set_ptes")]
    c = res.counters
    assert (c["swap_outs"], c["tag_saves"], c["swap_ins"]) == (1, 4, 0)   # stayed cached


def test_remove_mapping_frees_the_folio_when_no_fault_holds_it():
    # reclaim runs whole first: the folio leaves the swap cache; A's refault reads it back
    res = run_scenario(load_scenario(BARRY), get_design("merged"), schedule=(0,) * 6)
    assert res.verdict == "pass"
    assert res.blocks[0].steps[5] == (0, "shrink_folio_list:__remove_mapping")
    assert res.counters["swap_ins"] == 4       # A's refault and the reads after the block


def test_remove_mapping_fails_while_another_thread_holds_a_reference(monkeypatch):
    """Break folio_ref_freeze (never fails): on Barry's schedule reclaim frees the folio A's
    fault found in the swap cache and waits on, so the fault's recheck after folio_lock
    fails and it refaults, reading the pages back (swap_ins 4 instead of 0)."""
    monkeypatch.setattr(S, "referenced_elsewhere", lambda m, folio: False)
    res = run_scenario(load_scenario(BARRY), get_design("merged"), schedule=BARRY_SCHEDULE)
    assert res.blocks[0].steps[12:15] == [
        (0, "shrink_folio_list:__remove_mapping"), (1, "do_swap_page:folio_lock"),
        (1, "do_swap_page:swap_cache_get_folio")]                  # the recheck failed
    assert res.counters["swap_ins"] == 4


def test_barry_case_rfc_v1_fails_as_it_does_with_the_steps_in_sequence():
    res = run_scenario(load_scenario(BARRY), get_design("rfc-v1"), schedule=BARRY_SCHEDULE)
    first = res.first()
    assert (first.kind, first.step) == ("invariant", 4) and first.detail.startswith("I8")
    seq = parse_scenario(BARRY.read_text().replace(
        "  - parallel:\n      - reclaim: {proc: A, vma: buf, pages: 0-3}\n"
        "      - [dontneed: {proc: A, vma: buf, pages: 0-1}, read: {proc: A, vma: buf, pages: 2}]",
        "  - reclaim: {proc: A, vma: buf, pages: 0-3}\n"
        "  - dontneed: {proc: A, vma: buf, pages: 0-1}\n"
        "  - read: {proc: A, vma: buf, pages: 2}"), "seq.yaml")
    assert all(s.op != "parallel" for s in seq.steps)
    sfirst = run_scenario(seq, get_design("rfc-v1")).first()
    assert (sfirst.kind, sfirst.step, sfirst.detail) == ("invariant", 4, first.detail)
    from mteswap.scenario import parallel as P, por
    ex = P.explore(por.start(load_scenario(BARRY), get_design("rfc-v1")))
    assert ex.runs == ex.failing == 331                     # every interleaving fails


def test_barry_case_every_interleaving_under_merged():
    res = run_scenario(load_scenario(BARRY), get_design("merged"))
    assert res.verdict == "pass" and res.preemptions is None
    assert res.interleavings == 331


def test_barry_case_split_before_swap_is_bounded_by_the_file():
    sc = load_scenario(BARRY)
    assert sc.preemption_bound("split-before-swap") == 2
    assert sc.preemption_bound("merged") is None
    res = run_scenario(sc, get_design("split-before-swap"))
    assert res.verdict == "pass" and res.preemptions == 2
    assert res.interleavings == 163
    one = run_scenario(sc, get_design("split-before-swap"), preemptions=1)
    assert one.preemptions == 1 and one.interleavings == 24


def test_cli_says_when_the_exploration_was_bounded():
    res = _cli("run", BARRY, "--design", "split-before-swap")
    assert res.exit_code == 0
    assert "bounded: 163 interleavings with at most 2 preemption(s) explored" in res.output
    res = _cli("run", BARRY, "--design", "split-before-swap", "--preemptions", "1", "--json")
    assert json.loads(res.output)["preemptions"] == 1
    assert "bounded" not in _cli("run", BARRY).output


@pytest.mark.parametrize("text, field, message", [
    ("preemptions: two", "preemptions", "expected an integer >= 0, or a mapping"),
    ("preemptions: -1", "preemptions", "got -1"),
    ("preemptions: true", "preemptions", "expected an integer >= 0"),
    ("preemptions: {merged: -2}", "preemptions.merged", "expected an integer >= 0, got -2"),
    ("preemptions: {merged: 1.5}", "preemptions.merged", "expected an integer >= 0"),
])
def test_bad_preemptions_key_is_bad_input(tmp_path, text, field, message):
    f = tmp_path / "bad.yaml"
    f.write_text(BARRY.read_text().replace("preemptions:\n  split-before-swap:    2", text))
    res = _cli("run", f)
    assert res.exit_code == 2
    assert str(f) in res.output and f"field '{field}'" in res.output and message in res.output


def test_unuse_waits_for_reclaims_folio_lock():
    """swapoff's unuse of a swap PTE whose swap-cache folio reclaim holds locked (r1-r4)
    waits for the folio lock (unuse_pte_range locks the folio before unuse_pte)."""
    doc = ("version: 1\nname: unuse-vs-reclaim\nconfig: {folio_pages: [1], swap_device: ssd, "
           "frames: 16}\nsteps:\n" + """
  - mmap:     {proc: A, vma: buf, pages: 2, mte: true}
  - write:    {proc: A, vma: buf, pages: 0-1, tag: 3}
  - fork:     {proc: A, child: B}
  - parallel:
      - reclaim: {proc: A, vma: buf, pages: 0}
      - swapoff
  - read:     {proc: A, vma: buf, pages: 0-1}
  - read:     {proc: B, vma: buf, pages: 0-1}
""")
    sc = parse_scenario(doc, "unuse-vs-reclaim.yaml")
    # reclaim: start, trylock+add_to_swap, unmap A (its step ends holding the folio lock)
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1))
    steps = res.blocks[0].steps
    assert (1, "try_to_unuse:folio_lock") in steps
    assert steps.index((1, "try_to_unuse:folio_lock")) > steps.index(
        (0, "shrink_folio_list:__remove_mapping"))
    assert res.verdict == "pass"
    full = run_scenario(sc, get_design("merged"))
    assert full.verdict == "pass"
