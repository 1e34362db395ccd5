"""The oracle's scoped state checks (oracle/scoped.py) report exactly what the full checks
report (`--full-check`): the same violations (kind, check, step, page, detail), in the same
order, on every bundled scenario under every design, on generated scenarios, and on random
walks of each flawed design, which go on past their violations. And each scoped form still
fails: a problem planted in an object the step wrote is reported by it."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings

from mteswap.bundled import bundled_files, parallel_files
from mteswap.designs import BUILTIN, get_design
from mteswap.explore.alphabet import action_op
from mteswap.explore.check import Options, make_problem
from mteswap.explore.model import get_model
from mteswap.explore.random_walk import one_walk, walk_rng
from mteswap.model.pte import mk_pte, swp_entry_to_pte
from mteswap.model.state import PG_MTE_LOCK, PG_MTE_TAGGED
from mteswap.model.swapinfo import SWAP_HAS_CACHE
from mteswap.oracle import Oracle, StepContext, registry, scoped
from mteswap.scenario.load import load_scenario, parse_scenario
from mteswap.scenario.runner import Runner, run_scenario

from scenario_strategies import to_yaml, valid_scenarios

FLAWED = ("split-before-swap", "rfc-v1", "rfc-v2", "rfc-v3", "restore-all-unmarked",
          "folio-marker", "merged")


def _key(v):
    return (v.kind, v.check, v.step, v.page, v.detail)


def _violations(run, monkeypatch, full: bool) -> list:
    monkeypatch.setattr(registry, "FULL_CHECK", full)
    return [_key(v) for v in run().violations]


def _both(run, monkeypatch):
    full = _violations(run, monkeypatch, True)
    assert _violations(run, monkeypatch, False) == full
    return full


# -- bundled scenarios ---------------------------------------------------------------------

SEQUENTIAL = {p.stem: load_scenario(p) for p in bundled_files()}
PARALLEL = {p.stem: load_scenario(p) for p in parallel_files()}


@pytest.mark.parametrize("design", list(BUILTIN))
def test_bundled_sequential_scenarios_report_the_same(design, monkeypatch):
    found = 0
    for name, sc in SEQUENTIAL.items():
        found += len(_both(lambda: run_scenario(sc, get_design(design)), monkeypatch))
    if design in FLAWED:
        assert found, "the comparison must cover violations, not only passes"


@pytest.mark.parametrize("scenario", sorted(PARALLEL))
def test_bundled_parallel_scenarios_report_the_same(scenario, monkeypatch):
    """Every interleaving with at most one preemption (the whole set takes minutes for some
    files); inside a block the checks run in full, after it scoped again."""
    sc = PARALLEL[scenario]
    for design in BUILTIN:
        _both(lambda: run_scenario(sc, get_design(design), preemptions=1), monkeypatch)


# -- generated scenarios -------------------------------------------------------------------

@settings(max_examples=60, derandomize=True, suppress_health_check=list(HealthCheck))
@given(scenario=valid_scenarios())
def test_generated_scenarios_report_the_same(scenario, monkeypatch_session):
    sc = parse_scenario(to_yaml(scenario), "<generated>")
    for design in ("merged", "rfc-v1", "folio-marker"):
        _both(lambda: Runner(sc, get_design(design)).run(), monkeypatch_session)


@pytest.fixture(scope="module")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# -- random walks past violations ----------------------------------------------------------

def _walk_pair(design: str, preset: str, walk: int, length: int) -> list:
    """Random walk `seed` as `mteswap check --random` draws it (explore/random_walk.py: a
    swarm subset of operations and weights), run twice in lockstep, by a full and a scoped
    oracle, through the explorer's model (a clone per step, as the explorer takes them), on
    past violations. Returns the violations (asserted equal after every step)."""
    model = get_model(make_problem(Options(out=tempfile.mkdtemp(), design=design,
                                           model=preset, progress=False)))
    rng = walk_rng(0, walk)
    by_op: dict[str, list[int]] = {}
    for i, a in enumerate(model.alpha.actions):
        by_op.setdefault(action_op(a), []).append(i)
    ops = sorted(by_op)
    chosen = [o for o in ops if rng.random() < 0.6] or [rng.choice(ops)]
    chosen += [o for o in ("mmap", "fork") if o in by_op and o not in chosen]
    weights = [rng.randint(1, 10) for _ in chosen]
    full, part = model.init(), model.init()
    full.oracle.full_check, part.oracle.full_check = True, False
    for _ in range(length):
        for _ in range(30):
            a = rng.choice(by_op[rng.choices(chosen, weights)[0]])
            if model.offers(part, a):
                break
        else:
            break
        f, p = full.clone(), part.clone()
        if not model.step_in_place(p, a):
            break
        assert model.step_in_place(f, a)
        full, part = f, p
        assert [_key(v) for v in part.oracle.violations] == \
            [_key(v) for v in full.oracle.violations], (design, preset, walk)
    return full.oracle.violations


def _failing_walks(design: str, preset: str, n: int = 3) -> list[int]:
    """The first n walks of seed 0 (below 400) that meet a violation, as `check --random`
    runs them (it stops there; `_walk_pair` goes on)."""
    problem = make_problem(Options(out=tempfile.mkdtemp(), design=design, model=preset,
                                   progress=False))
    found = []
    for walk in range(400):
        if one_walk(problem, 0, walk, WALK).violation and len(found) < n:
            found.append(walk)
    return found


WALK = 40


@pytest.mark.parametrize("design", FLAWED)
def test_random_walks_of_flawed_designs_report_the_same(design):
    seen = 0
    for preset in ("small", "zram"):
        for walk in [0, 1, 2, 3] + _failing_walks(design, preset):
            seen += len(_walk_pair(design, preset, walk, WALK))
    assert seen, f"no walk of {design} met a violation: the comparison covered nothing"


# -- each scoped form fails on a problem planted where the step wrote ----------------------

def _swapped_out_runner(design: str = "merged") -> Runner:
    """A runner whose process A has one MTE page, swapped out (a swap PTE, a slot with saved
    tags), every check run once (the next is scoped)."""
    sc = parse_scenario("""
