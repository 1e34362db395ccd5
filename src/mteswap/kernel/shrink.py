"""Shrinking a kernel/model disagreement to a smaller scenario that still disagrees the same way.

Greedy step deletion, a round per boot: every scenario with one step fewer that is still valid
(the model and the guest program accept it) runs in one batch; when some still disagree the
same way, all those deletions are tried together (one more boot) and kept if the result still
disagrees, else only the first. Ends when no single step can go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import yaml

from mteswap.scenario.load import ScenarioError, load_scenario

from . import cgen, compare
from .setup import Env


def signature(row: compare.Row) -> tuple | None:
    """How a row disagrees: ("verdict",), or ("state", field, kernel letter, model letter) of
    its first differing page; None when it agrees."""
    if row.agree is False:
        return ("verdict",)
    if row.states_agree is False and row.first_state_diff:
        d = row.first_state_diff
        return ("state", d["field"], d["kernel"], d["model"])
    return None


def _candidate(doc: dict, steps: list, name: str, folder: Path):
    """The scenario `doc` with `steps`, written to `folder`; None if it is not valid."""
    cand = dict(doc, name=name, steps=steps)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cand, sort_keys=False, default_flow_style=None))
    try:
        sc = load_scenario(str(path))
        compare.model_run(sc)
        cgen.expand(sc)
    except (ScenarioError, cgen.Unsupported):
        return None
    return sc


def _still(rows: list[compare.Row], target: tuple, device: str) -> set[str]:
    return {r.scenario for r in rows if r.device == device and signature(r) == target}


def shrink(doc: dict, row: compare.Row, env: Env, folder: Path,
           log: Callable[[str], None] = lambda s: None) -> dict:
    """A smaller scenario document than `doc` whose run on `row.kernel` disagrees with the
    model the way `row` does (the same document when no step can go)."""
    target = signature(row)
    if target is None:
        raise ValueError(f"{row.scenario} agrees: nothing to shrink")
    folder.mkdir(parents=True, exist_ok=True)
    steps, rnd = list(doc["steps"]), 0
    while len(steps) > 1:
        rnd += 1
        cands = {}
        for i in range(len(steps)):
            sc = _candidate(doc, steps[:i] + steps[i + 1:], f"{doc['name']}-r{rnd}-{i}", folder)
            if sc is not None:
                cands[sc.name] = (i, sc)
        if not cands:
            break
        rows, _ = compare.run_batch([sc for _, sc in cands.values()], env, [row.kernel], "auto", log=log)
        ok = sorted(cands[n][0] for n in _still(rows, target, row.device))
        if not ok:
            break
        steps = _drop(doc, steps, ok, rnd, target, row, env, folder, log)
        log(f"  shrink {doc['name']}: round {rnd}, {len(steps)} step(s) left")
    return dict(doc, steps=steps)


def _drop(doc, steps, ok, rnd, target, row, env, folder, log) -> list:
    """`steps` without every index in `ok` if that still disagrees (one boot), else without
    the first."""
    if len(ok) > 1:
        fewer = [s for i, s in enumerate(steps) if i not in set(ok)]
        sc = _candidate(doc, fewer, f"{doc['name']}-r{rnd}-all", folder)
        if sc is not None:
            rows, _ = compare.run_batch([sc], env, [row.kernel], "auto", log=log)
            if _still(rows, target, row.device):
                return fewer
    return steps[:ok[0]] + steps[ok[0] + 1:]
