"""`mteswap check` (src/mteswap/explore): exhaustive search, counterexample files that replay,
ITF, shortest-ness, symmetry reduction, workers, shrinking, clone()."""

from __future__ import annotations

import json
import random

import pytest
import typer
from typer.testing import CliRunner

from helpers import check, runner as run_steps
from mteswap.cli import app as mteswap_app
from mteswap.explore.alphabet import Alphabet, Problem, parse_actions
from mteswap.explore.bfs import new_bfs, run_bfs, serial_mapper
from mteswap.explore.cli import check_command
from mteswap.explore.model import get_model
from mteswap.explore.shrink import first_violation, shrink
from mteswap.model.machine import Machine
from mteswap.model.swapinfo import SwapInfo
from mteswap.scenario.load import Expected
from mteswap.scenario.runner import Runner

check_app = typer.Typer(add_completion=False)
check_app.command()(check_command)


def replay(path):
    res = CliRunner().invoke(mteswap_app, ["run", str(path), "--json"])
    return res.exit_code, json.loads(res.stdout.splitlines()[0])


# -- clone ---------------------------------------------------------------------------------------

def test_clone_knows_every_attribute():
    r = run_steps([{"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": True}}],
                  frames=16, swap_slots=1024, folio_pages=[1, 4])
    assert set(vars(r.m)) == Machine._CLONED
    assert set(vars(r.m.swap)) == SwapInfo._CLONED
    assert set(vars(r)) == Runner._CLONED


@pytest.mark.parametrize("seed", range(6))
def test_clone_behaves_like_original(seed):
    """Random walks: the clone taken mid-way runs the rest exactly as the original does, and
    running steps on the clone leaves the original untouched."""
    model = get_model(Problem(design="merged"))
    rng = random.Random(seed)
    r = model.init()
    trace = []
    for i in range(1, 25):
        a = rng.choice(model.actions(r))
        if model.step(r, a) is None:
            continue
        before = (r.m.snapshot(), r.oracle.expect.snapshot())
        c = model.step(r, a)
        assert (r.m.snapshot(), r.oracle.expect.snapshot()) == before    # original untouched
        assert model.step_in_place(r, a)
        trace.append(a)
        assert c.m.snapshot() == r.m.snapshot()
        assert c.oracle.expect.snapshot() == r.oracle.expect.snapshot()
        assert c.oracle.violations == r.oracle.violations
        assert dict(c.m.counters) == dict(r.m.counters)
        # the clone's folios (views) are the clone's, whichever way they are reached
        for off, f in c.m.swap.cache.items():
            assert f.m is c.m and c.m.folios[f.pfn] == f and f.swapcache
        for p in c.m.pages:
            assert p.folio is None or (p.folio.m is c.m and c.m.folios[p.folio.pfn] == p.folio)
    assert model.replay(trace).m.snapshot() == r.m.snapshot()


# -- alphabet ------------------------------------------------------------------------------------

def test_alphabet_has_every_operation():
    from mteswap.scenario.load import OPS
    for model in ("small", "thread"):
        ops = {s.op for s in Alphabet(Problem(model=model)).base_steps}
        assert ops == set(OPS)
    small = Alphabet(Problem()).scenario.config
    assert small.swap_slots == 1024 and small.frames == 16 and small.folio_pages == (1, 4)


# -- exhaustive search and counterexamples ---------------------------------------------------------

def test_rfc_v1_counterexample_replays(tmp_path):
    summary, status = check(tmp_path, design="rfc-v1", depth=5)
    assert status == 1
    v = summary["violation"]
    assert (v["kind"], v["step"]) == ("invariant", 3) and summary["depth"] == 3
    code, out = replay(v["files"]["yaml"])
    assert code == 1 and out["design"] == "rfc-v1"
    first = out["violations"][0]
    assert (first["kind"], first["step"], first["detail"]) == (v["kind"], v["step"], v["detail"])
    # the YAML names the design and the expected verdict
    from mteswap.scenario.load import load_scenario
    sc = load_scenario(v["files"]["yaml"])
    assert sc.design == "rfc-v1" and sc.expect == {"rfc-v1": Expected("invariant", 3, None)}
    assert len(sc.steps) == 3
    # ITF: one state per step plus the initial one, in order
    itf = json.loads(open(v["files"]["itf"]).read())
    assert [s["#meta"]["index"] for s in itf["states"]] == [0, 1, 2, 3]
    assert set(itf["vars"]) <= set(itf["states"][0])
    assert itf["states"][-1]["violations"][0]["kind"] == "invariant"
    assert "#bigint" in json.dumps(itf) or "#map" in json.dumps(itf)


