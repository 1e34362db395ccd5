"""`mteswap cost` groundwork (issue 6): workloads, the cost runner, the discussion's figure."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from mteswap.cli import app as mteswap_app
from mteswap.cost.cli import cost_command
from mteswap.cost.run import COST_COUNTERS, page_ops, run_design
from mteswap.cost.workloads import WORKLOADS, build
from mteswap.designs import get_design
from mteswap.scenario.load import parse_scenario
from mteswap.scenario.runner import Runner


def refault_one_folio(design: str, map_whole_folio: bool):
    """One 16-page (64 KiB) MTE folio, written with distinct tags, written out but kept in
    the swap cache, then refaulted one page per step in a random order."""
    w = build("refault", pages=16, seed=7, map_whole_folio=map_whole_folio)
    return run_design(w.scenario(), design, check_state=True)


# -- the discussion's figure (Barry Song, 2023-11-17: "16 x 16") ---------------------------------

def test_merged_without_map_whole_folio_costs_16_by_16():
    r = refault_one_folio("merged", map_whole_folio=False)
    assert r.violations == 0
    c = r.counters
    # 16 faults, each a swap-cache hit whose restore walks the whole folio: 16 x 16.
    assert c["restore_calls"] == 16
    assert c["restore_page_iterations"] == 256
    assert c["swap_cache_hits"] == 16
    # Every walk is an early exit: the swap-cache folio's pages never lost their tags.
    assert c["tag_restores"] == 0
    # 1 fault for the first write (one 16-page anonymous folio) + 16 refaults.
    assert c["faults"] == 17
    assert (c["tag_saves"], c["swap_outs"], c["large_swap_outs"], c["pswpout"]) == (16, 1, 1, 16)


def test_merged_with_map_whole_folio_costs_16():
    c = refault_one_folio("merged", map_whole_folio=True).counters
    assert (c["restore_calls"], c["restore_page_iterations"], c["tag_restores"]) == (1, 16, 0)
    assert c["faults"] == 2


def test_restore_all_unmarked_restores_256_pages_tags():
    r = refault_one_folio("restore-all-unmarked", map_whole_folio=False)
    assert r.counters["tag_restores"] == 256
    assert r.counters["restore_page_iterations"] == 256
    # Nothing retags between the refaults here, so rewriting is wasteful but not wrong.
    assert r.violations == 0
    whole = refault_one_folio("restore-all-unmarked", map_whole_folio=True)
    assert whole.counters["tag_restores"] == 16


def test_split_before_swap_on_one_folio():
    c = refault_one_folio("split-before-swap", map_whole_folio=False).counters
    assert (c["splits"], c["swpout_fallback"], c["swap_slot_allocs"], c["swap_outs"]) == (1, 1, 16, 16)
    assert (c["restore_calls"], c["restore_page_iterations"]) == (16, 16)


# -- workloads -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_runs_clean_and_state_check_does_not_change_counters(name):
    w = build(name, pages=128, seed=3)
    sc = w.scenario()
    fast = run_design(sc, "merged", check_state=False)
    slow = run_design(sc, "merged", check_state=True)
    assert slow.violations == 0 and fast.violations == 0
    assert fast.raw == slow.raw
    assert fast.page_ops == page_ops(sc) > 0


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_is_deterministic_and_parses_as_yaml(name):
    a, b = build(name, pages=64, seed=5), build(name, pages=64, seed=5)
    assert a.steps == b.steps and a.config == b.config
    parsed = parse_scenario(a.to_yaml(), "w.yaml")
    assert parsed.steps == a.scenario().steps
    assert parsed.config == a.config


def test_seed_changes_random_workloads():
    assert build("refault", pages=64, seed=1).steps != build("refault", pages=64, seed=2).steps
    assert build("allocator-churn", pages=64, seed=1).steps != build("allocator-churn", pages=64, seed=2).steps


def test_bad_parameters():
    with pytest.raises(ValueError):
        build("sequential", pages=100)
    with pytest.raises(ValueError):
        build("nope")


@pytest.mark.parametrize("name,design", [("sequential", "merged"), ("refault", "restore-all-unmarked"),
                                         ("allocator-churn", "merged"), ("zygote", "split-before-swap"),
                                         ("partial-mte", "merged")])
def test_written_scenario_gives_same_counters_through_mteswap_run(tmp_path, name, design):
    w = build(name, pages=64, seed=11)
    path = tmp_path / f"{name}.yaml"
    path.write_text(w.to_yaml())
    res = CliRunner().invoke(mteswap_app, ["run", str(path), "--json", "--design", design])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.splitlines()[0])
    ours = run_design(w.scenario(), design, check_state=False)
    assert out["counters"] == ours.raw
    assert out["verdict"] == "pass"


def test_runner_checks_state_by_default():
    sc = build("sequential", pages=16).scenario()
    assert Runner(sc, get_design("merged")).check_state is True


def test_cost_command_json():
    app = typer.Typer()
    app.command()(cost_command)
    res = CliRunner().invoke(app, ["--workload", "refault", "--pages", "16", "--seed", "7",
                                   "--no-map-whole-folio", "--designs", "merged,restore-all-unmarked",
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["seed"] == 7 and doc["workload"] == "refault"
    by = {r["design"]: r["counters"] for r in doc["results"]}
    assert by["merged"]["restore_page_iterations"] == 256
    assert by["restore-all-unmarked"]["tag_restores"] == 256
    assert set(by["merged"]) == set(COST_COUNTERS)


def test_cost_command_bad_input():
    app = typer.Typer()
    app.command()(cost_command)
    assert CliRunner().invoke(app, ["--workload", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["--designs", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["--pages", "10"]).exit_code == 2
    assert CliRunner().invoke(app, ["--json", "--markdown"]).exit_code == 2
