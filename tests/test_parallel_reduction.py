"""Reduced exploration of parallel blocks (scenario/por.py, docs/concurrency.md §5): DPOR with
sleep sets and lane symmetry give the verdicts and the shortest failing interleaving length of
the plain search (scenario/parallel.py `explore`) on every bundled parallel scenario and with
each revert."""

import json

import pytest

from mteswap.bundled import parallel_files
from mteswap.designs import BUILTIN, get_design
from mteswap.model.reverts import REVERTS
from mteswap.scenario import parallel as P
from mteswap.scenario import por
from mteswap.scenario.load import load_scenario, parse_scenario, with_reverts

ABA = next(p for p in parallel_files() if p.stem == "p1-skip-swapcache-aba-zram")

REVERT_SETS = [()] + [(c,) for c in sorted(REVERTS)] + [("13ddaf26be32", "6dca4ac6fc91")]
# p9 (three lanes: two zaps and swapoff, ~6,500 interleavings, ~15 s a search) is compared
# with the fix and with the revert it is about; under the other reverts, which change paths
# it does not run (faults, the skip-swapcache pin), and under every design it is `slow`.
# p1 (2,321 interleavings since its pageout is reclaim's steps r1-r4, ~20 s for the three
# searches) likewise with 13ddaf26be32 reverted, alone and with 6dca4ac6fc91 (the race it is
# about, found), and `slow` with the fix and the other reverts (every interleaving passes).
ZAPS = "p9-zaps-of-swapcache-large-folio-vs-swapoff-ssd"
# The tag-initialisation fixes change only pages two processes map while one initialises
# them: routine on the blocks racing two mprotects (p11, p12), `slow` elsewhere, where no
# initialisation takes steps and they change nothing; the other fixes, in turn, are `slow`
# on p11 and p12, which run no swap path.
TAG_INIT_FIXES = {"e059853d14ca", "d77e59a8fccd"}
TAG_INIT_BLOCKS = ("p11-mprotect-mte-shared-cow-page", "p12-mprotect-mte-then-stg-shared-cow-page")
# 0ec8bc9e880e changes only an allocation that reclaims a cache-only slot, which swap more
# than half full brings about in p14 alone: routine there, `slow` elsewhere.
ALLOC_FIX, ALLOC_BLOCK = "0ec8bc9e880e", "p14-alloc-reclaim-vs-swapoff-ssd"


def _heavy(stem: str, reverts: tuple) -> bool:
    if stem == ZAPS:
        return reverts not in ((), ("82b1c07a0af6",))
    if stem == ABA.stem and "13ddaf26be32" not in reverts:
        return True
    if reverts and (stem in TAG_INIT_BLOCKS) != bool(TAG_INIT_FIXES & set(reverts)):
        return True
    if ALLOC_FIX in reverts and stem != ALLOC_BLOCK:
        return True
    return False


def _cases():
    for path in parallel_files():
        for reverts in REVERT_SETS:
            rid = "+".join(reverts) or "fixed"
            marks = [pytest.mark.slow] if _heavy(path.stem, reverts) else []
            yield pytest.param(path, reverts, id=f"{path.stem}-{rid}", marks=marks)


def _base(scenario, reverts=()):
    sc = with_reverts(scenario, list(reverts)) if reverts else scenario
    return por.start(sc, get_design("merged"))


def _verdict(ex):
    """What an exploration decides: the violation kinds of its reported run, whether any
    interleaving failed, and the length of a shortest failing one."""
    run = ex.best or ex.first
    return sorted({v.kind for v in run.oracle.violations}), ex.failing > 0, ex.best_len


@pytest.mark.parametrize("path, reverts", list(_cases()))
def test_reduced_exploration_gives_the_full_verdict(path, reverts):
    sc = load_scenario(path)
    full = P.explore(_base(sc, reverts))
    for symmetry in (False, True):
        red = por.explore(_base(sc, reverts), symmetry=symmetry)
        assert _verdict(red) == _verdict(full), (symmetry, red.runs, full.runs)
        assert red.runs <= full.runs and red.nodes <= full.nodes


