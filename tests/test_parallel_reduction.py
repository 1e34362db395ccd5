"""Reduced exploration of parallel blocks (scenario/por.py, docs/concurrency.md §5): DPOR with
sleep sets and lane symmetry give the verdicts and the shortest failing interleaving length of
the plain search (scenario/parallel.py `explore`) on every bundled parallel scenario and with
each revert."""

import pytest

from mteswap.bundled import parallel_files
from mteswap.designs import get_design
from mteswap.model.reverts import REVERTS
from mteswap.scenario import parallel as P
from mteswap.scenario import por
from mteswap.scenario.load import load_scenario, parse_scenario, with_reverts

ABA = next(p for p in parallel_files() if p.stem == "p1-skip-swapcache-aba-zram")

REVERT_SETS = [()] + [(c,) for c in sorted(REVERTS)] + [("13ddaf26be32", "6dca4ac6fc91")]


def _base(scenario, reverts=()):
    sc = with_reverts(scenario, list(reverts)) if reverts else scenario
    return por.start(sc, get_design("merged"))


def _verdict(ex):
    """What an exploration decides: the violation kinds of its reported run, whether any
    interleaving failed, and the length of a shortest failing one."""
    run = ex.best or ex.first
    return sorted({v.kind for v in run.oracle.violations}), ex.failing > 0, ex.best_len


@pytest.mark.parametrize("reverts", REVERT_SETS, ids=lambda r: "+".join(r) or "fixed")
@pytest.mark.parametrize("path", parallel_files(), ids=lambda p: p.stem)
def test_reduced_exploration_gives_the_full_verdict(path, reverts):
    sc = load_scenario(path)
    full = P.explore(_base(sc, reverts))
    for symmetry in (False, True):
        red = por.explore(_base(sc, reverts), symmetry=symmetry)
        assert _verdict(red) == _verdict(full), (symmetry, red.runs, full.runs)
        assert red.runs <= full.runs and red.nodes <= full.nodes


def test_the_reduction_cuts_the_aba_search_and_keeps_its_12_step_counterexample():
    sc = load_scenario(ABA)
    full = P.explore(_base(sc, ("13ddaf26be32",)))
    red = por.explore(_base(sc, ("13ddaf26be32",)))
    assert (full.runs, full.best_len) == (284, 12)
    assert red.runs < full.runs and red.best_len == 12
    assert {v.kind for v in red.best.oracle.violations} == {"data-corruption"}


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
      - [read: {proc: A, vma: buf, pages: 0}, write: {proc: A, vma: buf, pages: 0, tag: 5}, pageout: {proc: A, vma: buf, pages: 0}]
      - [read: {proc: A, vma: buf, pages: 0}, write: {proc: A, vma: buf, pages: 0, tag: 5}, pageout: {proc: A, vma: buf, pages: 0}]
"""


def test_identical_lanes_of_one_process_are_alike_others_not():
    twins = parse_scenario(TWINS, "twins.yaml")
    assert por.symmetric_lanes(_base(twins)) == {0: frozenset({1})}
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
    assert {v.kind for v in r.oracle.violations} == {"data-corruption"}
    assert r.par.schedule == red.best.par.schedule
