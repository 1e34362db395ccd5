"""Run a workload under several designs and collect what each one cost.

The steps go through `Runner.run_step`, i.e. the same model and design hooks as any scenario.
With `check_state=False` (the default here, for speed at scale) the oracle's after-every-step
state check is skipped; per-access tag and value checks still run, so a design that loses
tags still shows violations, and every counter is exactly what `mteswap run` reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mteswap.designs.loader import design_factory
from mteswap.scenario.load import Scenario
from mteswap.scenario.runner import Runner

# Step ops whose page indices count as page operations (as benchmarks/run_steps.py counts).
PAGE_OPS = ("write", "read", "stg", "reclaim", "pageout", "dontneed", "split", "mprotect",
            "munmap")

# The counters `mteswap cost` reports, in order, with where each comes from in the model.
COST_COUNTERS = (
    "tag_saves",                 # tag buffers stored (arch_prepare_to_swap / mte_save_tags)
    "tag_restores",              # pages whose tags a restore wrote
    "restore_calls",             # arch_swap_restore calls
    "restore_page_iterations",   # pages the restore hook looked at, early exits included
    "faults",
    "splits",
    "swap_slot_allocs",          # derived, see slot_allocs()
    "swpout_fallback",           # THP_SWPOUT_FALLBACK
    "pswpout",                   # pages written to swap (I/O, per page)
    "pswpin",                    # pages read from swap (I/O, per page)
    "swap_outs",                 # folio writes (I/O operations, per folio)
    "swap_ins",                  # folio reads
    "large_swap_outs",
    "swap_cache_hits",
    "tag_bytes_peak",            # saved-tag storage at its largest (128 B per saved page)
)


def slot_allocs(counters: dict) -> int:
    """Swap slot allocations (`folio_alloc_swap` successes), derived: the model has no counter
    for them. Every folio written out got its slots from `add_to_swap` just before, so this is
    `swap_outs` (zero-filled folios included, as the model counts them there too). It
    over-counts only a swap-cache folio written again without new slots, which the current
    workloads never do."""
    return counters.get("swap_outs", 0)


def page_ops(scenario: Scenario) -> int:
    """Sum over steps of the page indices each step names ('all' counts as 0)."""
    return sum(len(s.args["pages"]) for s in scenario.steps
               if s.op in PAGE_OPS and isinstance(s.args.get("pages"), tuple))


@dataclass
class CostResult:
    design: str
    counters: dict
    violations: int
    first_violation: str | None
    seconds: float               # run_step loop only (Runner construction excluded)
    page_ops: int
    steps: int
    raw: dict = field(default_factory=dict, repr=False)   # every model counter

    @property
    def page_ops_per_s(self) -> float:
        return self.page_ops / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        return {"design": self.design, "counters": dict(self.counters),
                "violations": self.violations, "first_violation": self.first_violation,
                "seconds": round(self.seconds, 6), "page_ops": self.page_ops,
                "steps": self.steps, "page_ops_per_s": round(self.page_ops_per_s, 1)}


def cost_counters(raw: dict) -> dict:
    out = {}
    for name in COST_COUNTERS:
        out[name] = slot_allocs(raw) if name == "swap_slot_allocs" else raw.get(name, 0)
    return out


def run_design(scenario: Scenario, design, check_state: bool = False) -> CostResult:
    """Run `scenario` under `design` (an instance, or a spec `design_factory` accepts)."""
    if isinstance(design, str):
        design = design_factory(design)()
    runner = Runner(scenario, design, check_state=check_state)
    start = time.perf_counter()
    for step in scenario.steps:
        runner.run_step(step)
    seconds = time.perf_counter() - start
    raw = dict(runner.m.counters)
    violations = runner.oracle.violations
    first = violations[0].short() if violations else None
    return CostResult(design.name, cost_counters(raw), len(violations), first, seconds,
                      page_ops(scenario), len(scenario.steps), raw)


def run_designs(scenario: Scenario, designs: list[str],
                check_state: bool = False) -> list[CostResult]:
    return [run_design(scenario, name, check_state) for name in designs]
