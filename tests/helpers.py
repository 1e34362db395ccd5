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
