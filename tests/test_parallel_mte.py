"""MTE tag initialisation between threads (issue 14; docs/concurrency.md §2, §6): the steps
of `initialise_tags` (try_page_mte_tagging, the tag write, set_page_mte_tagged) under
mprotect's change_pte_range, the reverts of e059853d14ca and d77e59a8fccd, and the bundled
scenarios p11 and p12."""

import json
from dataclasses import replace

import pytest

from mteswap.bundled import parallel_files
from mteswap.designs import get_design
from mteswap.model import sched as S
from mteswap.model.mte import initialise_tags
from mteswap.model.state import PG_MTE_LOCK
from mteswap.oracle.invariants import i1_lock_pairs_flag
from mteswap.scenario.load import ScenarioError, parse_scenario, load_scenario
from mteswap.scenario.runner import Runner, run_scenario

P11 = next(p for p in parallel_files() if p.stem == "p11-mprotect-mte-shared-cow-page")
P12 = next(p for p in parallel_files() if p.stem == "p12-mprotect-mte-then-stg-shared-cow-page")
TAGGED_BEFORE_INIT = "e059853d14ca"
NO_TAGGING_LOCK = "d77e59a8fccd"
# CPU0 takes PG_mte_tagged (v6.1's test_and_set_bit) and is preempted before clearing the
# tags; CPU1's mprotect sees the flag, maps the page and reads it.
STALE_SCHEDULE = (0, 0, 0, 1, 1, 1, 0, 0)


def _reverted(sc, *commits):
    return replace(sc, config=replace(sc.config, revert=commits))


def _steps(res):
    return res.blocks[0].steps


def test_with_the_fix_the_second_mprotect_waits_for_pg_mte_tagged():
    res = run_scenario(load_scenario(P11), get_design("merged"), schedule=(0, 0, 0, 1, 1, 1))
    assert res.verdict == "pass"
    assert _steps(res) == [
        (0, "mprotect proc=A vma=buf pages=0 mte=True"),
        (0, "change_pte_range:pte_offset_map_lock"),
        (0, "mte_sync_tags:try_page_mte_tagging"),
        (1, "mprotect proc=B vma=buf pages=0 mte=True"),
        (1, "change_pte_range:pte_offset_map_lock"),
        (1, "mte_sync_tags:try_page_mte_tagging"),        # loses: PG_mte_lock is taken
        (0, "mte_sync_tags:mte_clear_page_tags"),
        (0, "mte_sync_tags:set_page_mte_tagged"),
        (0, "read proc=A vma=buf pages=0"),
        (1, "try_page_mte_tagging:smp_cond_load_acquire"),   # only once the flag is set
        (1, "read proc=B vma=buf pages=0")]


def test_the_loser_cannot_run_before_set_page_mte_tagged():
    # CPU1 blocked in try_page_mte_tagging: a schedule that picks it before CPU0 sets the
    # flag names a lane that cannot run.
    with pytest.raises(ScenarioError, match="--schedule: schedule position 7: CPU1 cannot"):
        run_scenario(load_scenario(P11), get_design("merged"), schedule=(0, 0, 0, 1, 1, 1, 1))


@pytest.mark.parametrize("path", [P11, P12], ids=lambda p: p.stem[:3])
@pytest.mark.parametrize("reverts", [(), (NO_TAGGING_LOCK,)], ids=["fixed", NO_TAGGING_LOCK])
def test_every_interleaving_passes_with_the_fix_and_without_the_tagging_lock(path, reverts):
    res = run_scenario(_reverted(load_scenario(path), *reverts), get_design("merged"))
    assert res.verdict == "pass", [v.short() for v in res.violations]
    assert res.interleavings > 200


