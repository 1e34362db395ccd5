"""One self-contained HTML page (inline CSS and script, no network, no external fonts) showing
one or more collected runs (collect.py) step by step, and optionally a verdict matrix whose
cells link to the runs in the same file.

Every step of every run is written out (hidden but the current one), so the page works without
script for reading and printing; the script only moves between steps, jumps to the first
violation and shows a page's history. DOM contract (the browser tests read it):

- a run: `article.report` with `data-run` (its index); a step: `section.step` with
  `data-step` (the step number), `hidden` unless current;
- a VMA of a step: `section.step > div.vmas > div.vma` with `data-proc`, `data-vma`, its
  pages as `span.pg` cells, each
  with `data-page` (the first page it stands for), `data-n` (how many: 1, or a run of equal
  pages in a VMA above RUN_ABOVE pages) and `data-letter`; `span.pg.bad` marks a page a
  violation of that step names; `div.step-bad` marks a step with a violation;
- a parallel block's step also has `div.interleaving`: one `details.atomic` per atomic step
  of the interleaving shown (`data-atomic` its position, `data-lane` its CPU), holding the
  VMAs after that step as above.
"""

from __future__ import annotations

import html
import json

RUN_ABOVE = 2048          # pages: a larger VMA row is drawn as runs of equal pages
HISTORY_ABOVE = RUN_ABOVE  # no per-page history for larger VMAs (it would dominate the file)

LETTER_TITLE = {"H": "head page of a large folio", "t": "tail page of a large folio",
                "p": "small folio", "z": "the shared zero page", "S": "swap PTE",
                "C": "swap PTE, folio in the swap cache", "-": "no PTE", "x": "not mapped"}


def page_html(runs: list[dict], title: str, matrix: dict | None = None) -> str:
    """The whole document: an optional matrix (`matrix_data` of compare), then every run."""
    body = []
    if matrix is not None:
        body.append(_matrix(matrix))
    body.extend(_run(i, run) for i, run in enumerate(runs))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<p class=\"keys\">Keys: <kbd>←</kbd>/<kbd>→</kbd> (or <kbd>k</kbd>/<kbd>j</kbd>) previous/next "
            f"step, <kbd>v</kbd> first violation, <kbd>Home</kbd>/<kbd>End</kbd>; click a page for its "
            f"history.</p>\n{LEGEND}\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


# -- the verdict matrix ---------------------------------------------------------------------

def _matrix(matrix: dict) -> str:
    """matrix: {"designs": [...], "rows": [[scenario, [(cell text, mark, run index)]]]}."""
    head = "".join(f"<th>{_e(d)}</th>" for d in matrix["designs"])
    rows = []
    for scenario, cells in matrix["rows"]:
        tds = "".join(f"<td class=\"{_e(mark)}\"><a href=\"#r{idx}\">{_e(text)}</a></td>"
                      for text, mark, idx in cells)
        rows.append(f"<tr><th>{_e(scenario)}</th>{tds}</tr>")
    return (f"<section class=\"matrix\"><h1>Verdicts</h1><table><tr><th>scenario</th>{head}</tr>"
            + "".join(rows) + "</table><p>✓ as the scenario's <code>expect</code> says, "
            "✗ not as it says, unmarked: no <code>expect</code>. A cell links to its run.</p></section>")


# -- one run ----------------------------------------------------------------------------------

