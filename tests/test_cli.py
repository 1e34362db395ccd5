"""The `mteswap` command line (docs/scenario-format.md, "Command line").

Almost everything runs in-process through typer's CliRunner on `mteswap.cli.app`; one test
runs the installed console script in a subprocess to prove the entry point works.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mteswap.bundled import BUNDLED_DIR, bundled_files
from mteswap.cli import app
from mteswap.designs import BUILTIN
from helpers import WIDE, invoke

REPO = Path(__file__).resolve().parents[1]
PASSING = BUNDLED_DIR / "s1-shared-partial-dontneed.yaml"
FAILING = BUNDLED_DIR / "s5-split-untagged-head.yaml"

VIOLATION_KEYS = {"kind", "step", "op", "proc", "vma", "page", "detail"}
REQUIRED_COUNTERS = {
    "tag_saves", "tag_restores", "restore_calls", "restore_page_iterations", "faults",
    "swap_ins", "swap_outs", "large_swap_outs", "splits", "swpout_fallback", "tag_bytes_peak",
}


def no_traceback(result) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def json_lines(stdout: str) -> list[dict]:
    lines = stdout.splitlines()
    assert lines and all(line.strip() for line in lines), repr(stdout)
    return [json.loads(line) for line in lines]


# --------------------------------------------------------------------------- run: exit status


def test_run_passing_scenario_exits_0():
    result = invoke("run", PASSING)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "s1-shared-partial-dontneed [merged]: PASS" in result.stdout
    assert "counters:" in result.stdout
    assert result.stderr == ""
    no_traceback(result)


def test_run_failing_scenario_exits_1():
    result = invoke("run", FAILING)
    assert result.exit_code == 1
    assert "s5-split-untagged-head [merged]: FAIL" in result.stdout
    assert "tag-check-fault at step 6 (read A buf page 4)" in result.stdout
    assert result.stderr == ""
    no_traceback(result)


@pytest.mark.parametrize("order", [(PASSING, FAILING), (FAILING, PASSING)], ids=["pass-fail", "fail-pass"])
def test_run_mixed_passing_and_failing_exits_1(order):
    result = invoke("run", *order)
    assert result.exit_code == 1
    # Both files ran and were reported, in the order given.
    first, second = (p.stem for p in order)
    assert result.stdout.index(first) < result.stdout.index(second)
    no_traceback(result)


def test_run_several_passing_files_exit_0():
    result = invoke("run", PASSING, BUNDLED_DIR / "roundtrip-small-ssd.yaml")
    assert result.exit_code == 0
    assert result.stdout.count(": PASS") == 2


def test_run_without_files_is_a_usage_error():
    result = invoke("run")
    assert result.exit_code == 2
    assert result.stdout == ""
    no_traceback(result)


# --------------------------------------------------------------------------- run --json


def test_json_one_object_per_file_with_exact_keys():
    result = invoke("run", "--json", PASSING, FAILING)
    assert result.exit_code == 1
    objs = json_lines(result.stdout)
    assert len(objs) == 2
    for obj in objs:
        assert set(obj) == {"scenario", "design", "verdict", "violations", "counters"}
        assert obj["design"] == "merged"
        assert obj["verdict"] == ("fail" if obj["violations"] else "pass")
        assert REQUIRED_COUNTERS <= set(obj["counters"])
        assert all(isinstance(v, int) for v in obj["counters"].values())
        for v in obj["violations"]:
            assert set(v) == VIOLATION_KEYS
    assert [o["scenario"] for o in objs] == ["s1-shared-partial-dontneed", "s5-split-untagged-head"]
    assert objs[0]["verdict"] == "pass" and objs[0]["violations"] == []


def test_json_concrete_values_for_split_untagged_head():
    result = invoke("run", FAILING, "--json")
    assert result.exit_code == 1
    (obj,) = json_lines(result.stdout)
    assert obj["scenario"] == "s5-split-untagged-head"
    assert obj["design"] == "merged"
    assert obj["verdict"] == "fail"
    first = obj["violations"][0]
    assert first["kind"] == "tag-check-fault"
    assert first["step"] == 6
    assert first["op"] == "read"
    assert first["proc"] == "A"
    assert first["vma"] == "buf"
    assert first["page"] == 4
    assert first["detail"].startswith("expected tag 5, found 0")
    # Pages 4-7 all lost their tags (distinct: page i has tag i % 15 + 1).
    assert [(v["page"], v["kind"]) for v in obj["violations"]] == [
        (p, "tag-check-fault") for p in range(4, 8)
    ]
    assert obj["counters"]["splits"] >= 1
    assert obj["counters"]["swap_outs"] == 0


def test_json_passing_round_trip_counters():
    result = invoke("run", "--json", BUNDLED_DIR / "roundtrip-small-ssd.yaml")
    assert result.exit_code == 0
    (obj,) = json_lines(result.stdout)
    assert obj["verdict"] == "pass" and obj["violations"] == []
    c = obj["counters"]
    # 8 order-0 MTE pages swapped out and back: one save and one restore per page.
    assert c["tag_saves"] == 8
    assert c["tag_restores"] == 8
    assert c["swap_outs"] >= 1 and c["swap_ins"] >= 1


def test_json_output_is_only_json_even_with_trace():
    result = invoke("run", "--json", "--trace", PASSING)
    assert result.exit_code == 0
    (obj,) = json_lines(result.stdout)
    assert obj["verdict"] == "pass"


# --------------------------------------------------------------------------- run --trace


def test_trace_shows_steps_and_kernel_functions_of_a_swap_round_trip():
    result = invoke("run", "--trace", BUNDLED_DIR / "roundtrip-small-ssd.yaml")
    assert result.exit_code == 0
    out = result.stdout
    for index in range(1, 6):
        assert f"step {index:>3}  " in out
    assert "step   3  reclaim proc=A vma=buf" in out
    for function in ("do_swap_page", "arch_swap_restore", "mte_restore_tags",
                     "arch_prepare_to_swap", "mte_save_tags", "swap_writepage"):
        assert function in out, function
    # Save happens before restore.
    assert out.index("arch_prepare_to_swap") < out.index("do_swap_page") < out.index("mte_restore_tags")
    # The verdict is still printed after the trace.
    assert "roundtrip-small-ssd [merged]: PASS" in out
    no_traceback(result)


def test_trace_of_failing_scenario_exits_1():
    result = invoke("run", "--trace", FAILING)
    assert result.exit_code == 1
    assert "split" in result.stdout and "step   6  read" in result.stdout


# --------------------------------------------------------------------------- --design


def test_design_merged_option():
    result = invoke("run", "--design", "merged", "--json", FAILING)
    assert result.exit_code == 1
    (obj,) = json_lines(result.stdout)
    assert obj["design"] == "merged"


def test_design_option_unknown_exits_2_naming_it():
    result = invoke("run", "--design", "nosuch", PASSING)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "nosuch" in result.stderr
    assert "design" in result.stderr
    no_traceback(result)


def test_file_design_unknown_exits_2_naming_file_and_field(tmp_path):
    bad = tmp_path / "own-design.yaml"
    bad.write_text(SCENARIO_HEAD.replace("name: t\n", "name: t\ndesign: nosuch\n") + ONE_MMAP)
    for files in ([bad], [PASSING, bad]):
        result = invoke("run", *files)
        assert result.exit_code == 2
        assert result.stdout == ""
        err = result.stderr
        assert str(bad) in err
        assert "design" in err and "nosuch" in err
        no_traceback(result)


def test_design_option_overrides_the_files_design(tmp_path):
    f = tmp_path / "own-design.yaml"
    f.write_text(SCENARIO_HEAD.replace("name: t\n", "name: t\ndesign: nosuch\n") + ONE_MMAP)
    result = invoke("run", "--design", "merged", "--json", f)
    assert result.exit_code == 0, result.stderr
    assert json_lines(result.stdout)[0]["design"] == "merged"


@pytest.mark.parametrize("command", ["run", "compare"])
def test_kernel_option_rejects_an_unknown_version_with_exit_2(command):
    result = invoke(command, "--kernel", "5.10", PASSING)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "--kernel: expected one of 6.12, 7.2, got '5.10'" in result.stderr
    no_traceback(result)


def test_file_kernel_unknown_exits_2_naming_the_field(tmp_path):
    bad = tmp_path / "k.yaml"
    bad.write_text(SCENARIO_HEAD.replace("name: t\n", "name: t\nconfig: {kernel: '6.1'}\n") + ONE_MMAP)
    result = invoke("run", bad)
    assert result.exit_code == 2
    assert f"{bad}: field 'config.kernel': expected one of '6.12', '7.2', got '6.1'" in result.stderr
    no_traceback(result)


# --------------------------------------------------------------------------- designs, demo


def test_designs_lists_names_then_descriptions():
    result = invoke("designs")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    names = lines[: lines.index("")]
    assert names == list(BUILTIN)      # in the order of the discussion
    assert "merged" in names and "merged-split-fix" in names and len(names) == 9
    descriptions = lines[lines.index("") + 1:]
    assert len(descriptions) == len(BUILTIN)
    for name, line in zip(BUILTIN, descriptions):
        assert line.startswith(name + " ")
        assert line[len(name):].strip(), f"no description for {name}"


@pytest.mark.parametrize("columns", ["80", "10000"])
def test_demo_prints_every_bundled_scenario(columns):
    # 80: a pipe or a narrow terminal must still show whole names, not "s5-split…".
    result = invoke("demo", env={"COLUMNS": columns})
    assert result.exit_code == 0, result.stdout
    names = [yaml.safe_load(p.read_text())["name"] for p in bundled_files()]
    assert len(names) >= 10
    for name in names:
        assert name in result.stdout, name
    assert f"{len(names)} scenarios, 0 not as expected" in result.stdout
    no_traceback(result)


def test_demo_unknown_design_exits_2():
    result = invoke("demo", "--design", "nosuch")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "nosuch" in result.stderr


# --------------------------------------------------------------------------- console script


def test_console_script_runs_a_bundled_scenario():
    script = Path(sys.executable).with_name("mteswap")
    if not script.exists():
        script = REPO / ".venv" / "bin" / "mteswap"
    proc = subprocess.run([str(script), "run", "--json", str(PASSING)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    (obj,) = json_lines(proc.stdout)
    assert obj["scenario"] == "s1-shared-partial-dontneed"
    assert obj["verdict"] == "pass"
    assert proc.stderr == ""


# --------------------------------------------------------------------------- bad input (exit 2)

SCENARIO_HEAD = "version: 1\nname: t\n"
ONE_MMAP = "steps:\n  - mmap: {proc: A, vma: buf, pages: 4}\n"


def _steps(*lines: str, config: str = "") -> str:
    body = "".join(f"  - {line}\n" for line in lines)
    return SCENARIO_HEAD + config + "steps:\n" + body


# id -> (file text, step number or None, field or None, other words the message must hold)
BAD_INPUTS = {
    "yaml-syntax": (
        SCENARIO_HEAD + "steps: [ {mmap: {proc: A, vma: buf, pages: 4}\n",
        None, None, ["YAML", "line"],
    ),
    "yaml-bad-indentation": (
        SCENARIO_HEAD + "steps:\n  - mmap: {proc: A, vma: buf, pages: 4}\n bad: [\n",
        None, None, ["YAML", "line"],
    ),
    "not-utf8": (
        (SCENARIO_HEAD + ONE_MMAP).encode() + b"# \xff\xfe\n",
        None, None, ["UTF-8"],
    ),
    "unknown-op": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "frobnicate: {proc: A}"),
        2, None, ["frobnicate", "unknown op"],
    ),
    "unknown-top-level-key": (
        SCENARIO_HEAD + "bogus: 1\n" + ONE_MMAP,
        None, "bogus", ["unknown key"],
    ),
    "unknown-config-key": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", config="config: {ram: 3}\n"),
        None, "config.ram", ["unknown"],
    ),
    "unknown-step-key": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: A, vma: buf, pages: 0, colour: red}"),
        2, "colour", ["unknown field"],
    ),
    "bad-value-tag": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: A, vma: buf, pages: 0, tag: 16}"),
        2, "tag", ["16"],
    ),
    "bad-value-swap-device": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", config="config: {swap_device: hdd}\n"),
        None, "config.swap_device", ["hdd"],
    ),
    "bad-value-version": (
        "version: 2\nname: t\n" + ONE_MMAP,
        None, "version", ["2"],
    ),
    "bad-value-mprotect-false": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "mprotect: {proc: A, vma: buf, pages: 0, mte: false}"),
        2, "mte", [],
    ),
    "missing-required-field": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "read: {proc: A, vma: buf}"),
        2, "pages", ["missing"],
    ),
    "unknown-design": (
        SCENARIO_HEAD + "design: nosuch\n" + ONE_MMAP,
        None, "design", ["nosuch"],
    ),
    "unknown-proc": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: Z, vma: buf, pages: 0}"),
        2, "proc", ["'Z'"],
    ),
    "unknown-vma": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: A, vma: heap, pages: 0}"),
        2, "vma", ["'heap'"],
    ),
    "page-out-of-range": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "read: {proc: A, vma: buf, pages: 4}"),
        2, "pages", ["4"],
    ),
    "page-range-out-of-range": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: A, vma: buf, pages: 2-9}"),
        2, "pages", [],
    ),
    "access-after-munmap": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "munmap: {proc: A, vma: buf, pages: 2-3}",
               "read: {proc: A, vma: buf, pages: 3}"),
        3, "pages", ["munmap"],
    ),
    "access-after-full-munmap": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "write: {proc: A, vma: buf, pages: all}",
               "munmap: {proc: A, vma: buf}", "write: {proc: A, vma: buf, pages: all}"),
        4, "pages", [],
    ),
    "op-on-exited-process": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "fork: {proc: A, child: B}", "exit: {proc: B}",
               "read: {proc: B, vma: buf, pages: 0}"),
        4, "proc", ["'B'", "exited"],
    ),
    "fork-existing-child": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "fork: {proc: A, child: B}", "fork: {proc: A, child: B}"),
        3, "child", ["'B'"],
    ),
    "fork-exited-child-name": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "fork: {proc: A, child: B}", "exit: {proc: B}",
               "fork: {proc: A, child: B}"),
        4, "child", ["'B'"],
    ),
    "mmap-existing-vma": (
        _steps("mmap: {proc: A, vma: buf, pages: 4}", "mmap: {proc: A, vma: buf, pages: 8}"),
        2, "vma", ["'buf'"],
    ),
    "out-of-frames": (
        _steps("mmap: {proc: A, vma: buf, pages: 64}", "write: {proc: A, vma: buf, pages: 0-63}",
               config="config: {frames: 16}\n"),
        2, "frames", ["memory"],
    ),
}


def _check_bad_input(result, file: Path, step: int | None, field: str | None, words: list[str]) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", f"partial result on stdout: {result.stdout!r}"
    no_traceback(result)
    err = result.stderr
    assert err.startswith("mteswap: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert str(file) in err, err
    if step is not None:
        assert f"step {step}" in err, err
    if field is not None:
        assert f"'{field}'" in err, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.parametrize("second", [False, True], ids=["alone", "after-a-valid-file"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_message_and_no_output(tmp_path, case, second):
    text, step, field, words = BAD_INPUTS[case]
    bad = tmp_path / f"{case}.yaml"
    if isinstance(text, bytes):
        bad.write_bytes(text)
    else:
        bad.write_text(text)
    files = [PASSING, bad] if second else [bad]
    for extra in ([], ["--json"], ["--trace"]):
        result = invoke("run", *files, *extra)
        _check_bad_input(result, bad, step, field, words)


@pytest.mark.parametrize("second", [False, True], ids=["alone", "after-a-valid-file"])
def test_missing_file_exits_2(tmp_path, second):
    missing = tmp_path / "does-not-exist.yaml"
    files = [PASSING, missing] if second else [missing]
    result = invoke("run", *files)
    _check_bad_input(result, missing, None, None, ["cannot read"])


@pytest.mark.parametrize("second", [False, True], ids=["alone", "after-a-valid-file"])
def test_directory_instead_of_file_exits_2(tmp_path, second):
    files = [PASSING, tmp_path] if second else [tmp_path]
    result = invoke("run", *files)
    _check_bad_input(result, tmp_path, None, None, ["cannot read"])


def test_bad_file_between_two_valid_files_stops_everything(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_INPUTS["unknown-proc"][0])
    result = invoke("run", "--json", PASSING, bad, FAILING)
    _check_bad_input(result, bad, 2, "proc", [])


def test_first_bad_file_is_the_one_reported(tmp_path):
    bad1 = tmp_path / "bad1.yaml"
    bad2 = tmp_path / "bad2.yaml"
    bad1.write_text(BAD_INPUTS["unknown-vma"][0])
    bad2.write_text(BAD_INPUTS["yaml-syntax"][0])
    result = invoke("run", bad1, bad2)
    assert result.exit_code == 2
    assert result.stdout == ""
    err = result.stderr
    # A parse error anywhere is found before any file runs.
    assert str(bad2) in err


def test_error_message_is_one_line_at_80_columns(tmp_path):
    """On an 80-column terminal (and on a pipe, where rich assumes 80) the message is still one
    line and the path is intact (greppable; load.py promises "a one-line ScenarioError").
    cli._fail_input prints through a rich Console that hard-wraps at the console width,
    folding long paths mid-name."""
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    bad = deep / "bad-step.yaml"
    bad.write_text(BAD_INPUTS["unknown-step-key"][0])
    result = invoke("run", bad, env={"COLUMNS": "80"})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), repr(result.stderr)
    assert str(bad) in result.stderr


# --------------------------------------------------------------------------- --states

STATES_SCENARIO = """\
version: 1
name: st
config: {folio_pages: [1, 4]}
steps:
  - mmap: {proc: A, vma: buf, pages: 8, mte: true}
  - write: {proc: A, vma: buf, pages: 0-3, tag: distinct}
  - read: {proc: A, vma: buf, pages: 4}
  - write: {proc: A, vma: buf, pages: 6}
  - reclaim: {proc: A, vma: buf, pages: 0-3, keep_cached: true}
  - munmap: {proc: A, vma: buf, pages: 7}
  - fork: {proc: A, child: B}
  - pageout: {proc: B, vma: buf, pages: 6}
