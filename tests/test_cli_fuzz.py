"""Robustness of the `mteswap run` command on thousands of generated scenario files.

Whatever the bytes of the file, the command must end within seconds with exit status 0, 1 or 2,
never show a Python traceback, never print a partial result before a bad-input error, and with
`--json` print one JSON object per file whose verdict agrees with the exit status
(docs/scenario-format.md, "Command line").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis.errors import InvalidArgument
from hypothesis import strategies as st
from typer.testing import CliRunner

from mteswap.bundled import BUNDLED_DIR
from mteswap.cli import app
from scenario_strategies import mutated_scenario_texts, to_yaml, valid_scenarios

# A hang guard, not a speed bound (speed is measured by benchmarks/, never asserted here):
# no generated file takes more than a second or two; one that runs for minutes is stuck.
MAX_SECONDS_PER_EXAMPLE = 120.0
# Mode flags: plain, --json, --trace, both (--json wins: output stays JSON lines).
MODES = st.sampled_from(((), ("--json",), ("--trace",), ("--json", "--trace")))

FUZZ = settings(
    deadline=None,  # the wall-clock bound is asserted per example below instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)


def _write_temp(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    fd, path = tempfile.mkstemp(prefix="mteswap-fuzz-", suffix=".yaml")
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    return path


def check_run(text: str | bytes, flags: tuple[str, ...], also_valid_first: bool = False,
              before: tuple[str, ...] = ()) -> int:
    """Run `mteswap run [BEFORE...] FILE FLAGS` in-process on `text`; check the contract;
    return the exit status.

    With `also_valid_first`, a second copy of the file is given first, so a bad-input error
    in the file is met after a file that loaded (nothing may be printed for either).
    `before` are good files (bundled scenarios) to give ahead of it.
    """
    path = _write_temp(text)
    try:
        files = [*before, path, path] if also_valid_first else [*before, path]
        start = time.monotonic()
        # A wide terminal: a message is then one line (wrapping is tested in test_cli.py).
        result = CliRunner().invoke(app, ["run", *files, *flags], env={"COLUMNS": "10000"})
        elapsed = time.monotonic() - start
    finally:
        os.unlink(path)
    _event(f"exit {result.exit_code}")
    if result.exit_code == 2:
        _event("error: " + _error_class(result.stderr))
    shown = f"flags={flags} exit={result.exit_code}\nstdout={result.stdout[:2000]!r}\n" \
            f"stderr={result.stderr[:2000]!r}\nfile:\n{text if isinstance(text, str) else text!r}"
    assert elapsed <= MAX_SECONDS_PER_EXAMPLE, f"took {elapsed:.1f} s\n{shown}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception!r}\n{shown}"
    )
    assert result.exit_code in (0, 1, 2), shown
    assert "Traceback" not in result.stdout + result.stderr, shown
    if result.exit_code == 2:
        assert result.stdout == "", f"partial result before a bad-input error\n{shown}"
        assert result.stderr.startswith("mteswap: error: "), shown
        assert path in result.stderr, shown
    else:
        assert result.stderr == "", shown
        if "--json" in flags:
            objs = [json.loads(line) for line in result.stdout.splitlines()]
            assert len(objs) == len(files), shown
            verdicts = {obj["verdict"] for obj in objs}
            assert verdicts <= {"pass", "fail"}, shown
            for obj in objs:
                assert obj["verdict"] == ("fail" if obj["violations"] else "pass"), shown
            assert result.exit_code == (1 if "fail" in verdicts else 0), shown
        else:
            verdict_lines = [line for line in result.stdout.splitlines()
                             if line.endswith((": PASS", ": FAIL"))]
            assert len(verdict_lines) == len(files), shown
            failed = any(line.endswith(": FAIL") for line in verdict_lines)
            assert result.exit_code == (1 if failed else 0), shown
    return result.exit_code


def _event(text: str) -> None:
    try:
        event(text)
    except InvalidArgument:  # check_run called outside @given
        pass


def _error_class(stderr: str) -> str:
    """A coarse class of a bad-input message, for --hypothesis-show-statistics."""
    for words in ("YAML", "UTF-8", "unknown design", "unknown op", "unknown field", "unknown key",
                  "ran out of memory", "removed by munmap", "still mapped", "out of range", "has exited",
                  "no process", "has no VMA", "already", "missing", "expected"):
        if words in stderr:
            return words
    return "other"


@pytest.mark.slow
@settings(FUZZ, max_examples=2000)
@given(text=mutated_scenario_texts(), flags=MODES, twice=st.booleans())
def test_run_on_mutated_files(text, flags, twice):
    check_run(text, flags, also_valid_first=twice)


# Bundled files to run ahead of a generated one: generated scenarios almost never fail
# under `merged`, so this is what mixes verdicts (and exit status 1) into the runs.
BEFORE = st.sampled_from(((), (str(BUNDLED_DIR / "s5-split-untagged-head.yaml"),),
                          (str(BUNDLED_DIR / "s1-shared-partial-dontneed.yaml"),)))
# The generator names designs that may not be built in yet: override them half the time.
DESIGN_FLAGS = st.sampled_from(((), ("--design", "merged")))


@pytest.mark.slow
@settings(FUZZ, max_examples=1000)
@given(scenario=valid_scenarios(), flow=st.sampled_from((False, None)), flags=MODES,
       design=DESIGN_FLAGS, before=BEFORE)
def test_run_on_valid_files(scenario, flow, flags, design, before):
    status = check_run(to_yaml(scenario, flow=flow), flags + design, before=before)
    # A file built to make sense parses; only steps that cannot apply (the generator lets a
    # few through, e.g. running out of frames) or a design not built in may give status 2.
    assert status in (0, 1, 2)


def test_check_run_sees_each_status():
    """The checker itself: one file per exit status."""
    ok = "version: 1\nname: ok\nsteps:\n  - mmap: {proc: A, vma: buf, pages: 1}\n"
    assert check_run(ok, ()) == 0
    assert check_run(ok, ("--json",), also_valid_first=True) == 0
    fail = ("version: 1\nname: bad\nsteps:\n"
            "  - mmap: {proc: A, vma: buf, pages: 16}\n"
            "  - write: {proc: A, vma: buf, pages: 0-15}\n"
            "  - mprotect: {proc: A, vma: buf, pages: 4-7, mte: true}\n"
            "  - write: {proc: A, vma: buf, pages: 4-7, tag: distinct}\n"
            "  - split: {proc: A, vma: buf, pages: 0-15}\n"
            "  - read: {proc: A, vma: buf, pages: 4-7}\n")
    assert check_run(fail, ("--json", "--trace")) == 1
    assert check_run(b"version: [\n\xff", ()) == 2


@pytest.mark.slow
def test_a_16_mib_scenario_runs_to_a_verdict(tmp_path):
    """Files far inside the loader's limits (MAX_VMA_PAGES is 65536) end like the small ones:
    a 4096-page (16 MiB) round trip on a 32 MiB machine passes. Run as a subprocess with a
    hang guard. (It once took 20-25 s because alloc_folio scanned frames from pfn 0 and
    vm_swap_full scanned swap_map on every call; both are O(1) now.)"""
    scenario = tmp_path / "sixteen-mib.yaml"
    scenario.write_text(
        "version: 1\nname: sixteen-mib\n"
        "config: {folio_pages: [1], frames: 8192, swap_slots: 8192}\n"
        "steps:\n"
        "  - mmap:    {proc: A, vma: buf, pages: 4096, mte: true}\n"
        "  - write:   {proc: A, vma: buf, pages: all, tag: distinct}\n"
        "  - pageout: {proc: A, vma: buf, pages: all}\n"
        "  - read:    {proc: A, vma: buf, pages: all}\n"
    )
    script = Path(sys.executable).with_name("mteswap")
    try:
        proc = subprocess.run([str(script), "run", "--json", str(scenario)],
                              capture_output=True, text=True, timeout=MAX_SECONDS_PER_EXAMPLE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a 4096-page scenario did not end within {MAX_SECONDS_PER_EXAMPLE} s")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "pass"
    assert result["counters"]["tag_saves"] == 4096 and result["counters"]["tag_restores"] == 4096
