"""Longer `mteswap check` tests (marked slow; they still run in CI): every flawed design's
counterexample on `small`, shortest-ness one level lower, merged at depth 4, checkpoint/resume
after kill -9, and a local Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import check
from typer.testing import CliRunner

from mteswap.cli import app as mteswap_app
from mteswap.explore import checkpoint as ckpt
from mteswap.explore import model as explore_model
from mteswap.oracle import registry

pytestmark = pytest.mark.slow

FLAWED = ["split-before-swap", "rfc-v1", "rfc-v2", "rfc-v3", "restore-all-unmarked",
          "folio-marker", "merged"]


def strip(s):
    s = dict(s)
    s.pop("seconds"), s.pop("states_per_second")
    if s["violation"]:
        s["violation"] = {k: v for k, v in s["violation"].items() if k != "files"}
    return s


@pytest.mark.parametrize("design", FLAWED)
def test_flawed_design_counterexample_replays(tmp_path, design):
    summary, status = check(tmp_path, design=design, random=True, seed=0, time=60, steps=40)
    assert status == 1
    v = summary["violation"]
    res = CliRunner().invoke(mteswap_app, ["run", v["files"]["yaml"], "--json"])
    assert res.exit_code == 1
    first = json.loads(res.stdout)["violations"][0]
    assert (first["kind"], first["step"]) == (v["kind"], v["step"])
    itf = json.load(open(v["files"]["itf"]))
    assert len(itf["states"]) == v["step"] + 1


def test_random_counterexample_shortest_within_its_ops(tmp_path):
    """The 6-step S5 counterexample: exhaustive search over the ops it uses finds nothing
    at depth 5 (no shorter sequence of those ops fails)."""
    summary, _ = check(tmp_path, design="split-before-swap", random=True, seed=0, time=60)
    v = summary["violation"]
    ops = ",".join(sorted({t.split()[0] for t in v["trace"]}))
    lower, status = check(tmp_path, design="split-before-swap", depth=v["step"] - 1, ops=ops,
                          workers=2)
    assert status == 0 and lower["violation"] is None and lower["depth"] == v["step"] - 1


def test_merged_small_exhaustive_depth4(tmp_path, monkeypatch):
    """merged breaks I1 in four steps (S5: a split copies the head's PG_mte_tagged onto tails
    whose tags nobody initialised); with I1 off, the whole depth-4 space is searched and its
    counts are those from before I1 had its ghost bit (TAGS_INIT adds no state)."""
    summary, status = check(tmp_path, design="merged", depth=4, workers=2)
    v = summary["violation"]
    assert status == 1 and (v["kind"], v["step"], v["op"]) == ("invariant", 4, "pageout")
    assert v["detail"].startswith("I1: pfn 1 is PG_mte_tagged")
    monkeypatch.setattr(registry, "DISABLED", frozenset({"I1"}))
    monkeypatch.setattr(explore_model, "_MODELS", {})   # a root runner made with I1 off
    summary, status = check(tmp_path, design="merged", depth=4, workers=1, por=False)
    assert status == 0 and summary["depth"] == 4
    # Issue 13 moved these from (39990, 140636): 6.12's per-CPU order-0 `next` offset
    # (swapinfo) tells apart states whose next order-0 slot differs, frames nobody tagged hold
    # tags.UNKNOWN rather than 0 (no longer equal to zeroed ones), and drop_caches is one more
    # operation (more transitions, no new state at this depth). Then from (40809, 142602):
    # mprotect(PROT_MTE) of pages of a PROT_MTE mapping no longer splits the VMA, and pieces
    # whose flags become equal merge (model/vma.py), so states that differed only in VMA
    # boundaries are one state; and (33200, 121320) -> these: reclaim/pageout keep_cached of a
    # zero-filled folio frees it as keep_cached false does (no I/O, nothing under writeback);
    # and (30348, 114795) -> these: every order has its own `next` offset in the snapshot
    # (swapinfo: a 64 KiB folio's next slots), so states differing only there are apart;
    # and (30644, 114795) -> these: 6.12's per-CPU swap slot cache (model/swap_slots.py: a
    # batch of order-0 slots and a return list) is part of the state too (no new transitions);
    # and (30950, 114795) -> these: the tags' write-generation ghost (docs/concurrency.md §4)
    # tells apart states whose frames hold equal tags of different writes (no new transitions).
    assert (summary["distinct_states"], summary["transitions"]) == (31095, 114795)


def _cmd(tmp_path, *extra):
    return [sys.executable, "-m", "mteswap.explore.cli", "--design", "merged", "--depth", "4",
            "--ops", "mmap,write,read,reclaim,fork,split", "--workers", "1", "--json",
            "--out", str(tmp_path / "out"), *extra]


def test_checkpoint_resume_after_kill(tmp_path):
    ck = tmp_path / "ck"
    full = subprocess.run(_cmd(tmp_path), capture_output=True, text=True, timeout=600)
    want = strip(json.loads(full.stdout))
    assert want["distinct_states"] > 1000
    proc = subprocess.Popen(_cmd(tmp_path, "--checkpoint", str(ck), "--checkpoint-every", "0.2"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if (ck / ckpt.FILE).exists():
            st = ckpt.load(str(ck))["state"]
            if st.level >= 3 and st.pos > 0:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = ckpt.load(str(ck))["state"]
    assert not st.done                            # killed mid-search
    resumed = subprocess.run([sys.executable, "-m", "mteswap.explore.cli", "--resume", str(ck),
                              "--workers", "1", "--json", "--out", str(tmp_path / "out2")],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    got = strip(json.loads(resumed.stdout))
    assert got == want


def test_dask_local_cluster_same_counterexample(tmp_path):
    distributed = pytest.importorskip("distributed")
    one, _ = check(tmp_path, design="rfc-v1", depth=4)
    rnd, _ = check(tmp_path, design="folio-marker", random=True, walks=200, seed=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask, status = check(tmp_path, design="rfc-v1", depth=4, scheduler=cluster.scheduler_address)
        assert status == 1
        drnd, _ = check(tmp_path, design="folio-marker", random=True, walks=200, seed=0,
                        scheduler=cluster.scheduler_address)
    assert strip(dask) == strip(one)
    assert drnd["violation"]["walk"] == rnd["violation"]["walk"]
    assert drnd["violation"]["trace"] == rnd["violation"]["trace"]


def test_random_checkpoint_resume_after_kill(tmp_path):
    """Random mode: walks are seeded shards, so a search killed mid-way and resumed ends with
    the same walks, transitions and verdict as an uninterrupted one."""
    cmd = [sys.executable, "-m", "mteswap.explore.cli", "--design", "merged-split-fix",
           "--random", "--walks", "4000", "--steps", "40", "--seed", "7", "--workers", "1",
           "--json", "--out", str(tmp_path / "out")]
    full = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    want = strip(json.loads(full.stdout))
    assert want["walks"] == 4000 and want["violation"] is None
    ck = tmp_path / "ck"
    proc = subprocess.Popen(cmd + ["--checkpoint", str(ck), "--checkpoint-every", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if (ck / ckpt.FILE).exists() and ckpt.load(str(ck))["state"].next_walk >= 128:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = ckpt.load(str(ck))["state"]
    assert 0 < st.next_walk < 4000                # killed mid-search
    resumed = subprocess.run([sys.executable, "-m", "mteswap.explore.cli", "--resume", str(ck),
                              "--workers", "1", "--json", "--out", str(tmp_path / "out2")],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert strip(json.loads(resumed.stdout)) == want