def _run(idx: int, run: dict) -> str:
    steps = run["steps"]
    first_bad = next((s["index"] for s in steps if s["violations"]), None)
    verdict = run["verdict"] if first_bad is None else f"fail (first violation at step {first_bad})"
    head = (f"<h1>{_e(run['scenario'])} <small>design {_e(run['design'])}, kernel "
            f"{_e(run['kernel'])}, {_e(run['device'])}</small></h1>"
            f"<p class=\"verdict {run['verdict']}\">{_e(verdict)}</p>"
            + (f"<p class=\"desc\">{_e(run['description'])}</p>" if run["description"] else ""))
    nav = (f"<nav><button data-go=\"prev\">◀ previous</button> <span class=\"pos\"></span> "
           f"<button data-go=\"next\">next ▶</button> "
           + (f"<button data-go=\"bad\" data-step=\"{first_bad}\">first violation</button> "
              if first_bad is not None else "")
           + "<ol class=\"steps\">" + "".join(
               f"<li data-to=\"{s['index']}\" class=\"{'bad' if s['violations'] else ''}\">"
               f"{s['index']}</li>" for s in steps) + "</ol></nav>")
    sections = "".join(_step(s, k == 0) for k, s in enumerate(steps))
    history = json.dumps(_history(steps), separators=(",", ":"))
    return (f"<article class=\"report\" id=\"r{idx}\" data-run=\"{idx}\">{head}{nav}{sections}"
            f"<aside class=\"history\" hidden></aside>"
            f"<script type=\"application/json\" class=\"hist\">{_script_safe(history)}</script></article>")


def _step(s: dict, current: bool) -> str:
    bad = {(v["proc"], v["vma"], v["page"]) for v in s["violations"]}
    viol = "".join(f"<li><b>{_e(v['kind'])}</b>"
                   + (f" {_e(v['proc'])} {_e(v['vma'])} page {v['page']}" if v["page"] is not None else "")
                   + f": {_e(v['detail'])}</li>" for v in s["violations"])
    vmas = "".join(_vma(v, bad) for v in s["vmas"])
    counters = " ".join(f"<span>{_e(k)} {'+' if d > 0 else ''}{d}</span>" for k, d in s["counters"].items())
    trace = "\n".join(f"{_e(fn):24} {_e(text)}" for fn, text in s["trace"])
    return (f"<section class=\"step\" data-step=\"{s['index']}\"{'' if current else ' hidden'}>"
            f"<h2>step {s['index']}: {_e(s['text'])}</h2>"
            + (f"<div class=\"step-bad\"><ul>{viol}</ul></div>" if viol else "")
            + f"<div class=\"vmas\">{vmas}</div>{_slots(s['slots'])}"
            + (_interleaving(s, bad) if "atomic" in s else "")
            + (f"<p class=\"counters\">{counters}</p>" if counters else "")
            + f"<details><summary>kernel functions ({len(s['trace'])})</summary><pre>{trace}</pre></details>"
            + "</section>")


def _interleaving(s: dict, bad: set) -> str:
    """A parallel block: each lane's operations, then the interleaving shown as the
    `CPU0 | CPU1` columns, one atomic step per row; a row opens to the state after it."""
    n = len(s["lanes"])
    lanes = "".join(f"<li><b>CPU{i}</b>: {_e('; '.join(ops))}</li>" for i, ops in enumerate(s["lanes"]))
    head = "".join(f"<span>CPU{i}</span>" for i in range(n))
    rows = []
    for k, a in enumerate(s["atomic"]):
        cols = "".join(f"<span>{_e(a['name']) if i == a['lane'] else ''}</span>" for i in range(n))
        state = "".join(_vma(v, set()) for v in a["vmas"])
        rows.append(f"<details class=\"atomic\" data-atomic=\"{k}\" data-lane=\"{a['lane']}\">"
                    f"<summary style=\"--n:{n}\">{cols}</summary>"
                    f"<div class=\"vmas\">{state}</div>{_slots(a['slots'])}</details>")
    return (f"<div class=\"interleaving\"><p>lanes (one kernel thread each):</p><ul>{lanes}</ul>"
            f"<p>the interleaving shown ({len(s['atomic'])} atomic steps; open a row for the "
            f"state after it):</p><div class=\"cpuhead\" style=\"--n:{n}\">{head}</div>"
            + "".join(rows) + "</div>")