def test_without_the_tagging_lock_both_mprotects_clear_the_tags():
    # Both test PG_mte_tagged before either sets it: two initialisations of one page, the
    # second after the first set the flag. Harmless here: both write zero tags, and no tag
    # store could land on the shared page in between (p12).
    sc = _reverted(load_scenario(P11), NO_TAGGING_LOCK)
    res = run_scenario(sc, get_design("merged"), schedule=(0, 0, 0, 1, 1, 1, 0, 0, 1, 1))
    assert res.verdict == "pass"
    names = _steps(res)
    assert names[2] == (0, "mte_sync_tags:page_mte_tagged")
    assert names[5] == (1, "mte_sync_tags:page_mte_tagged")
    assert [s for s in names if s[1] == "mte_sync_tags:mte_clear_page_tags"] == \
        [(0, "mte_sync_tags:mte_clear_page_tags"), (1, "mte_sync_tags:mte_clear_page_tags")]
    assert names[9] == (1, "mte_sync_tags:set_page_mte_tagged")


def test_in_p12_the_tag_store_breaks_cow_before_it_lands():
    """Why d77e59a8fccd's window is closed on private anonymous memory: A's stg, after its
    mprotect, faults on the read-only shared page and copies it; B's late second clear of
    the shared page cannot reach A's tags."""
    sc = _reverted(load_scenario(P12), NO_TAGGING_LOCK)
    r = Runner(sc, get_design("merged"))
    r.par.prefix = (0, 0, 0, 1, 1, 1, 0, 0, 0, 0)     # both test the flag; A ends first
    r.run_remaining()
    assert not r.oracle.violations
    steps = r.par.blocks[0].steps
    assert steps[8:] == [(0, "stg proc=A vma=buf pages=0 tag=5"),
                         (0, "read proc=A vma=buf pages=0"),
                         (1, "mte_sync_tags:mte_clear_page_tags"),   # the second clear
                         (1, "mte_sync_tags:set_page_mte_tagged"),
                         (1, "read proc=B vma=buf pages=0")]
    a, b = r.m.mms[0], r.m.mms[1]
    start = r.vmas[(0, "buf")][0]
    pa, pb = (mm.ptes[start] for mm in (a, b))
    from mteswap.model.pte import pte_pfn
    assert pte_pfn(pa, start) != pte_pfn(pb, start)          # A's stg copied the page
    assert r.m.frame_tags[pte_pfn(pa, start)] == 5
    assert r.m.frame_tags[pte_pfn(pb, start)] == 0


def test_reverted_flag_before_init_maps_the_page_with_stale_tags():
    sc = _reverted(load_scenario(P11), TAGGED_BEFORE_INIT)
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.proc, first.vma, first.page, first.thread) == \
        ("tag-check-fault", 4, "B", "buf", 0, 1)
    assert first.detail.startswith("expected tag 0, found unknown")
    assert first.schedule == STALE_SCHEDULE and res.schedule == STALE_SCHEDULE
    assert _steps(res)[2] == (0, "mte_sync_tags:test_and_set_bit")
    assert _steps(res)[5] == (1, "read proc=B vma=buf pages=0")   # before CPU0's clear
    lin = [v for v in res.violations if v.check == "linearizability"]
    assert len(lin) == 1 and lin[0].kind == "tag-check-fault"


def test_reverted_flag_before_init_fails_p12_too_and_both_reverts_give_the_v6_1_code():
    for reverts in [(TAGGED_BEFORE_INIT,), (TAGGED_BEFORE_INIT, NO_TAGGING_LOCK)]:
        res = run_scenario(_reverted(load_scenario(P12), *reverts), get_design("merged"))
        assert (res.first().kind, res.first().proc, res.first().thread) == \
            ("tag-check-fault", "B", 1)
        assert len(res.schedule) == 9


def test_preemption_bound_one_finds_the_stale_tags():
    sc = _reverted(load_scenario(P11), TAGGED_BEFORE_INIT)
    none = run_scenario(sc, get_design("merged"), preemptions=0)
    assert none.verdict == "pass"
    one = run_scenario(sc, get_design("merged"), preemptions=1)
    assert one.first().schedule == STALE_SCHEDULE


def _cli(*args):
    from typer.testing import CliRunner
    from mteswap.cli import app
    return CliRunner().invoke(app, list(map(str, args)))


