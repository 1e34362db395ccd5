"""Real-kernel oracle, the parts that need no QEMU: C generation, export, CLI input errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mteswap.kernel import cgen
from mteswap.kernel.cli import kernel_app
from mteswap.kernel.setup import CFLAGS, CROSS_GCC, archive_base
from mteswap.scenario.load import load_scenario

ROOT = Path(__file__).parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
UNSUPPORTED = {"tag-alloc-failure-rollback"}
runner = CliRunner()


def supported():
    return [p for p in SCENARIOS if p.stem not in UNSUPPORTED]


def test_every_bundled_scenario_expands_or_is_known_unsupported():
    for path in SCENARIOS:
        sc = load_scenario(path)
        if path.stem in UNSUPPORTED:
            with pytest.raises(cgen.Unsupported):
                cgen.expand(sc)
        else:
            cs = cgen.expand(sc)
            assert len(cs.steps) == len(sc.steps)


def test_all_expands_to_pages_still_mapped():
    cs = cgen.expand(load_scenario(ROOT / "scenarios" / "swapoff-shared.yaml"))
    reclaim = cs.steps[3]
    assert reclaim.op == "reclaim" and reclaim.pages == list(range(16))
    cs = cgen.expand(load_scenario(ROOT / "scenarios" / "fork-cow-swap.yaml"))
    assert cs.procs == ["A", "B"] and cs.steps[2].child == 1


def test_export_has_tap_structure(tmp_path):
    out = tmp_path / "t.c"
    res = runner.invoke(kernel_app, ["export", str(ROOT / "scenarios" / "s1-shared-partial-dontneed.yaml"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "SPDX-License-Identifier" in text
    assert "TAP version 13" in text and "1..%d" in text
    assert re.search(r'"%sok %d - step %d: %s', text)
    assert "# SKIP MTE not supported" in text and "# SKIP no swap enabled" in text
    assert "int main(void)" in text


def test_export_to_stdout():
    res = runner.invoke(kernel_app, ["export", str(ROOT / "scenarios" / "s3-refault-swapcache.yaml")])
    assert res.exit_code == 0
    assert "scenario s3-refault-swapcache" in res.output


def test_unsupported_gives_exit_2(tmp_path):
    f = str(ROOT / "scenarios" / "tag-alloc-failure-rollback.yaml")
    res = runner.invoke(kernel_app, ["export", f])
    assert res.exit_code == 2
    assert "tag_alloc_fail_after" in res.output
    res = runner.invoke(kernel_app, ["run", f, "--cache", str(tmp_path)])
    assert res.exit_code == 2
    assert "not supported" in res.output


def test_unsupported_folio_size(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("version: 1\nname: x\nconfig: {folio_pages: [1, 2]}\nsteps:\n  - mmap: {proc: A, vma: b, pages: 2}\n")
    res = runner.invoke(kernel_app, ["export", str(p)])
    assert res.exit_code == 2 and "order-1" in res.output


def test_bad_input_and_missing_setup_give_exit_2(tmp_path):
    res = runner.invoke(kernel_app, ["run", str(tmp_path / "nope.yaml"), "--cache", str(tmp_path)])
    assert res.exit_code == 2
    ok = str(SCENARIOS[0])
    res = runner.invoke(kernel_app, ["run", ok, "--kernel", "5.4", "--cache", str(tmp_path)])
    assert res.exit_code == 2 and "--kernel" in res.output
    res = runner.invoke(kernel_app, ["run", ok, "--cache", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "mteswap kernel setup" in res.output


def test_archive_base_from_deb822(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
    )
    assert archive_base(tmp_path) == "http://mirror.example/debian"


@pytest.mark.skipif(shutil.which(CROSS_GCC) is None, reason=f"{CROSS_GCC} not installed")
def test_generated_c_compiles(tmp_path):
    expanded = [cgen.expand(load_scenario(p)) for p in supported()]
    src = tmp_path / "batch.c"
    src.write_text(cgen.batch_program(expanded))
    proc = subprocess.run([CROSS_GCC, *CFLAGS, "-Wall", "-Werror", "-o", str(tmp_path / "batch"), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    exp = tmp_path / "export.c"
    exp.write_text(cgen.export_program(expanded[0]))
    proc = subprocess.run([CROSS_GCC, *CFLAGS, "-Wall", "-Werror", "-o", str(tmp_path / "export"), str(exp)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _stale_case(new_pfns: dict[int, int]):
    """Guest result of s5-split-tagged-head-stale with `old` on frames 0x100-0x10f and the given
    frames for `buf` (first seen present after its write, step 5)."""
    from mteswap.kernel import compare, guest

    sc = load_scenario(ROOT / "scenarios" / "s5-split-tagged-head-stale.yaml")
    cs = cgen.expand(sc)
    obs, _ = compare.model_outcome(sc)
    res = guest.GuestResult(0, sc.name, rc=1)
    old = {p: 0x100 + p for p in range(16)}
    res.step(2).pfns["after"] = dict(old)
    res.step(3).pfns["before"] = dict(old)
    res.step(5).pfns["after"] = dict(new_pfns)
    res.step(9).pfns["after"] = dict(new_pfns)
    res.violations = [dict(v) for v in obs]
    return cs, obs, res


def test_frame_reuse_precondition():
    from mteswap.kernel import compare

    cs, obs, res = _stale_case({p: 0x100 + p for p in range(16)})
    assert obs and all(v["stale"] and "stale tags left in pfn" in v["detail"] for v in obs)
    assert compare.frame_reuse_problem(obs, res, cs) is None
    row = compare.Row(cs.scenario.name, "", "6.12", "zram", model_verdict="fail", model_violations=obs)
    compare.compare_one(row, res, cs, None)
    assert row.kernel_verdict == "fail" and row.agree is True

    # pages 4-15 on other frames: the stale-tag outcome has no basis on this kernel run
    cs, obs, res = _stale_case({p: 0x100 + p if p < 4 else 0x200 + p for p in range(16)})
    res.violations, res.rc = [], 0
    problem = compare.frame_reuse_problem(obs, res, cs)
    assert problem and problem.startswith("frames not reused: pages 4-15 of buf")
    assert "0x204-0x20f" in problem and "0x100-0x10f" in problem
    row = compare.Row(cs.scenario.name, "", "7.2", "zram", model_verdict="fail", model_violations=obs)
    compare.compare_one(row, res, cs, None)
    assert row.kernel_verdict == "precondition not met" and row.agree is None
    assert "frames not reused" in row.detail

    # no PFN evidence at all is not a proof of reuse either
    cs, obs, res = _stale_case({})
    assert "no PFN seen for pages 4-15 of buf" in compare.frame_reuse_problem(obs, res, cs)


def test_frame_reuse_not_needed_without_stale_tags():
    from mteswap.kernel import compare, guest

    sc = load_scenario(ROOT / "scenarios" / "s5-split-untagged-head.yaml")
    cs = cgen.expand(sc)
    obs, _ = compare.model_outcome(sc)
    assert obs and not any(v["stale"] for v in obs)
    assert compare.frame_reuse_problem(obs, guest.GuestResult(0, sc.name, rc=1), cs) is None


def test_parse_pfn_lines():
    from mteswap.kernel import guest

    b = guest.Boot("6.12", "zram")
    guest.parse_console("@@BEGIN 0 x\n@@F 3 before 0:4a300 1:0\n@@F 5 after 2:4a302\n@@END 0 0\n", b)
    r = b.results[0]
    assert r.steps[3].pfns["before"] == {0: 0x4a300, 1: 0} and r.steps[5].pfns["after"] == {2: 0x4a302}


def test_drop_caches_becomes_a_global_step_writing_3_to_drop_caches(tmp_path):
    from mteswap.scenario.load import parse_scenario
    sc = parse_scenario("""version: 1
