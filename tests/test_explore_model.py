"""The explorer's seam (src/mteswap/explore/model.py): init/actions/step/properties, named
always and sometimes properties reported by the searches, the zram preset, and the runner's
public snapshot the fingerprint is built from."""

from __future__ import annotations

import pytest

from helpers import check, runner as run_steps
from mteswap.bundled import BUNDLED_DIR
from mteswap.designs import get_design
from mteswap.explore.alphabet import PRESETS, Problem, parse_actions, step_action
from mteswap.explore.model import ALWAYS, SOMETIMES, Model, get_model
from mteswap.explore.random_walk import one_walk
from mteswap.scenario.load import VIOLATION_KINDS, load_scenario
from mteswap.scenario.runner import run_scenario

SOMETIMES_NAMES = ["a large folio swapped out whole", "a large swap-in",
                   "tags restored from swap", "a split of a mixed-tagged folio"]
# the actions of a large swap-out then swap-in of a 4-page folio, tags distinct
ROUND_TRIP = [{"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": True}},
              {"write": {"proc": "A", "vma": "buf", "pages": "0-3", "tag": "distinct"}},
              {"reclaim": {"proc": "A", "vma": "buf", "pages": "0-3", "keep_cached": False}},
              {"read": {"proc": "A", "vma": "buf", "pages": "0-3"}}]


def trace_of(model: Model, actions: list) -> list[int]:
    return [model.alpha.actions.index(a) for a in actions]


# -- the trait ---------------------------------------------------------------------------------

def test_properties_are_named_values():
    model = get_model(Problem())
    props = model.properties()
    assert [p.name for p in props if p.expectation == ALWAYS] == [f"no {k}" for k in VIOLATION_KINDS]
    assert [p.name for p in props if p.expectation == SOMETIMES] == SOMETIMES_NAMES
    assert all(p.description for p in props)


def test_init_actions_step():
    model = get_model(Problem())
    s0 = model.init()
    acts = model.actions(s0)
    # only A exists and nothing is mapped: A's mmaps, the fork, A's exit, and the ops
    # without a process (drop_caches, evict, swapoff)
    assert sorted({model.alpha.base_steps[a].op for a in acts}) == [
        "drop_caches", "evict", "exit", "fork", "mmap", "swapoff"]
    before = model.fingerprint(s0)
    s1 = model.step(s0, trace_of(model, ROUND_TRIP[:1])[0])
    assert s1.steps_run == 1 and s0.steps_run == 0
    assert model.fingerprint(s0) == before != model.fingerprint(s1)     # step copies
    assert model.init() is not model.init()
    # an action that is not offered cannot apply: step gives None
    read = trace_of(model, ROUND_TRIP[3:])[0]
    assert read not in model.actions(s0) and model.step(s0, read) is None


@pytest.mark.parametrize("preset", ["small", "thread"])
def test_actions_test_each_can_apply_key_once_and_agree_with_every_action(preset):
    """`actions` asks can_apply once per distinct Runner.can_apply_key: on states along random
    walks it offers exactly the actions whose own can_apply is true (the offered sets vary:
    munmap of part of a VMA, exit, fork, mmap again)."""
    import random
    model = get_model(Problem(model=preset))
    assert len(model._key_steps) < model.nactions
    rng, seen = random.Random(7), set()
    for _ in range(40):
        state = model.init()
        for _ in range(6):
            steps = model.alpha.steps_at(state.steps_run + 1)
            naive = [a for a in range(model.nactions) if state.can_apply(steps[a])]
            assert model.actions(state) == naive
            seen.add(len(naive))
            nxt = model.step(state, rng.choice(naive))
            state = nxt if nxt is not None else state
    assert len(seen) > 3


