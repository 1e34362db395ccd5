"""`mteswap report` and `--html` on run/compare/check without a browser: what the page is
built from (report/collect.py) agrees with `run --json --states`, the DOM contract of
report/html.py holds in the written text, bad input writes nothing, large VMAs are drawn in
runs, and every bundled scenario's page stays small. The browser tests are in
test_report_browser.py."""

from __future__ import annotations

import json
import re

import pytest

from helpers import invoke
from mteswap.bundled import bundled_files, parallel_files
from mteswap.designs import get_design
from mteswap.report import collect, page_html
from mteswap.report.html import RUN_ABOVE
from mteswap.scenario.load import load_scenario, parse_scenario, with_reverts

BUNDLED = {p.stem: p for p in bundled_files()}


def states_of(path, design="merged") -> list[dict]:
    out = invoke("run", path, "--design", design, "--json", "--states").stdout
    return json.loads(out)["states"]


@pytest.mark.parametrize("name", ["s5-split-tagged-head-stale", "fork-cow-swap",
                                  "s2-partial-mprotect-pageout", "swapoff-shared"])
def test_collect_letters_are_those_of_run_states(name):
    """After each step, the VMA the step names shows the same pages and mte strings as
    `run --json --states`; the other VMAs are there too."""
    run = collect(load_scenario(BUNDLED[name]), get_design("merged"))
    for st in states_of(BUNDLED[name]):
        step = run["steps"][st["step"] - 1]
        vma = next(v for v in step["vmas"] if (v["proc"], v["vma"]) == (st["proc"], st["vma"]))
        assert (vma["pages"], vma["mte"]) == (st["pages"], st["mte"])
        assert len(vma["tags"]) == len(vma["pages"])


def test_collect_marks_violations_at_their_step_with_tags_and_slots():
    run = collect(load_scenario(BUNDLED["s5-split-tagged-head-stale"]), get_design("merged"))
    assert run["verdict"] == "fail"
    bad = [s["index"] for s in run["steps"] if s["violations"]]
    assert bad[0] == 7 and run["steps"][6]["violations"][0]["detail"].startswith("I1: pfn 4")
    step9 = run["steps"][8]
    faults = [v for v in step9["violations"] if v["kind"] == "tag-check-fault"]
    assert faults and faults[0]["page"] is not None
    buf = next(v for v in step9["vmas"] if v["vma"] == "buf")
    assert buf["tags"][4] == "5"                 # the stale tag the program meets on page 4
    # two whole-folio swap-outs: 32 slots from 512, each with saved tags
    rt = collect(load_scenario(BUNDLED["roundtrip-large-zram"]), get_design("merged"))
    out = next(s for s in rt["steps"] if s["text"].startswith("pageout"))
    assert [s["offset"] for s in out["slots"]] == list(range(512, 544))
    assert all(s["saved"] and s["count"] == 1 for s in out["slots"])
    swapped = next(v for v in out["vmas"] if v["vma"] == "buf")
    assert set(swapped["pages"]) == {"S"} and swapped["tags"][0].startswith("s")


def cells(text: str, run: int, step: int) -> dict[tuple[str, str], str]:
    """(proc, vma) -> the letters of that step's cells, runs expanded, from the page's text."""
    article = text.split(f'data-run="{run}"', 1)[1].split("</article>", 1)[0]
    section = article.split(f'<section class="step" data-step="{step}"', 1)[1].split("</section>", 1)[0]
    section = section.split('<div class="interleaving">', 1)[0]      # the step's own rows
    out = {}
    for proc, vma, body in re.findall(r'<div class="vma" data-proc="([^"]*)" data-vma="([^"]*)">(.*?)</div>', section):
        out[(proc, vma)] = "".join(letter * int(n) for n, letter in
                                   re.findall(r'data-n="(\d+)" data-letter="([^"]*)"', body))
    return out


def test_page_has_one_cell_per_page_and_marks_the_violating_page(tmp_path):
    out = tmp_path / "r.html"
    result = invoke("report", BUNDLED["s5-split-untagged-head"], "--design", "merged", "-o", out)
    assert result.exit_code == 0 and out.exists()
    assert "wrote" in result.stderr and str(out) in result.stderr
    text = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)          # nothing fetched
    for st in states_of(BUNDLED["s5-split-untagged-head"]):
        assert cells(text, 0, st["step"])[(st["proc"], st["vma"])] == st["pages"]
    res = json.loads(invoke("run", BUNDLED["s5-split-untagged-head"], "--design", "merged", "--json").stdout)
    first = res["violations"][0]
    section = text.split(f'<section class="step" data-step="{first["step"]}"', 1)[1].split("</section>")[0]
    assert f'data-page="{first["page"]}"' in section
    marked = re.findall(r'class="pg [^"]*\bbad\b[^"]*" data-page="(\d+)"', section)
    assert str(first["page"]) in marked


