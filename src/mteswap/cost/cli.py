"""`mteswap cost`: run a workload (a built-in generator or a trace file) under several designs
and print what each cost: counters, an estimated time (cost/model.py), optionally a plot.

Bad input (unknown workload or design, bad parameter, unreadable trace, a step that cannot
run) is one line on stderr and exit 2, with nothing written to stdout or to --plot/--write-*
files. Output files are written only after every design ran.
"""

from __future__ import annotations

import json
import os
import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mteswap.cost.model import CostParams, parse_overrides
from mteswap.cost.run import COMPRESSED_COUNTER, COST_COUNTERS, CostResult, run_design
from mteswap.cost.workloads import DEFAULT_PAGES, DEFAULT_SEED, WORKLOADS, build, check_pages
from mteswap.designs import BUILTIN, UnknownDesign
from mteswap.designs.loader import design_factory
from mteswap.scenario.load import KERNELS, MAX_VMA_PAGES, SWAP_DEVICES, TAG_STORAGES, ScenarioError

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str) -> None:
    _err.print(f"mteswap: error: {message}", markup=False)
    raise typer.Exit(2)


def cost_command(
    workload: Optional[str] = typer.Option(None, "--workload", help=f"one of: {', '.join(WORKLOADS)} (default sequential)"),
    trace: Optional[str] = typer.Option(None, "--trace", help="replay this operation trace file instead of a workload (format: docs/trace-format.md)"),
    designs: Optional[str] = typer.Option(None, "--designs", help="comma-separated designs: names or path/to/file.py:ClassName (default: every built-in design)"),
    pages: Optional[int] = typer.Option(None, "--pages", help=f"simulated pages of anonymous memory (multiple of 16, at most {MAX_VMA_PAGES} = 1 GiB; default {DEFAULT_PAGES})"),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"seed of the workload's random choices (printed; pass it back to repeat a run; default {DEFAULT_SEED})"),
    swap_device: Optional[str] = typer.Option(None, "--swap-device", help=f"one of {', '.join(SWAP_DEVICES)} (default ssd; zram: large folios swap in whole, v6.12)"),
    map_whole_folio: Optional[bool] = typer.Option(None, "--map-whole-folio/--no-map-whole-folio", help="refault: v6.11 whole-folio mapping of swap-cache folios (default on; off = v6.10)"),
    tag_storage: str = typer.Option("plain", "--tag-storage", help="plain (mainline) or compressed (V7 inline compression); compressed reports both byte counts"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help=f"kernel version whose behaviour to follow: {' or '.join(KERNELS)} (default: the trace's config, else {KERNELS[0]})"),
    cost_param: Optional[List[str]] = typer.Option(None, "--cost-param", help="override a cost-model price, NAME=NS (repeatable; see docs/cost-model.md)"),
    check_state: bool = typer.Option(False, "--check-state", help="also run the oracle's per-step state check (slow)"),
    write_scenario: Optional[str] = typer.Option(None, "--write-scenario", help="also write the workload as a scenario file (YAML) here"),
    write_trace: Optional[str] = typer.Option(None, "--write-trace", help="also write the workload as an operation trace file here"),
    plot: Optional[str] = typer.Option(None, "--plot", help="also draw the counters per design to this PNG file"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="progress bar on stderr (default: when stderr is a terminal)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document"),
    markdown: bool = typer.Option(False, "--markdown", help="a GitHub markdown table"),
):
    """Counters and estimated time per design for one workload. Exit 0, or 2 on bad input."""
    if as_json and markdown:
        _fail("--json and --markdown cannot be used together")
    if plot is not None and not plot.lower().endswith(".png"):
        _fail(f"--plot: expected a file name ending in .png, got {plot!r}")
    params = _params(cost_param or [])
    makers = _designs(designs)
    w = _workload(trace, workload, pages, seed, swap_device, map_whole_folio, tag_storage)
    if kernel is not None:
        if kernel not in KERNELS:
            _fail(f"--kernel: expected one of {', '.join(KERNELS)}, got {kernel!r}")
        w = w.with_config(kernel=kernel)
    scenario = w.scenario()
    texts = _side_files(w, write_scenario, write_trace)
    results = _run_all(w, scenario, makers, check_state, params, progress)
    head = {"workload": w.name, "seed": w.seed, "params": w.params, "check_state": check_state,
            "tag_storage": scenario.config.tag_storage,
            "swap_device": scenario.config.swap_device}
    if plot is not None:
        _plot(results, head, plot)
    for path, text in texts:
        try:
            with open(path, "w") as out:
                out.write(text)
        except OSError as err:
            _fail(f"cannot write {path!r}: {err.strerror or err}")
    if as_json:
        print(json.dumps({**head, "cost_params": vars(params),
                          "results": [r.to_json() for r in results]}))
    elif markdown:
        print(markdown_table(head, results))
    else:
        print(text_table(head, results))


# -------------------------------------------------------------------------- inputs

def _params(items: list[str]) -> CostParams:
    try:
        return parse_overrides(items)
    except ValueError as err:
        _fail(f"--cost-param: {err}")


def _designs(designs: str | None) -> list:
    specs = [s.strip() for s in designs.split(",") if s.strip()] if designs else list(BUILTIN)
    if not specs:
        _fail("--designs: expected at least one design name")
    makers = []
    for spec in specs:
        try:
            makers.append(design_factory(spec))
        except UnknownDesign as err:
            _fail(f"--designs: {err}")
    return makers