def test_sometimes_properties_reached_along_a_trace():
    model = get_model(Problem(model="zram"))
    state, got = model.init(), []
    for a in trace_of(model, ROUND_TRIP):
        assert model.step_in_place(state, a)
        got.append(model.reached(state, SOMETIMES_NAMES))
    assert got == [[], [], ["a large folio swapped out whole"],
                   ["a large folio swapped out whole", "a large swap-in", "tags restored from swap"]]
    assert model.failed_property(state) is None
    # the same on ssd: the swap-in is order 0 (no large swap-in), tags restored page by page
    ssd = get_model(Problem(model="small"))
    state = ssd.replay(trace_of(ssd, ROUND_TRIP))
    assert ssd.reached(state, SOMETIMES_NAMES) == [
        "a large folio swapped out whole", "tags restored from swap"]


def test_split_of_a_mixed_tagged_folio_is_counted():
    """huge_memory.split_folio counts a split whose folio's pages differ in PG_mte_tagged
    (S5: the head untagged, page 4 tagged), and not a split of a uniformly tagged folio."""
    s5 = run_scenario(load_scenario(BUNDLED_DIR / "s5-split-untagged-head.yaml"), get_design("merged"))
    assert s5.counters["splits"] == 1 and s5.counters["mixed_tag_splits"] == 1
    r = run_steps([{"mmap": {"proc": "A", "vma": "buf", "pages": 16, "mte": True}},
                   {"write": {"proc": "A", "vma": "buf", "pages": "0-15", "tag": "distinct"}},
                   {"split": {"proc": "A", "vma": "buf", "pages": "0-15"}}], folio_pages=[1, 16])
    assert r.counters["splits"] == 1 and r.counters["mixed_tag_splits"] == 0


def test_failed_property_names_the_violation_kind(tmp_path):
    summary, status = check(tmp_path, design="rfc-v1", depth=3)
    assert status == 1 and summary["violation"]["property"] == "no invariant"


# -- searches report sometimes properties ------------------------------------------------------------

def test_bfs_reports_sometimes_reached_and_not_reached(tmp_path):
    ops = "mmap,write,reclaim,read"
    small, _ = check(tmp_path, design="merged", depth=4, ops=ops)
    zram, _ = check(tmp_path, design="merged", depth=4, ops=ops, model="zram")
    assert list(small["sometimes"]) == list(zram["sometimes"]) == SOMETIMES_NAMES
    reached = {name: got["reached"] for name, got in small["sometimes"].items()}
    assert reached == {"a large folio swapped out whole": True, "a large swap-in": False,
                       "tags restored from swap": True, "a split of a mixed-tagged folio": False}
    assert small["sometimes"]["a large swap-in"]["trace"] is None
    # zram: the large swap-in, reached by a shortest trace, the first in BFS order (a folio
    # never written is zero-filled: swap-out records it in the zeromap, nothing to swap in)
    assert zram["sometimes"]["a large swap-in"] == {"reached": True, "trace": [
        "mmap A buf 4 mte", "write A buf 0", "reclaim A buf 0", "write A buf 0"]}


def test_text_output_says_reached_or_not(tmp_path, capsys):
    from mteswap.explore.cli import print_summary
    summary, _ = check(tmp_path, design="merged", depth=2)
    print_summary(summary)
    out = capsys.readouterr().out
    assert "  sometimes 'a large swap-in': NOT reached" in out
    assert "no violation" in out


def test_random_walks_report_sometimes(tmp_path):
    pr = Problem(design="merged-split-fix", model="zram")
    summary, status = check(tmp_path, design=pr.design, random=True, walks=200, seed=1,
                            model=pr.model)
    assert status == 0
    got = summary["sometimes"]
    assert list(got) == SOMETIMES_NAMES and all(g["reached"] for g in got.values())
    # each is the first walk's trace that reached it, and replaying it reaches it
    model = get_model(pr)
    for name, g in got.items():
        walk = next(w for w in range(200) if name in one_walk(pr, 1, w, 40).reached)
        trace = one_walk(pr, 1, walk, 40).reached[name]
        assert [model.alpha.actions[a] for a in trace] and len(trace) == len(g["trace"])
        assert model.reached(model.replay(trace), [name]) == [name]


