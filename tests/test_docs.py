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


def test_the_figure_table_of_costs_md_is_what_mteswap_cost_gives():
    """docs/costs.md §1: every cell of the 64 KiB refault table, recomputed."""
    from mteswap.cost.run import run_design
    from mteswap.cost.workloads import build
    text = (ROOT / "docs" / "costs.md").read_text()
    section = text[text.index("## 1. "):text.index("### The figure at 1 GiB")]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    designs = [c.strip() for c in lines[1].strip("|").split("|")[1:]]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip().strip("*") for c in ln.strip("|").split("|")]
        rows[cells[0].strip("*")] = cells[1:]
    checked = 0
    for col, design in enumerate(designs):
        mwf = col >= len(designs) // 2
        r = run_design(build("refault", pages=16, map_whole_folio=mwf).scenario(), design)
        for name, cells in rows.items():
            want = cells[col]
            got = (f"{r.estimate_ns['total'] / 1e6:.3f}" if name == "estimated ms"
                   else str(r.violations) if name == "violations" else str(r.counters[name]))
            assert got == want, (design, mwf, name, got, want)
            checked += 1
    assert checked >= 80