def _vma(v: dict, bad: set) -> str:
    """One VMA row: large folios (H t t ...) as one bracketed block; above RUN_ABOVE pages,
    runs of equal cells as one cell with a count."""
    pages, mte, tags = v["pages"], v["mte"], v["tags"]
    runs = len(pages) > RUN_ABOVE
    cells, folio = [], []
    i = 0
    while i < len(pages):
        n = 1
        if runs:
            while (i + n < len(pages) and pages[i + n] == pages[i] and mte[i + n] == mte[i]
                   and tags[i + n] == tags[i]):
                n += 1
        is_bad = any((v["proc"], v["vma"], p) in bad for p in range(i, i + n))
        cell = _cell(i, n, pages[i], mte[i], tags[i], is_bad)
        if pages[i] == "H" and not runs:
            folio = [cell]
        elif pages[i] == "t" and folio:
            folio.append(cell)
        else:
            cells.extend(_close(folio))
            folio = []
            cells.append(cell)
        if folio and (i + n >= len(pages) or pages[i + n] != "t"):
            cells.extend(_close(folio))
            folio = []
        i += n
    return (f"<div class=\"vma\" data-proc=\"{_e(v['proc'])}\" data-vma=\"{_e(v['vma'])}\">"
            f"<span class=\"name\">{_e(v['proc'])} {_e(v['vma'])}</span>"
            f"<span class=\"cells\">{''.join(cells)}</span></div>")


def _close(folio: list[str]) -> list[str]:
    return [f"<span class=\"folio\">{''.join(folio)}</span>"] if folio else []


def _cell(page: int, n: int, letter: str, mte: str, tags: str, bad: bool) -> str:
    cls = ["pg", "L" + ("_" if letter == "-" else letter)]
    if mte == "M":
        cls.append("m")
    if bad:
        cls.append("bad")
    tag_cls = _tag_class(tags)
    if tag_cls:
        cls.append(tag_cls)
    where = f"page {page}" if n == 1 else f"pages {page}-{page + n - 1}"
    title = (f"{where}: {LETTER_TITLE.get(letter, letter)}"
             + (", PG_mte_tagged" if mte == "M" else ", not PG_mte_tagged" if mte == "." else "")
             + (f", tags {tags}" if tags else ""))
    count = f"<i>×{n}</i>" if n > 1 else ""
    return (f"<span class=\"{' '.join(cls)}\" data-page=\"{page}\" data-n=\"{n}\" "
            f"data-letter=\"{_e(letter)}\" title=\"{_e(title)}\">{_e(letter)}"
            f"<small>{_e(_short(tags))}</small>{count}</span>")


def _short(tags: str) -> str:
    """The tags as the cell shows them (the title has them in full): `?` unknown, `mix`."""
    saved = "s" if tags.startswith("s") else ""
    t = tags[len(saved):]
    return saved + ("?" if t == "unknown" else "mix" if t.startswith("mixed") else t)


def _tag_class(tags: str) -> str:
    """A colour class per tag value 0-15 (`s5`, saved tags, as 5); mixed/unknown apart."""
    t = tags[1:] if tags.startswith("s") else tags
    if t.isdigit():
        return f"t{t}"
    return "tmix" if t else ""


def _slots(slots: list[dict]) -> str:
    if not slots:
        return "<p class=\"slots\">swap: no slot in use</p>"
    chips = "".join(
        f"<span class=\"slot{' cached' if s['cached'] else ''}{' saved' if s['saved'] else ''}\" "
        f"title=\"slot {s['offset']}: swap_map count {s['count']}"
        f"{', in the swap cache' if s['cached'] else ''}"
        f"{', saved tags' if s['saved'] else ', no saved tags'}\">{s['offset']}"
        f"{'<b>C</b>' if s['cached'] else ''}{'<b>T</b>' if s['saved'] else ''}</span>"
        for s in slots)
    return (f"<p class=\"slots\">swap slots in use ({len(slots)}; C: swap cache, T: saved tags): "
            f"{chips}</p>")


def _history(steps: list[dict]) -> dict:
    """{"proc vma page": [[step, letter, mte, tags], ...]}: the steps that changed each page
    (the first step that shows it included)."""
    out: dict[str, list] = {}
    last: dict[str, tuple] = {}
    for s in steps:
        for v in s["vmas"]:
            if len(v["pages"]) > HISTORY_ABOVE:
                continue
            for p, (letter, mte, tags) in enumerate(zip(v["pages"], v["mte"], v["tags"])):
                key = f"{v['proc']} {v['vma']} {p}"
                now = (letter, mte, tags)
                if last.get(key) != now:
                    last[key] = now
                    out.setdefault(key, []).append([s["index"], letter, mte, tags])
    return out


