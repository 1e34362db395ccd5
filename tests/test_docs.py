"""The documents name only scenarios that exist (and so run in test_bundled_scenarios)."""

import re
from pathlib import Path

from mteswap.bundled import bundled_files

ROOT = Path(__file__).parent.parent


def test_every_scenario_named_in_the_discussion_is_bundled():
    text = (ROOT / "docs" / "discussion.md").read_text()
    bundled = {p.stem for p in bundled_files()}
    named = set(re.findall(r"`((?:s\d|slot|tag|round|fork|swap|small)[a-z0-9-]*)`", text))
    kinds = {"tag-check-fault", "tag-storage-leak", "tag-storage-use-after-free"}
    named = {n for n in named if "-" in n} - kinds
    assert named, "the discussion names scenarios"
    assert named <= bundled, named - bundled
    # The matrix in the document lists every bundled scenario.
    assert all(f"| {name} |" in text for name in bundled)
