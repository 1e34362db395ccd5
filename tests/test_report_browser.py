"""The report in a real browser: Debian's headless Chromium driven by Debian's chromedriver
(tests/browser.py; no browser download). Every bundled scenario under `merged`, in one page:
each step shows one cell per page of each VMA with the letters of `run --json --states`, the
first violation's step and page are marked, the keyboard moves the step, a click shows a
page's history, and a screenshot of an S5 report is not blank.

Marked `browser`; skipped where Chromium or chromedriver is not installed (`.ci/run` installs
both)."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

import browser
from helpers import invoke
from mteswap.bundled import bundled_files, parallel_files
from mteswap.scenario.load import load_scenario

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not browser.available(), reason="needs /usr/bin/chromium and chromedriver")]

FILES = sorted(bundled_files(), key=lambda p: p.stem)
LETTERS = """
  var art = document.querySelectorAll('article.report')[arguments[0]];
  var sec = art.querySelector('section.step[data-step="' + arguments[1] + '"]');
  var out = {};
  sec.querySelectorAll(':scope > div.vmas > div.vma').forEach(function (v) {
    out[v.dataset.proc + ' ' + v.dataset.vma] = [].map.call(v.querySelectorAll('span.pg'),
      function (c) { return c.dataset.letter.repeat(+c.dataset.n); }).join('');
  });
  return out;"""
CURRENT = """
  var art = document.querySelectorAll('article.report')[arguments[0]];
  var shown = [].filter.call(art.querySelectorAll('section.step'), function (s) { return !s.hidden; });
  return [art.dataset.current, shown.map(function (s) { return s.dataset.step; })];"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "bundled.html"
    assert invoke("report", *FILES, "--design", "merged", "-o", out).exit_code == 0
    b = browser.Browser()
    b.open(out)
    yield b
    b.close()


def run_json(path) -> dict:
    return json.loads(invoke("run", path, "--design", "merged", "--json", "--states").stdout)


CELLS = """
  var art = document.querySelectorAll('article.report')[arguments[0]];
  var out = {};
  art.querySelectorAll('section.step').forEach(function (sec) {
    sec.querySelectorAll(':scope > div.vmas > div.vma').forEach(function (v) {
      out[sec.dataset.step + ' ' + v.dataset.proc + ' ' + v.dataset.vma] =
        v.querySelectorAll('span.pg').length;
    });
  });
  return out;"""


@pytest.mark.parametrize("index", range(len(FILES)), ids=[p.stem for p in FILES])
def test_each_step_shows_the_states_letters(page, index):
    res = run_json(FILES[index])
    assert page.js("return document.querySelectorAll('article.report')[arguments[0]]"
                   ".querySelector('h1').textContent", index).startswith(res["scenario"])
    for st in res["states"]:
        shown = page.js(LETTERS, index, st["step"])
        assert shown[f"{st['proc']} {st['vma']}"] == st["pages"], st


@pytest.mark.parametrize("index", range(len(FILES)), ids=[p.stem for p in FILES])
def test_each_step_has_one_cell_per_page_of_every_vma(page, index):
    """Every VMA mapped so far (a fork's child has its parent's), at every step, as many
    cells as the mmap gave it pages."""
    sc = load_scenario(FILES[index])
    sizes, want = {}, {}
    for step in sc.steps:
        a = step.args
        if step.op == "mmap":
            sizes[(a["proc"], a["vma"])] = a["pages"]
        elif step.op == "fork":
            sizes.update({(a["child"], v): n for (p, v), n in list(sizes.items()) if p == a["proc"]})
        want.update({f"{step.index} {p} {v}": n for (p, v), n in sizes.items()})
    assert page.js(CELLS, index) == want


@pytest.mark.parametrize("index", range(len(FILES)), ids=[p.stem for p in FILES])
def test_violation_step_and_page_are_marked(page, index):
    res = run_json(FILES[index])
    bad_steps = page.js("return [].map.call(document.querySelectorAll('article.report')[arguments[0]]"
                        ".querySelectorAll('ol.steps li.bad'), function (li) { return +li.dataset.to; })", index)
    assert bad_steps == sorted({v["step"] for v in res["violations"]})
    for v in res["violations"]:
        if v["page"] is None:
            continue
        marked = page.js("""
          var art = document.querySelectorAll('article.report')[arguments[0]];
          var sec = art.querySelector('section.step[data-step="' + arguments[1] + '"]');
          var row = sec.querySelector('div.vma[data-proc="' + arguments[2] + '"][data-vma="' + arguments[3] + '"]');
          return [].some.call(row.querySelectorAll('span.pg.bad'), function (c) {
            return +c.dataset.page <= arguments[4] && arguments[4] < +c.dataset.page + +c.dataset.n; });
        """.replace("arguments[4]", str(v["page"])), index, v["step"], v["proc"], v["vma"])
        assert marked, v