def test_cli_schedule_replays_the_stale_tags():
    res = _cli("run", P11, "--revert", TAGGED_BEFORE_INIT,
               "--schedule", ",".join(map(str, STALE_SCHEDULE)))
    assert res.exit_code == 1, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("# p11-mprotect-mte-shared-cow-page: interleaving "
                               "0,0,0,1,1,1,0,0 (8 atomic steps")
    assert lines[6].split() == ["mte_sync_tags:test_and_set_bit", "|"]
    assert lines[9].split() == ["|", "read", "proc=B", "vma=buf", "pages=0"]
    assert "tag-check-fault at step 4 (read B buf page 0)" in res.output
    js = _cli("run", P11, "--revert", TAGGED_BEFORE_INIT, "--json",
              "--schedule", ",".join(map(str, STALE_SCHEDULE)))
    first = json.loads(js.output.splitlines()[0])["violations"][0]
    assert (first["kind"], first["schedule"], first["thread"]) == \
        ("tag-check-fault", list(STALE_SCHEDULE), 1)


def test_cli_reverts_lists_the_mte_fixes():
    res = _cli("reverts")
    assert res.exit_code == 0
    assert "e059853d14ca  arm64: mte: Fix/clarify the PG_mte_tagged semantics" in res.output
    assert "d77e59a8fccd  arm64: mte: Lock a page for MTE tag initialisation" in res.output


def test_mprotect_beside_another_lane_of_its_process_is_bad_input():
    doc = """version: 1
name: t
steps:
  - mmap: {proc: A, vma: buf, pages: 1}
  - parallel:
      - mprotect: {proc: A, vma: buf, pages: 0, mte: true}
      - read: {proc: A, vma: buf, pages: 0}
"""
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc, "t.yaml")
    text = str(err.value)
    assert "step 2" in text and "parallel[0]" in text
    assert "mprotect of A cannot run beside another lane of A (lane 1)" in text
    res_file = _cli_file(doc)
    assert res_file.exit_code == 2 and "mmap_lock" in res_file.output
    assert "Traceback" not in res_file.output


def _cli_file(doc):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.yaml"
        path.write_text(doc)
        return _cli("run", path)


# -- the half state of an initialisation and the invariants ----------------------------------

class _Sched:
    def __init__(self, tagging):
        self.tagging = set(tagging)


def _locked_page_machine():
    """A machine after p11's sequential steps with the shared page's PG_mte_lock taken and
    PG_mte_tagged not set: an initialisation half done."""
    r = Runner(load_scenario(P11), get_design("merged"))
    for step in r.scenario.steps[:3]:
        r.run_step(step)
    pfn = next(p for p in range(len(r.m.frame_flags) - 1) if r.m.folio_mapcounts[p])
    r.m.frame_flags[pfn] |= PG_MTE_LOCK
    return r.m, pfn


def test_i1_lock_leaves_a_lanes_initialisation_in_progress_alone_and_no_other():
    m, pfn = _locked_page_machine()
    assert list(i1_lock_pairs_flag(m)) == [
        f"pfn {pfn} left locked for tag initialisation (PG_mte_lock without PG_mte_tagged)"]
    m.sched = _Sched({pfn})                 # a lane is between its claim and its set
    assert list(i1_lock_pairs_flag(m)) == []
    m.sched = _Sched({pfn + 1})             # another frame's initialisation excuses nothing
    assert len(list(i1_lock_pairs_flag(m))) == 1
    m.sched = None
    assert S.tagging_in_progress(m) == set()


def test_initialise_tags_alone_takes_no_steps_and_gives_the_same_result():
    m, pfn = _locked_page_machine()
    m.frame_flags[pfn] &= ~PG_MTE_LOCK
    assert list(initialise_tags(m, pfn, [0])) == [pfn]   # no scheduler: no point is reached
    assert m.frame_tags[pfn] == 0 and not list(i1_lock_pairs_flag(m))


# -- which initialisations are steps ---------------------------------------------------------