def test_rfc_v1_counterexample_is_shortest(tmp_path):
    summary, status = check(tmp_path, design="rfc-v1", depth=2)
    assert status == 0 and summary["violation"] is None and summary["depth"] == 2


def test_merged_small_exhaustive_depth3(tmp_path):
    summary, status = check(tmp_path, design="merged", depth=3)
    assert status == 0 and summary["violation"] is None
    assert summary["depth"] == 3 and summary["distinct_states"] > 1000


def test_cli_json_and_exit_codes(tmp_path):
    res = CliRunner().invoke(check_app, ["--design", "rfc-v1", "--depth", "4", "--workers", "1",
                                         "--json", "--out", str(tmp_path)])
    assert res.exit_code == 1
    s = json.loads(res.stdout.splitlines()[-1])
    for key in ("design", "model", "depth", "distinct_states", "transitions", "seconds",
                "states_per_second", "violation"):
        assert key in s
    res = CliRunner().invoke(check_app, ["--depth", "2", "--workers", "1", "--json",
                                         "--out", str(tmp_path)])
    assert res.exit_code == 0 and json.loads(res.stdout.splitlines()[-1])["violation"] is None
    for bad in (["--model", "huge"], ["--set", "nope=1"], ["--set", "frames=0"],
                ["--ops", "write,jump"], ["--design", "no-such-design"], ["--depth", "0"]):
        res = CliRunner().invoke(check_app, bad + ["--workers", "1"])
        assert res.exit_code == 2, (bad, res.output)


def test_ops_and_set_restrict_the_alphabet(tmp_path):
    pr = Problem(ops=("mmap", "write", "read"), overrides=(("swap_device", "zram"),))
    alpha = Alphabet(pr)
    assert {s.op for s in alpha.base_steps} == {"mmap", "write", "read"}
    assert alpha.scenario.config.swap_device == "zram"


# -- symmetry ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("design,depth", [("merged", 3), ("rfc-v1", 4), ("folio-marker", 3)])
def test_reduction_same_verdict_fewer_states(tmp_path, design, depth):
    red, s1 = check(tmp_path, design=design, depth=depth, reduce=True)
    full, s2 = check(tmp_path, design=design, depth=depth, reduce=False)
    assert s1 == s2
    assert (red["violation"] is None) == (full["violation"] is None)
    if red["violation"]:
        # same shortest length and kind (BFS order is the same; the first violating trace too)
        assert red["violation"]["kind"] == full["violation"]["kind"]
        assert red["violation"]["step"] == full["violation"]["step"]
        assert red["violation"]["trace"] == full["violation"]["trace"]
    else:
        assert red["distinct_states"] < full["distinct_states"]


# -- workers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("design,depth", [("rfc-v1", 4), ("merged", 3)])
def test_workers_give_identical_results(tmp_path, design, depth):
    one, _ = check(tmp_path, design=design, depth=depth, workers=1)
    two, _ = check(tmp_path, design=design, depth=depth, workers=2)
    for s in (one, two):
        s.pop("seconds"), s.pop("states_per_second")
        if s["violation"]:
            s["violation"].pop("files")
    assert one == two


# -- random walks and shrinking --------------------------------------------------------------------------

def test_random_finds_and_shrinks(tmp_path):
    summary, status = check(tmp_path, design="folio-marker", random=True, walks=200, seed=0)
    assert status == 1
    v = summary["violation"]
    assert len(v["trace"]) <= v["original_length"]
    code, out = replay(v["files"]["yaml"])
    assert code == 1 and (out["violations"][0]["kind"], out["violations"][0]["step"]) == (v["kind"], v["step"])
    # the same seed gives the same walk and the same result on two workers
    again, _ = check(tmp_path, design="folio-marker", random=True, walks=200, seed=0, workers=2)
    assert again["violation"]["walk"] == v["walk"] and again["violation"]["trace"] == v["trace"]