name: deferred
config: {folio_pages: [1, 16]}
steps:
  - mmap: {proc: A, vma: buf, pages: 16, mte: true}
  - write: {proc: A, vma: buf, pages: all, tag: 3}
  - dontneed: {proc: A, vma: buf, pages: 8-15}
  - drop_caches
""", "deferred.yaml")
    cs = cgen.expand(sc)
    assert [s.op for s in cs.steps][-1] == "drop_caches" and cs.steps[-1].proc == -1
    text = cgen.batch_program([cs])
    assert "OP_DROP_CACHES = 15" in text
    assert '"/proc/sys/vm/drop_caches", "3"' in text
    if shutil.which(CROSS_GCC) is None:
        pytest.skip(f"{CROSS_GCC} not installed")
    src = tmp_path / "batch.c"
    src.write_text(text)
    proc = subprocess.run([CROSS_GCC, *CFLAGS, "-Wall", "-Werror", "-o", str(tmp_path / "batch"), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_stg_is_executed_on_pages_without_prot_mte_too():
    """STG on a page without PROT_MTE drops the tags but is still a store that faults the page
    in (the model maps it too); the program expects tag 0 there afterwards, not the tag set."""
    src = cgen.batch_program([cgen.expand(load_scenario(ROOT / "scenarios" / "roundtrip-small-ssd.yaml"))])
    touch = src[src.index("static int touch_page("):src.index("/* apply fn to maximal runs")]
    assert "if (kind != 0 && tagmode) {" in touch
    assert "if (vmte[v][p])\n\t\t\tvtag[v][p] = t;" in touch
