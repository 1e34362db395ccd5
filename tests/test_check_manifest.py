"""The manifest of check presets (tests/check_manifest.yaml): every entry's verdict, distinct
states, transitions and sometimes properties reached, exactly. When a model change moves them
on purpose, regenerate (the command is in the manifest's header) and say why in the commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from mteswap.designs import BUILTIN
from mteswap.explore.manifest import HEADER, RUNS, load, measure

MANIFEST = Path(__file__).parent / "check_manifest.yaml"
ENTRIES = load(MANIFEST)


def test_manifest_lists_the_runs_in_order():
    assert [(e["preset"], e["design"], e["depth"]) for e in ENTRIES] == RUNS
    for preset in ("small", "zram"):
        assert {e["design"] for e in ENTRIES if (e["preset"], e["depth"]) == (preset, 3)} == set(BUILTIN)
    assert MANIFEST.read_text().startswith(HEADER)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e['preset']}-{e['design']}-{e['depth']}")
def test_manifest_entry(entry):
    assert measure(entry["preset"], entry["design"], entry["depth"]) == entry


def test_zram_tells_rfc_v2_and_v3_from_merged():
    """What the zram preset is for: at depth 4 rfc-v2 and rfc-v3 lose tags on a fresh large
    swap-in (S3', a tag-check fault) while merged and merged-split-fix do not, all four having
    reached a large swap-in; small never reaches one. (merged breaks I1 at depth 4 by the S5
    split of a mixed-tagged folio, which merged-split-fix fixes.)"""
    at4 = {e["design"]: e for e in ENTRIES if (e["preset"], e["depth"]) == ("zram", 4)}
    assert {d: e["verdict"] for d, e in at4.items()} == {
        "rfc-v2": "tag-check-fault", "rfc-v3": "tag-check-fault", "merged": "invariant",
        "merged-split-fix": "pass"}
    assert all("a large swap-in" in e["reached"] for e in at4.values())
    assert not any("a large swap-in" in e["reached"] for e in ENTRIES if e["preset"] == "small")