version: 1
name: planted
config: {folio_pages: [1], frames: 16, swap_slots: 64}
steps:
  - mmap:    {proc: A, vma: buf, pages: 2, mte: true}
  - write:   {proc: A, vma: buf, pages: 0-1, tag: distinct}
  - reclaim: {proc: A, vma: buf, pages: 0}
""", "<planted>")
    r = Runner(sc, get_design(design))
    r.oracle.full_check = False
    r.run()
    assert r.oracle.violations == [] and r.oracle._seen is not None
    return r


def _scoped_check(r: Runner) -> list:
    """One scoped state check of r's machine as it is now; the violations it adds."""
    before = len(r.oracle.violations)
    assert r.oracle._seen is not None          # scoped, not the full fallback
    r.oracle.check_state(StepContext(99, "planted", "A", "buf"), r.m)
    return [(v.check, v.detail) for v in r.oracle.violations[before:]]


def _swap_pte(r):
    mm = r.m.mms[0]
    vpn = next(v for v, e in mm.ptes.items() if e & 3 == 2)
    return mm, vpn


def test_planted_i7_in_a_written_slot_is_reported():
    r = _swapped_out_runner()
    mm, vpn = _swap_pte(r)
    off = (mm.ptes.ents[vpn] >> 3) + vpn
    r.m.swap.swap_map[off] += 1
    r.m.swap.written.add(off)                 # as every swap_map writer records it
    got = _scoped_check(r)
    assert ("I7", f"I7: slot {off:#x}: swap_map count 2 but 1 swap PTE(s) refer to it") in got


def test_planted_i7_in_a_written_pte_is_reported():
    r = _swapped_out_runner()
    mm, vpn = _swap_pte(r)
    off = (mm.ptes.ents[vpn] >> 3) + vpn
    del mm.ptes[vpn]                                 # the swap PTE goes, the count stays
    got = _scoped_check(r)
    assert ("I7", f"I7: slot {off:#x}: swap_map count 1 but 0 swap PTE(s) refer to it") in got


