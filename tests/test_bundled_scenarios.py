"""Every bundled scenario under every built-in design: the exact first violation (kind, step,
page) where a design fails, and a pass everywhere else, as each file's `expect` says (the only
table of expectations: a test reads it, none restates it)."""

import pytest

from mteswap.bundled import bundled_files
from mteswap.designs import BUILTIN, get_design
from mteswap.scenario.load import KERNELS, load_scenario, with_kernel
from mteswap.scenario.runner import run_scenario

LOADED = {sc.name: sc for sc in map(load_scenario, bundled_files())}
SCENARIOS = {p.stem: p for p in bundled_files()}


def _run(scenario: str, design: str):
    return run_scenario(LOADED[scenario], get_design(design))


def failing(design: str) -> set[str]:
    """The bundled scenarios whose `expect` says `design` fails."""
    return {name for name, sc in LOADED.items() if sc.expect[design].kind != "pass"}


def test_every_expect_names_every_design_with_the_first_violation():
    """The files' `expect` is the one table: every built-in design, and where one fails, the
    full form (kind, step, page)."""
    assert set(LOADED) == set(SCENARIOS)
    for name, sc in LOADED.items():
        assert set(BUILTIN) <= set(sc.expect), name
        for design, want in sc.expect.items():
            assert want.kind == "pass" or want.step is not None, (name, design, want)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("design", list(BUILTIN))
@pytest.mark.parametrize("scenario", sorted(LOADED))
def test_first_violation(scenario, design, kernel):
    """Under each kernel version (`--kernel`): the file's expectation for that kernel."""
    sc = with_kernel(LOADED[scenario], kernel)
    res = run_scenario(sc, get_design(design))
    first = res.first()
    got = "pass" if first is None else (first.kind, first.step, first.page)
    want = sc.expect[design]
    assert got == ("pass" if want.kind == "pass" else (want.kind, want.step, want.page))
    assert res.matches_expect() is True


def test_expectations_differ_by_kernel_where_the_kernels_differ():
    """The cells whose expectation is per kernel: 7.2 gives a rotational disk swap clusters,
    so the folio goes out whole and rfc-v1 saves one page's tags (I8 at the write); 7.2
    places the split pages of s3z at slots 1-16, unaligned, and writes a split folio's tails
    from the last page down (roundtrip-large-zram), so split-before-swap swaps them in order 0
    and passes."""
    differ = {(name, d) for name, sc in LOADED.items() for d in BUILTIN
              if sc.expect_by_kernel["6.12"][d] != sc.expect_by_kernel["7.2"][d]}
    assert differ == {("roundtrip-large-rotational", "rfc-v1"),
                      ("s3z-fresh-large-swapin-zram", "split-before-swap"),
                      ("roundtrip-large-zram", "split-before-swap")}


def test_merged_fails_only_through_a_split_and_merged_split_fix_never():
    assert failing("merged") == {
        "s2-partial-mprotect-pageout", "s5-split-tagged-head-stale",
        "s5-split-untagged-head", "s5-split-zero-filled-tail"}
    assert failing("merged-split-fix") == failing("per-folio-flag") == set()
    for name in failing("merged"):
        assert _run(name, "merged").counters["splits"] >= 1


def test_only_zram_scenarios_separate_rfc_v2_and_v3_from_merged():
    """rfc-v2 and rfc-v3 fail where merged passes only on zram (v6.12's large swap-in)."""
    for design in ("rfc-v2", "rfc-v3"):
        extra = {n for n in failing(design) - failing("merged")
                 if LOADED[n].expect[design].kind == "tag-check-fault"}
        assert extra == {"roundtrip-large-zram", "s3z-fresh-large-swapin-zram"}
        assert all(LOADED[n].config.swap_device == "zram" for n in extra)


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
