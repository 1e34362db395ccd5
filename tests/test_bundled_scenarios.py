"""Every bundled scenario under `merged`, with its exact violations (kind, step, page)."""

import pytest

from mteswap.bundled import bundled_files
from mteswap.designs import get_design
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import run_scenario

# scenario name -> [(kind, step, page)] expected under merged; [] means pass.
EXPECTED = {
    "fork-cow-swap": [],
    "roundtrip-large-rotational": [],
    "roundtrip-large-ssd": [],
    "roundtrip-large-zram": [],
    "roundtrip-small-ssd": [],
    "s1-shared-partial-dontneed": [],
    "s1p-shared-partial-dontneed-swapcache": [],
    "s2-partial-mprotect-pageout": [("tag-check-fault", 6, p) for p in (4, 5, 6, 7)],
    "s2-partial-mprotect-reclaim": [],
    "s3-refault-swapcache": [],
    "s3z-fresh-large-swapin-zram": [],
    "s5-split-tagged-head-stale": [("tag-check-fault", 9, p) for p in range(4, 16)],
    "s5-split-untagged-head": [("tag-check-fault", 6, p) for p in (4, 5, 6, 7)],
    "s5-split-zero-filled-tail": [("tag-check-fault", 7, p) for p in (4, 5, 6, 7)],
    "slot-reuse-untagged": [],
    "small-swap-fallback": [],
    "swapoff-shared": [],
}


def _results():
    return {path.stem: path for path in bundled_files()}


def test_every_bundled_scenario_has_an_expectation_here():
    names = {load_scenario(p).name for p in bundled_files()}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundled_scenario_under_merged(name):
    path = _results()[name]
    sc = load_scenario(path)
    res = run_scenario(sc, get_design("merged"))
    got = [(v.kind, v.step, v.page) for v in res.violations]
    assert got == EXPECTED[name]
    # The file's own `expect` for merged agrees with what the model does.
    assert res.matches_expect() is True
