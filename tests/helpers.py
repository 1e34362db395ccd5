"""Small helpers for tests: build and run scenarios from Python literals."""

from __future__ import annotations

import yaml

from mteswap.designs import get_design
from mteswap.scenario.load import parse_scenario
from mteswap.scenario.runner import Runner


def scenario(steps, name="t", **config):
    doc = {"version": 1, "name": name, "steps": steps}
    if config:
        doc["config"] = config
    return parse_scenario(yaml.safe_dump(doc, sort_keys=False), file=f"{name}.yaml")


def runner(steps, design="merged", **config) -> Runner:
    """A runner that has executed every step; inspect `.m` (machine) and `.oracle`."""
    r = Runner(scenario(steps, **config), get_design(design))
    for step in r.scenario.steps:
        r.run_step(step)
    return r


def kinds(r) -> list[tuple[str, int, int | None]]:
    return [(v.kind, v.step, v.page) for v in r.oracle.violations]


# Messages are checked whole, so give rich a terminal wide enough never to wrap them.
WIDE = {"COLUMNS": "10000"}


def invoke(*args: object, env: dict | None = None):
    """Run `mteswap ARGS...` in-process; never lets an exception out of the CLI unnoticed."""
    from typer.testing import CliRunner

    from mteswap.cli import app
    result = CliRunner().invoke(app, [str(a) for a in args], env=WIDE if env is None else env)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"unexpected {type(result.exception).__name__}: {result.exception!r}\n"
        f"stdout={result.stdout!r}\nstderr={result.stderr!r}"
    )
    return result


def check(tmp_path, **kw):
    """`mteswap check` in-process with test defaults (one worker, no progress, out in tmp)."""
    from mteswap.explore.check import Options, run_check
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    kw.setdefault("out", str(tmp_path / "out"))
    return run_check(Options(**kw))