def test_large_vma_is_drawn_in_runs(tmp_path):
    n = RUN_ABOVE * 2
    sc = parse_scenario(f"version: 1\nname: big\nconfig: {{frames: {n + 64}, folio_pages: [1, 16]}}\n"
                        f"steps:\n  - mmap: {{proc: A, vma: big, pages: {n}, mte: true}}\n"
                        f"  - write: {{proc: A, vma: big, pages: 0-{n // 2 - 1}, tag: 3}}\n")
    text = page_html([collect(sc, get_design("merged"))], "big")
    got = cells(text, 0, 2)[("A", "big")]
    assert got == ("Httttttttttttttt" * (n // 32)) + "-" * (n // 2)
    assert text.count('class="pg') < 2 * n // 16 + 10       # runs, not one cell per page
    assert len(text) < 200_000


def test_every_bundled_report_is_under_5_mb(tmp_path):
    for name, path in BUNDLED.items():
        out = tmp_path / f"{name}.html"
        assert invoke("report", path, "--design", "merged", "-o", out).exit_code == 0
        assert out.stat().st_size < 5_000_000, name


def test_run_compare_and_check_write_html(tmp_path):
    r = tmp_path / "run.html"
    assert invoke("run", BUNDLED["roundtrip-large-zram"], "--html", r).exit_code == 0
    assert r.read_text().count('<article class="report"') == 1
    c = tmp_path / "cmp.html"
    res = invoke("compare", BUNDLED["s5-split-untagged-head"], BUNDLED["roundtrip-large-zram"],
                 "--designs", "merged,rfc-v1", "--html", c)
    assert res.exit_code == 0
    text = c.read_text()
    assert text.count('<article class="report"') == 4
    assert [m for m in re.findall(r'href="#r(\d+)"', text)] == ["0", "1", "2", "3"]
    assert "✓ tag-check-fault@6" in text
    k = tmp_path / "check.html"
    res = invoke("check", "--design", "rfc-v1", "--depth", "3", "--workers", "1",
                 "--out", tmp_path / "ce", "--html", k)
    assert res.exit_code == 1 and k.exists()
    text = k.read_text()
    assert "design rfc-v1" in text and "invariant" in text


@pytest.mark.parametrize("args, message", [
    (["--design", "merged", "--designs", "merged,rfc-v1"], "--design and --designs cannot be used together"),
    (["--design", "nosuch"], "--design: unknown design 'nosuch'"),
])
def test_report_bad_options_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "r.html"
    res = invoke("report", BUNDLED["fork-cow-swap"], *args, "-o", out)
    assert res.exit_code == 2 and message in res.stderr and not out.exists()


def test_report_bad_file_and_unwritable_output_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nsteps:\n  - read: {proc: A, vma: nope, pages: 0}\n  - bogus\n")
    out = tmp_path / "r.html"
    res = invoke("report", bad, "-o", out)
    assert res.exit_code == 2 and "step 2" in res.stderr and not out.exists()
    res = invoke("report", BUNDLED["fork-cow-swap"], "-o", tmp_path / "no" / "dir" / "r.html")
    assert res.exit_code == 2 and "cannot write the report" in res.stderr
    assert list(tmp_path.iterdir()) == [bad]                 # no temporary file left behind


def test_parallel_block_collects_the_state_after_each_atomic_step(tmp_path):
    """p1 with 13ddaf26be32 reverted: the block's step lists both lanes and, for each atomic
    step of the reported interleaving (its schedule), the lane, the kernel step and the
    state after it; the page shows one row per atomic step in its CPU's column."""
    p1 = next(p for p in parallel_files() if p.stem.startswith("p1-"))
    sc = with_reverts(load_scenario(p1), ["13ddaf26be32"])
    run = collect(sc, get_design("merged"))
    # the shortest failing interleaving: CPU0's pte_same between reclaim's r2 and r3
    assert run["verdict"] == "fail" and run["schedule"] == [0, 0, 0] + [1] * 10 + [0, 0, 0, 1]
    block = run["steps"][3]
    assert block["lanes"] == [["read proc=A vma=buf pages=0"],
                              ["read proc=A vma=buf pages=0", "write proc=A vma=buf pages=0 tag=5",
                               "pageout proc=A vma=buf pages=0"]]
    assert [a["lane"] for a in block["atomic"]] == run["schedule"]
    pages = [a["vmas"][0]["pages"] for a in block["atomic"]]
    assert pages == list("SSSSSSSSppppCCCpp")      # C: a swap PTE whose folio is in the cache
    assert block["atomic"][7]["name"] == "do_swap_page:arch_swap_restore"
    assert block["atomic"][12]["name"] == "try_to_unmap:try_to_unmap_one"
    assert {v["kind"] for v in block["violations"]} == {"tag-check-fault", "data-corruption"}
    # another schedule shows another interleaving: the first lane to the end, then the second
    serial = collect(sc, get_design("merged"), (0,) * 5)
    assert serial["verdict"] == "pass" and serial["schedule"][:5] == [0] * 5
    text = page_html([run], "p1")
    assert text.count('<details class="atomic"') == 17
    assert re.findall(r'<details class="atomic" data-atomic="\d+" data-lane="(\d)"', text) == \
        [str(x) for x in run["schedule"]]
    # run --html shows the interleaving the run reported
    out = tmp_path / "run.html"
    assert invoke("run", p1, "--revert", "13ddaf26be32", "--html", out).exit_code == 1
    assert out.read_text().count('<details class="atomic"') == 17
