"""Counterexample files: `counterexample.yaml` (scenario format 1) and `counterexample.itf.json`
(the Informal Trace Format of Apalache and Quint: one state per step, state 0 before any step).

ITF encoding: integers within ±(2^53 - 1) are JSON numbers, larger ones `{"#bigint": "..."}`
(a mixed-tag page is a 1025-bit int, see model/tags.py); tuples `{"#tup": [...]}`; maps `{"#map": [[k, v], ...]}`;
records are JSON objects.
"""

from __future__ import annotations

import json
import os
import tempfile

import yaml

from mteswap.explore.alphabet import Problem, action_text
from mteswap.model.mte import saved_tags
from mteswap.model.pte import (pte_pfn, pte_present, pte_swp_exclusive, pte_tagged,
                               pte_to_swp_entry, pte_write)
from mteswap.model.swapinfo import swp_offset
from mteswap.scenario.runner import Runner

SAFE = (1 << 53) - 1


def itf_int(v: int):
    return v if -SAFE <= v <= SAFE else {"#bigint": str(v)}


def tup(*xs):
    return {"#tup": list(xs)}


def imap(pairs):
    return {"#map": [list(p) for p in pairs]}


def _state(r: Runner, index: int, action: str, violation) -> dict:
    m = r.m
    names = {pid: name for name, pid in r.pids.items()}
    procs = imap(
        (names[mm.pid], {
            "alive": mm.alive,
            "vmas": [tup(v.name, v.start, v.end, v.vm_mte) for v in mm.vmas],
            "ptes": imap((vpn, tup("present", pte_pfn(e, vpn), pte_tagged(e), pte_write(e))
                          if pte_present(e) else
                          tup("swap", swp_offset(pte_to_swp_entry(e, vpn)), pte_swp_exclusive(e)))
                         for vpn, e in mm.ptes.items()),
        }) for mm in m.mms)
    frames = [{"tags": itf_int(p.tags), "data": itf_int(p.data), "mte_tagged": p.mte_tagged,
               "mte_lock": p.mte_lock, "folio": -1 if p.folio is None else p.folio.pfn}
              for p in m.pages]
    folios = imap((f.pfn, {"nr": f.nr, "swapcache": f.swapcache, "swap": swp_offset(f.swap),
                           "dirty": f.dirty, "arch": itf_int(f.arch)})
                  for f in sorted(m.folios.values(), key=lambda f: f.pfn))
    si = m.swap
    expect = imap((names[pid], imap((vpn, tup(itf_int(t), itf_int(v)))
                                    for vpn, (t, v) in sorted(view.items())))
                  for pid, view in sorted(r.oracle.expect.view.items()))
    return {
        "#meta": {"index": index},
        "step": index,
        "action": action,
        "procs": procs,
        "frames": frames,
        "folios": folios,
        "swap_map": imap((o, si.swap_map[o]) for o in sorted(si.allocated)),
        "swap_cache": imap((o, f.pfn) for o, f in sorted(si.cache.items())),
        "mte_pages": imap((swp_offset(e), itf_int(saved_tags(m, e))) for e in sorted(m.mte_pages)),
        "expect": expect,
        "violations": [dict(v) for v in violation],
    }


VARS = ["step", "action", "procs", "frames", "folios", "swap_map", "swap_cache", "mte_pages",
        "expect", "violations"]


def itf_trace(scenario, make_design, description: str = "") -> dict:
    """Replay `scenario` and record the state after every step (up to the first violation)."""
    r = Runner(scenario, make_design())
    states = [_state(r, 0, "init", [])]
    from mteswap.explore.blocks import run_block_exhaustively
    for step in scenario.steps:
        if step.op == "parallel":
            run_block_exhaustively(r, step)     # the interleaving the check reported
        else:
            r.run_step(step)
        v = [x.to_dict() for x in r.oracle.violations[:1]]
        from mteswap.scenario.runner import describe_step
        states.append(_state(r, step.index, describe_step(step), v))
        if v:
            break
    return {"#meta": {"format": "ITF", "source": scenario.file, "description": description,
                      "design": r.design.name},
            "vars": VARS, "states": states}


def atomic_write(path: str, text: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def counterexample_yaml(problem: Problem, design_name: str, actions: list, kind: str,
                        how: str, violation: dict) -> str:
    """Readable scenario-format-1 text for `actions` failing with `kind`; its `expect` is the
    first violation's kind, step and page."""
    lines = [f"found by `mteswap check` ({how}) on model {problem.model}: "
             f"{kind} at step {violation['step']} ({violation['op']})",
             f"detail: {violation['detail']}"]
    text = f"version: 1\nname: check-{_slug(design_name)}-{kind}\ndescription: |\n"
    text += "".join(f"  {line}\n" for line in lines)
    first = {"kind": kind, "step": violation["step"]}
    if violation.get("page") is not None:
        first["page"] = violation["page"]
    rest = {"design": design_name, "config": problem.config_doc(), "expect": {design_name: first}}
    text += yaml.safe_dump(rest, sort_keys=False, default_flow_style=None, width=100)
    text += "steps:\n"
    for a in actions:
        text += f"  - {_flow(a)}    # {action_text(a)}\n"
    return text


def _flow(action) -> str:
    if isinstance(action, str):
        return action
    (op, args), = action.items()
    if op == "parallel":          # lanes: one step, or a list of steps (flow style)
        return f"parallel: [{', '.join(_lane_flow(lane) for lane in args)}]"
    inner = ", ".join(f"{k}: {_scalar(v)}" for k, v in args.items())
    return f"{op}: {{{inner}}}"


def _lane_flow(lane) -> str:
    def one(a):
        return a if isinstance(a, str) else "{" + _flow(a) + "}"
    return "[" + ", ".join(one(a) for a in lane) + "]" if isinstance(lane, list) else one(lane)


def _scalar(v) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    return yaml.safe_dump(v, default_style=None).strip().removesuffix("\n...").strip() \
        if not isinstance(v, str) or not v.replace("-", "").isdigit() else v


def _slug(name: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return out or "design"


def write_counterexample(out_dir: str, problem: Problem, make_design, design_name: str,
                         actions: list, violation: dict, how: str) -> dict:
    """Write both files; return {"yaml": path, "itf": path}. The YAML is re-parsed and replayed
    here: it must give the outcome its `expect` says (AssertionError otherwise)."""
    from mteswap.scenario.load import parse_scenario
    from mteswap.scenario.runner import run_scenario
    kind = violation["kind"]
    text = counterexample_yaml(problem, design_name, actions, kind, how, violation)
    ypath = os.path.join(out_dir, "counterexample.yaml")
    sc = parse_scenario(text, file=ypath)
    res = run_scenario(sc, make_design())
    assert res.matches_expect(), f"counterexample does not replay: {res.first()} vs {violation}"
    atomic_write(ypath, text)
    ipath = os.path.join(out_dir, "counterexample.itf.json")
    atomic_write(ipath, json.dumps(itf_trace(sc, make_design, how), indent=1) + "\n")
    return {"yaml": ypath, "itf": ipath}