def test_a_page_only_its_own_mprotect_maps_is_initialised_in_one_step():
    # B wrote its copy of the page first (CoW): each mprotect initialises a page no other
    # PTE maps, so neither takes try_page_mte_tagging / the tag write / the flag as steps.
    doc = """version: 1
name: t
steps:
  - mmap: {proc: A, vma: buf, pages: 1}
  - write: {proc: A, vma: buf, pages: 0}
  - fork: {proc: A, child: B}
  - write: {proc: B, vma: buf, pages: 0}
  - parallel:
      - [mprotect: {proc: A, vma: buf, pages: 0, mte: true}, read: {proc: A, vma: buf, pages: 0}]
      - [mprotect: {proc: B, vma: buf, pages: 0, mte: true}, read: {proc: B, vma: buf, pages: 0}]
"""
    res = run_scenario(parse_scenario(doc, "t.yaml"), get_design("merged"))
    assert res.verdict == "pass"
    assert [name for _, name in _steps(res)] == [
        "mprotect proc=A vma=buf pages=0 mte=True", "change_pte_range:pte_offset_map_lock",
        "read proc=A vma=buf pages=0",
        "mprotect proc=B vma=buf pages=0 mte=True", "change_pte_range:pte_offset_map_lock",
        "read proc=B vma=buf pages=0"]


@pytest.mark.parametrize("stem, interleavings", [("p1-skip-swapcache-aba-zram", 2817),
                                                 ("p5-shared-large-folio-swapped-out-ssd", 1794)])
def test_faults_initialising_fresh_folios_take_no_tag_steps(stem, interleavings, monkeypatch):
    """A fault's set_ptes counts the folio's new rmap before mte_sync_tags: a fresh folio
    mapped by nobody else is initialised as local work, and the fault blocks keep the
    interleavings they have with tag initialisation never a step (docs/performance.md)."""
    from mteswap.model import mte
    path = next(p for p in parallel_files() if p.stem == stem)
    res = run_scenario(load_scenario(path), get_design("merged"))
    assert res.interleavings == interleavings
    monkeypatch.setattr(mte, "_mapped_elsewhere", lambda m, pfn, own: False)
    assert run_scenario(load_scenario(path), get_design("merged")).interleavings == interleavings
    assert not [s for s in _steps(res) if s[1].startswith(("mte_sync_tags:", "mte_restore_tags:"))]


COW_DURING_MPROTECT = """version: 1
name: cow-during-mprotect
steps:
  - mmap: {proc: A, vma: buf, pages: 1}
  - write: {proc: A, vma: buf, pages: 0}
  - fork: {proc: A, child: B}
  - parallel:
      - [mprotect: {proc: A, vma: buf, pages: 0, mte: true}, read: {proc: A, vma: buf, pages: 0}]
      - - write: {proc: B, vma: buf, pages: 0}
        - mprotect: {proc: B, vma: buf, pages: 0, mte: true}
        - read: {proc: B, vma: buf, pages: 0}
"""


@pytest.mark.parametrize("reverts", [(), (NO_TAGGING_LOCK,)], ids=["fixed", NO_TAGGING_LOCK])
def test_a_cow_copy_during_mprotect_passes_with_the_flag_set_after_the_tags(reverts):
    sc = _reverted(parse_scenario(COW_DURING_MPROTECT, "t.yaml"), *reverts)
    res = run_scenario(sc, get_design("merged"))
    assert res.verdict == "pass" and res.interleavings > 50


def test_reverted_flag_before_init_lets_a_cow_copy_take_the_stale_tags():
    """e059853d14ca's other case: "a concurrent mprotect(PROT_MTE) with a copy on write ...
    can cause the new page to have stale tags". B copies the shared page while A holds
    PG_mte_tagged before clearing: copy_highpage copies the old tags and the flag, so B's own
    mprotect later finds its copy tagged and leaves the stale tags for B's read."""
    sc = _reverted(parse_scenario(COW_DURING_MPROTECT, "t.yaml"), TAGGED_BEFORE_INIT)
    res = run_scenario(sc, get_design("merged"))
    first = res.first()
    assert (first.kind, first.step, first.proc, first.page, first.thread) == \
        ("tag-check-fault", 4, "B", 0, 1)
    assert "tags copied at step 4 from pfn" in first.detail and "by copy_highpage" in first.detail
    assert res.schedule == (0, 0, 0, 1, 1, 1, 1, 0, 0)
    lin = next(v for v in res.violations if v.check == "linearizability")
    assert "B buf page 0 holds value" in lin.detail and "with tags unknown; the serial" in lin.detail
