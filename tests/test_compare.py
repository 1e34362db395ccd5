"""`mteswap compare`: every scenario under every design, as a table, markdown or JSON; exit 0
when every cell with an `expect` matches it, 1 otherwise, 2 on bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mteswap.bundled import BUNDLED_DIR, bundled_files
from mteswap.cli import app
from mteswap.designs import BUILTIN
from mteswap.scenario.load import load_scenario
from helpers import WIDE, invoke

S5 = BUNDLED_DIR / "s5-split-untagged-head.yaml"
S1 = BUNDLED_DIR / "s1-shared-partial-dontneed.yaml"
CELL_KEYS = {"scenario", "design", "verdict", "first", "expect", "matches", "counters"}

# Tag 3 stored, then read back: passes under every design.
ROUND_TRIP = """\
version: 1
name: {name}
{expect}steps:
  - mmap:  {{proc: A, vma: buf, pages: 1, mte: true}}
  - write: {{proc: A, vma: buf, pages: 0, tag: 3}}
  - read:  {{proc: A, vma: buf, pages: 0}}
"""


def scenario_file(tmp_path: Path, name: str, expect: dict | None = None) -> Path:
    block = "" if expect is None else "expect:\n" + "".join(f"  {d}: {v}\n" for d, v in expect.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(ROUND_TRIP.format(name=name, expect=block))
    return path


def compare_json(*args: object) -> tuple[int, dict]:
    result = invoke("compare", "--json", *args)
    assert result.stderr == "", result.stderr
    return result.exit_code, json.loads(result.stdout)


def cell(doc: dict, scenario: str, design: str) -> dict:
    (found,) = [c for c in doc["cells"] if c["scenario"] == scenario and c["design"] == design]
    return found


# --------------------------------------------------------------------------- exit status


def test_bundled_under_merged_all_as_expected_exits_0():
    result = invoke("compare", "--designs", "merged")
    assert result.exit_code == 0, result.stdout + result.stderr
    names = [yaml.safe_load(p.read_text())["name"] for p in bundled_files()]
    for name in names:
        assert name in result.stdout
    assert "0 not as expected" in result.stdout
    rows = [line for line in result.stdout.splitlines() if "\u2502" in line]   # │
    assert len(rows) == len(names)
    assert not any("\u2717" in row for row in rows)
    assert result.stderr == ""


def test_wrong_expect_exits_1_and_is_marked(tmp_path):
    wrong = scenario_file(tmp_path, "wrong-expect", {"merged": "tag-check-fault"})
    result = invoke("compare", "--designs", "merged", S5, wrong)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "\u2717 pass" in result.stdout                  # the cell
    assert "\u2713 tag-check-fault@6" in result.stdout     # S5 matches its expect
    assert "wrong-expect \u00d7 merged: got pass, expect tag-check-fault" in result.stdout
    assert "1 not as expected" in result.stdout


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--markdown"]], ids=["table", "json", "markdown"])
def test_exit_status_is_the_same_in_every_format(tmp_path, fmt):
    wrong = scenario_file(tmp_path, "wrong-expect", {"merged": "fail"})
    assert invoke("compare", *fmt, "--designs", "merged", wrong).exit_code == 1
    right = scenario_file(tmp_path, "right-expect", {"merged": "pass"})
    assert invoke("compare", *fmt, "--designs", "merged", right).exit_code == 0


def test_cells_without_expect_do_not_count(tmp_path):
    # S5 fails under merged; with no expect for merged that is no mismatch.
    doc = yaml.safe_load(S5.read_text())
    del doc["expect"]
    doc["name"] = "s5-no-expect"
    no_expect = tmp_path / "no-expect.yaml"
    no_expect.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out = compare_json("--designs", "merged", no_expect, S1)
    assert code == 0
    only = cell(out, "s5-no-expect", "merged")
    assert only["verdict"] == "fail" and only["expect"] is None and only["matches"] is None
    result = invoke("compare", "--designs", "merged", no_expect)
    assert result.exit_code == 0
    (row,) = [line for line in result.stdout.splitlines() if "s5-no-expect" in line]
    assert "tag-check-fault@6" in row
    assert "\u2713" not in row and "\u2717" not in row


def test_expect_for_a_design_not_compared_does_not_count(tmp_path):
    f = scenario_file(tmp_path, "other-design", {"rfc-v1": "tag-check-fault"})
    code, doc = compare_json("--designs", "merged", f)
    assert code == 0
    assert doc["cells"][0]["expect"] is None


def s5_expecting(tmp_path, name: str, merged: str) -> Path:
    """S5 with its `expect` for merged replaced by `merged` (YAML text)."""
    doc = yaml.safe_load(S5.read_text())
    doc["name"] = name
    doc["expect"] = {"merged": yaml.safe_load(merged)}
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def test_violation_kind_expect_compares_with_the_first_violation(tmp_path):
    f = s5_expecting(tmp_path, "s5-other-kind", "data-corruption")
    code, doc = compare_json("--designs", "merged", f)
    assert code == 1
    c = doc["cells"][0]
    assert c["verdict"] == "fail" and c["expect"] == "data-corruption" and c["matches"] is False
    # the plain form compares the kind only
    code, doc = compare_json("--designs", "merged", s5_expecting(tmp_path, "s5-kind", "tag-check-fault"))
    assert code == 0 and doc["cells"][0]["matches"] is True


@pytest.mark.parametrize("merged,ok", [
    ("{kind: tag-check-fault, step: 6, page: 4}", True),
    ("{kind: tag-check-fault, step: 5, page: 4}", False),       # another step
    ("{kind: tag-check-fault, step: 6, page: 3}", False),       # another page
    ("{kind: tag-check-fault, step: 6}", False),                # no page: the fault names page 4
    ("{kind: invariant, step: 6, page: 4}", False),             # another kind
])
def test_full_expect_compares_kind_step_and_page(tmp_path, merged, ok):
    f = s5_expecting(tmp_path, "s5-full", merged)
    code, doc = compare_json("--designs", "merged", f)
    assert (code, doc["cells"][0]["matches"]) == ((0, True) if ok else (1, False))
    if not ok:
        result = invoke("compare", "--designs", "merged", f)
        want = str(load_scenario(f).expect["merged"])
        assert f"s5-full \u00d7 merged: got tag-check-fault@6 page 4, expect {want}" in result.stdout
        assert invoke("demo", "--design", "merged").exit_code == 0     # the bundled files still hold


# --------------------------------------------------------------------------- bad input: 2


def assert_bad_input(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, repr(result.stderr)
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_json_and_markdown_together_exit_2():
    assert_bad_input(invoke("compare", "--json", "--markdown"), "--json", "--markdown")


@pytest.mark.parametrize("designs, needles", [
    ("nosuch", ["--designs", "nosuch", "merged"]),
    ("merged,nosuch", ["nosuch"]),
    ("merged,,rfc-v1", ["--designs", "separated by commas"]),
    ("", ["--designs"]),
    ("merged,merged", ["merged", "twice"]),
    ("nosuch.py:X", ["nosuch.py"]),
])
def test_bad_designs_exit_2(designs, needles):
    assert_bad_input(invoke("compare", "--designs", designs, S1), *needles)


def test_bad_file_among_good_ones_exits_2_before_any_output(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nsteps:\n  - frobnicate: {}\n")
    assert_bad_input(invoke("compare", S1, bad, S5), str(bad), "step 1")
    assert_bad_input(invoke("compare", "--json", S1, bad), str(bad))
    assert_bad_input(invoke("compare", S1, tmp_path / "missing.yaml"), "missing.yaml")


def test_bad_file_is_reported_even_when_a_design_is_also_bad(tmp_path):
    result = invoke("compare", "--designs", "nosuch", tmp_path / "missing.yaml")
    assert result.exit_code == 2 and result.stdout == ""


def test_step_that_cannot_apply_exits_2_naming_the_step(tmp_path):
    f = tmp_path / "bad-step.yaml"
    f.write_text("version: 1\nname: bad-step\nsteps:\n  - read: {proc: A, vma: nosuch, pages: 0}\n")
    assert_bad_input(invoke("compare", "--designs", "merged", f), str(f), "step 1", "vma")


def test_two_files_with_one_scenario_name_exit_2(tmp_path):
    a = scenario_file(tmp_path, "same")
    b = tmp_path / "copy.yaml"
    b.write_text(a.read_text())
    assert_bad_input(invoke("compare", a, b), "'same'")


# --------------------------------------------------------------------------- --json


def test_json_shape_and_a_concrete_cell():
    code, doc = compare_json("--designs", "merged", S1, S5)
    assert code == 0
    assert set(doc) == {"designs", "scenarios", "cells"}
    assert doc["designs"] == ["merged"]
    assert doc["scenarios"] == ["s1-shared-partial-dontneed", "s5-split-untagged-head"]
    assert len(doc["cells"]) == 2
    for c in doc["cells"]:
        assert set(c) == CELL_KEYS
        assert all(isinstance(v, int) for v in c["counters"].values())
        assert {"tag_saves", "tag_restores", "faults"} <= set(c["counters"])
    s5 = cell(doc, "s5-split-untagged-head", "merged")
    assert s5["verdict"] == "fail"
    assert s5["first"]["kind"] == "tag-check-fault"
    assert s5["first"]["step"] == 6
    assert s5["first"]["page"] == 4
    assert s5["first"]["detail"].startswith("expected tag 5, found 0")
    assert set(s5["first"]) == {"kind", "step", "page", "detail"}
    assert s5["expect"] == {"kind": "tag-check-fault", "step": 6, "page": 4}   # as the file writes it
    assert s5["matches"] is True
    assert s5["counters"]["splits"] >= 1
    s1 = cell(doc, "s1-shared-partial-dontneed", "merged")
    assert s1["verdict"] == "pass" and s1["first"] is None
    assert s1["expect"] == "pass" and s1["matches"] is True


def test_json_default_is_every_bundled_scenario_under_every_builtin_design():
    result = invoke("compare", "--json")
    assert result.exit_code in (0, 1)
    doc = json.loads(result.stdout)
    assert doc["designs"] == list(BUILTIN)
    names = [yaml.safe_load(p.read_text())["name"] for p in bundled_files()]
    assert doc["scenarios"] == names
    # Scenario-major order: every design for the first scenario, then the next.
    assert [(c["scenario"], c["design"]) for c in doc["cells"]] == [
        (s, d) for s in names for d in BUILTIN]
    mismatch = any(c["matches"] is False for c in doc["cells"])
    assert result.exit_code == (1 if mismatch else 0)


def test_json_is_one_document_and_only_json():
    result = invoke("compare", "--json", "--designs", "merged", S1)
    assert result.stdout.count("\n") == 1
    json.loads(result.stdout)


def test_json_cell_equals_run_json():
    """A compare cell reports what `mteswap run --design D --json` reports for the file."""
    _, doc = compare_json("--designs", "merged", S5)
    ran = json.loads(invoke("run", "--json", "--design", "merged", S5).stdout)
    c = doc["cells"][0]
    assert c["verdict"] == ran["verdict"]
    assert c["counters"] == ran["counters"]
    first = ran["violations"][0]
    assert c["first"] == {k: first[k] for k in ("kind", "step", "page", "detail")}


def test_designs_come_in_the_order_given():
    _, doc = compare_json("--designs", "merged-split-fix,merged" if "merged-split-fix" in BUILTIN
                          else "merged", S5)
    assert doc["designs"] == [d for d in ("merged-split-fix", "merged") if d in BUILTIN]


# --------------------------------------------------------------------------- --markdown, table


def test_markdown_table(tmp_path):
    wrong = scenario_file(tmp_path, "wrong-expect", {"merged": "fail"})
    result = invoke("compare", "--markdown", "--designs", "merged", S5, wrong)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "| scenario | merged |"
    assert lines[1] == "|---|---|"
    assert lines[2] == "| s5-split-untagged-head | \u2713 tag-check-fault@6 |"
    assert lines[3] == "| wrong-expect | \u2717 pass |"
    assert lines[4] == ""
    assert "- \u2717 wrong-expect \u00d7 merged: got pass, expect fail" in lines


def test_markdown_header_lists_every_design():
    result = invoke("compare", "--markdown", S1)
    lines = result.stdout.splitlines()
    assert lines[0] == "| scenario | " + " | ".join(BUILTIN) + " |"
    assert lines[1] == "|---|" + "---|" * len(BUILTIN)


@pytest.mark.parametrize("columns", ["80", "10000"])
def test_table_never_truncates_cells(columns):
    # A pipe (or 80 columns) must still show every name and cell whole.
    result = invoke("compare", env={"COLUMNS": columns})
    assert result.exit_code in (0, 1)
    assert "\u2026" not in result.stdout
    names = [yaml.safe_load(p.read_text())["name"] for p in bundled_files()]
    for name in list(names) + list(BUILTIN):
        assert name in result.stdout, name
    assert "\u2713 tag-check-fault@6" in result.stdout   # S5 under merged
    assert f"{len(names) * len(BUILTIN)} cells" in result.stdout


def test_table_legend():
    result = invoke("compare", "--designs", "merged", S5)
    assert "\u2713 as the scenario's `expect` says" in result.stdout
    assert "kind@step" in result.stdout


def test_scenarios_design_key_is_ignored(tmp_path):
    """compare runs each scenario under each chosen design, not the file's `design:`."""
    f = tmp_path / "own.yaml"
    f.write_text(textwrap.dedent(ROUND_TRIP.format(name="own", expect="design: nosuch\n")))
    code, doc = compare_json("--designs", "merged", f)
    assert code == 0 and doc["cells"][0]["design"] == "merged"