def test_planted_i5_in_a_written_slot_is_reported():
    r = _swapped_out_runner()
    mm, vpn = _swap_pte(r)
    off = (mm.ptes.ents[vpn] >> 3) + vpn
    r.m.swap.swap_map[off] |= SWAP_HAS_CACHE
    r.m.swap.written.add(off)
    got = _scoped_check(r)
    assert ("I5", f"I5: slot {off:#x}: SWAP_HAS_CACHE is 1 but the swap cache lacks it") in got


def test_planted_i8_and_i9_in_a_written_slot_are_reported():
    r = _swapped_out_runner()
    mm, vpn = _swap_pte(r)
    off = (mm.ptes.ents[vpn] >> 3) + vpn
    saved = r.m.mte_pages[off]
    r.m.mte_pages[off] = saved ^ 1            # logged by the SlotMap itself
    got = _scoped_check(r)
    assert [c for c, _ in got] == ["I9"]
    r.m.mte_pages.pop(off)
    got = _scoped_check(r)
    assert [c for c, _ in got] == ["I8"]


def test_planted_leak_in_a_written_slot_is_reported():
    r = _swapped_out_runner()
    mm, vpn = _swap_pte(r)
    off = (mm.ptes.ents[vpn] >> 3) + vpn
    other = off + 8
    r.m.mte_pages[other] = r.m.mte_pages[off]     # saved tags for a free slot
    got = _scoped_check(r)
    assert ("tag-storage-leak", f"saved tags kept for free slot {other:#x}") in got


def test_planted_i2_in_a_written_pte_is_reported():
    r = _swapped_out_runner()
    m = r.m
    pfn = next(p for p in range(m.config.frames) if not m.frame_flags[p] & PG_MTE_TAGGED)
    mm = m.mms[0]
    mm.ptes[5] = mk_pte(pfn, True, True, 5)      # a tagged PTE to an untagged frame
    got = _scoped_check(r)
    assert ("I2", f"I2: pid 0 vpn 5: tagged PTE maps pfn {pfn} without PG_mte_tagged") in got


def test_planted_i2_in_a_frame_that_lost_its_flag_is_reported():
    r = _swapped_out_runner()
    m = r.m
    mm = m.mms[0]                                # page 1 is still mapped, tagged
    vpn = next(v for v, e in mm.ptes.items() if e & 3 == 1)
    pfn = (mm.ptes.ents[vpn] >> 4) - 1 + vpn
    m.frame_flags[pfn] &= ~PG_MTE_TAGGED         # no PTE written: found by the flag's loss
    got = _scoped_check(r)
    assert ("I2", f"I2: pid 0 vpn {vpn}: tagged PTE maps pfn {pfn} without PG_mte_tagged") in got


def test_planted_i1_and_i1_lock_in_a_written_frame_are_reported():
    r = _swapped_out_runner()
    m = r.m
    pfn = next(p for p in range(m.config.frames) if not m.frame_flags[p])
    m.frame_flags[pfn] |= PG_MTE_TAGGED          # tagged, never initialised, not locked
    got = [c for c, _ in _scoped_check(r)]
    assert "I1" in got and "I1-lock" in got


def test_planted_use_after_free_is_reported():
    r = _swapped_out_runner()
    r.m.tag_reads.append((40, 0))
    got = _scoped_check(r)
    assert ("tag-storage-use-after-free", "tags of slot 0x28 read while the slot was free") in got


def test_every_state_check_has_a_scoped_form_or_a_reason_to_stay_full():
    names = {c.name for c in registry.STATE_CHECKS}
    assert names == set(scoped.SCOPED) | set(scoped.FULL)
    assert not set(scoped.SCOPED) & set(scoped.FULL)


def test_the_full_check_option_reaches_new_oracles(monkeypatch):
    monkeypatch.setattr(registry, "FULL_CHECK", True)
    assert Oracle().full_check is True and Oracle(full_check=False).full_check is False
    monkeypatch.setattr(registry, "FULL_CHECK", False)
    assert Oracle().full_check is False