def test_keyboard_moves_the_step_and_jumps_to_the_violation(page):
    index = next(i for i, p in enumerate(FILES) if p.stem == "s5-split-tagged-head-stale")
    page.click(f'article.report[data-run="{index}"] h1')         # this report takes the keys
    assert page.js(CURRENT, index) == ["1", ["1"]]
    page.press("ArrowRight")
    page.press("ArrowRight")
    assert page.js(CURRENT, index) == ["3", ["3"]]
    page.press("ArrowLeft")
    assert page.js(CURRENT, index) == ["2", ["2"]]
    page.press("v")
    assert page.js(CURRENT, index) == ["7", ["7"]]                # I1 at the split
    page.press("End")
    assert page.js(CURRENT, index) == ["9", ["9"]]
    page.press("ArrowRight")                                        # stays on the last step
    assert page.js(CURRENT, index) == ["9", ["9"]]
    page.press("Home")
    assert page.js(CURRENT, index) == ["1", ["1"]]
    other = (index + 1) % len(FILES)
    assert page.js(CURRENT, other)[0] == "1"                        # other reports untouched


def test_click_a_page_shows_its_history(page):
    index = next(i for i, p in enumerate(FILES) if p.stem == "roundtrip-large-zram")
    page.click(f'article.report[data-run="{index}"] ol.steps li[data-to="3"]')
    assert page.js(CURRENT, index)[0] == "3"
    page.click(f'article.report[data-run="{index}"] section.step[data-step="3"] span.pg[data-page="0"]')
    lines = page.js("return [].map.call(document.querySelectorAll('article.report')[arguments[0]]"
                    ".querySelectorAll('aside.history li'), function (li) { return li.textContent; })", index)
    # mmap (no PTE), write (head of a large folio, tag 1), pageout (swapped, saved tags 1),
    # the read of page 3 (swapped in whole), the exit
    assert lines[:4] == ["step 1: -", "step 2: H PG_mte_tagged tags 1", "step 3: S tags s1",
                         "step 4: H PG_mte_tagged tags 1"], lines


def test_screenshot_of_an_s5_report_is_not_blank(tmp_path):
    out = tmp_path / "s5.html"
    s5 = next(p for p in FILES if p.stem == "s5-split-tagged-head-stale")
    assert invoke("report", s5, "--design", "merged", "-o", out).exit_code == 0
    b = browser.Browser()
    try:
        b.open(out)
        b.press("v")
        png = b.screenshot()
    finally:
        b.close()
    (tmp_path / "s5.png").write_bytes(png)
    colours = png_colours(png)
    assert len(colours) > 20, len(colours)      # text, tag colours, the violation's red


def png_colours(png: bytes) -> set:
    """Distinct (r, g, b) of a non-interlaced 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, _, depth, ctype = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and ctype in (2, 6)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    raw, stride, colours = zlib.decompress(idat), width * bpp, set()
    prev = bytearray(stride)
    for row in range(len(raw) // (stride + 1)):
        f, line = raw[row * (stride + 1)], bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 7))
        prev = line
    return colours


def test_parallel_block_shows_its_interleaving_step_by_step(tmp_path):
    """p1 with 13ddaf26be32 reverted: the failing interleaving as CPU0 | CPU1 rows, one per
    atomic step in the schedule `run` reports, each opening to the state after it."""
    p1 = next(p for p in parallel_files() if p.stem.startswith("p1-"))
    res = json.loads(invoke("run", p1, "--revert", "13ddaf26be32", "--json").stdout)
    schedule = res["violations"][0]["schedule"]
    out = tmp_path / "p1.html"
    assert invoke("report", p1, "--revert", "13ddaf26be32", "-o", out).exit_code == 0
    b = browser.Browser()
    try:
        b.open(out)
        b.click('ol.steps li[data-to="4"]')
        rows = b.js("return [].map.call(document.querySelectorAll('section.step[data-step=\"4\"] details.atomic'),"
                    " function (d) { return [+d.dataset.lane, d.open, d.querySelectorAll('summary span')[+d.dataset.lane].textContent]; })")
        assert [lane for lane, _, _ in rows] == schedule
        assert not any(opened for _, opened, _ in rows)
        assert rows[1][2] == "do_swap_page:swap_cache_get_folio"
        b.click('section.step[data-step="4"] details.atomic[data-atomic="8"] summary')
        state = b.js("var d = document.querySelector('section.step[data-step=\"4\"] details.atomic[data-atomic=\"8\"]');"
                     "return [d.open, [].map.call(d.querySelectorAll('span.pg'), function (c) { return c.dataset.letter; })]")
        assert state == [True, ["p"]]               # CPU1 has mapped the page it read (its set_ptes step)
    finally:
        b.close()
