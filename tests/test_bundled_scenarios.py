"""Every bundled scenario under every built-in design: the exact first violation
(kind, step, page) where a design fails, and a pass everywhere else."""

import pytest

from mteswap.bundled import bundled_files
from mteswap.designs import BUILTIN, get_design
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import run_scenario

SCENARIOS = {load_scenario(p).name: p for p in bundled_files()}

# design -> scenario -> first violation; scenarios not listed pass.
FIRST_VIOLATION = {
    'split-before-swap': {
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's2-partial-mprotect-reclaim': ('tag-check-fault', 6, 4),
        # 6.12: the split pages' slots 512-527 are aligned, so zram swaps them in as one folio
        # and the one-page restore misses pages 1-15.
        's3z-fresh-large-swapin-zram': ('tag-check-fault', 4, 5),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
    },
    'rfc-v1': {
        'fork-cow-swap': ('invariant', 5, None),
        'roundtrip-large-ssd': ('invariant', 3, None),
        'roundtrip-large-zram': ('invariant', 3, None),
        's1-shared-partial-dontneed': ('invariant', 4, None),
        's1p-shared-partial-dontneed-swapcache': ('invariant', 4, None),
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's2-partial-mprotect-reclaim': ('invariant', 5, None),
        's3-refault-swapcache': ('invariant', 3, None),
        's3-retag-between-refaults': ('invariant', 3, None),
        's3z-fresh-large-swapin-zram': ('invariant', 3, None),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
        'swapoff-shared': ('invariant', 4, None),
        'tag-alloc-failure-rollback': ('invariant', 3, None),
    },
    'rfc-v2': {
        'roundtrip-large-zram': ('tag-check-fault', 4, 3),
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's3z-fresh-large-swapin-zram': ('tag-check-fault', 4, 5),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
        'tag-alloc-failure-rollback': ('invariant', 3, None),
    },
    'rfc-v3': {
        'roundtrip-large-zram': ('tag-check-fault', 4, 3),
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's3z-fresh-large-swapin-zram': ('tag-check-fault', 4, 5),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
    },
    'restore-all-unmarked': {
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's3-retag-between-refaults': ('tag-check-fault', 8, 5),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
    },
    'folio-marker': {
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        # restores tags nobody initialised onto pages 8-11 and flags them (unknown, not 0)
        's2-partial-mprotect-reclaim': ('tag-check-fault', 8, 8),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
        'slot-reuse-untagged': ('tag-check-fault', 10, 0),
    },
    'per-folio-flag': {
    },
    'merged': {
        's2-partial-mprotect-pageout': ('tag-check-fault', 6, 4),
        's5-split-tagged-head-stale': ('invariant', 7, None),
        's5-split-untagged-head': ('tag-check-fault', 6, 4),
        's5-split-zero-filled-tail': ('tag-check-fault', 7, 4),
    },
    'merged-split-fix': {
    },
}


def _run(scenario: str, design: str):
    return run_scenario(load_scenario(SCENARIOS[scenario]), get_design(design))


def test_the_table_names_real_scenarios_and_every_design():
    assert set(FIRST_VIOLATION) == set(BUILTIN)
    for failing in FIRST_VIOLATION.values():
        assert set(failing) <= set(SCENARIOS)


@pytest.mark.parametrize("design", list(BUILTIN))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_first_violation(scenario, design):
    res = _run(scenario, design)
    first = res.first()
    got = None if first is None else (first.kind, first.step, first.page)
    assert got == FIRST_VIOLATION[design].get(scenario)
    # Each file's `expect` records the same verdict for every design.
    assert res.matches_expect() is True


def test_merged_fails_only_through_a_split_and_merged_split_fix_never():
    assert set(FIRST_VIOLATION["merged"]) == {
        "s2-partial-mprotect-pageout", "s5-split-tagged-head-stale",
        "s5-split-untagged-head", "s5-split-zero-filled-tail"}
    assert FIRST_VIOLATION["merged-split-fix"] == {}
    for name in FIRST_VIOLATION["merged"]:
        assert _run(name, "merged").counters["splits"] >= 1


def test_rfc_v1_loses_the_tags_of_every_page_but_the_first():
    res = _run("s1-shared-partial-dontneed", "rfc-v1")
    faults = [(v.step, v.page) for v in res.violations if v.kind == "tag-check-fault"]
    assert (7, 8) in faults and (8, 9) in faults
    assert res.counters["tag_saves"] == 1


def test_restore_all_unmarked_costs_nr_squared_and_overwrites_live_tags():
    merged = _run("s3-retag-between-refaults", "merged")
    unmarked = _run("s3-retag-between-refaults", "restore-all-unmarked")
    # 15 one-page refaults of a 16-page swap-cache folio: 15 x 16 iterations for both...
    assert merged.counters["restore_page_iterations"] == 240
    assert unmarked.counters["restore_page_iterations"] == 240
    # ...but only the unmarked restore writes tags over live pages.
    assert merged.counters["tag_restores"] == 0
    assert unmarked.counters["tag_restores"] == 240
    assert unmarked.first().detail.startswith("expected tag 3, found 6")


def test_per_folio_flag_is_correct_here_but_saves_every_page():
    merged = _run("s2-partial-mprotect-reclaim", "merged")
    per_folio = _run("s2-partial-mprotect-reclaim", "per-folio-flag")
    assert (merged.counters["tag_saves"], per_folio.counters["tag_saves"]) == (4, 16)
    assert (merged.counters["tag_bytes_peak"], per_folio.counters["tag_bytes_peak"]) == (512, 2048)


def test_folio_marker_saves_only_nonzero_tags_and_exposes_stale_ones():
    res = _run("slot-reuse-untagged", "folio-marker")
    first = res.first()
    assert (first.kind, first.step, first.page) == ("tag-check-fault", 10, 0)
    assert "expected tag 0, found 9" in first.detail
