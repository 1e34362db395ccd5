"""`mteswap kernel ...`: the real-kernel oracle's Typer sub-app.

Wired into the main CLI with `app.add_typer(kernel_app, name="kernel")`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from mteswap.scenario.load import ScenarioError, load_scenario

from . import cgen
from .setup import KERNELS, SetupError

kernel_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run scenarios on a real arm64 Linux kernel with MTE under QEMU and compare with the model.",
)

KERNEL_CHOICES = (*KERNELS, "all")


def _err(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _kernels(choice: str) -> list[str]:
    if choice == "all":
        return list(KERNELS)
    if choice not in KERNELS:
        _err(f"--kernel: expected one of {', '.join(KERNEL_CHOICES)}, found {choice!r}")
    return [choice]


def _log(msg: str) -> None:
    typer.echo(msg, err=True)


@kernel_app.command()
def setup(
    kernel: str = typer.Option("6.12", "--kernel", help="6.12, 7.2 or all"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder (default ~/.cache/mteswap/kernel)"),
) -> None:
    """Fetch and unpack QEMU 10, the kernels, busybox and the cross compiler; check QEMU's MTE."""
    from . import setup as setup_mod

    kernels = _kernels(kernel)
    t0 = time.monotonic()
    try:
        env, changed = setup_mod.ensure(kernels, cache, log=_log)
    except SetupError as e:
        _err(str(e))
    secs = time.monotonic() - t0
    if changed:
        typer.echo(f"kernel oracle set-up ready in {env.cache} ({', '.join(kernels)}; {secs:.1f} s)")
    else:
        typer.echo(f"kernel oracle set-up already in place in {env.cache} ({', '.join(kernels)})")


def _load(files: List[str], skip_unsupported: bool):
    scenarios, skipped = [], []
    for f in files:
        try:
            sc = load_scenario(f)
        except ScenarioError as e:
            _err(str(e))
        try:
            cgen.expand(sc)
        except cgen.Unsupported as e:
            if not skip_unsupported:
                _err(f"{e} (use --skip-unsupported to run the others)")
            skipped.append((sc, str(e)))
            continue
        scenarios.append(sc)
    return scenarios, skipped


@kernel_app.command()
def run(
    files: List[str] = typer.Argument(..., help="scenario files (YAML, format 1)"),
    kernel: str = typer.Option("6.12", "--kernel", help="6.12, 7.2 or all"),
    device: str = typer.Option(
        "auto", "--device",
        help="swap device: auto (zram for swap_device zram, else a virtio-blk disk), zram, virtio-blk, or all (both)",
    ),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per scenario, kernel and device"),
    skip_unsupported: bool = typer.Option(False, "--skip-unsupported", help="report unsupported scenarios and run the rest"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder of `mteswap kernel setup`"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print per-step evidence and every step's states"),
    strict_states: bool = typer.Option(
        False, "--strict-states", help="exit 1 also when a step's page states differ (not only a verdict)"),
) -> None:
    """Run scenarios on the real kernel(s) and compare with the model under `merged`: verdicts,
    and after every step that names a process and a VMA, that VMA's page states."""
    from . import compare, setup as setup_mod

    kernels = _kernels(kernel)
    if device not in compare.DEVICE_CHOICES:
        _err(f"--device: expected one of {', '.join(compare.DEVICE_CHOICES)}, found {device!r}")
    scenarios, skipped = _load(files, skip_unsupported)
    for sc, why in skipped:
        if as_json:
            typer.echo(json.dumps({"scenario": sc.name, "file": sc.file, "kernel_verdict": "unsupported", "detail": why}))
        else:
            typer.echo(f"{sc.name}: unsupported: {why}")
    if not scenarios:
        raise typer.Exit(2 if skipped else 0)
    try:
        env = setup_mod.load_env(cache, kernels)
        rows, timings = compare.run_batch(scenarios, env, kernels, device, log=_log)
    except SetupError as e:
        _err(str(e))
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row.to_json()))
            continue
        agree = {True: "agree", False: "DISAGREE", None: "-"}[row.agree]
        typer.echo(
            f"{row.scenario} [{row.kernel} {row.device}]: kernel {row.kernel_verdict.upper()}, "
            f"model(merged) {row.model_verdict.upper()} -> {agree}"
            + (f" ({row.detail})" if row.detail else "")
        )
        for v in row.kernel_violations:
            typer.echo(f"  kernel: {v['kind']} at step {v['step']} ({v['proc']} {v['vma']} page {v['page']}): {v['detail']}")
        for v in row.model_violations:
            typer.echo(f"  model:  {v['kind']} at step {v['step']} ({v['proc']} {v['vma']} page {v['page']})")
        for v in row.model_unobservable:
            typer.echo(f"  model (not observable on a kernel): {v['kind']} at step {v['step']}")
        for line in compare.state_lines(row, verbose):
            typer.echo(line)
        if verbose or row.agree is False or row.kernel_verdict != "pass":
            for line in compare.summarize_evidence(row):
                typer.echo(line)
    if not as_json:
        boots = ", ".join(f"{b['kernel']}/{b['device']} {b['seconds']} s" for b in timings["boots"])
        typer.echo("# " + compare.totals_line(rows))
        typer.echo(f"# boots: {boots}; total {timings['total_s']} s")
    if any(r.kernel_verdict == "error" for r in rows):
        raise typer.Exit(2)
    states_differ = strict_states and any(r.states_agree is False for r in rows)
    raise typer.Exit(1 if states_differ or any(r.agree is False for r in rows) else 0)