def test_the_reduction_cuts_the_aba_search_and_keeps_its_17_step_counterexample():
    sc = load_scenario(ABA)
    full = P.explore(_base(sc, ("13ddaf26be32",)))
    red = por.explore(_base(sc, ("13ddaf26be32",)))
    assert (full.runs, full.best_len) == (1884, 17)
    assert red.runs < full.runs and red.best_len == 17
    assert {v.kind for v in red.best.oracle.violations} == {"tag-check-fault", "data-corruption"}


def test_footprints_pure_only_for_steps_that_change_nothing_shared():
    """p1's first interleaving: the user operations' first steps and every step that writes
    shared state are GLOBAL; the synchronous read into the private folio is PURE."""
    class Record:
        fps: list = []

        def choose(self, pos, enabled, last, block):
            return last if last in enabled else enabled[0]

        def stepped(self, fp):
            self.fps.append(fp)

    r = _base(load_scenario(ABA))
    hook = Record()
    hook.fps = []
    r.par.hook = hook
    r.run_remaining()
    names = [name for _, name in r.par.blocks[0].steps]
    pure = [n for n, fp in zip(names, hook.fps) if fp == por.PURE]
    assert pure == ["do_swap_page:swap_read_folio"]
    assert hook.fps[0] is por.GLOBAL and names[0] == "read proc=A vma=buf pages=0"


def test_dependence_taken_too_weak_loses_the_aba(monkeypatch):
    """The differential test can fail: with every pair of steps taken as independent the
    reduced search runs one interleaving per block and misses 13ddaf26be32's race."""
    monkeypatch.setattr(por, "dependent", lambda a, b: False)
    red = por.explore(_base(load_scenario(ABA), ("13ddaf26be32",)))
    assert red.failing == 0 and red.runs == 1


TWINS = """
version: 1
name: twins
config: {folio_pages: [1], swap_device: zram, swap_slots: 2, frames: 16}
steps:
  - mmap:    {proc: A, vma: buf, pages: 1, mte: true}
  - write:   {proc: A, vma: buf, pages: 0, tag: 3}
  - pageout: {proc: A, vma: buf, pages: 0}
  - parallel:
      - [read: {proc: A, vma: buf, pages: 0}, stg: {proc: A, vma: buf, pages: 0, tag: 5}]
      - [read: {proc: A, vma: buf, pages: 0}, stg: {proc: A, vma: buf, pages: 0, tag: 5}]
"""
# (Each lane also paged out again while reclaim was one step; with reclaim's four steps that
# made two 9-step lanes, tens of thousands of interleavings for a test of symmetry.)


def test_identical_lanes_of_one_process_are_alike_others_not():
    twins = parse_scenario(TWINS, "twins.yaml")
    assert por.symmetric_lanes(_base(twins)) == {0: frozenset({1})}
    writers = parse_scenario(TWINS.replace("stg:", "write:"), "writers.yaml")
    assert por.symmetric_lanes(_base(writers)) == {0: frozenset()}   # they store other values
    other = parse_scenario(TWINS.replace("- [read: {proc: A", "- [read: {proc: B", 1)
                           .replace("  - parallel:", "  - fork: {proc: A, child: B}\n  - parallel:"),
                           "other.yaml")
    assert por.symmetric_lanes(_base(other)) == {0: frozenset()}


@pytest.mark.parametrize("reverts", [(), ("13ddaf26be32",)], ids=["fixed", "13ddaf26be32"])
def test_symmetry_halves_identical_lanes_and_keeps_the_verdict(reverts):
    twins = parse_scenario(TWINS, "twins.yaml")
    full = P.explore(_base(twins, reverts))
    plain = por.explore(_base(twins, reverts), symmetry=False)
    sym = por.explore(_base(twins, reverts), symmetry=True)
    assert _verdict(sym) == _verdict(plain) == _verdict(full)
    assert sym.runs * 2 == plain.runs


def test_reduced_run_replays_with_its_schedule():
    """The counterexample the reduced search keeps is an ordinary schedule: replayed as
    `--schedule` it gives the same violation."""
    sc = with_reverts(load_scenario(ABA), ["13ddaf26be32"])
    red = por.explore(por.start(sc, get_design("merged")))
    r = por.start(sc, get_design("merged"))
    r.par.prefix = red.best.par.schedule
    r.run_remaining()
    assert {v.kind for v in r.oracle.violations} == {v.kind for v in red.best.oracle.violations}
    assert r.oracle.violations and r.par.schedule == red.best.par.schedule


