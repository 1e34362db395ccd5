"""`mteswap cost`: run a workload under several designs and print what each cost.

Not yet registered in `mteswap/cli.py`; to wire it (one line, like `check`):

    from mteswap.cost.cli import cost_command
    app.command("cost")(cost_command)

Plots, the estimated-time cost model, compressed tag storage and trace replay (issue 6) are
for later.
"""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console

from mteswap.cost.run import COST_COUNTERS, CostResult, run_design
from mteswap.cost.workloads import DEFAULT_PAGES, DEFAULT_SEED, WORKLOADS, build
from mteswap.designs import BUILTIN, UnknownDesign
from mteswap.designs.loader import design_factory
from mteswap.scenario.load import ScenarioError

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    _err.print(f"mteswap: error: {message}", markup=False)
    raise typer.Exit(2)


def cost_command(
    workload: str = typer.Option("sequential", "--workload", help=f"one of: {', '.join(WORKLOADS)}"),
    designs: Optional[str] = typer.Option(None, "--designs", help="comma-separated designs: names or path/to/file.py:ClassName (default: every built-in design)"),
    pages: int = typer.Option(DEFAULT_PAGES, "--pages", help="simulated pages of anonymous memory (multiple of 16, at most 65536)"),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="seed of the workload's random choices (printed)"),
    map_whole_folio: bool = typer.Option(True, "--map-whole-folio/--no-map-whole-folio", help="refault: v6.11 whole-folio mapping of swap-cache folios"),
    check_state: bool = typer.Option(False, "--check-state", help="also run the oracle's per-step state check (slow)"),
    write_scenario: Optional[str] = typer.Option(None, "--write-scenario", help="also write the workload as a scenario file (YAML) here"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    markdown: bool = typer.Option(False, "--markdown", help="a GitHub markdown table"),
):
    """Counters per design for one workload. Exit 0, or 2 on bad input."""
    if as_json and markdown:
        _fail("--json and --markdown cannot be used together")
    if workload not in WORKLOADS:
        _fail(f"--workload: unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    specs = [s.strip() for s in designs.split(",") if s.strip()] if designs else list(BUILTIN)
    makers = []
    for spec in specs:
        try:
            makers.append(design_factory(spec))
        except UnknownDesign as err:
            _fail(f"--designs: {err}")
    params = {"map_whole_folio": map_whole_folio} if workload == "refault" else {}
    try:
        w = build(workload, pages=pages, seed=seed, **params)
        scenario = w.scenario()
    except (ValueError, ScenarioError) as err:
        _fail(f"--workload {workload}: {err}")
    if write_scenario:
        with open(write_scenario, "w") as out:
            out.write(w.to_yaml())
    results = []
    for make in makers:
        try:
            results.append(run_design(scenario, make(), check_state=check_state))
        except ScenarioError as err:
            _fail(f"{err}")
    head = {"workload": workload, "seed": seed, "params": w.params,
            "check_state": check_state}
    if as_json:
        print(json.dumps({**head, "results": [r.to_json() for r in results]}))
    elif markdown:
        print(markdown_table(head, results))
    else:
        print(text_table(head, results))


def _cell(r: CostResult, name: str) -> str:
    return str(r.counters[name])


def markdown_table(head: dict, results: list[CostResult]) -> str:
    lines = [f"workload `{head['workload']}` seed {head['seed']} {head['params']}", "",
             "| counter | " + " | ".join(r.design for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    for name in COST_COUNTERS:
        lines.append(f"| {name} | " + " | ".join(_cell(r, name) for r in results) + " |")
    lines.append("| violations | " + " | ".join(
        str(r.violations) + (f" ({r.first_violation})" if r.first_violation else "")
        for r in results) + " |")
    return "\n".join(lines)


def text_table(head: dict, results: list[CostResult]) -> str:
    width = max(len(n) for n in (*COST_COUNTERS, "page-ops/s", "violations"))
    cols = [max(len(r.design), 10) for r in results]
    lines = [f"workload {head['workload']} seed={head['seed']} {head['params']}"
             + ("" if head["check_state"] else " (state check off)"),
             " " * width + "  " + "  ".join(r.design.rjust(c) for r, c in zip(results, cols))]

    def row(label, values):
        lines.append(label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, cols)))

    for name in COST_COUNTERS:
        row(name, [_cell(r, name) for r in results])
    row("violations", [str(r.violations) for r in results])
    row("page-ops/s", [f"{r.page_ops_per_s:,.0f}" for r in results])
    return "\n".join(lines)
