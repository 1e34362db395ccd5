"""What a report shows, gathered by running a scenario step by step: after each step, every
process's VMAs page by page (the `--states` letters, `PG_mte_tagged`, the page's tags where
they are now), the swap device's slots in use, the step's kernel functions (the `--trace`
lines), its counters and its violations. Plain data (dicts, lists, strings, ints), so the HTML
writer (html.py) and the tests read the same thing.

The scenario runs through `Runner.run_step`, the one path `mteswap run` takes, with the trace
on; nothing here changes what the model does.
"""

from __future__ import annotations

from mteswap.model.mte import saved_tags
from mteswap.model.pte import is_swap_pte, pte_pfn, pte_to_swp_entry
from mteswap.model.state import ZERO_PFN
from mteswap.model.swapinfo import SWAP_HAS_CACHE
from mteswap.model.tags import describe
from mteswap.scenario.load import PARALLEL, Scenario
from mteswap.scenario.runner import Runner, describe_step, run_scenario
from mteswap.scenario.states import vma_states


def collect(scenario: Scenario, design, schedule: tuple[int, ...] | None = None) -> dict:
    """{"scenario", "file", "design", "kernel", "device", "description", "steps": [...],
    "verdict", "violations", "schedule"}; each step: {"index", "text", "trace": [[function,
    text]], "vmas": [{"proc", "vma", "pages", "mte", "tags"}], "slots": [{"offset", "count",
    "cached", "saved"}], "counters": {name: change}, "violations": [Violation.to_dict()]}, and
    for a parallel block also "lanes" (each lane's operations) and "atomic": per atomic step
    of the interleaving shown, {"lane", "name", "vmas", "slots"} after it.

    The interleaving shown is `schedule`, else the one `mteswap run` reports (a shortest
    failing one, or the first when all pass)."""
    parallel = any(step.op == PARALLEL for step in scenario.steps)
    if parallel and schedule is None:
        schedule = run_scenario(scenario, design).schedule
    r = Runner(scenario, design, keep_trace=True)
    atomic: list[dict] = []
    if parallel:
        r.par.prefix = tuple(schedule)
        r.on_atomic_step = lambda lane, name: atomic.append(
            {"lane": lane, "name": name, "vmas": _vmas(r), "slots": _slots(r.m)})
    steps = []
    seen = 0
    for step in scenario.steps:
        if r.par.stopped:          # a use-after-free or deadlock ended the interleaving
            break
        before = dict(r.counters)
        atomic.clear()
        r.run_step(step)
        new = r.violations[seen:]
        seen = len(r.violations)
        after = r.counters
        steps.append({
            "index": step.index,
            "text": describe_step(step),
            "trace": [list(line) for line in r.trace[-1][2]],
            "vmas": _vmas(r),
            "slots": _slots(r.m),
            "counters": {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)
                         if after.get(k, 0) != before.get(k, 0)},
            "violations": [v.to_dict() for v in new],
        })
        if step.op == PARALLEL:
            steps[-1]["lanes"] = [[describe_step(op) for op in lane] for lane in step.args["lanes"]]
            steps[-1]["atomic"] = list(atomic)
    return {"scenario": scenario.name, "file": scenario.file, "design": design.name,
            "kernel": scenario.config.kernel, "device": scenario.config.swap_device,
            "description": scenario.description.strip(), "steps": steps,
            "verdict": "fail" if r.violations else "pass",
            "violations": [v.to_dict() for v in r.violations],
            "schedule": list(r.par.schedule)}


def _vmas(r: Runner) -> list[dict]:
    """Every VMA ever mapped, by process name then VMA name (in creation order of processes)."""
    names = {pid: name for name, pid in r.pids.items()}
    out = []
    for (pid, name), (start, pages) in sorted(r.vmas.items()):
        mm = r.m.mms[pid]
        where, mte = vma_states(r.m, mm, name, start, pages)
        out.append({"proc": names[pid], "vma": name, "pages": where, "mte": mte,
                    "tags": [_page_tags(r.m, mm, start + i, where[i]) for i in range(pages)]})
    return out


def _page_tags(m, mm, vpn: int, letter: str) -> str:
    """The page's allocation tags where they are now: in its frame when present (`z`: the
    zero page, tag 0), in the tag store when swapped (`s5`: saved tags 5; empty when none were
    saved), nothing for no PTE or unmapped."""
    if letter in "-x":
        return ""
    e = mm.ptes.ents[vpn]
    if is_swap_pte(e):
        saved = saved_tags(m, pte_to_swp_entry(e, vpn))
        return "" if saved is None else "s" + describe(saved)
    pfn = pte_pfn(e, vpn)
    return "0" if pfn == ZERO_PFN else describe(m.frame_tags[pfn])


def _slots(m) -> list[dict]:
    """The swap slots in use: swap_map count (SWAP_HAS_CACHE apart), whether the swap cache
    holds a folio for it, and whether the tag store holds its saved tags."""
    si = m.swap
    out = []
    for off in sorted(si.allocated):
        raw = si.swap_map[off]
        out.append({"offset": off, "count": raw & ~SWAP_HAS_CACHE,
                    "cached": off in si.cache, "saved": saved_tags(m, off) is not None})
    return out