# -- mteswap check with parallel blocks ------------------------------------------------------

from typer.testing import CliRunner  # noqa: E402

from mteswap.cli import app as mteswap_app  # noqa: E402
from mteswap.explore.alphabet import PRESETS, Problem, action_text  # noqa: E402
from mteswap.scenario.load import ScenarioError  # noqa: E402
from mteswap.scenario.runner import run_scenario  # noqa: E402


def test_parallel_presets_race_a_fault_against_a_fault_a_zap_reclaim_and_swapoff():
    for model, device in (("parallel-zram", "zram"), ("parallel-ssd", "ssd")):
        assert PRESETS[model].config["swap_device"] == device
        blocks = [action_text(a) for a in Problem(model=model).actions()
                  if "parallel" in a]
        assert blocks == [
            "parallel read buf 0 A | read buf 0 A",
            "parallel read buf 0 A | read buf 0 B",
            "parallel read buf 0 A | read buf 0 A; write buf 0 A tag=6; pageout buf 0 A",
            "parallel read buf 0 A | dontneed buf 0 A",
            "parallel read buf 0 A | pageout buf 0 A",
            "parallel read buf 0 A | swapoff"]


def _check(tmp_path, *args):
    res = CliRunner().invoke(mteswap_app, ["check", "--workers", "1", "--json",
                                           "--out", str(tmp_path), *args])
    summary = json.loads(res.stdout.strip().splitlines()[-1]) if res.exit_code != 2 else None
    return res, summary


@pytest.mark.parametrize("model", ["parallel-zram", "parallel-ssd"])
def test_parallel_check_passes_with_every_fix(tmp_path, model):
    res, s = _check(tmp_path, "--model", model, "--depth", "3")
    assert res.exit_code == 0 and s["violation"] is None and s["distinct_states"] > 5


@pytest.mark.parametrize("commit, kind, block", [
    ("13ddaf26be32", "tag-check-fault",     # restored before reclaim saved the new tags
     "parallel read buf 0 A | read buf 0 A; write buf 0 A tag=6; pageout buf 0 A"),
    ("2799e77529c2", "use-after-free", "parallel read buf 0 A | swapoff")])
def test_check_revert_finds_the_race_and_the_file_replays(tmp_path, commit, kind, block):
    res, s = _check(tmp_path, "--model", "parallel-zram", "--depth", "4", "--revert", commit)
    v = s["violation"]
    assert res.exit_code == 1 and v["kind"] == kind and v["step"] == 3 and v["trace"][2] == block
    path = v["files"]["yaml"]
    sc = load_scenario(path)
    assert sc.config.revert == (commit,)
    run = CliRunner().invoke(mteswap_app, ["run", path, "--json"])
    out = json.loads(run.stdout)
    assert run.exit_code == 1 and out["violations"][0]["kind"] == kind
    assert out["violations"][0]["schedule"]


def test_check_bad_revert_is_bad_input(tmp_path):
    res = CliRunner().invoke(mteswap_app, ["check", "--model", "parallel-zram", "--depth", "1",
                                           "--revert", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--revert" in res.output and "nope" in res.output


ZAP = """
version: 1
name: fault-vs-zap
config: {folio_pages: [1], swap_device: zram, swap_slots: 2, frames: 16}
steps:
  - mmap:    {proc: A, vma: buf, pages: 1, mte: true}
  - write:   {proc: A, vma: buf, pages: 0, tag: 3}
  - pageout: {proc: A, vma: buf, pages: 0}
  - parallel:
      - read: {proc: A, vma: buf, pages: 0}
      - dontneed: {proc: A, vma: buf, pages: 0}
"""


def test_a_fault_holding_the_ptl_from_pte_same_to_set_ptes_keeps_the_zap_out():
    """zap_pte_range takes the PTL itself (z0, zap_pte_range:pte_offset_map_lock): it cannot
    clear the PTE between a fault's pte_same and its set_ptes."""
    sc = parse_scenario(ZAP, "zap.yaml")
    ex = P.explore(_base(sc))
    assert (ex.runs, ex.failing) == (58, 0)
    # read, swap_cache_get_folio, swapcache_prepare, swap_read_folio, pte_same: CPU0 holds
    # A's PTL; CPU1's dontneed starts, but its z0 cannot be the next step.
    with pytest.raises(ScenarioError, match="position 7: CPU1 cannot run here"):
        run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 0, 0, 1, 1))
    # once the fault has set its PTE (its set_ptes step) the zap clears it
    ok = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 0, 0, 0, 0, 1, 1))
    assert ok.violations == []


