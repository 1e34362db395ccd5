"""The `mteswap` command (thin: parse arguments, call the runner, print)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from mteswap.bundled import bundled_files
from mteswap.designs import DEFAULT, BUILTIN, UnknownDesign, get_design
from mteswap.scenario.load import ScenarioError, load_scenario
from mteswap.scenario.runner import REPORTED_COUNTERS, RunResult, run_scenario

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Model of arm64 MTE tag save/restore across swap with large folios.")
_err = Console(stderr=True, highlight=False, soft_wrap=True)   # one-line messages, unwrapped


def _fail_input(message: str) -> None:
    _err.print(f"mteswap: error: {message}", markup=False)
    raise typer.Exit(2)


def run_files(files: list[str], design_name: Optional[str], keep_trace: bool) -> list[RunResult]:
    """Load every file first, then run each; any bad input raises before output is printed."""
    scenarios = [load_scenario(f) for f in files]
    results = []
    for sc in scenarios:
        name = design_name or sc.design or DEFAULT
        try:
            design = get_design(name)
        except UnknownDesign as err:
            raise ScenarioError(sc.file, str(err), field="design") from None
        results.append(run_scenario(sc, design, keep_trace=keep_trace))
    return results


@app.command()
def run(files: List[str] = typer.Argument(..., help="scenario files (YAML, format 1)"),
        design: Optional[str] = typer.Option(None, "--design", help="design name (default: the file's, else merged)"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per file"),
        trace: bool = typer.Option(False, "--trace", help="print the kernel functions each step went through")):
    """Run scenario files; exit 0 if no violation, 1 if any, 2 on bad input."""
    if design is not None and design not in BUILTIN:
        _fail_input(f"--design: unknown design {design!r}; known: {', '.join(BUILTIN)}")
    try:
        results = run_files(files, design, keep_trace=trace)
    except ScenarioError as err:
        _fail_input(str(err))
    out = Console(highlight=False, soft_wrap=True)
    for res in results:
        if as_json:
            print(json.dumps(res.to_json()))
            continue
        if trace:
            print_trace(out, res)
        print_result(out, res)
    raise typer.Exit(1 if any(r.violations for r in results) else 0)


def print_trace(out: Console, res: RunResult) -> None:
    out.print(f"# {res.scenario} ({res.file}) design={res.design}", markup=False)
    for index, text, lines in res.trace:
        out.print(f"step {index:>3}  {text}", markup=False)
        for function, detail in lines:
            out.print(f"      {function:<28} {detail}", markup=False)


def print_result(out: Console, res: RunResult) -> None:
    out.print(f"{res.scenario} [{res.design}]: {res.verdict.upper()}", markup=False)
    for v in res.violations:
        where = " ".join(x for x in (v.proc, v.vma, None if v.page is None else f"page {v.page}") if x)
        out.print(f"  {v.kind} at step {v.step} ({v.op}{' ' + where if where else ''}): {v.detail}", markup=False)
    shown = " ".join(f"{k}={res.counters.get(k, 0)}" for k in REPORTED_COUNTERS)
    out.print(f"  counters: {shown}", markup=False)


@app.command()
def designs():
    """List the design names, one per line, then a short description of each."""
    for name in BUILTIN:
        print(name)
    print()
    for name, cls in BUILTIN.items():
        print(f"{name:<22} {cls.summary}")


@app.command()
def demo(design: str = typer.Option(DEFAULT, "--design", help="design to run the bundled scenarios under")):
    """Run every bundled scenario and print a table; exit 0 when every verdict matches the
    scenario's `expect` for the design."""
    if design not in BUILTIN:
        _fail_input(f"--design: unknown design {design!r}; known: {', '.join(BUILTIN)}")
    try:
        results = run_files([str(p) for p in bundled_files()], design, keep_trace=False)
    except ScenarioError as err:
        _fail_input(str(err))
    table = Table(title=f"mteswap: bundled scenarios under '{design}'")
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


def main() -> None:
    app(prog_name="mteswap")


if __name__ == "__main__":
    main()