def _workload(trace, workload, pages, seed, swap_device, map_whole_folio, tag_storage):
    if tag_storage not in TAG_STORAGES:
        _fail(f"--tag-storage: expected one of {', '.join(TAG_STORAGES)}, got {tag_storage!r}")
    if trace is not None:
        given = [opt for opt, value in (("--workload", workload), ("--pages", pages),
                                        ("--seed", seed), ("--swap-device", swap_device),
                                        ("--map-whole-folio", map_whole_folio))
                 if value is not None]
        if given:
            _fail(f"{given[0]} cannot be used with --trace: the trace file says what runs "
                  "(its 'config' line sets the machine, e.g. swap_device=zram)")
        from mteswap.cost.trace import load_trace
        try:
            w = load_trace(trace)
        except ScenarioError as err:
            _fail(str(err))
        return _with_storage(w, tag_storage)
    workload = "sequential" if workload is None else workload
    pages = DEFAULT_PAGES if pages is None else pages
    seed = DEFAULT_SEED if seed is None else seed
    swap_device = "ssd" if swap_device is None else swap_device
    map_whole_folio = True if map_whole_folio is None else map_whole_folio
    if workload not in WORKLOADS:
        _fail(f"--workload: unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
    if swap_device not in SWAP_DEVICES:
        _fail(f"--swap-device: expected one of {', '.join(SWAP_DEVICES)}, got {swap_device!r}")
    try:
        check_pages(pages)
    except ValueError as err:
        _fail(f"--pages: {err}")
    params = {"swap_device": swap_device}
    if workload == "refault":
        params["map_whole_folio"] = map_whole_folio
    try:
        w = build(workload, pages=pages, seed=seed, **params)
        w = _with_storage(w, tag_storage)
        w.scenario()
    except (ValueError, ScenarioError) as err:
        _fail(f"--workload {workload}: {err}")
    return w


def _with_storage(w, tag_storage: str):
    """The workload with config tag_storage set (a trace's own config key wins if it set
    compressed and the option is left at plain)."""
    return w if tag_storage == "plain" else w.with_config(tag_storage=tag_storage)


def _side_files(w, write_scenario: str | None, write_trace: str | None) -> list[tuple[str, str]]:
    """The texts of --write-scenario / --write-trace, made before any design runs and written
    after every design ran (a failure leaves no partial output)."""
    out = []
    if write_scenario:
        out.append((write_scenario, w.to_yaml()))
    if write_trace:
        from mteswap.cost.trace import write_trace as to_trace
        try:
            out.append((write_trace, to_trace(w)))
        except ValueError as err:
            _fail(f"--write-trace: {err}")
    for path, _ in out:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            _fail(f"cannot write {path!r}: no writable directory {parent!r}")
        if os.path.isdir(path):
            _fail(f"cannot write {path!r}: it is a directory")
    return out


# -------------------------------------------------------------------------- running

def _run_all(w, scenario, makers, check_state, params, progress) -> list[CostResult]:
    show = sys.stderr.isatty() if progress is None else progress
    results = []
    # Transient on a terminal; a forced bar on a file or pipe (which rich never animates)
    # is printed once, in its final state, when the run ends.
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("steps"), TimeElapsedColumn(), console=_err,
                  transient=_err.is_terminal, disable=not show) as bar:
        for make in makers:
            design = make()
            task = bar.add_task(f"{w.name} × {design.name}", total=len(scenario.steps))
            try:
                results.append(run_design(scenario, design, check_state, params,
                                          progress=lambda n, t=task: bar.update(t, completed=n)))
            except ScenarioError as err:
                located = w.locate(err) if hasattr(w, "locate") else err
                _fail(str(located))
    return results


def _plot(results, head, path) -> None:
    from mteswap.cost.plot import plot_costs
    try:
        plot_costs(results, head, path)
    except (OSError, ValueError) as err:
        _fail(f"--plot: {err}")


# -------------------------------------------------------------------------- tables

def _rows(results: list[CostResult]) -> list[tuple[str, list[str]]]:
    names = list(COST_COUNTERS)
    if any(COMPRESSED_COUNTER in r.counters for r in results):
        names.append(COMPRESSED_COUNTER)
    rows = [(name, [str(r.counters.get(name, "")) for r in results]) for name in names]
    rows.append(("estimated ms", [f"{r.estimate_ns['total'] / 1e6:,.3f}" for r in results]))
    return rows


def _title(head: dict) -> str:
    extra = "" if head["check_state"] else " (state check off)"
    return (f"workload {head['workload']} seed={head['seed']} {head['params']} "
            f"tag_storage={head['tag_storage']}{extra}")


def markdown_table(head: dict, results: list[CostResult]) -> str:
    lines = [f"`{_title(head)}`", "",
             "| counter | " + " | ".join(r.design for r in results) + " |",
             "|---|" + "---:|" * len(results)]
    for name, cells in _rows(results):
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| violations | " + " | ".join(
        str(r.violations) + (f" ({r.first_violation})" if r.first_violation else "")
        for r in results) + " |")
    return "\n".join(lines)


def text_table(head: dict, results: list[CostResult]) -> str:
    rows = _rows(results)
    rows.append(("violations", [str(r.violations) for r in results]))
    rows.append(("page-ops/s", [f"{r.page_ops_per_s:,.0f}" for r in results]))
    width = max(len(n) for n, _ in rows)
    cols = [max(len(r.design), 10) for r in results]
    lines = [_title(head),
             " " * width + "  " + "  ".join(r.design.rjust(c) for r, c in zip(results, cols))]
    for label, values in rows:
        lines.append(label.ljust(width) + "  " + "  ".join(v.rjust(c) for v, c in zip(values, cols)))
    return "\n".join(lines)