def test_a_read_after_the_zap_cleared_the_pte_but_before_dontneed_ended_is_linearizable():
    """The false positive of a per-access check at the read's instant: z0 cleared the PTE,
    the read maps the zero page before the dontneed returns (its expected view still holds
    tag 3). dontneed then read is a serial order that gives exactly that: no violation."""
    sc = parse_scenario(ZAP, "zap.yaml")
    r = run_scenario(sc, get_design("merged"), schedule=(1, 1, 0, 1))
    assert r.violations == []
    assert [n for _, n in r.blocks[-1].steps[:3]] == [
        "dontneed proc=A vma=buf pages=0", "zap_pte_range:pte_offset_map_lock",
        "read proc=A vma=buf pages=0"]


def _same_verdict_reduced_and_full(path, design, reverts):
    sc = load_scenario(path)
    sc = with_reverts(sc, list(reverts)) if reverts else sc
    full = P.explore(por.start(sc, get_design(design)))
    red = por.explore(por.start(sc, get_design(design)))
    assert _verdict(red) == _verdict(full), (path.stem, design, reverts)


# split-before-swap's four small folios per large one make its blocks the largest (p6: 924
# interleavings since do_swap_page's set_ptes became a step, ~20 s for both searches): slow.
@pytest.mark.parametrize("design", [pytest.param(d, marks=[pytest.mark.slow])
                                    if d == "split-before-swap" else d for d in sorted(BUILTIN)])
def test_reduced_exploration_gives_the_full_verdict_under_every_design(design):
    """The blocks other than p1 (which the merged test covers with every revert) and p9
    (below), under each design, fixed and with 2799e77529c2 reverted (e059853d14ca on the
    blocks of two mprotects, which run no swap path). Not a block whose file
    bounds this design's search (p10 under split-before-swap: millions of interleavings;
    DPOR keeps no preemption bound)."""
    for path in parallel_files():
        if path == ABA or path.stem == ZAPS:
            continue
        if load_scenario(path).preemption_bound(design) is not None:
            continue
        fix = "e059853d14ca" if path.stem in TAG_INIT_BLOCKS else "2799e77529c2"
        for reverts in ((), (fix,)):
            _same_verdict_reduced_and_full(path, design, reverts)


@pytest.mark.slow
@pytest.mark.parametrize("design", sorted(BUILTIN))
def test_reduced_exploration_of_the_zaps_gives_the_full_verdict_under_every_design(design):
    """p9 under each design, fixed (rfc-v1 fails it sequentially, the others pass)."""
    _same_verdict_reduced_and_full(next(p for p in parallel_files() if p.stem == ZAPS),
                                   design, ())


def test_a_block_run_twice_in_one_path_writes_new_values_each_time():
    # A lane's write stores values numbered by the block's position, as a scenario file of the
    # path numbers them: the same block at positions 2 and 3 writes different data (and tag
    # generations), none equal to a sequential write's, so a mix of the two runs is seen.
    from mteswap.explore.alphabet import LANE_VALUES, Alphabet
    from mteswap.scenario.runner import PAGE_VALUE_SHIFT
    al = Alphabet(Problem(model="parallel-zram"))
    k = next(i for i, s in enumerate(al.base_steps) if s.op == "parallel"
             and any(ls.op == "write" for lane in s.args["lanes"] for ls in lane))

    def write_base(index):
        (w,) = [ls for lane in al.steps_at(index)[k].args["lanes"] for ls in lane
                if ls.op == "write"]
        assert w.index == index
        return w.value_base

    bases = [write_base(i) for i in (2, 3, 4)]
    assert len(set(bases)) == 3 and min(bases) > LANE_VALUES
    every = {ls.value_base for i in (2, 3) for s in al.steps_at(i) if s.op == "parallel"
             for lane in s.args["lanes"] for ls in lane}
    assert len(every) == 2 * sum(len(lane) for s in al.base_steps if s.op == "parallel"
                                 for lane in s.args["lanes"])
    assert (max(bases) << PAGE_VALUE_SHIFT) < 1 << 63          # still an int64 value