def test_shrink_keeps_kind_and_never_grows():
    pr = Problem(design="merged")
    noisy = parse_actions(pr, [
        {"fork": {"proc": "A", "child": "B"}},
        {"exit": {"proc": "B"}},
        {"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": False}},
        "evict",
        {"stg": {"proc": "A", "vma": "buf", "pages": 0, "tag": 5}},
        "evict",
        {"mprotect": {"proc": "A", "vma": "buf", "pages": 1, "mte": True}},
        {"stg": {"proc": "A", "vma": "buf", "pages": 1, "tag": "distinct"}},
        "evict",
        {"pageout": {"proc": "A", "vma": "buf", "pages": 2, "keep_cached": True}},
        {"read": {"proc": "A", "vma": "buf", "pages": "0-3"}},
        {"read": {"proc": "A", "vma": "buf", "pages": 0}},
    ])
    v = first_violation(pr, noisy)
    assert v is not None and v.kind == "tag-check-fault"
    small, tried = shrink(pr, noisy, v.kind)
    assert len(small) < len(noisy) and tried > 0
    assert first_violation(pr, small).kind == v.kind
    assert not any(s.op == "fork" for s in small)
    assert [s.index for s in small] == list(range(1, len(small) + 1))


# -- time limit and progress ------------------------------------------------------------------

def test_time_limit_stops_cleanly_and_resume_finishes_the_same_search(tmp_path):
    """A time limit stops after a chunk: the summary says which depths were explored whole
    and how far the next one got; resuming the checkpoint without a limit ends with exactly
    the counts of an uninterrupted search."""
    full, _ = check(tmp_path, design="merged-split-fix", depth=4)
    ck = tmp_path / "ck"
    part, status = check(tmp_path, design="merged-split-fix", depth=4, time_limit=1e-9,
                         checkpoint=str(ck))
    assert status == 0 and part["stopped"] == "time limit" and part["complete"] is False
    assert part["depth"] == 0 and part["partial_depth"] == {"depth": 1, "expanded": 1, "states": 1}
    assert part["distinct_states"] < full["distinct_states"]
    while True:
        resumed, _ = check(tmp_path, resume=str(ck), time_limit=0.2)
        if not resumed["stopped"]:
            break
    assert full["depth"] == 4
    assert (resumed["distinct_states"], resumed["transitions"], resumed["depth"]) == \
        (full["distinct_states"], full["transitions"], full["depth"])
    assert resumed["partial_depth"] is None and full["stopped"] is None


def test_check_alone_has_a_minute_and_an_explicit_depth_none(tmp_path, monkeypatch):
    """`mteswap check` with no --depth runs under a 60 s limit; --depth N runs to N."""
    seen = []
    import mteswap.explore.check as chk
    real = chk.run_check
    monkeypatch.setattr(chk, "run_check", lambda o: seen.append((o.depth, o.time_limit)) or real(o))
    for args in ([], ["--depth", "2"], ["--time-limit", "5", "--depth", "2"]):
        res = CliRunner().invoke(check_app, ["--workers", "1", "--json", "--out", str(tmp_path)] + args)
        assert res.exit_code == 1 if not args else res.exit_code == 0, res.output
    assert seen == [(6, 60.0), (2, None), (2, 5.0)]
    res = CliRunner().invoke(check_app, ["--workers", "1", "--time-limit", "0", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--time-limit: expected a positive number" in res.output


def test_progress_line_estimates_the_level():
    from mteswap.explore.bfs import BfsState
    from mteswap.explore.progress import bfs_line
    st = BfsState(Problem(), 6, level=3, frontier=[()] * 400, pos=100, distinct=5000,
                  transitions=17000, elapsed=30.0, level_started=20.0)
    # 100 of 400 states of depth 4 in 10 s: 300 more take ~30 s
    assert bfs_line(st).startswith("depth 4/6: 100/400 states expanded, level ends in ~30 s")
    st.pos = 0
    assert "level ends" not in bfs_line(st)
