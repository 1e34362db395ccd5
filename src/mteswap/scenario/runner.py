"""Runs a scenario step by step: scenario → model (which calls the design's hooks) → oracle.

Names in the scenario (processes, VMAs, page indices) are resolved here into pids and virtual
page numbers; a step that cannot apply (unknown process or VMA, page out of range, page that
munmap removed, process that exited) is bad input: ScenarioError, exit status 2.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from mteswap.model import Machine, MachineConfig
from mteswap.model import mmap as mm_ops
from mteswap.model.memory import OutOfMemory, zap_pte_range
from mteswap.model.swapoff import SwapoffFailed, swapoff
from mteswap.model.uaccess import (user_load_span, user_span, user_stg_span, user_store_span,
                                   user_tag_gens)
from mteswap.model.vmscan import evict, madvise_pageout, reclaim
from mteswap.model.huge_memory import deferred_split_scan, split_huge_pages_pid
from mteswap.model.pte import pte_pfn
from mteswap.model.snapshot import MachineSnapshot
from mteswap.model.state import ZERO_PFN
from mteswap.ranges import format_ranges, ordered_runs, runs
from mteswap.oracle import Oracle, StepContext, Violation
from mteswap.scenario import parallel as par_mod
from mteswap.scenario.load import ALL, PARALLEL, Scenario, ScenarioError, Step
from mteswap.scenario.states import vma_states

REPORTED_COUNTERS = ("tag_saves", "tag_restores", "restore_calls", "restore_page_iterations",
                     "faults", "swap_ins", "swap_outs", "large_swap_outs", "splits",
                     "swpout_fallback", "tag_bytes_peak")


@dataclass
class RunResult:
    scenario: str
    file: str
    design: str
    violations: list[Violation]
    counters: dict
    trace: list[tuple[int, str, list[tuple[str, str]]]] = field(default_factory=list)
    expect: dict = field(default_factory=dict)
    states: list[dict] | None = None     # with keep_states: `Runner.step_states` of each step
    # Parallel blocks (issue 14): each block's record (parallel.BlockRecord: the atomic steps
    # by lane), the schedule of the interleaving reported, how many were explored.
    blocks: list = field(default_factory=list)
    schedule: tuple[int, ...] = ()
    interleavings: int = 0
    preemptions: int | None = None       # the bound of the exploration (None: every one)

    @property
    def verdict(self) -> str:
        return "fail" if self.violations else "pass"

    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    def matches_expect(self) -> bool | None:
        """Does the outcome match `expect` for this design (the first violation's kind, and its
        step and page when `expect` gives them)? None when no expectation."""
        want = self.expect.get(self.design)
        return None if want is None else want.matches(self.first())

    def to_json(self) -> dict:
        out = {"scenario": self.scenario, "design": self.design, "verdict": self.verdict,
               "violations": [v.to_dict() for v in self.violations],
               "counters": dict(self.counters)}
        if self.states is not None:
            out["states"] = self.states
        if self.preemptions is not None:
            out["preemptions"] = self.preemptions
        return out


class RunnerSnapshot(NamedTuple):
    """`Runner.snapshot()`: a canonical, hashable state."""
    machine: MachineSnapshot
    view: tuple            # (pid, ((vpn, (pointer tags, value)), ...), (tag write
    #                        generation, ...)) by pid and vpn (oracle/program.py)
    names: tuple           # (pid, VMA name, first vpn, pages) of every VMA ever mapped

    def map_values(self, fn, gen_fn=None) -> "RunnerSnapshot":
        """The same state with every data value v (in memory, in swap, in the program's view)
        replaced by fn(v), and every tag write generation g (the oracle's ghost, in memory,
        in the saved tags, in the view) by gen_fn(g) (default fn); each sees its values in a
        canonical order: the machine's (`MachineSnapshot.map_data`), then the view's by pid
        and page."""
        gen_fn = fn if gen_fn is None else gen_fn
        machine = self.machine.map_data(fn, gen_fn)
        view = tuple((pid, tuple([(vpn, (tags, fn(value))) for vpn, (tags, value) in pages]),
                      tuple(map(gen_fn, gens)))
                     for pid, pages, gens in self.view)
        return _runner_snapshot((machine, view, self.names))


_runner_snapshot = partial(tuple.__new__, RunnerSnapshot)   # C-level: once per explored state


def machine_config(scenario: Scenario) -> MachineConfig:
    c = scenario.config
    return MachineConfig(folio_pages=tuple(c.folio_pages), swap_device=c.swap_device,
                         swap_slots=c.swap_slots, frames=c.frames,
                         map_whole_folio=c.map_whole_folio, large_swapin=c.large_swapin,
                         tag_alloc_fail_after=c.tag_alloc_fail_after,
                         tag_storage=c.tag_storage, kernel=c.kernel,
                         reverts=frozenset(c.revert))


PAGE_VALUE_SHIFT = 19   # page indices stay below MAX_VMA_PAGES = 2^18
# tag: distinct gives page i the tag i % 15 + 1; a span (at most PTRS_PER_PTE = 512 pages)
# starting at page i takes _DISTINCT[i % 15:][:n].
_DISTINCT = [k % 15 + 1 for k in range(512 + 15)]


def _tags_for(tag, i: int, n: int) -> list[int]:
    """The tags a `tag:` argument gives pages i .. i + n - 1 (n <= 512)."""
    return _DISTINCT[i % 15:i % 15 + n] if tag == "distinct" else [tag] * n


def page_value(step: int, page: int) -> int:
    """The value a `write` at `step` stores in page `page`: unique per step and page, never 0."""
    return (step << PAGE_VALUE_SHIFT) | (page + 1)


def _page_values(step: Step, i: int, n: int) -> array:
    """page_value of pages i .. i + n - 1 for `step` (numbered by `value_base` in a lane): what
    a `write` stores there, and the write generation of the tags a `write` or `stg` sets."""
    base = (step.value_base or step.index) << PAGE_VALUE_SHIFT
    return array("q", range(base + i + 1, base + i + n + 1))   # base | (k + 1), k < 2^19


def _mapped_pages(mm, start: int, end: int) -> int:
    """How many pages of [start, end) the process's VMAs cover (munmap may have cut holes)."""
    return sum(max(0, min(end, v.end) - max(start, v.start)) for v in mm.vmas)


class Runner:
    def __init__(self, scenario: Scenario, design, keep_trace: bool = False,
                 keep_states: bool = False,
                 check_state: bool = True, track_origins: bool = True):
        """`check_state=False` skips the oracle's after-every-step state check (leaks,
        use-after-free, invariants; see docs/model.md) for cost measurement at scale
        (`mteswap cost`). Per-access checks (tags met, values read) and every counter are
        unchanged; only violations the state check would have found go unreported.
        `track_origins=False` stops recording where each page's tags came from (the detail of
        a tag-check-fault then says so); behaviour and counters are unchanged."""
        self.scenario = scenario
        self.design = design
        self.m = Machine(machine_config(scenario), design)
        self.m.tracing = keep_trace
        self.m.track_origins = track_origins
        self.oracle = Oracle()
        self.keep_trace = keep_trace
        self.check_state = check_state
        self.trace: list = []
        self.pids: dict[str, int] = {}
        self.vmas: dict[tuple[int, str], tuple[int, int]] = {}   # (pid, name) -> (start, pages)
        self.unmapped_at: dict[tuple[int, int], int] = {}        # (pid, vpn) -> munmap step
        self.steps_run = 0                                       # steps completed
        self.keep_states = keep_states
        self.states: list[dict] = []     # with keep_states: step_states after each step
        self._names = (0, ())        # (len(vmas), snapshot's name table) when last built
        self.par = par_mod.ParallelState()   # parallel blocks: schedule, records
        # Diagnostics: called as (lane, kernel step name) after each atomic step of a parallel
        # block (the HTML report takes the state there); never changes what runs.
        self.on_atomic_step = None
        self._spawn("A", None)

    _CLONED = frozenset(("scenario", "design", "m", "oracle", "keep_trace", "check_state", "trace",
                         "pids", "vmas", "unmapped_at", "steps_run", "_names", "keep_states",
                         "states", "par", "on_atomic_step"))

    def clone(self) -> "Runner":
        """An independent copy of this runner between two steps (machine, oracle and the name
        tables), so that an explorer can branch a state without replaying it. The scenario and
        the design are shared (designs keep their state in the machine). Running a step on the
        copy then gives exactly what running it on the original would have given."""
        new = Runner.__new__(Runner)
        new.__dict__.update(self.__dict__)
        new.m = self.m.clone()
        new.oracle = self.oracle.clone()
        new.trace = list(self.trace)
        new.states = list(self.states)
        new.pids = dict(self.pids)
        new.vmas = dict(self.vmas)
        new.unmapped_at = dict(self.unmapped_at)
        new.par = self.par.clone()
        return new

    # -- running ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        self.run_remaining()
        return self.result()

    def run_remaining(self) -> None:
        """Run the steps not run yet (all of them on a fresh runner)."""
        for step in self.scenario.steps[self.steps_run:]:
            if self.par.stopped:
                break            # an interleaving that cannot go on (parallel.py)
            self.run_step(step)

    def result(self) -> RunResult:
        counters = dict(self.m.counters)
        return RunResult(self.scenario.name, self.scenario.file, self.design.name,
                         list(self.oracle.violations), counters, self.trace,
                         dict(self.scenario.expect),
                         self.states if self.keep_states else None,
                         list(self.par.blocks), self.par.schedule)

    def run_step(self, step: Step) -> None:
        m = self.m
        m.step = step.index
        m.trace = []
        args = step.args
        ctx = StepContext(step.index, step.op, args.get("proc"), args.get("vma"))
        try:
            getattr(self, "op_" + step.op)(step, ctx, args)
        except OutOfMemory as err:
            raise self.error(step, "frames", f"the machine ran out of memory: {err}; raise config.frames") from None
        except SwapoffFailed as err:
            raise self.error(step, None, f"swapoff failed: {err}; raise config.frames") from None
        except par_mod.ScheduleError as err:
            raise ScenarioError("--schedule", str(err)) from None
        # An interleaving stopped inside a block (use-after-free, deadlock) left its lanes
        # mid-path: the checks that hold only between system calls do not apply, and the
        # others already ran after its last atomic step.
        if self.check_state and not self.par.stopped:
            self.oracle.check_state(ctx, m)
        else:
            self.oracle.skip_state(m)   # its reads and writes must not pile up
        if self.keep_trace:
            self.trace.append((step.index, describe_step(step), list(m.trace)))
        if self.keep_states:
            state = self.step_states(step)
            if state is not None:
                self.states.append(state)
        self.steps_run += 1

    def run_lane_op(self, step: Step) -> None:
        """One operation of a parallel block's lane (in its kernel thread, or alone in a
        serial replay): the op itself; the state checks are the block's."""
        args = step.args
        ctx = StepContext(step.index, step.op, args.get("proc"), args.get("vma"))
        getattr(self, "op_" + step.op)(step, ctx, args)

    def op_parallel(self, step, ctx, a):
        """Addition (issue 14): one interleaving of the lanes (scenario/parallel.py)."""
        par_mod.run_block(self, step)

    def probe_vma(self, mm, name: str, start: int, n: int) -> list[tuple]:
        """(pid, vma, page, value, tags met, the tags' write generation) of each page of the
        VMA still mapped, as a load would see it (it faults pages in: run on a clone); the
        generation (the oracle's ghost) is None through an untagged PTE."""
        out = []
        indices = [i for i in range(n) if mm.find_vma(start + i)]
        for lo, hi in ordered_runs(indices):
            i = lo
            while i < hi:
                k = user_span(self.m, mm, start + i, start + hi, False)
                mets, data = user_load_span(self.m, mm, start + i, k)
                gens = user_tag_gens(self.m, mm, start + i, k)
                out.extend((mm.pid, name, i + j, data[j], mets[j],
                            None if mets[j] is None else gens[j]) for j in range(k))
                i += k
        return out

    def step_states(self, step: Step) -> dict | None:
        """For a step that names a process and a VMA: that VMA in that process now, one
        letter per page from its original start (scenario/states.py; the `--states` output of
        the scenario contract), as {"step", "proc", "vma", "pages", "mte"}. None otherwise."""
        proc, name = step.args.get("proc"), step.args.get("vma")
        if proc is None or name is None:
            return None
        pid = self.pids[proc]
        start, pages = self.vmas[(pid, name)]
        where, mte = vma_states(self.m, self.m.mms[pid], name, start, pages)
        return {"step": step.index, "proc": proc, "vma": name, "pages": where, "mte": mte}

    # -- what the explorer sees (explore/model.py reads nothing else of a runner) -----------
    @property
    def violations(self) -> list[Violation]:
        """The oracle's violations so far, in the order found."""
        return self.oracle.violations

    @property
    def counters(self) -> dict:
        """The machine's event counters (read-only use: missing names read as 0)."""
        return self.m.counters

    def snapshot(self) -> "RunnerSnapshot":
        """Everything that decides what later steps do and what the oracle reports, as named
        canonical tuples: the machine, the program's view and the name table (names stay
        strings: the explorer numbers them, so that fingerprints do not depend on the string
        hash seed)."""
        # `vmas` only gains entries (mmap, fork) and never changes one: its size tells whether
        # the name table built last is still right.
        size, names = self._names
        if size != len(self.vmas):
            names = tuple(sorted((pid, name, start, n)
                                 for (pid, name), (start, n) in self.vmas.items()))
            self._names = (len(self.vmas), names)
        return _runner_snapshot((self.m.snapshot(), self.oracle.expect.snapshot(), names))

    def can_apply(self, step: Step) -> bool:
        """False when `step` surely cannot apply here (run_step would raise ScenarioError);
        True means try it (it may still fail, e.g. out of frames). A cheap test for a search
        that offers every action in every state."""
        a = step.args
        proc = a.get("proc")
        if proc is None:                          # evict, swapoff
            return True
        pid = self.pids.get(proc)
        if pid is None:
            return False
        mm = self.m.mms[pid]
        if not mm.alive:
            return False
        op = step.op
        if op == "fork":
            return a["child"] not in self.pids
        if op == "exit":
            return True
        info = self.vmas.get((pid, a["vma"]))
        if op == "mmap":
            return info is None
        if info is None:
            return False
        start, n = info
        pages = a["pages"]
        if pages == ALL:
            return any(mm.find_vma(start + i) for i in range(n))
        for i in pages:                           # a loop, not all(): this runs ~100x a state
            if i >= n or mm.find_vma(start + i) is None:
                return False
        return True

    @staticmethod
    def can_apply_key(step: Step) -> tuple:
        """What `can_apply` reads of a step: two steps with equal keys can apply in exactly the
        same states (a search with many actions on the same pages tests each key once)."""
        a = step.args
        op = step.op if step.op in ("fork", "exit", "mmap") else ""
        pages = a.get("pages")
        return (op, a.get("proc"), a.get("child"), a.get("vma"),
                tuple(pages) if isinstance(pages, (list, range)) else pages)

    def error(self, step: Step, field_: str | None, message: str) -> ScenarioError:
        return ScenarioError(self.scenario.file, message, step=step.index, field=field_, op=step.op)

    # -- name resolution --------------------------------------------------------------------
    def _spawn(self, name: str, parent: int | None):
        mm = mm_ops.new_mm(self.m, name)
        self.pids[name] = mm.pid
        self.oracle.expect.new_process(mm.pid, parent)
        return mm

    def proc(self, step: Step, field_: str = "proc"):
        name = step.args[field_]
        pid = self.pids.get(name)
        if pid is None:
            raise self.error(step, field_, f"no process {name!r} (processes: {', '.join(self.pids)}; others are created by fork)")
        mm = self.m.mms[pid]
        if not mm.alive:
            raise self.error(step, field_, f"process {name!r} has exited")
        return mm

    def pages(self, step: Step, mm) -> tuple[int, tuple[int, ...] | range]:
        """(vpn of page 0, page indices) of the step's `pages` in its `vma`, checked. The
        indices are the step's own tuple (or a range for `all`): no per-page list is built,
        since a 1 GiB workload names 262,144 pages per step."""
        name = step.args["vma"]
        info = self.vmas.get((mm.pid, name))
        if info is None:
            known = sorted(n for (pid, n) in self.vmas if pid == mm.pid)
            raise self.error(step, "vma", f"process {mm.name!r} has no VMA {name!r} (known: {', '.join(known) or 'none'})")
        start, npages = info
        whole = _mapped_pages(mm, start, start + npages) == npages
        spec = step.args.get("pages", ALL)
        if spec == ALL:
            indices = range(npages) if whole else \
                [i for i in range(npages) if mm.find_vma(start + i)]
            if not indices:
                raise self.error(step, "pages", f"'all': no page of {name!r} is still mapped")
            return start, indices
        if not whole or max(spec) >= npages:
            for i in spec:
                if i >= npages:
                    raise self.error(step, "pages", f"page {i} out of range: {name!r} has {npages} pages (0-{npages - 1})")
                if not mm.find_vma(start + i):
                    gone = self.unmapped_at.get((mm.pid, start + i))
                    raise self.error(step, "pages", f"page {i} of {name!r} was removed by munmap at step {gone}")
        return start, spec

    # -- operations -------------------------------------------------------------------------
    def op_mmap(self, step, ctx, a):
        mm = self.proc(step)
        if (mm.pid, a["vma"]) in self.vmas:
            raise self.error(step, "vma", f"process {mm.name!r} already has a VMA {a['vma']!r}")
        vma = mm_ops.do_mmap(self.m, mm, a["vma"], a["pages"], a["mte"])
        self.oracle.expect.reserve(mm.pid, vma.end)
        self.vmas[(mm.pid, a["vma"])] = (vma.start, a["pages"])

    def op_munmap(self, step, ctx, a):
        mm = self.proc(step)
        vpns = self.vpns(step, mm)
        mm_ops.do_munmap(self.m, mm, vpns)
        for vpn in vpns:
            self.oracle.expect.forget(mm.pid, vpn)
            self.unmapped_at[(mm.pid, vpn)] = step.index

    def op_mprotect(self, step, ctx, a):
        mm = self.proc(step)
        mm_ops.do_mprotect_mte(self.m, mm, self.vpns(step, mm))

    def spans(self, step: Step, mm, write: bool):
        """(page index i, vpn, n) for the step's pages in order, in spans of n pages the CPU
        reaches between two faults (uaccess.py `user_span` takes the fault at the first
        one): each span can be accessed at once, with the outcome of one page at a time."""
        start, indices = self.pages(step, mm)
        for lo, hi in ordered_runs(indices):
            i = lo
            while i < hi:
                n = user_span(self.m, mm, start + i, start + hi, write)
                yield i, start + i, n
                i += n

    def op_write(self, step, ctx, a):
        """STG (with `tag`) and a store on each page, in order."""
        mm = self.proc(step)
        tag = a.get("tag")
        m, oracle, expect, pid = self.m, self.oracle, self.oracle.expect, mm.pid
        origin_of = partial(self._origin, mm)
        for i, vpn, n in self.spans(step, mm, write=True):
            values = _page_values(step, i, n)
            if tag is not None:
                # The tags' write generation (the oracle's ghost) is the value stored with them.
                tags = _tags_for(tag, i, n)
                expect.set_tags_span(pid, vpn, tags, user_stg_span(m, mm, vpn, tags, values),
                                     values)
            mets = user_store_span(m, mm, vpn, values)
            held = len(oracle.violations)
            gens = self._tag_gens(mm, vpn, mets)
            oracle.check_tags_span(ctx, i, pid, vpn, mets, origin_of, gens)
            if m.sched is not None:
                par_mod.provisional(self, held)
            expect.set_values_span(pid, vpn, values)
            if m.sched is not None or self.par.current is not None:
                par_mod.observe(self, i, None, mets, gens)

    def _tag_gens(self, mm, vpn: int, mets: list):
        """For the oracle's stale-tags check of an access to the span at vpn that met
        `mets`: the tags' write generations (a ghost, uaccess.user_tag_gens), or None when
        the check is off or every page was reached through an untagged PTE."""
        if not self.oracle.gens_on or mets.count(None) == len(mets):
            return None
        return user_tag_gens(self.m, mm, vpn, len(mets))

    def op_stg(self, step, ctx, a):
        """Addition: STG over each page without storing data (the page stays zero-filled if
        it was)."""
        mm = self.proc(step)
        for i, vpn, n in self.spans(step, mm, write=True):
            tags = _tags_for(a["tag"], i, n)
            gens = _page_values(step, i, n)      # as the values a write here would store
            self.oracle.expect.set_tags_span(mm.pid, vpn, tags,
                                             user_stg_span(self.m, mm, vpn, tags, gens), gens)

    def op_read(self, step, ctx, a):
        """A load of each page, in order."""
        mm = self.proc(step)
        m, oracle, pid = self.m, self.oracle, mm.pid
        origin_of = partial(self._origin, mm)
        for i, vpn, n in self.spans(step, mm, write=False):
            mets, data = user_load_span(m, mm, vpn, n)
            held = len(oracle.violations)
            gens = self._tag_gens(mm, vpn, mets)
            oracle.check_tags_span(ctx, i, pid, vpn, mets, origin_of, gens)
            oracle.check_values_span(ctx, i, pid, vpn, data)
            if m.sched is not None:
                par_mod.provisional(self, held)
            if m.sched is not None or self.par.current is not None:
                par_mod.observe(self, i, data, mets, gens)

    def vpns(self, step: Step, mm) -> list[int]:
        start, indices = self.pages(step, mm)
        return [start + i for i in indices]

    def _origin(self, mm, vpn) -> tuple:
        return self.m.page(pte_pfn(mm.ptes[vpn], vpn)).origin

    def op_fork(self, step, ctx, a):
        parent = self.proc(step)
        if a["child"] in self.pids:
            raise self.error(step, "child", f"a process named {a['child']!r} already exists")
        child = self._spawn(a["child"], parent.pid)
        mm_ops.copy_page_range(self.m, parent, child)
        for (pid, name), info in list(self.vmas.items()):
            if pid == parent.pid:
                self.vmas[(child.pid, name)] = info
        for (pid, vpn), s in list(self.unmapped_at.items()):
            if pid == parent.pid:
                self.unmapped_at[(child.pid, vpn)] = s

    def op_exit(self, step, ctx, a):
        mm = self.proc(step)
        mm_ops.exit_mmap(self.m, mm)

    def op_pageout(self, step, ctx, a):
        mm = self.proc(step)
        madvise_pageout(self.m, mm, self.vpns(step, mm), a["keep_cached"])

    def op_reclaim(self, step, ctx, a):
        mm = self.proc(step)
        start, indices = self.pages(step, mm)
        reclaim(self.m, mm, start, indices, a["keep_cached"])

    def op_evict(self, step, ctx, a):
        evict(self.m)

    def op_dontneed(self, step, ctx, a):
        mm = self.proc(step)
        vpns = self.vpns(step, mm)
        for start, end in runs(vpns):
            zap_pte_range(self.m, mm, start, end)
        for vpn in vpns:
            self.oracle.expect.forget(mm.pid, vpn)

    def op_split(self, step, ctx, a):
        """The `split_huge_pages` debugfs file for this pid and the range from the step's
        first page to its last (split_huge_pages_pid, mm/huge_memory.c)."""
        mm = self.proc(step)
        vpns = self.vpns(step, mm)
        split_huge_pages_pid(self.m, mm, min(vpns), max(vpns) + 1)

    def op_swapoff(self, step, ctx, a):
        swapoff(self.m)

    def op_drop_caches(self, step, ctx, a):
        """`echo 3 > /proc/sys/vm/drop_caches` → `drop_slab` → every shrinker; of those the
        model has only the deferred-split one (no page cache, no slab)."""
        deferred_split_scan(self.m)


def describe_step(step: Step) -> str:
    if step.op == PARALLEL:
        return "parallel " + " | ".join("; ".join(describe_step(s) for s in lane)
                                        for lane in step.args["lanes"])
    parts = [step.op]
    for key, value in step.args.items():
        if value is None or value is False:
            continue
        if isinstance(value, (tuple, range)):
            value = format_ranges(value)
        parts.append(f"{key}={value}")
    return " ".join(parts)


def run_scenario(scenario: Scenario, design, keep_trace: bool = False,
                 keep_states: bool = False, schedule: tuple[int, ...] | None = None,
                 preemptions: int | None = None) -> RunResult:
    """Run a scenario. With parallel blocks: the interleaving `schedule` names (then no
    preemption), or else every interleaving (at most `preemptions` preemptions each, by
    default the file's `preemptions` for this design): the result is a shortest failing one,
    or the first one when all pass."""
    runner = Runner(scenario, design, keep_trace, keep_states=keep_states)
    if all(step.op != PARALLEL for step in scenario.steps):
        return runner.run()
    for step in scenario.steps:
        if step.op == PARALLEL:
            break
        runner.run_step(step)
    if schedule is not None:
        runner.par.prefix = tuple(schedule)
        runner.run_remaining()
        res = runner.result()
        res.interleavings = 1
        return res
    if preemptions is None:
        preemptions = scenario.preemption_bound(design.name)
    ex = par_mod.explore(runner, bound=preemptions)
    res = (ex.best or ex.first).result()
    res.interleavings, res.preemptions = ex.runs, preemptions
    return res
