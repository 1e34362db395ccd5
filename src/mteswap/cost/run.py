"""Run a workload under several designs and collect what each one cost.

The steps go through `Runner.run_step`, i.e. the same model and design hooks as any scenario.
With `check_state=False` (the default here, for speed at scale) the oracle's after-every-step
state check is skipped; per-access tag and value checks still run, so a design that loses
tags still shows violations, and every counter is exactly what `mteswap run` reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from mteswap.cost.model import CostParams, estimate

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
    "swap_slot_allocs",          # folio_alloc_swap successes (nr slots each)
    "swap_slot_alloc_fails",     # folio_alloc_swap failures (no free aligned range)
    "swpout_fallback",           # THP_SWPOUT_FALLBACK: a large folio split for lack of slots
    "pswpout",                   # pages written to swap (I/O, per page)
    "pswpin",                    # pages read from swap (I/O, per page)
    "swap_outs",                 # folio writes (I/O operations, per folio)
    "swap_ins",                  # folio reads
    "large_swap_outs",
    "swap_cache_hits",
    "tag_bytes_peak",            # saved-tag storage at its largest, plain (128 B per page)
)
# With --tag-storage compressed, also the bytes that storage really held at its peak.
COMPRESSED_COUNTER = "tag_bytes_peak_compressed"


def page_ops(scenario: Scenario) -> int:
    """Sum over steps of the page indices each step names ('all' counts as 0)."""
    return sum(len(s.args["pages"]) for s in scenario.steps
               if s.op in PAGE_OPS and isinstance(s.args.get("pages"), (tuple, range)))


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
    estimate_ns: dict = field(default_factory=dict)       # cost/model.py, per component

    @property
    def page_ops_per_s(self) -> float:
        return self.page_ops / self.seconds if self.seconds > 0 else float("inf")

    def to_json(self) -> dict:
        return {"design": self.design, "counters": dict(self.counters),
                "violations": self.violations, "first_violation": self.first_violation,
                "seconds": round(self.seconds, 6), "page_ops": self.page_ops,
                "steps": self.steps, "page_ops_per_s": round(self.page_ops_per_s, 1),
                "estimate_ns": {k: round(v, 2) for k, v in self.estimate_ns.items()}}


def cost_counters(raw: dict) -> dict:
    """The reported counters from every model counter. A compressed-storage run keeps what
    plain storage would have held in `tag_bytes_plain_peak`; it is reported as
    `tag_bytes_peak`, next to the bytes compressed storage held (COMPRESSED_COUNTER)."""
    out = {name: raw.get(name, 0) for name in COST_COUNTERS}
    if "tag_bytes_plain_peak" in raw:
        out["tag_bytes_peak"] = raw["tag_bytes_plain_peak"]
        out[COMPRESSED_COUNTER] = raw["tag_bytes_peak"]
    return out


def run_design(scenario: Scenario, design, check_state: bool = False,
               params: CostParams = CostParams(),
               progress: Callable[[int], None] | None = None) -> CostResult:
    """Run `scenario` under `design` (an instance, or a spec `design_factory` accepts).
    `progress(steps_done)` is called every PROGRESS_EVERY steps and at the end."""
    if isinstance(design, str):
        design = design_factory(design)()
    # Origins are diagnostics (which step's tags a page holds); a violation still shows, with
    # "origin not tracked" in its detail. Off here: a tuple per page at 1 GiB scale.
    runner = Runner(scenario, design, check_state=check_state, track_origins=False)
    start = time.perf_counter()
    for n, step in enumerate(scenario.steps, start=1):
        runner.run_step(step)
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(n)
    seconds = time.perf_counter() - start
    if progress is not None:
        progress(len(scenario.steps))
    raw = dict(runner.m.counters)
    violations = runner.oracle.violations
    first = violations[0].short() if violations else None
    return CostResult(design.name, cost_counters(raw), len(violations), first, seconds,
                      page_ops(scenario), len(scenario.steps), raw, estimate(raw, params))


PROGRESS_EVERY = 256   # steps between progress callbacks (a refault run has one per page)