# -- the zram preset -----------------------------------------------------------------------------------

@pytest.mark.parametrize("design", ["rfc-v2", "rfc-v3"])
def test_zram_preset_finds_what_small_cannot(tmp_path, design):
    """rfc-v2 and rfc-v3 fail only through a large swap-in: found on zram, not on small."""
    ops = "mmap,write,reclaim,read"
    zram, status = check(tmp_path, design=design, depth=4, ops=ops, model="zram")
    assert status == 1
    v = zram["violation"]
    assert (v["property"], v["kind"], v["step"]) == ("no tag-check-fault", "tag-check-fault", 4)
    small, status = check(tmp_path, design=design, depth=4, ops=ops)
    assert status == 0 and small["violation"] is None
    assert PRESETS["zram"].config["swap_device"] == "zram"


# -- the runner's public view ------------------------------------------------------------------------

def test_snapshot_map_values_renames_every_data_value():
    """After a whole-folio swap-out the 4 written values (step 2: 2 << 19 | page + 1) are in
    the freed frames, in the swap slots and in the program's view; map_values sees each of
    them there, frames by pfn (16 of them), then slots, then the view. The same numbers are
    the tags' write generations, in the frames, the saved tags and the view."""
    r = run_steps(ROUND_TRIP[:3], folio_pages=[1, 4], frames=16, swap_slots=1024)
    snap = r.snapshot()
    seen = []
    gens = []
    renamed = snap.map_values(lambda v: seen.append(v) or -v, lambda g: gens.append(g) or -g)
    written = [(2 << 19) | (i + 1) for i in range(4)]
    assert seen == written + [0] * 12 + written + written
    assert renamed.machine.swap.contents == tuple((512 + i, -v) for i, v in enumerate(written))
    # the tags' write generations (the values the tagging write stored), renamed on their
    # own: the frames', the saved buffers', then the view's
    assert gens == written + [0] * 12 + written + written
    assert renamed.machine.tag_gens == (tuple(-v for v in written) + (0,) * 12,
                                        tuple(-v for v in written))
    assert renamed.view == ((0, tuple((i, (i + 1, -v)) for i, v in enumerate(written)),
                             tuple(-v for v in written)),)
    assert renamed.names == snap.names == ((0, "buf", 0, 4),)
    assert hash(snap) == hash(tuple(snap))          # named tuples hash as the plain tuples


def test_step_action_round_trips():
    pr = Problem()
    steps = parse_actions(pr, ROUND_TRIP + [{"pageout": {"proc": "A", "vma": "buf", "pages": [0, 2],
                                                         "keep_cached": True}}, "evict"])
    again = parse_actions(pr, [step_action(s) for s in steps])
    assert again == steps
    assert step_action(steps[1]) == {"write": {"proc": "A", "vma": "buf", "pages": "0-3",
                                               "tag": "distinct"}}


def test_searches_use_only_the_runners_public_methods():
    """No search module reaches into a runner's fields (machine, oracle, name tables): the
    seam is explore/model.py over Runner.run_step/clone/snapshot/can_apply/violations/counters."""
    import re
    from pathlib import Path

    import mteswap.explore as explore
    root = Path(explore.__file__).parent
    for name in ("bfs", "random_walk", "shrink", "model", "symmetry", "parallel", "distributed",
                 "checkpoint", "check", "alphabet"):
        text = (root / f"{name}.py").read_text()
        assert not re.search(r"\.(m|oracle|pids|vmas|unmapped_at)\b", text), name


def test_check_help_says_what_each_preset_reaches():
    from typer.testing import CliRunner

    from mteswap.cli import app
    out = CliRunner().invoke(app, ["check", "--help"], env={"COLUMNS": "300"}).stdout
    assert "zram" in out and "large swap-in" in out
    bad = CliRunner().invoke(app, ["check", "--model", "huge", "--workers", "1"])
    assert bad.exit_code == 2 and "known: small, zram, thread" in bad.stderr
