"""`mteswap check`: a plain function for the Typer app in mteswap/cli.py to register:

    from mteswap.explore.cli import check_command
    app.command("check")(check_command)
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from mteswap.explore.alphabet import PRESETS, BadInput
from mteswap.oracle import registry

MODEL_HELP = ("alphabet preset (docs/checking.md), and which sometimes properties it can reach: "
              + "; ".join(f"{name}: {p.reaches}" for name, p in PRESETS.items()))


def check_command(
    design: str = typer.Option("merged", "--design", help="design: a name, or path/to/file.py:ClassName"),
    model: str = typer.Option("small", "--model", help=MODEL_HELP),
    depth: Optional[int] = typer.Option(None, "--depth", help="exhaustive: the deepest trace length explored (default 6, under a 60 s time limit unless --time-limit is given)"),
    random_: bool = typer.Option(False, "--random", help="random walks (swarm) instead of exhaustive search"),
    steps: int = typer.Option(40, "--steps", help="random: steps per walk"),
    time_: Optional[float] = typer.Option(None, "--time", help="random: seconds to search (default 60, or until --walks)"),
    walks: Optional[int] = typer.Option(None, "--walks", help="random: number of walks"),
    seed: int = typer.Option(0, "--seed", help="random: seed (walk i of seed s is the same on any number of workers)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config key of the preset: key=value (repeatable)"),
    ops: Optional[str] = typer.Option(None, "--ops", help="only these operations, comma-separated"),
    out: str = typer.Option("mteswap-out", "--out", help="directory for counterexample.yaml and counterexample.itf.json"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary on stdout"),
    workers: Optional[int] = typer.Option(None, "--workers", help="processes (default: all cores)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://host:8786)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="write the search state to DIR periodically"),
    resume: Optional[str] = typer.Option(None, "--resume", help="continue the search saved in DIR"),
    no_symmetry: bool = typer.Option(False, "--no-symmetry", help="turn the state reductions off (docs/checking.md); sleep sets too"),
    no_por: bool = typer.Option(False, "--no-por", help="exhaustive: turn the sleep sets off (independent steps are then run in both orders: the same states and verdict, more transitions; docs/checking.md)"),
    checkpoint_every: float = typer.Option(5.0, "--checkpoint-every", help="seconds between checkpoints"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="kernel version to follow: 6.12 or 7.2 (the same as --set kernel=...)"),
    html_out: Optional[str] = typer.Option(None, "--html", help="write the counterexample as a self-contained HTML page (mteswap report)"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="exhaustive: stop cleanly after this many seconds and say what was covered (default: 60 when --depth is not given, else none)"),
    revert: Optional[List[str]] = typer.Option(None, "--revert", help="take this fix out of the model (a commit id; repeatable; see `mteswap reverts`); the counterexample file carries it as config.revert"),
    full_check: bool = typer.Option(False, "--full-check", help="debug: run every oracle state check over the whole machine after each step, not only over what the step wrote (the same violations, slower; also MTESWAP_FULL_CHECK=1)"),
):
    """Search operation sequences of a small machine for a violation; write the shortest (or
    shrunk) failing sequence as a scenario file. Exit 0 no violation, 1 violation, 2 bad input."""
    from mteswap.explore.check import Options, run_check
    if full_check:
        registry.set_full_check(True)     # workers are forked: they inherit it
    if time_limit is None and depth is None and not random_ and resume is None:
        time_limit = DEFAULT_TIME_LIMIT      # `mteswap check` alone answers in about a minute
    o = Options(design=design, model=model, depth=DEFAULT_DEPTH if depth is None else depth,
                random=random_, steps=steps, time=time_, time_limit=time_limit,
                walks=walks, seed=seed,
                set=list(set_ or []) + ([f"kernel={kernel!r}"] if kernel is not None else []), ops=ops, out=out, workers=workers,
                scheduler=scheduler, checkpoint=checkpoint, resume=resume,
                reduce=not no_symmetry, por=not no_por, checkpoint_every=checkpoint_every,
                revert=list(revert or []))
    try:
        summary, status = run_check(o)
    except BadInput as err:
        print(f"mteswap: error: {err}", file=sys.stderr)
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    if html_out is not None:
        _html_counterexample(html_out, summary, design)
    raise typer.Exit(status)


DEFAULT_DEPTH = 6
DEFAULT_TIME_LIMIT = 60.0


def _html_counterexample(path: str, summary: dict, design: str) -> None:
    """The counterexample file, replayed under the design, as an HTML page (nothing when the
    search found no violation)."""
    from mteswap.designs.loader import design_factory
    from mteswap.report import collect, write_html
    from mteswap.scenario.load import load_scenario
    violation = summary.get("violation")
    if not violation:
        print(f"mteswap: no counterexample, {path} not written", file=sys.stderr)
        return
    sc = load_scenario(violation["files"]["yaml"])
    try:
        size = write_html(path, [collect(sc, design_factory(design)())], f"mteswap check: {sc.name}")
    except OSError as err:
        print(f"mteswap: error: {path}: cannot write the report: {err.strerror or err}", file=sys.stderr)
        raise typer.Exit(2)
    print(f"mteswap: wrote {path} ({size} bytes)", file=sys.stderr)


def print_summary(s: dict) -> None:
    what = (f"depth {s['depth']}" + (" (state space exhausted)" if s.get("complete") else "")
            if s["mode"] == "exhaustive" else f"{s['walks']} walks of up to {s['walk_length']} steps")
    states = f"{s['distinct_states']:,} states, " if s.get("distinct_states") is not None else ""
    print(f"{s['design']} on {s['model']} ({s['mode']}): {what}, {states}"
          f"{s['transitions']:,} transitions, {s['seconds']}s")
    part = s.get("partial_depth")
    if s.get("stopped") and part:
        print(f"stopped at the {s['time_limit']:g} s time limit: every state up to depth {s['depth']} "
              f"explored; depth {part['depth']}: {part['expanded']:,} of {part['states']:,} states "
              f"expanded (a deeper or complete search: --depth N without a limit, or "
              f"--time-limit S; --checkpoint DIR lets --resume DIR go on)")
    v = s["violation"]
    print_sometimes(s.get("sometimes", {}))
    if not v:
        print("no violation")
        return
    print(f"VIOLATION of '{v['property']}': {v['kind']} at step {v['step']} ({v['op']}): {v['detail']}")
    for i, t in enumerate(v["trace"], start=1):
        print(f"  {i:>3}. {t}")
    print(f"counterexample: {v['files']['yaml']}  (replay: mteswap run {v['files']['yaml']})")
    print(f"trace (ITF): {v['files']['itf']}")


def print_sometimes(props: dict) -> None:
    """One line per sometimes property: reached (at which depth) or not reached."""
    for name, got in props.items():
        if got["reached"]:
            print(f"  sometimes '{name}': reached at depth {len(got['trace'])}")
        else:
            print(f"  sometimes '{name}': NOT reached")


def main(argv=None) -> None:
    """Standalone entry point until `check` is registered in mteswap/cli.py."""
    app = typer.Typer(add_completion=False)
    app.command()(check_command)
    app(argv, prog_name="mteswap check")


if __name__ == "__main__":
    main()