"""


def test_states_give_every_page_of_the_named_vma_after_each_step(tmp_path):
    """One letter per page from the VMA's original start: a 16 KiB folio (H t t t), the zero
    page after a read fault (z), a small folio (p), swap PTEs of a folio kept in the swap cache
    (C), no PTE (-), an unmapped page (x); PG_mte_tagged (M) of present pages, '.' for the
    zero page, a space where nothing is present. fork names no VMA: no entry for step 7."""
    f = tmp_path / "st.yaml"
    f.write_text(STATES_SCENARIO)
    res = invoke("run", f, "--json", "--states")
    assert res.exit_code == 0, res.stdout
    got = [(s["step"], s["proc"], s["vma"], s["pages"], s["mte"])
           for s in json.loads(res.stdout)["states"]]
    assert got == [(1, "A", "buf", "--------", "        "),
                   (2, "A", "buf", "Httt----", "MMMM    "),
                   (3, "A", "buf", "Htttz---", "MMMM.   "),
                   (4, "A", "buf", "Htttz-p-", "MMMM. M "),
                   (5, "A", "buf", "CCCCz-p-", "    . M "),
                   (6, "A", "buf", "CCCCz-px", "    . M "),
                   (8, "B", "buf", "CCCCz-px", "    . M ")]
    text = invoke("run", f, "--states").stdout
    assert "step   5  A buf\n      pages |CCCCz-p-|\n      mte   |    . M |\n" in text
    traced = invoke("run", f, "--states", "--trace").stdout
    assert "      pages |Htttz-p-|\n" in traced and "do_anonymous_page" in traced
    assert "states" not in json.loads(invoke("run", f, "--json").stdout)


def test_states_of_a_split_show_the_head_flag_copied_to_small_folios():
    from mteswap.bundled import BUNDLED_DIR
    res = invoke("run", BUNDLED_DIR / "s5-split-untagged-head.yaml", "--json", "--states")
    states = {s["step"]: (s["pages"], s["mte"]) for s in json.loads(res.stdout)["states"]}
    assert states[4] == ("H" + "t" * 15, "." * 16)          # tagged tails under an untagged head
    assert states[5] == ("p" * 16, "....MMMM........")      # the split: each page its own folio


def test_states_show_swap_ptes_of_folios_not_in_the_swap_cache():
    from mteswap.bundled import BUNDLED_DIR
    res = invoke("run", BUNDLED_DIR / "roundtrip-large-zram.yaml", "--json", "--states")
    states = {s["step"]: (s["pages"], s["mte"]) for s in json.loads(res.stdout)["states"]}
    assert states[3] == ("S" * 32, " " * 32)                # reclaimed whole, slots freed of cache
    assert states[4] == ("H" + "t" * 15 + "S" * 16, "M" * 16 + " " * 16)   # one large swap-in
