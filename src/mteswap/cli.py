"""The `mteswap` command (thin: parse arguments, call the runner, print)."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mteswap.bundled import bundled_files
from mteswap.cost.cli import cost_command
from mteswap.explore.cli import check_command
from mteswap.kernel.cli import kernel_app
from mteswap.designs import BUILTIN, DEFAULT, UnknownDesign
from mteswap.designs.loader import available_designs, design_factory
from mteswap.model.reverts import REVERTS
from mteswap.oracle import registry
from mteswap.scenario.load import (KERNELS, ScenarioError, load_scenario, with_kernel,
                                   with_reverts)
from mteswap.scenario.parallel import cpu_trace
from mteswap.scenario.runner import REPORTED_COUNTERS, RunResult, run_scenario

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Model of arm64 MTE tag save/restore across swap with large folios.")
_err = Console(stderr=True, highlight=False, soft_wrap=True)   # one-line messages, unwrapped
app.add_typer(kernel_app, name="kernel")   # mteswap kernel setup|run|export (issue 4)
app.command("check")(check_command)        # mteswap check (issue 5)
app.command("cost")(cost_command)          # mteswap cost (issue 6, in progress)


def _fail_input(message: str) -> None:
    _err.print(f"mteswap: error: {message}", markup=False)
    raise typer.Exit(2)


def _design_option(spec: str, option: str = "--design"):
    """A maker of fresh instances of the design `spec` names; a bad spec exits 2."""
    try:
        return design_factory(spec)
    except UnknownDesign as err:
        _fail_input(f"{option}: {err}")


_KERNEL_HELP = f"kernel version whose behaviour to follow: {' or '.join(KERNELS)} (default: the file's config.kernel, else {KERNELS[0]})"


def run_files(files: list[str], design, keep_trace: bool, kernel: str | None = None,
              keep_states: bool = False, reverts: list[str] | None = None,
              schedule: tuple[int, ...] | None = None,
              preemptions: int | None = None) -> list[RunResult]:
    """Load every file first, then run each; any bad input raises before output is printed.

    `design` is None (each file's `design:`, else merged), a spec for `load_design`, or a
    maker of fresh design instances (what `design_factory` returns). `kernel` (None: each
    file's) overrides `config.kernel`; `reverts` adds fixes to take out (`--revert`).
    `schedule` / `preemptions`: for parallel blocks (scenario/parallel.py)."""
    if isinstance(design, str):
        try:
            design = design_factory(design)
        except UnknownDesign as err:
            raise ScenarioError("--design", str(err)) from None
    scenarios = [with_reverts(with_kernel(load_scenario(f), kernel), reverts) for f in files]
    makers = {}
    for sc in scenarios:    # every file's design is checked before the first one runs
        if design is None:
            name = sc.design or DEFAULT
            if name not in makers:
                try:
                    makers[name] = design_factory(name, files=False)
                except UnknownDesign as err:
                    raise ScenarioError(sc.file, str(err), field="design") from None
    results = []
    for sc in scenarios:
        make = design if design is not None else makers[sc.design or DEFAULT]
        results.append(run_scenario(sc, make(), keep_trace=keep_trace, keep_states=keep_states,
                                    schedule=schedule, preemptions=preemptions))
    return results


# `--full-check` (run, compare, check): the oracle's state checks over the whole machine
# after every step instead of their scoped forms (oracle/scoped.py, docs/checking.md).
FULL_CHECK_OPTION = typer.Option(False, "--full-check", help="debug: run every oracle state check over the whole machine after each step, not only over what the step wrote (the same violations, slower; also MTESWAP_FULL_CHECK=1)")


@app.command()
def run(files: List[str] = typer.Argument(..., help="scenario files (YAML, format 1)"),
        design: Optional[str] = typer.Option(None, "--design", help="design: a name, or path/to/file.py:ClassName (default: the file's, else merged)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per file"),
        trace: bool = typer.Option(False, "--trace", help="print the kernel functions each step went through"),
        states: bool = typer.Option(False, "--states", help="after each step that names a process and a VMA, that VMA one letter per page (H/t large folio head/tail, p small folio, z zero page, S swap PTE, C swap PTE in the swap cache, - no PTE, x unmapped) and PG_mte_tagged (M, . or space); in --json as \"states\""),
        kernel: Optional[str] = typer.Option(None, "--kernel", help=_KERNEL_HELP),
        html_out: Optional[str] = typer.Option(None, "--html", help="also write the runs as one self-contained HTML page (mteswap report)"),
        revert: Optional[List[str]] = typer.Option(None, "--revert", help="take this fix out of the model (a commit id; repeatable; see `mteswap reverts`)"),
        schedule: Optional[str] = typer.Option(None, "--schedule", help="parallel blocks: replay this interleaving, the lane of each atomic step (e.g. 0,0,1,1,0), then no preemption"),
        preemptions: Optional[int] = typer.Option(None, "--preemptions", min=0, help="parallel blocks: explore only interleavings with at most N preemptions"),
        full_check: bool = FULL_CHECK_OPTION):
    """Run scenario files; exit 0 if no violation, 1 if any, 2 on bad input. A file with
    parallel blocks is run under every interleaving (or the one --schedule gives); a failing
    one is printed as CPU0 | CPU1 columns."""
    if full_check:
        registry.set_full_check(True)
    make = None if design is None else _design_option(design)
    try:
        results = run_files(files, make, keep_trace=trace, kernel=kernel, keep_states=states,
                            reverts=revert, schedule=_schedule(schedule),
                            preemptions=preemptions)
    except ScenarioError as err:
        _fail_input(str(err))
    if html_out is not None:
        _report_results(html_out, files, make, kernel, revert, [r.schedule for r in results])
    out = Console(highlight=False, soft_wrap=True)
    for res in results:
        if as_json:
            print(json.dumps(res.to_json()))
            continue
        if trace:
            print_trace(out, res)
        elif states:
            print_states(out, res)
        if res.blocks and (res.violations or schedule is not None):
            print_interleaving(out, res)
        print_result(out, res)
    raise typer.Exit(1 if any(r.violations for r in results) else 0)


def _schedule(text: str | None) -> tuple[int, ...] | None:
    """`--schedule 0,1,1,0`: lane numbers 0-2."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(p in ("0", "1", "2") for p in parts):
        _fail_input(f"--schedule: expected lane numbers 0-2 separated by commas, got {text!r}")
    return tuple(int(p) for p in parts)


def print_interleaving(out: Console, res: RunResult) -> None:
    """Each parallel block of the interleaving reported, as CPU columns."""
    out.print(f"# {res.scenario}: interleaving {','.join(map(str, res.schedule))} "
              f"({len(res.schedule)} atomic steps; {res.interleavings} explored)", markup=False)
    for rec in res.blocks:
        lanes = 1 + max(lane for lane, _ in rec.steps)
        out.print(f"step {rec.index} (parallel):", markup=False)
        for line in cpu_trace(rec, lanes):
            out.print("  " + line, markup=False)


@app.command()
def reverts():
    """List the fixes `--revert` can take out of the model."""
    for commit, title in REVERTS.items():
        print(f"{commit}  {title}")


def print_trace(out: Console, res: RunResult) -> None:
    out.print(f"# {res.scenario} ({res.file}) design={res.design}", markup=False)
    states = {s["step"]: s for s in res.states or ()}
    for index, text, lines in res.trace:
        out.print(f"step {index:>3}  {text}", markup=False)
        for function, detail in lines:
            out.print(f"      {function:<28} {detail}", markup=False)
        if index in states:
            _print_state(out, states[index])


def print_states(out: Console, res: RunResult) -> None:
    """`--states` without `--trace`: the state strings under each step that has them."""
    out.print(f"# {res.scenario} ({res.file}) design={res.design}", markup=False)
    for s in res.states or ():
        out.print(f"step {s['step']:>3}  {s['proc']} {s['vma']}", markup=False)
        _print_state(out, s)


def _print_state(out: Console, s: dict) -> None:
    out.print(f"      pages |{s['pages']}|", markup=False)
    out.print(f"      mte   |{s['mte']}|", markup=False)


def print_result(out: Console, res: RunResult) -> None:
    out.print(f"{res.scenario} [{res.design}]: {res.verdict.upper()}", markup=False)
    if res.preemptions is not None:
        out.print(f"  bounded: {res.interleavings} interleavings with at most "
                  f"{res.preemptions} preemption(s) explored, not every one", markup=False)
    for v in res.violations:
        where = " ".join(x for x in (v.proc, v.vma, None if v.page is None else f"page {v.page}") if x)
        out.print(f"  {v.kind} at step {v.step} ({v.op}{' ' + where if where else ''}): {v.detail}", markup=False)
        if v.schedule is not None:
            cpu = "" if v.thread is None else f" on CPU{v.thread}"
            out.print(f"    found{cpu} in interleaving {','.join(map(str, v.schedule))}", markup=False)
    shown = " ".join(f"{k}={res.counters.get(k, 0)}" for k in REPORTED_COUNTERS)
    out.print(f"  counters: {shown}", markup=False)


@app.command()
def designs():
    """List the design names, one per line (built-in, then installed by packages under the
    `mteswap.designs` entry-point group), then a short description of each."""
    found = available_designs()
    for name in found:
        print(name)
    print()
    for name, summary in found.items():
        print(f"{name:<22} {summary}")


@app.command()
def demo(design: str = typer.Option(DEFAULT, "--design", help="design to run the bundled scenarios under: a name, or path/to/file.py:ClassName")):
    """Run every bundled scenario and print a table; exit 0 when every verdict matches the
    scenario's `expect` for the design."""
    make = _design_option(design)
    try:
        results = run_files([str(p) for p in bundled_files()], make, keep_trace=False)
    except ScenarioError as err:
        _fail_input(str(err))
    shown = results[0].design if results else design
    table = Table(title=f"mteswap: bundled scenarios under '{escape(shown)}'")
    for col in ("scenario", "verdict", "first violation", "expect", "tag saves", "restores", "faults"):
        table.add_column(col, no_wrap=True,
                         justify="right" if col in ("tag saves", "restores", "faults") else "left")
    mismatches = 0
    for res in results:
        first = res.first()
        ok = res.matches_expect()
        mismatches += ok is False
        mark = {True: "[green]ok[/]", False: "[red]UNEXPECTED[/]", None: "-"}[ok]
        table.add_row(res.scenario, res.verdict, first.short() if first else "-", mark,
                      str(res.counters["tag_saves"]), str(res.counters["tag_restores"]),
                      str(res.counters["faults"]))
    console = Console()
    console = Console(width=max(console.width, 120))   # a pipe defaults to 80 columns
    console.print(table)
    console.print(f"{len(results)} scenarios, {mismatches} not as expected")
    raise typer.Exit(1 if mismatches else 0)


# --------------------------------------------------------------------------------- compare

MARK_OK, MARK_BAD, TIMES = "\u2713", "\u2717", "\u00d7"          # ✓ ✗ ×
_COMPARE_LEGEND = ("{ok} as the scenario's `expect` says for this design (kind, and step and page "
                   "when it gives them), {bad} not as it says, unmarked: no `expect` for this "
                   "design; a cell is `pass` or the first violation as kind@step")


def _split_designs(text: str) -> list[str]:
    specs = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in specs):
        _fail_input(f"--designs: expected design names or files separated by commas, got {text!r}")
    return specs


def _compare_designs(specs: list[str]) -> list[tuple[str, object]]:
    """[(name, maker of instances)] for each spec; bad or duplicate designs exit 2."""
    out: list[tuple[str, object]] = []
    seen: dict[str, str] = {}
    for spec in specs:
        make = _design_option(spec, "--designs")
        probe = make()
        if probe.name in seen:
            if seen[probe.name] == spec:
                _fail_input(f"--designs: design {spec!r} is given twice")
            _fail_input(f"--designs: {seen[probe.name]!r} and {spec!r} are both named {probe.name!r}")
        seen[probe.name] = spec
        out.append((probe.name, _first_then(probe, make)))
    return out


def _first_then(first, make):
    pending = [first]
    return lambda: pending.pop() if pending else make()


def _cell_text(res: RunResult) -> str:
    first = res.first()
    return "pass" if first is None else f"{first.kind}@{first.step}"


def _outcome_text(res: RunResult) -> str:
    """`pass`, or the first violation as kind@step and its page (what a full `expect` gives)."""
    first = res.first()
    if first is None:
        return "pass"
    return f"{first.kind}@{first.step}" + ("" if first.page is None else f" page {first.page}")


def _expect_written(res: RunResult):
    want = res.expect.get(res.design)
    return None if want is None else want.written()


def _glyphs() -> tuple[str, str, str]:
    """(match, mismatch, times): ✓ ✗ ×, or ASCII stand-ins when stdout cannot encode them."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        (MARK_OK + MARK_BAD + TIMES).encode(encoding)
        return MARK_OK, MARK_BAD, TIMES
    except (UnicodeEncodeError, LookupError):
        return "ok", "NO", "x"


def compare_cell_json(res: RunResult) -> dict:
    first = res.first()
    return {"scenario": res.scenario, "design": res.design, "verdict": res.verdict,
            "first": None if first is None else {"kind": first.kind, "step": first.step,
                                                 "page": first.page, "detail": first.detail},
            "expect": _expect_written(res), "matches": res.matches_expect(),
            "counters": dict(res.counters)}


@app.command()
def compare(files: Optional[List[str]] = typer.Argument(None, help="scenario files (default: the bundled scenarios)"),
            designs_opt: Optional[str] = typer.Option(None, "--designs", help="comma-separated designs: names or path/to/file.py:ClassName (default: every built-in design)"),
            as_json: bool = typer.Option(False, "--json", help="one JSON document with every cell"),
            markdown: bool = typer.Option(False, "--markdown", help="a GitHub markdown table"),
            kernel: Optional[str] = typer.Option(None, "--kernel", help=_KERNEL_HELP),
            html_out: Optional[str] = typer.Option(None, "--html", help="also write the matrix and every cell's run as one self-contained HTML page (each cell links to its run)"),
            revert: Optional[List[str]] = typer.Option(None, "--revert", help="take this fix out of the model (a commit id; repeatable; see `mteswap reverts`)"),
            full_check: bool = FULL_CHECK_OPTION):
    """Run every scenario under every design and print the matrix; each cell is `pass` or the
    first violation as kind@step. Exit 0 when every cell with an `expect` matches it, 1 if
    any does not, 2 on bad input."""
    if full_check:
        registry.set_full_check(True)
    if as_json and markdown:
        _fail_input("--json and --markdown cannot be used together")
    specs = _split_designs(designs_opt) if designs_opt is not None else list(BUILTIN)
    chosen = _compare_designs(specs)
    paths = list(files) if files else [str(p) for p in bundled_files()]
    try:
        scenarios = [with_reverts(with_kernel(load_scenario(f), kernel), revert) for f in paths]
    except ScenarioError as err:
        _fail_input(str(err))
    if not scenarios:
        _fail_input("no scenario files to compare")
    by_name: dict[str, str] = {}
    for sc in scenarios:
        if sc.name in by_name:
            _fail_input(f"{sc.file}: field 'name': scenario {sc.name!r} is also the name in {by_name[sc.name]}")
        by_name[sc.name] = sc.file
    rows: list[list[RunResult]] = []
    for sc in scenarios:
        row = []
        for name, make in chosen:
            try:
                row.append(run_scenario(sc, make()))
            except ScenarioError as err:
                _fail_input(f"{err} (under design {name!r})")
        rows.append(row)
    names = [name for name, _ in chosen]
    cells = [res for row in rows for res in row]
    mismatched = [res for res in cells if res.matches_expect() is False]
    with_expect = sum(res.matches_expect() is not None for res in cells)
    if html_out is not None:
        _report_matrix(html_out, scenarios, chosen, rows, names)
    if as_json:
        print(json.dumps({"designs": names, "scenarios": [sc.name for sc in scenarios],
                          "cells": [compare_cell_json(res) for res in cells]}))
    elif markdown:
        print_compare_markdown(names, rows, mismatched)
    else:
        print_compare_table(names, rows, mismatched, with_expect)
    raise typer.Exit(1 if mismatched else 0)


def _marked(res: RunResult, ok: str, bad: str) -> tuple[str, Optional[bool]]:
    match = res.matches_expect()
    mark = {True: ok + " ", False: bad + " ", None: ""}[match]
    return mark + _cell_text(res), match


def _mismatch_lines(mismatched: list[RunResult], times: str) -> list[str]:
    return [f"{res.scenario} {times} {res.design}: got {_outcome_text(res)}, expect {res.expect[res.design]}"
            for res in mismatched]


def print_compare_table(names: list[str], rows: list[list[RunResult]], mismatched: list[RunResult],
                        with_expect: int) -> None:
    ok, bad, times = _glyphs()
    table = Table()
    table.add_column("scenario", no_wrap=True)
    for name in names:
        table.add_column(Text(name), no_wrap=True)
    for row in rows:
        cells = []
        for res in row:
            text, match = _marked(res, ok, bad)
            style = {True: "green", False: "bold red", None: ""}[match]
            cells.append(Text(text, style=style))
        table.add_row(Text(row[0].scenario), *cells)
    # Never wrap or truncate a cell: as wide a console as the table needs (a pipe is 80).
    need = Console(width=100000).measure(table).maximum
    console = Console(highlight=False, width=max(Console().width, need))
    console.print(Text(f"mteswap compare: {len(rows)} scenarios {times} {len(names)} designs"),
                  soft_wrap=True)
    console.print(table)
    console.print(Text(_COMPARE_LEGEND.format(ok=ok, bad=bad)), soft_wrap=True)
    for line in _mismatch_lines(mismatched, times):
        console.print(Text(f"{bad} {line}"), soft_wrap=True)
    total = len(rows) * len(names)
    console.print(Text(f"{total} cell{'' if total == 1 else 's'}, {with_expect} with an expect, "
                       f"{len(mismatched)} not as expected"), soft_wrap=True)


def print_compare_markdown(names: list[str], rows: list[list[RunResult]],
                           mismatched: list[RunResult]) -> None:
    ok, bad, times = _glyphs()

    def md(text: str) -> str:
        return text.replace("|", "\\|")

    print("| scenario | " + " | ".join(md(n) for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for row in rows:
        print(f"| {md(row[0].scenario)} | " + " | ".join(md(_marked(res, ok, bad)[0]) for res in row) + " |")
    print()
    print(_COMPARE_LEGEND.format(ok=ok, bad=bad))
    if mismatched:
        print()
        for line in _mismatch_lines(mismatched, times):
            print(f"- {bad} {md(line)}")


# --------------------------------------------------------------------------------- report

@app.command()
def report(files: List[str] = typer.Argument(..., help="scenario files (YAML, format 1)"),
           design: Optional[str] = typer.Option(None, "--design", help="one design: a name, or path/to/file.py:ClassName (default: the file's, else merged)"),
           designs_opt: Optional[str] = typer.Option(None, "--designs", help="comma-separated designs: every file under each"),
           kernel: Optional[str] = typer.Option(None, "--kernel", help=_KERNEL_HELP),
           out: str = typer.Option("mteswap-report.html", "-o", "--out", help="the HTML file to write"),
           revert: Optional[List[str]] = typer.Option(None, "--revert", help="take this fix out of the model (a commit id; repeatable; see `mteswap reverts`)"),
           schedule: Optional[str] = typer.Option(None, "--schedule", help="parallel blocks: show this interleaving (default: the one `mteswap run` reports)")):
    """Write one self-contained HTML page (no network, opens from disk) showing each run step
    by step: every VMA page by page, folios, swap slots, tags, kernel functions, violations.
    Exit 0 when written, 2 on bad input (nothing is written then)."""
    if design is not None and designs_opt is not None:
        _fail_input("--design and --designs cannot be used together")
    if designs_opt is not None:
        chosen = [make for _, make in _compare_designs(_split_designs(designs_opt))]
    else:
        chosen = [None if design is None else _design_option(design)]
    try:
        scenarios = [with_reverts(with_kernel(load_scenario(f), kernel), revert) for f in files]
        runs = [_collect(sc, make, _schedule(schedule)) for make in chosen for sc in scenarios]
    except ScenarioError as err:
        _fail_input(str(err))
    title = "mteswap report: " + ", ".join(dict.fromkeys(r["scenario"] for r in runs))
    _write_page(out, runs, title)


def _collect(sc, make, schedule: tuple[int, ...] | None = None) -> dict:
    """One run for the report: `make` a design maker, or None for the file's design;
    `schedule` the interleaving of its parallel blocks (None: the one `run` reports)."""
    from mteswap.report import collect
    if make is None:
        try:
            make = design_factory(sc.design or DEFAULT, files=False)
        except UnknownDesign as err:
            raise ScenarioError(sc.file, str(err), field="design") from None
    return collect(sc, make(), schedule)


def _report_results(path: str, files: list[str], make, kernel, reverts, schedules) -> None:
    """`run --html`: the same files under the same design (`make`; None: each file's), kernel
    and reverts, each parallel block in the interleaving the run reported."""
    try:
        runs = [_collect(with_reverts(with_kernel(load_scenario(f), kernel), reverts), make,
                         tuple(sched) or None)
                for f, sched in zip(files, schedules)]
    except ScenarioError as err:
        _fail_input(str(err))
    _write_page(path, runs, "mteswap run: " + ", ".join(r["scenario"] for r in runs))


def _report_matrix(path: str, scenarios, chosen, rows, names) -> None:
    ok, bad, _ = _glyphs()
    runs, matrix_rows = [], []
    for sc, row in zip(scenarios, rows):
        cells = []
        for (name, make), res in zip(chosen, row):
            match = res.matches_expect()
            cells.append(({True: ok + " ", False: bad + " ", None: ""}[match] + _cell_text(res),
                          {True: "ok", False: "bad", None: ""}[match], len(runs)))
            runs.append(_collect(sc, make))
        matrix_rows.append((sc.name, cells))
    _write_page(path, runs, "mteswap compare", {"designs": names, "rows": matrix_rows})


def _write_page(path: str, runs: list[dict], title: str, matrix: dict | None = None) -> None:
    from mteswap.report import write_html
    try:
        size = write_html(path, runs, title, matrix)
    except OSError as err:
        _fail_input(f"{path}: cannot write the report: {err.strerror or err}")
    _err.print(f"mteswap: wrote {path} ({size} bytes, {len(runs)} run{'' if len(runs) == 1 else 's'})",
               markup=False)


def main() -> None:
    app(prog_name="mteswap")


if __name__ == "__main__":
    main()
