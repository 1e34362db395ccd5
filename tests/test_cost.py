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


# ================================================================================================
# `mteswap cost` through the real CLI (helpers.invoke): counters computed by hand from the kernel
# paths the model implements, the estimate, the options, and the bad-input rule (one line on
# stderr naming the option/file/line, exit 2, nothing on stdout, no --plot/--write-* file).
# ================================================================================================

import re  # noqa: E402

from helpers import invoke  # noqa: E402

from mteswap.cost.model import CostParams, estimate  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMING = ("seconds", "page_ops_per_s")          # the only fields that differ between two runs


def cost(*args):
    return invoke("cost", *args)


def cost_json(*args) -> dict:
    res = cost(*args, "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stderr == ""
    return json.loads(res.stdout)


def counters(*args, design: str = "merged") -> dict:
    doc = cost_json(*args, "--designs", design)
    (result,) = doc["results"]
    assert result["design"] == design and result["violations"] == 0
    return result["counters"]


def untimed(doc: dict) -> dict:
    return {**doc, "results": [{k: v for k, v in r.items() if k not in TIMING}
                               for r in doc["results"]]}


def rejected(res, *names: str) -> str:
    """A bad-input exit: 2, one line on stderr naming every one of `names`, empty stdout."""
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mteswap: error: "), res.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def table_rows(text: str) -> dict[str, list[str]]:
    """The plain-text table's rows: label -> cells (first two lines are title and header)."""
    rows = {}
    for line in text.splitlines()[2:]:
        label, *cells = line.split()
        rows[label] = cells
    return rows


def all_counters(**nonzero) -> dict:
    """Every reported counter: 0 unless given."""
    assert set(nonzero) <= set(COST_COUNTERS)
    return {name: nonzero.get(name, 0) for name in COST_COUNTERS}


# -- 1. counters computed by hand -----------------------------------------------------------------
#
# Every workload maps one MTE heap at a 16-aligned vpn (do_mmap aligns to the largest folio size)
# with folio_pages (1, 16) and writes every page (tag=distinct: STG, then a store). The first store
# into each aligned 16-page range faults (do_anonymous_page, write): the range has no PTE, so one
# 64 KiB folio is allocated and all 16 PTEs are mapped writable; set_ptes -> mte_sync_tags sets
# PG_mte_tagged on all 16. So the fill costs pages/16 faults. The swap device has
# round_up(pages, 512) + 1024 slots: cluster 0 (holds the header, order 0) and free clusters 1, 2.
#
# `reclaim` (shrink_folio_list) of a 16-page folio under merged: add_to_swap -> folio_alloc_swap
# gets 16 aligned slots in the first free cluster (offset 512: 1 swap_slot_alloc), try_to_unmap
# installs 16 swap PTEs (swap_map = 1 | HAS_CACHE), swap_writepage -> arch_prepare_to_swap saves
# 16 buffers (16 tag_saves, 16 x 128 = 2048 bytes) and writes the folio (1 swap_out, 1
# large_swap_out, 16 pswpout); without keep_cached __remove_mapping drops the cache pin
# (swap_map = 1) and frees the folio.

SEQ16_SWAP_OUT = dict(swap_slot_allocs=1, tag_saves=16, swap_outs=1, large_swap_outs=1,
                      pswpout=16, tag_bytes_peak=16 * 128)


def test_sequential_16_pages_on_ssd_by_hand():
    # ssd is not SWP_SYNCHRONOUS_IO, so every read of a swap PTE goes do_swap_page ->
    # swapin_readahead: an order-0 folio (readahead not modelled: page-cluster 0) added to the
    # swap cache and read (1 swap_in, 1 pswpin), arch_swap_restore of that one page (1 call,
    # 1 iteration, 1 restore: the fresh page has no PG_mte_lock). swap_free_nr leaves the slot
    # cache-only; the folio stays in the swap cache (a read fault, swap not half full), so no
    # slot is freed and no buffer is invalidated: the peak stays 2048.
    # Faults: 1 (fill) + 16 (one swap fault per page).
    c = counters("--workload", "sequential", "--pages", 16, "--swap-device", "ssd")
    assert c == all_counters(**SEQ16_SWAP_OUT, faults=17, swap_ins=16, pswpin=16,
                             restore_calls=16, restore_page_iterations=16, tag_restores=16)


def test_sequential_16_pages_on_zram_by_hand():
    # zram is SWP_SYNCHRONOUS_IO and each slot has one reference, so the first read (vpn 0)
    # skips the swap cache: alloc_swap_folio (v6.12 large swap-in) finds offset 512 % 16 == vpn
    # % 16 and can_swapin_thp true (16 contiguous swap PTEs, none zero-mapped, no HAS_CACHE), so
    # one 16-page folio is read (1 swap_in, 16 pswpin) and all 16 PTEs are mapped at once: one
    # arch_swap_restore walking 16 pages, restoring all 16. The other 15 reads do not fault.
    # swapcache_clear then frees the 16 slots, invalidating the 16 buffers (peak still 2048).
    c = counters("--workload", "sequential", "--pages", 16, "--swap-device", "zram")
    assert c == all_counters(**SEQ16_SWAP_OUT, faults=2, swap_ins=1, pswpin=16,
                             restore_calls=1, restore_page_iterations=16, tag_restores=16)
    raw = run_design(build("sequential", pages=16, swap_device="zram").scenario(), "merged").raw
    assert (raw["large_swap_ins"], raw["tag_invalidations"], raw["tag_bytes"]) == (1, 16, 0)


@pytest.mark.parametrize("whole", [False, True])
def test_refault_16_pages_by_hand(whole):
    # reclaim keep_cached=1: the folio is written (as above) but stays in the swap cache
    # (swap_map = 1 | HAS_CACHE), its pages keeping PG_mte_tagged/PG_mte_lock. Every read of a
    # swap PTE is a swap-cache hit (no I/O) and merged's arch_swap_restore walks the whole folio
    # from folio_swap(entry): 16 iterations, all early exits (try_page_mte_tagging fails), so
    # tag_restores = 0.
    # v6.10 (--no-map-whole-folio): each fault maps one page -> 16 faults, 16 hits, 16 calls,
    # 16 x 16 = 256 iterations. v6.11: the first fault maps all 16 PTEs (same folio, contiguous
    # entries) -> 1 fault, 1 hit, 1 call, 16 iterations. Plus the 1 fill fault.
    flag = "--map-whole-folio" if whole else "--no-map-whole-folio"
    c = counters("--workload", "refault", "--pages", 16, "--seed", 7, flag)
    refaults = 1 if whole else 16
    assert c == all_counters(**SEQ16_SWAP_OUT, faults=1 + refaults, swap_cache_hits=refaults,
                             restore_calls=refaults, restore_page_iterations=16 * refaults)


def test_split_before_swap_sequential_32_pages_by_hand():
    # Two 16-page folios (2 fill faults). split-before-swap: arch_thp_swp_supported() is false,
    # so folio_alloc_swap refuses a large folio without looking for slots (not a slot-alloc
    # failure); shrink_folio_list counts THP_SWPOUT_FALLBACK, splits the folio (the 15 tails
    # come next) and swaps the head alone: per folio 1 split, 1 fallback. Then all
    # 32 pages go out one by one: 32 order-0 slot allocations, 32 writes of 1 page, 0 large,
    # 32 buffers (32 x 128 = 4096 bytes at the peak).
    # Reading back on ssd: 32 order-0 swap-ins through the swap cache, each restoring its page.
    c = counters("--workload", "sequential", "--pages", 32, design="split-before-swap")
    assert c == all_counters(faults=2 + 32, splits=2, swpout_fallback=2, swap_slot_allocs=32,
                             swap_outs=32, pswpout=32, tag_saves=32, tag_bytes_peak=32 * 128,
                             swap_ins=32, pswpin=32, restore_calls=32,
                             restore_page_iterations=32, tag_restores=32)
    # Slots on 6.12: the slot cache's batch from 512; reclaim writes a split folio's tails
    # right after its head, in order (vmscan._queue_tails), so folio 0 gets 512-527 and folio 1
    # 528-543, contiguous and aligned: on zram each first read brings 16 pages back as one large
    # folio, of which split-before-swap restores one page, and 30 pages fault on their tags
    # (as the bundled roundtrip-large-zram shows). 7.2 writes the tails from the last page
    # down: no read can be large, and zram reads the same 32 order-0 folios as ssd.
    doc = cost_json("--workload", "sequential", "--pages", 32, "--swap-device", "zram",
                    "--designs", "split-before-swap")
    (result,) = doc["results"]
    zc = result["counters"]
    assert result["violations"] == 30
    assert (zc["swap_ins"], zc["pswpin"], zc["restore_calls"], zc["faults"]) == (2, 32, 2, 4)
    assert counters("--workload", "sequential", "--pages", 32, "--swap-device", "zram",
                    "--kernel", "7.2", design="split-before-swap") == c


@pytest.mark.parametrize("device", ["ssd", "zram"])
def test_allocator_churn_16_pages_one_hole_by_hand(device):
    # Fill (1 fault), swap the folio out as above (swap_map = 1 per slot, out of the cache).
    # MADV_DONTNEED of one page: zap_pte_range -> free_swap_and_cache_nr(entry, 1): the slot's
    # count drops to 0, swap_range_free invalidates its buffer (peak stays 2048).
    # Reading all 16: the hole has no PTE, so a read fault maps the zero page (1 fault, no I/O,
    # no restore). The 15 others fault one by one: on ssd via the swap cache, on zram via
    # skip-swapcache, where can_swapin_thp fails on the hole (pte_none breaks the batch): order
    # 0 either way. 15 swap-ins of one page, 15 one-page restores. Faults 1 + 1 + 15 = 17.
    res = cost("--workload", "allocator-churn", "--pages", 16, "--swap-device", device,
               "--designs", "merged")
    assert res.exit_code == 0, res.stderr
    want = all_counters(**SEQ16_SWAP_OUT, faults=17, swap_ins=15, pswpin=15, restore_calls=15,
                        restore_page_iterations=15, tag_restores=15)
    rows = table_rows(res.stdout)
    # Every counter row the table shows, with exactly these values (and nothing else numeric).
    assert [k for k in rows if k in COST_COUNTERS] == list(COST_COUNTERS)
    assert {k: int(rows[k][0]) for k in COST_COUNTERS} == want
    assert rows["violations"] == ["0"]
    assert counters("--workload", "allocator-churn", "--pages", 16, "--swap-device", device) == want
    raw = run_design(build("allocator-churn", pages=16, swap_device=device).scenario(), "merged").raw
    # 1 invalidation for the hole, plus on zram 15 as each skip-swapcache read frees its slot.
    assert raw["zero_page_maps"] == 1
    assert raw["tag_invalidations"] == (1 if device == "ssd" else 16)


def test_rotational_device_cannot_swap_out_large_folios_by_hand():
    # No cluster info on a rotational disk: a 16-slot request fails (1 swap_slot_alloc_fail),
    # merged splits the folio (1 split, 1 fallback) and swaps 16 order-0 pages out.
    c = counters("--workload", "sequential", "--pages", 16, "--swap-device", "rotational")
    assert c == all_counters(faults=17, splits=1, swpout_fallback=1, swap_slot_alloc_fails=1,
                             swap_slot_allocs=16, swap_outs=16, pswpout=16, tag_saves=16,
                             tag_bytes_peak=2048, swap_ins=16, pswpin=16, restore_calls=16,
                             restore_page_iterations=16, tag_restores=16)


# -- 2. the estimate ------------------------------------------------------------------------------

def test_estimate_of_sequential_16_on_ssd_by_hand():
    # Defaults (cost/model.py), counters from test_sequential_16_pages_on_ssd_by_hand:
    #   faults 17 x 1000 + swap_outs 1 x 2191 + pswpout 16 x 32876 + swap_ins 16 x 2191
    #   + pswpin 16 x 14495 + slot allocs 1 x 300 + tag_saves 16 x (12.84 + 200 + 100)
    #   + restore_calls 16 x 10 + tag_restores 16 x (20 + 200) = 821,168.44 ns
    doc = cost_json("--workload", "sequential", "--pages", 16, "--designs", "merged")
    assert doc["results"][0]["estimate_ns"]["total"] == pytest.approx(821168.44, abs=0.005)
    res = cost("--workload", "sequential", "--pages", 16, "--designs", "merged")
    assert table_rows(res.stdout)["estimated"] == ["ms", "0.821"]


@pytest.mark.parametrize("args", [
    ("--workload", "sequential", "--swap-device", "ssd"),
    ("--workload", "sequential", "--swap-device", "zram"),      # raw-only tag_invalidations
    ("--workload", "allocator-churn"),
    ("--workload", "refault", "--no-map-whole-folio"),
])
def test_json_estimate_is_the_cost_model_of_the_raw_counters(args):
    doc = cost_json(*args, "--pages", 32, "--designs", "merged,split-before-swap")
    w = build(args[1], pages=32, **({"swap_device": args[3]} if "--swap-device" in args else {}),
              **({"map_whole_folio": False} if "--no-map-whole-folio" in args else {}))
    for result in doc["results"]:
        raw = run_design(w.scenario(), result["design"]).raw
        want = {k: round(v, 2) for k, v in estimate(raw).items()}
        assert result["estimate_ns"] == want
    assert doc["cost_params"] == vars(CostParams())


def test_cost_param_fault_ns_0_lowers_the_estimate_by_faults_times_1000():
    args = ("--workload", "refault", "--pages", 32, "--no-map-whole-folio",
            "--designs", "merged,rfc-v1")
    base = cost_json(*args)
    free = cost_json(*args, "--cost-param", "fault_ns=0")
    assert free["cost_params"] == {**vars(CostParams()), "fault_ns": 0.0}
    for b, f in zip(base["results"], free["results"]):
        faults = b["counters"]["faults"]
        assert faults == 2 + 32 and f["counters"] == b["counters"]
        assert (b["estimate_ns"]["faults"], f["estimate_ns"]["faults"]) == (faults * 1000.0, 0.0)
        others = lambda e: {k: v for k, v in e.items() if k not in ("faults", "total")}  # noqa: E731
        assert others(f["estimate_ns"]) == others(b["estimate_ns"])
        # Totals are rounded to 0.01 ns in the JSON.
        assert b["estimate_ns"]["total"] - f["estimate_ns"]["total"] == pytest.approx(
            faults * 1000, abs=0.011)


@pytest.mark.parametrize("item", ["fault_ns", "bogus=1", "fault_ns=-1", "fault_ns=abc",
                                  "fault_ns=inf", "fault_ns=nan", "=5", "fault_ns="])
def test_bad_cost_param_is_rejected_naming_the_option(item):
    line = rejected(cost("--pages", 16, "--designs", "merged", "--json", "--cost-param", item),
                    "--cost-param")
    assert repr(item) in line


def test_one_bad_cost_param_among_good_ones_is_rejected():
    rejected(cost("--pages", 16, "--cost-param", "fault_ns=1", "--cost-param", "split_ns=-2"),
             "--cost-param", "'split_ns=-2'")


# -- 3. compressed tag storage --------------------------------------------------------------------

@pytest.mark.parametrize("workload,device", [("sequential", "ssd"), ("sequential", "zram"),
                                             ("refault", "ssd"), ("allocator-churn", "ssd")])
def test_compressed_storage_reports_both_peaks(workload, device):
    args = ("--workload", workload, "--pages", 32, "--swap-device", device,
            "--designs", "merged,split-before-swap")
    plain = cost_json(*args)
    comp = cost_json(*args, "--tag-storage", "compressed")
    assert (plain["tag_storage"], comp["tag_storage"]) == ("plain", "compressed")
    for p, c in zip(plain["results"], comp["results"]):
        assert list(c["counters"]) == list(COST_COUNTERS) + ["tag_bytes_peak_compressed"]
        assert list(p["counters"]) == list(COST_COUNTERS)
        # tag_bytes_peak stays plain bytes (128 per saved page: 32 pages here) ...
        assert c["counters"]["tag_bytes_peak"] == p["counters"]["tag_bytes_peak"] == 32 * 128
        # ... and every page is uniformly tagged (one run), so every save is an inline handle.
        assert c["counters"]["tag_bytes_peak_compressed"] == 0
        assert {k: v for k, v in c["counters"].items() if k != "tag_bytes_peak_compressed"} \
            == p["counters"]
    res = cost(*args, "--tag-storage", "compressed")
    labels = [line.split()[0] for line in res.stdout.splitlines()[2:]]
    i = labels.index("tag_bytes_peak")
    assert labels[i + 1] == "tag_bytes_peak_compressed"
    assert table_rows(res.stdout)["tag_bytes_peak_compressed"] == ["0", "0"]
    assert "tag_bytes_peak_compressed" not in cost(*args).stdout
    assert "tag_storage=compressed" in res.stdout.splitlines()[0]


def test_bad_tag_storage_is_rejected():
    line = rejected(cost("--pages", 16, "--tag-storage", "bogus"), "--tag-storage")
    assert "'bogus'" in line


# -- 4. traces ------------------------------------------------------------------------------------

@pytest.mark.parametrize("workload,device", [("sequential", "ssd"), ("sequential", "zram"),
                                             ("zygote", "ssd"), ("allocator-churn", "zram")])
def test_written_trace_replays_to_the_same_counters(tmp_path, workload, device):
    path = tmp_path / "w.trace"
    gen = cost_json("--workload", workload, "--pages", 32, "--seed", 5, "--swap-device", device,
                    "--write-trace", path)
    assert path.read_text().startswith("# mteswap trace")
    replay = cost_json("--trace", path)
    assert replay["workload"] == "trace"
    assert (replay["swap_device"], replay["tag_storage"]) == (device, "plain")
    assert [r["design"] for r in replay["results"]] == [r["design"] for r in gen["results"]]
    assert len(gen["results"]) == len(BUILTIN_NAMES) > 1
    for g, r in zip(gen["results"], replay["results"]):
        assert r["counters"] == g["counters"], g["design"]
        assert (r["violations"], r["steps"], r["page_ops"]) == (g["violations"], g["steps"], g["page_ops"])
        assert r["estimate_ns"] == g["estimate_ns"]
    # The same trace with --tag-storage compressed: the compressed peak appears.
    comp = cost_json("--trace", path, "--tag-storage", "compressed", "--designs", "merged")
    assert comp["tag_storage"] == "compressed"
    assert comp["results"][0]["counters"]["tag_bytes_peak_compressed"] == 0


from mteswap.designs import BUILTIN as BUILTIN_NAMES  # noqa: E402

GOOD_HEAD = "# a trace\nmmap proc=A vma=heap pages=16 mte=1\nwrite proc=A vma=heap pages=0-15 tag=distinct\n"


@pytest.mark.parametrize("bad,field", [
    ("write proc=A vma=heap pages=0-15 bogus=1", "bogus"),
    ("write proc=A vma=heap pages=x-y", "pages"),
    ("write proc=A vma=heap pages=3-1,", "pages"),
    ("read proc=A vma=heap pages", "pages"),                 # missing '=VALUE'
    ("mmap proc=A vma=more pages=16 mte=2", "mte"),
    ("read proc=A proc=A vma=heap pages=0", "proc"),          # given twice
    ("frobnicate proc=A", None),                               # unknown op
    ("reclaim proc=A vma=heap pages=99", "pages"),             # beyond the VMA's 16 pages
])
def test_trace_with_a_bad_line_is_rejected_naming_file_and_line(tmp_path, bad, field):
    path = tmp_path / "bad.trace"
    path.write_text(GOOD_HEAD + "\n" + bad + "\nread proc=A vma=heap pages=0-15\n")
    outs = [tmp_path / "p.png", tmp_path / "s.yaml", tmp_path / "t.trace"]
    res = cost("--trace", path, "--json", "--plot", outs[0], "--write-scenario", outs[1],
               "--write-trace", outs[2])
    line = rejected(res, f"{path}: line 5")
    if field is not None:
        assert f"field '{field}'" in line
    assert not any(p.exists() for p in outs)


@pytest.mark.parametrize("bad,lineno,message", [
    ("read proc=A vma=stack pages=0", 5, "no VMA 'stack'"),
    ("read proc=B vma=heap pages=0", 5, "no process 'B'"),
    ("exit proc=A\nread proc=A vma=heap pages=0", 6, "exited"),
])
def test_trace_step_that_fails_when_run_is_rejected_naming_the_line(tmp_path, bad, lineno, message):
    path = tmp_path / "run.trace"
    path.write_text(GOOD_HEAD + "\n" + bad + "\n")
    outs = [tmp_path / "p.png", tmp_path / "s.yaml", tmp_path / "t.trace"]
    res = cost("--trace", path, "--designs", "merged,rfc-v2", "--plot", outs[0],
               "--write-scenario", outs[1], "--write-trace", outs[2])
    line = rejected(res, f"{path}: line {lineno}", message)
    assert not any(p.exists() for p in outs)
    assert line


def test_trace_that_runs_out_of_frames_names_the_line(tmp_path):
    path = tmp_path / "oom.trace"
    path.write_text("config frames=16\nmmap proc=A vma=heap pages=64 mte=1\n"
                    "write proc=A vma=heap pages=0-63\n")
    rejected(cost("--trace", path, "--designs", "merged"), f"{path}: line 3 (write)", "frames")


def test_missing_trace_file_is_rejected(tmp_path):
    rejected(cost("--trace", tmp_path / "nope.trace"), str(tmp_path / "nope.trace"), "cannot read")


# -- 5. --plot and the other output files ---------------------------------------------------------

def test_plot_and_side_files_are_written_on_success(tmp_path):
    png, yml, trc = tmp_path / "c.png", tmp_path / "s.yaml", tmp_path / "t.trace"
    res = cost("--workload", "refault", "--pages", 16, "--designs", "merged,split-before-swap",
               "--plot", png, "--write-scenario", yml, "--write-trace", trc)
    assert res.exit_code == 0, res.stderr
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 1000
    assert parse_scenario(yml.read_text(), "s.yaml").steps == build("refault", pages=16).scenario().steps
    assert trc.read_text().startswith("# mteswap trace")


@pytest.mark.parametrize("bad", [
    ("--designs", "merged,nope"),
    ("--designs", " , "),
    ("--cost-param", "nope=1"),
    ("--tag-storage", "bogus"),
    ("--swap-device", "floppy"),
    ("--pages", "17"),
    ("--workload", "nope"),
    ("--json", "--markdown"),
])
def test_bad_input_leaves_no_output_file(tmp_path, bad):
    outs = [tmp_path / "p.png", tmp_path / "s.yaml", tmp_path / "t.trace"]
    res = cost("--pages", 16, "--plot", outs[0], "--write-scenario", outs[1],
               "--write-trace", outs[2], *bad)
    rejected(res, bad[0])
    assert list(tmp_path.iterdir()) == []


def test_plot_must_be_a_png(tmp_path):
    out = tmp_path / "x.jpg"
    line = rejected(cost("--pages", 16, "--designs", "merged", "--plot", out), "--plot")
    assert str(out) in line
    assert list(tmp_path.iterdir()) == []


def test_side_file_that_is_a_directory_is_rejected_before_anything_is_written(tmp_path):
    # Found by these tests: --write-trace/--write-scenario naming a directory used to end in a
    # traceback (exit 1) after the plot had been written.
    png = tmp_path / "p.png"
    for option in ("--write-trace", "--write-scenario"):
        res = cost("--pages", 16, "--designs", "merged", "--plot", png, option, tmp_path)
        rejected(res, str(tmp_path), "directory")
        assert not png.exists()


def test_plot_into_a_missing_directory_is_rejected(tmp_path):
    out = tmp_path / "no" / "p.png"
    yml = tmp_path / "s.yaml"
    rejected(cost("--pages", 16, "--designs", "merged", "--plot", out, "--write-scenario", yml),
             "--plot")
    assert list(tmp_path.iterdir()) == []


# -- 6. progress ----------------------------------------------------------------------------------

def test_progress_forced_on_and_off():
    args = ("--workload", "sequential", "--pages", 16, "--designs", "merged,rfc-v3", "--markdown")
    on = cost(*args, "--progress")
    off = cost(*args, "--no-progress")
    default = cost(*args)                          # stderr is not a terminal here: no bar
    assert on.exit_code == off.exit_code == default.exit_code == 0
    assert "sequential × merged" in on.stderr and "sequential × rfc-v3" in on.stderr
    assert "4/4" in on.stderr                      # 4 steps: mmap, write, reclaim, read
    assert off.stderr == "" and default.stderr == ""
    assert on.stdout == off.stdout == default.stdout and "| faults | 17 | 17 |" in on.stdout


# -- 7. swap device -------------------------------------------------------------------------------

@pytest.mark.parametrize("pages", [16, 48])
def test_swap_device_changes_swap_ins_as_computed(pages):
    # ssd: one order-0 read per page; zram: one 16-page read per folio (see the 16-page tests).
    folios = pages // 16
    ssd = counters("--workload", "sequential", "--pages", pages, "--swap-device", "ssd")
    zram = counters("--workload", "sequential", "--pages", pages, "--swap-device", "zram")
    assert (ssd["swap_ins"], ssd["pswpin"], ssd["faults"]) == (pages, pages, folios + pages)
    assert (zram["swap_ins"], zram["pswpin"], zram["faults"]) == (folios, pages, 2 * folios)
    assert ssd["swap_outs"] == zram["swap_outs"] == ssd["large_swap_outs"] == folios
    doc = cost_json("--workload", "sequential", "--pages", pages, "--swap-device", "zram",
                    "--designs", "merged")
    assert doc["swap_device"] == "zram" and doc["params"]["swap_device"] == "zram"


def test_bad_swap_device_is_rejected():
    line = rejected(cost("--pages", 16, "--swap-device", "floppy"), "--swap-device")
    assert "'floppy'" in line


# -- 8. seed --------------------------------------------------------------------------------------

@pytest.mark.parametrize("workload", ["allocator-churn", "refault", "zygote"])
def test_same_seed_same_counters(workload):
    args = ("--workload", workload, "--pages", 64, "--seed", 42, "--designs", "merged,rfc-v1")
    a, b = cost_json(*args), cost_json(*args)
    assert a["seed"] == b["seed"] == 42
    assert untimed(a) == untimed(b)


def test_seed_changes_the_allocator_churn_steps(tmp_path):
    def trace(seed: int, name: str) -> list[str]:
        path = tmp_path / name
        res = cost("--workload", "allocator-churn", "--pages", 64, "--seed", seed,
                   "--designs", "merged", "--write-trace", path)
        assert res.exit_code == 0, res.stderr
        return path.read_text().splitlines()

    one, again, two = trace(1, "a"), trace(1, "b"), trace(2, "c")
    assert one == again
    assert "seed=1" in one[0] and "seed=2" in two[0]
    steps = lambda lines: [x for x in lines if not x.startswith(("#", "config"))]  # noqa: E731
    # Same shape (mmap, write, reclaim, 4 dontneed, read), different holes.
    assert len(steps(one)) == len(steps(two)) == 8
    assert [x.split()[0] for x in steps(one)] == [x.split()[0] for x in steps(two)]
    holes = lambda lines: [x for x in steps(lines) if x.startswith("dontneed")]  # noqa: E731
    assert holes(one) != holes(two)
    # One hole per 16-page range, inside it.
    for n, line in enumerate(holes(one)):
        page = int(re.search(r"pages=(\d+),?$", line).group(1))
        assert 16 * n <= page < 16 * (n + 1)


@pytest.mark.parametrize("pages", [0, -16, 17, 8, 262144 + 16])
def test_bad_pages_is_rejected_naming_the_option(pages):
    # Found by these tests: the message used to name --workload only ("--workload sequential:
    # pages must be ...").
    line = rejected(cost("--pages", pages, "--designs", "merged"), "--pages")
    assert line.endswith(f"got {pages}")


@pytest.mark.parametrize("option", [("--pages", "32"), ("--seed", "2"),
                                    ("--swap-device", "zram"), ("--workload", "refault"),
                                    ("--no-map-whole-folio",)])
def test_workload_options_are_rejected_with_a_trace(tmp_path, option):
    """A trace says what runs; an option that would silently be ignored is bad input."""
    trace = tmp_path / "t.trace"
    trace.write_text("mmap proc=A vma=heap pages=16 mte=1\nwrite proc=A vma=heap pages=0-15\n")
    res = cost("--trace", str(trace), *option)
    assert res.exit_code == 2 and res.stdout == ""
    assert f"{option[0].replace('--no-', '--')} cannot be used with --trace" in res.stderr