@kernel_app.command()
def fuzz(
    kernel: str = typer.Option("6.12", "--kernel", help="6.12, 7.2 or all"),
    count: int = typer.Option(20, "--count", min=1, help="how many scenarios to generate"),
    seed: int = typer.Option(..., "--seed", help="seed of the generator (the same seed gives the same scenarios)"),
    device: str = typer.Option("all", "--device", help="swap devices to generate for: zram, virtio-blk or all"),
    out: Path = typer.Option(Path("fuzz-out"), "--out", help="folder for the scenarios (disagreements under disagree/)"),
    batch: int = typer.Option(20, "--batch", min=1, help="scenarios per boot"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per scenario, kernel and device"),
    resume: bool = typer.Option(False, "--resume", help="go on with the run in --out, not repeating finished scenarios"),
    shrink: bool = typer.Option(False, "--shrink", help="shrink each disagreement to a smaller scenario that still disagrees (a boot per round)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache folder of `mteswap kernel setup`"),
) -> None:
    """Generate random valid scenarios, run them on the real kernel(s) and on the model, and
    report every disagreement on verdicts or page states with the scenario written to a file.
    Exit 0 when all agree, 1 on any disagreement, 2 on bad input, missing set-up or a guest error."""
    from . import fuzz as fuzz_mod, setup as setup_mod

    kernels = _kernels(kernel)
    if device not in fuzz_mod.DEVICE_KINDS:
        _err(f"--device: expected one of {', '.join(fuzz_mod.DEVICE_KINDS)}, found {device!r}")
    try:
        env = setup_mod.load_env(cache, kernels)
        rep = fuzz_mod.fuzz(env, kernels, device, count, seed, out, batch=batch, log=_log, resume=resume, shrink=shrink)
    except SetupError as e:
        _err(str(e))
    if as_json:
        for row in rep.rows:
            typer.echo(json.dumps(row.to_json()))
    else:
        for row, path in rep.disagreements:
            typer.echo(f"{row.scenario} [{row.kernel} {row.device}]: disagrees ({path})")
            for line in compare_lines(row):
                typer.echo(line)
        for why in rep.invalid:
            typer.echo(f"rejected by the model (generator bug): {why}")
        typer.echo(f"# seed {seed}: {rep.summary()}")
    if any(r.kernel_verdict == "error" for r in rep.rows):
        raise typer.Exit(2)
    raise typer.Exit(1 if rep.disagreements or rep.invalid else 0)


def compare_lines(row) -> list[str]:
    from . import compare

    out = [f"  verdict: kernel {row.kernel_verdict}, model {row.model_verdict}"
           + (f" ({row.detail})" if row.detail else "")]
    return out + compare.state_lines(row)


@kernel_app.command()
def export(
    file: str = typer.Argument(..., help="one scenario file"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="C file to write (default: stdout)"),
) -> None:
    """Write the scenario's test program as a standalone selftest-style C file (TAP output)."""
    try:
        sc = load_scenario(file)
    except ScenarioError as e:
        _err(str(e))
    try:
        cs = cgen.expand(sc)
    except cgen.Unsupported as e:
        _err(str(e))
    text = cgen.export_program(cs)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


if __name__ == "__main__":  # pragma: no cover
    kernel_app()