LEGEND = ("<p class=\"legend\">A page: its letter (H/t head/tail of a large folio, drawn in one "
          "frame; p small folio; z zero page; S swap PTE; C swap PTE, folio in the swap cache; "
          "- no PTE; x not mapped), under it its tags where they are now (a number and a colour "
          "per tag; sN: saved tags in the tag store; mix: several tags; ?: tags nobody set). "
          "<span class=\"pg m\">M</span> underlined: PG_mte_tagged. "
          "<span class=\"pg bad\">!</span> named by a violation of the step. Swap slots: "
          "C held by the swap cache, T saved tags.</p>")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _script_safe(text: str) -> str:
    """JSON inside <script>: no '</' may close the element early."""
    return text.replace("</", "<\\/")


CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1em;color:#111;background:#fff}
h1{font-size:1.3em;margin:.8em 0 .2em}h1 small{font-weight:normal;color:#555}
h2{font-size:1.05em;margin:.6em 0 .3em}
.keys,.legend{color:#555;font-size:.9em;max-width:70em}kbd{border:1px solid #aaa;border-radius:3px;padding:0 3px}
.report{border-top:2px solid #333;margin-top:1.5em;padding-top:.3em}
.verdict.fail{color:#b00020;font-weight:bold}.verdict.pass{color:#1b5e20;font-weight:bold}
.desc{white-space:pre-wrap;color:#333;max-width:60em}
nav{position:sticky;top:0;background:#fff;padding:.3em 0;z-index:1}
nav button{font:inherit}
ol.steps{display:inline;list-style:none;padding:0;margin:0 0 0 .5em}
ol.steps li{display:inline-block;min-width:1.6em;text-align:center;border:1px solid #ccc;margin:1px;cursor:pointer}
ol.steps li.bad{border-color:#b00020;color:#b00020;font-weight:bold}
ol.steps li.cur{background:#333;color:#fff}
.vma{margin:.3em 0;white-space:nowrap}
.vma .name{display:inline-block;min-width:7em;font-weight:bold}
.cells{display:inline-flex;flex-wrap:wrap;gap:1px;white-space:normal;vertical-align:top}
.folio{display:inline-flex;gap:1px;border:2px solid #333;border-radius:4px;padding:1px}
.pg{display:inline-block;min-width:1.9em;text-align:center;border:1px solid #bbb;font-family:ui-monospace,monospace;cursor:pointer;line-height:1.1;padding:1px 0}
.pg small{display:block;font-size:.75em}.pg i{display:block;font-size:.7em}
.pg.m{border-bottom:3px solid #000}
.pg.bad{outline:3px solid #b00020;outline-offset:-1px}
.pg.LS,.pg.LC{background:#eee}.pg.Lx{background:#fff;color:#aaa;border-style:dashed}
.pg.L_{color:#888}
.t0{background:#f5f5f5}.t1{background:#ffcdd2}.t2{background:#f8bbd0}.t3{background:#e1bee7}
.t4{background:#d1c4e9}.t5{background:#c5cae9}.t6{background:#bbdefb}.t7{background:#b3e5fc}
.t8{background:#b2ebf2}.t9{background:#b2dfdb}.t10{background:#c8e6c9}.t11{background:#dcedc8}
.t12{background:#f0f4c3}.t13{background:#fff9c4}.t14{background:#ffecb3}.t15{background:#ffe0b2}
.tmix{background:repeating-linear-gradient(45deg,#eee,#eee 3px,#ccc 3px,#ccc 6px)}
.step-bad{border-left:4px solid #b00020;padding-left:.5em;color:#b00020}
.slots .slot{display:inline-block;border:1px solid #999;margin:1px;padding:0 3px;font-family:ui-monospace,monospace}
.slots .slot.cached{border-color:#1565c0}.slots .slot.saved{background:#fff3e0}
.counters span{margin-right:.8em;color:#333}
pre{background:#f7f7f7;padding:.5em;overflow:auto}
.history{border:1px solid #333;padding:.5em;margin:.5em 0;background:#fafafa}
.interleaving{border-left:4px solid #1565c0;padding-left:.5em;margin:.5em 0}
.cpuhead,.atomic summary{display:grid;grid-template-columns:repeat(var(--n),minmax(12em,24em));gap:0 1em;font-family:ui-monospace,monospace}
.cpuhead{font-weight:bold;border-bottom:1px solid #333;margin-left:1.2em}
.atomic summary{cursor:pointer}.atomic[open]{background:#f5f9ff}
.matrix table{border-collapse:collapse}.matrix td,.matrix th{border:1px solid #ccc;padding:2px 6px}
.matrix td.ok a{color:#1b5e20}.matrix td.bad a{color:#b00020;font-weight:bold}
"""

SCRIPT = """
(function(){
  var reports=[].slice.call(document.querySelectorAll('article.report'));
  var active=reports[0]||null;
  function steps(r){return [].slice.call(r.querySelectorAll('section.step'));}
  function cur(r){var s=steps(r);for(var i=0;i<s.length;i++)if(!s[i].hidden)return i;return 0;}
  function show(r,i){
    var s=steps(r);if(!s.length)return;i=Math.max(0,Math.min(s.length-1,i));
    s.forEach(function(x,k){x.hidden=(k!==i);});
    r.querySelectorAll('ol.steps li').forEach(function(li,k){li.classList.toggle('cur',k===i);});
    r.querySelector('.pos').textContent='step '+s[i].dataset.step+' of '+s.length;
    r.dataset.current=s[i].dataset.step;
  }
  function toStep(r,n){var s=steps(r);for(var i=0;i<s.length;i++)if(s[i].dataset.step===String(n))show(r,i);}
  reports.forEach(function(r){
    show(r,0);
    r.addEventListener('click',function(ev){
      active=r;var t=ev.target.closest('[data-go],[data-to],.pg');if(!t)return;
      if(t.dataset.go==='prev')show(r,cur(r)-1);
      else if(t.dataset.go==='next')show(r,cur(r)+1);
      else if(t.dataset.go==='bad')toStep(r,t.dataset.step);
      else if(t.dataset.to)toStep(r,t.dataset.to);
      else if(t.classList.contains('pg'))history(r,t);
    });
  });
  function history(r,cell){
    var vma=cell.closest('.vma'),key=vma.dataset.proc+' '+vma.dataset.vma+' '+cell.dataset.page;
    var h=JSON.parse(r.querySelector('script.hist').textContent)[key]||[];
    var box=r.querySelector('aside.history');box.hidden=false;box.textContent='';
    var title=document.createElement('b');title.textContent='history of '+key.replace(/ (\\d+)$/,' page $1')+': ';
    box.appendChild(title);
    var ul=document.createElement('ul');
    h.forEach(function(e){var li=document.createElement('li');
      li.textContent='step '+e[0]+': '+e[1]+(e[2]==='M'?' PG_mte_tagged':'')+(e[3]?' tags '+e[3]:'');
      li.dataset.to=e[0];ul.appendChild(li);});
    if(!h.length){var li=document.createElement('li');li.textContent='(not recorded for this VMA size)';ul.appendChild(li);}
    box.appendChild(ul);
  }
  function fromHash(){var m=/^#r(\\d+)$/.exec(location.hash);if(m&&reports[+m[1]])active=reports[+m[1]];}
  window.addEventListener('hashchange',fromHash);fromHash();
  document.addEventListener('keydown',function(ev){
    if(!active||ev.altKey||ev.ctrlKey||ev.metaKey)return;
    var k=ev.key,r=active;
    if(k==='ArrowRight'||k==='j')show(r,cur(r)+1);
    else if(k==='ArrowLeft'||k==='k')show(r,cur(r)-1);
    else if(k==='Home')show(r,0);
    else if(k==='End')show(r,steps(r).length-1);
    else if(k==='v'){var b=r.querySelector('[data-go=bad]');if(b)toStep(r,b.dataset.step);}
    else return;
    ev.preventDefault();
  });
})();
"""
