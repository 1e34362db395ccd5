"""Run a batch of scenarios on real kernels and compare with the model under `merged`."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mteswap.designs import get_design
from mteswap.ranges import format_ranges
from mteswap.scenario.load import Scenario
from mteswap.scenario.runner import Runner

from mteswap.model.origin import NEVER_WRITTEN, STALE

from . import cgen, guest
from .setup import Env, compile_c

OBSERVABLE = ("tag-check-fault", "data-corruption")
DEVICE_CHOICES = ("auto", "zram", "virtio-blk", "all")


@dataclass
class Row:
    scenario: str
    file: str
    kernel: str
    device: str
    release: str = ""
    kernel_verdict: str = "error"  # pass | fail | precondition not met | not applicable | error
    kernel_violations: list[dict] = field(default_factory=list)
    model_verdict: str = "pass"
    model_violations: list[dict] = field(default_factory=list)
    model_unobservable: list[dict] = field(default_factory=list)
    agree: bool | None = None
    detail: str = ""
    evidence: list[dict] = field(default_factory=list)
    boot_seconds: float = 0.0
    # why the verdict was set aside (a class of PRECONDITIONS), None when it was not
    precondition: str | None = None
    # per-step page states (docs/scenario-format.md, `--states`), kernel beside model
    states: list[dict] = field(default_factory=list)
    state_steps: int = 0          # steps whose state both sides gave
    state_pages_agree: int = 0    # ... with the same `pages` string
    state_mte_agree: int = 0      # ... with the same `mte` string
    states_agree: bool | None = None
    first_state_diff: dict | None = None
    started: bool = True          # False: the guest never began this scenario (boot died before)
    # steps (keep_cached false) the model ran as keep_cached true: what one MADV_PAGEOUT pass
    # does on the disk (every pageout, and a reclaim the guest did by MADV_PAGEOUT)
    steps_kept: int = 0

    def to_json(self) -> dict:
        return dict(self.__dict__)


def devices_for(sc: Scenario, choice: str) -> list[str]:
    rot = sc.config.swap_device == "rotational"
    if choice == "auto":
        return ["zram"] if sc.config.swap_device == "zram" else ["virtio-blk"]
    if choice == "all":
        return ["virtio-blk"] if rot else ["zram", "virtio-blk"]
    return [choice]


def _keeps_cached(sc: Scenario) -> bool:
    return any(st.args.get("keep_cached") for st in sc.steps)


def _key(v: dict) -> tuple:
    return (v["kind"], v["step"], v["proc"], v["vma"], v["page"])


# Why a kernel run's verdict can be set aside: only what user space cannot force.
PRECONDITIONS = {
    "keep-cached": "reclaim keep_cached left the folio out of the swap cache (only asynchronous "
                   "writeback keeps it there, and MADV_PAGEOUT skips a folio shared after fork)",
    "reclaim-resident": "memory.reclaim left pages of the range resident that the model swapped out",
    "frame-reuse": "the model's outcome rests on stale tags in frames the kernel's allocator did not hand back",
    "no-cgroup": "no memory cgroup for memory.reclaim",
}
_PRECOND_NOTE = re.compile(r"precondition not met \[([a-z-]+)\]")


@dataclass
class ModelRun:
    observable: list[dict]
    other: list[dict]
    # step -> (proc, vma, pages, mte) for every step that names a process and a VMA
    states: dict[int, tuple[str, str, str, str]]


def as_booted(sc: Scenario, kernel: str | None, device: str | None,
              own_reclaims: frozenset[int] = frozenset()) -> Scenario:
    """The scenario as the model must run it beside a boot of `kernel` with swap on `device`:
    `swap_device` the kind really used (`--device all` runs a zram scenario on a disk too, and
    a disk's asynchronous writeback and swap-in path differ from zram's), `config.kernel`
    the booted version once the model's Config has that key, and on the disk every step the
    guest did with one MADV_PAGEOUT pass with `keep_cached: true` (what that pass leaves
    there; `_as_kept`)."""
    config = sc.config
    if device == "zram":
        config = dataclasses.replace(config, swap_device="zram")
    elif device == "virtio-blk" and config.swap_device == "zram":
        config = dataclasses.replace(config, swap_device="ssd")
    if kernel is not None and hasattr(config, "kernel"):
        config = dataclasses.replace(config, kernel=kernel)
    steps = sc.steps
    if device == "virtio-blk":
        steps = tuple(_as_kept(st) if _freed_in_one_pass(st, own_reclaims) else st for st in sc.steps)
    if config == sc.config and steps == sc.steps:
        return sc
    return dataclasses.replace(sc, config=config, steps=steps)


def _freed_in_one_pass(step, own_reclaims: frozenset[int]) -> bool:
    """A step that asks for the written folios to be freed (`keep_cached: false`) and that the
    guest performs with one MADV_PAGEOUT pass: every `pageout`, and a `reclaim` the guest did
    by MADV_PAGEOUT of whole folios (`own_reclaims`: not through the cgroup)."""
    if step.args.get("keep_cached"):
        return False
    return step.op == "pageout" or (step.op == "reclaim" and step.index in own_reclaims)


def _as_kept(step):
    """The step with `keep_cached: true`: what one MADV_PAGEOUT pass really does on the virtio
    disk. `shrink_folio_list` submits the write and moves on; the disk completes it later, so
    the folio is still under writeback when the pass would free it and stays in the swap
    cache (rotated to the LRU tail by `folio_end_writeback`). No user-space call frees just
    those folios afterwards: a second MADV_PAGEOUT walks only present PTEs and they are
    unmapped, and memory.reclaim takes the whole cgroup's memory (docs/kernel-oracle.md)."""
    return dataclasses.replace(step, args={**step.args, "keep_cached": True})


def steps_kept(sc: Scenario, device: str, own_reclaims: frozenset[int] = frozenset()) -> int:
    """How many steps the model runs with `keep_cached: true` beside this device."""
    if device != "virtio-blk":
        return 0
    return sum(_freed_in_one_pass(st, own_reclaims) for st in sc.steps)


OWN_RECLAIM_NOTE = "reclaim by MADV_PAGEOUT of whole folios"


def own_reclaims(res: guest.GuestResult | None) -> frozenset[int]:
    """The `reclaim` steps the guest did by MADV_PAGEOUT of the range's whole folios."""
    if res is None:
        return frozenset()
    return frozenset(k for k, ev in res.steps.items() if OWN_RECLAIM_NOTE in ev.notes)


def model_run(sc: Scenario, kernel: str | None = None, device: str | None = None,
              own_reclaims: frozenset[int] = frozenset()) -> ModelRun:
    """The model under `merged`, step by step: its violations and, after each step that names
    a process and a VMA, that VMA's state (scenario/states.py, what `--states` prints)."""
    sc = as_booted(sc, kernel, device, own_reclaims)
    runner = Runner(sc, get_design("merged"), keep_states=True)
    runner.run()
    states = {s["step"]: (s["proc"], s["vma"], s["pages"], s["mte"]) for s in runner.states}
    obs, other = _split_violations(runner.oracle.violations)
    return ModelRun(obs, other, states)


def model_outcome(sc: Scenario) -> tuple[list[dict], list[dict]]:
    run = model_run(sc)
    return run.observable, run.other


def _split_violations(violations) -> tuple[list[dict], list[dict]]:
    obs, other = [], []
    for v in violations:
        d = {"kind": v.kind, "step": v.step, "proc": v.proc, "vma": v.vma, "page": v.page, "detail": v.detail,
             # tags an earlier owner of the frame left, or that nobody initialised since boot
             # (maybe saved and restored since): what the kernel meets there depends on which
             # frame the page lands on (frame_reuse_problem)
             "stale": v.origin is not None and (v.origin.rests_on(STALE)
                                                or v.origin.rests_on(NEVER_WRITTEN))}
        (obs if v.kind in OBSERVABLE else other).append(d)
    return obs, other


def compare_states(row: Row, model_states: dict, res: guest.GuestResult) -> None:
    """Fill the row's state fields: per step the kernel's and the model's state of the step's
    VMA, how many steps agree, and the first differing step and page."""
    for k, (proc, vma, mpages, mmte) in sorted(model_states.items()):
        ev = res.steps.get(k)
        kst = ev.state if ev is not None else None
        entry = {"step": k, "proc": proc, "vma": vma, "model_pages": mpages, "model_mte": mmte,
                 "kernel_pages": kst[0] if kst else None, "kernel_mte": kst[1] if kst else None}
        row.states.append(entry)
        if kst is None:
            continue
        row.state_steps += 1
        row.state_pages_agree += kst[0] == mpages
        row.state_mte_agree += kst[1] == mmte
        if row.first_state_diff is None and (kst[0], kst[1]) != (mpages, mmte):
            row.first_state_diff = first_difference(entry)
    if row.state_steps:
        row.states_agree = row.first_state_diff is None


def first_difference(entry: dict) -> dict:
    """The first page where the kernel's and the model's state of one step differ (in `pages`
    before `mte`): {step, proc, vma, page, field, kernel, model}."""
    for fld in ("pages", "mte"):
        kern, mod = entry["kernel_" + fld], entry["model_" + fld]
        if kern == mod:
            continue
        n = max(len(kern), len(mod))
        kern, mod = kern.ljust(n, "?"), mod.ljust(n, "?")
        page = next(i for i in range(n) if kern[i] != mod[i])
        return {"step": entry["step"], "proc": entry["proc"], "vma": entry["vma"], "page": page,
                "field": fld, "kernel": kern[page], "model": mod[page]}
    raise ValueError("the two states agree")


def describe_state_diff(d: dict) -> str:
    return (f"step {d['step']} ({d['proc']} {d['vma']}) page {d['page']}: "
            f"kernel {d['field']} {d['kernel']!r}, model {d['model']!r}")


def guest_precondition(res: guest.GuestResult) -> tuple[str, str] | None:
    """(class, note) of the first precondition the guest found unmet, else None."""
    for k in sorted(res.steps):
        for note in res.steps[k].notes:
            m = _PRECOND_NOTE.search(note)
            if m:
                return m.group(1), f"step {k}: " + note
    return None


def reclaim_resident(row: Row, cs: cgen.CScenario) -> str | None:
    """Pages of a `reclaim` step's range the kernel left resident where the model swapped
    them out: memory.reclaim does not promise to reclaim everything (a model that keeps
    them too, e.g. after swapoff, agrees and is compared)."""
    by_step = {e["step"]: e for e in row.states}
    for st in cs.steps:
        e = by_step.get(st.index)
        if st.op != "reclaim" or e is None or e["kernel_pages"] is None:
            continue
        left = [p for p in st.pages if p < len(e["kernel_pages"]) and e["kernel_pages"][p] in "Htp"
                and e["model_pages"][p] in "SC"]
        if left:
            return (f"step {st.index}: pages {cgen._pages_text(tuple(left))} still resident after "
                    f"reclaim (the model swapped them out)")
    return None


def compare_one(row: Row, res: guest.GuestResult | None, cs: cgen.CScenario, boot_err: str | None,
                model_states: dict | None = None) -> None:
    if res is None or res.rc is None:
        row.started = res is not None
        row.kernel_verdict = "error"
        row.detail = boot_err or "no result from the guest"
        if res is not None and res.errors:
            row.detail += "; " + "; ".join(res.errors)
        row.agree = None
        return
    for k in sorted(res.steps):
        ev = res.steps[k]
        st = cs.steps[k - 1] if 0 < k <= len(cs.steps) else None
        row.evidence.append(
            {"step": k, "op": st.op if st else "?", "counters": ev.counters, "pagemap": ev.pagemap,
             "pfns": ev.pfns, "notes": ev.notes}
        )
    row.kernel_violations = res.violations
    if model_states is not None:
        compare_states(row, model_states, res)
    pre = guest_precondition(res)
    if res.rc == 3 or pre:
        cls, note = pre or ("unknown", "the guest reported a precondition not met")
        _set_aside(row, cls, note)
        return
    if res.rc == 4:
        row.kernel_verdict = "error"
        row.detail = "skipped in the guest: " + "; ".join(res.errors)
        return
    if res.rc not in (0, 1):
        row.kernel_verdict = "error"
        row.detail = f"guest status {res.rc}: " + "; ".join(res.errors)
        return
    resident = reclaim_resident(row, cs)
    if resident:
        _set_aside(row, "reclaim-resident", "precondition not met: " + resident)
        return
    problem = frame_reuse_problem(row.model_violations, res, cs)
    if problem:
        _set_aside(row, "frame-reuse", "precondition not met: " + problem)
        return
    row.kernel_verdict = "fail" if res.violations else "pass"
    kset = {_key(v) for v in res.violations}
    mset = {_key(v) for v in row.model_violations}
    if row.kernel_verdict != row.model_verdict:
        row.agree = False
        row.detail = "verdicts differ"
    elif kset == mset:
        row.agree = True
    else:
        row.agree = False
        only_k = sorted(kset - mset)
        only_m = sorted(mset - kset)
        row.detail = f"same verdict, different violations: kernel only {only_k[:4]}, model only {only_m[:4]}"


def _set_aside(row: Row, cls: str, detail: str) -> None:
    row.kernel_verdict = "precondition not met"
    row.precondition = cls
    row.detail = detail
    row.agree = None


def _mte_pages_per_step(cs: cgen.CScenario) -> list[dict[tuple[int, int], set[int]]]:
    """out[k]: the PROT_MTE pages of each (proc, vma) after step k (out[0]: before step 1),
    following what the guest does (mprotect always adds PROT_MTE)."""
    cur: dict[tuple[int, int], set[int]] = {}
    out = [{}]
    for st in cs.steps:
        key = (st.proc, st.vma)
        if st.op == "mmap":
            cur[key] = set(range(st.npages_map)) if st.mte else set()
        elif st.op == "mprotect":
            cur.setdefault(key, set()).update(st.pages)
        elif st.op == "munmap":
            cur[key] = cur.get(key, set()) - set(st.pages)
        elif st.op == "fork":
            for (p, v), pages in list(cur.items()):
                if p == st.proc:
                    cur[(st.child, v)] = set(pages)
        elif st.op == "exit":
            for k in [k for k in cur if k[0] == st.proc]:
                cur[k] = set()
        out.append({k: set(v) for k, v in cur.items()})
    return out


def _hex_ranges(values: list[int]) -> str:
    return format_ranges(sorted(set(values)), fmt=lambda v: f"{v:#x}") or "none"


def frame_reuse_problem(model_violations: list[dict], res: guest.GuestResult, cs: cgen.CScenario) -> str | None:
    """The frame-reuse precondition of a model outcome that rests on stale tags.

    When the model reports a violation on a page whose tags were "left in pfn N by an earlier
    owner", the model's allocator handed that page a frame a PROT_MTE mapping of the scenario
    had freed. The kernel's page allocator need not. The guest prints the PFN of every page a
    step touches (before munmap/dontneed/split/reclaim, after every step but mmap, fork, exit,
    munmap); the page must, at the first step it is seen present, sit on a frame seen earlier
    under a PROT_MTE page. Returns None when that holds (or no model violation needs it), else
    what was seen.
    """
    stale = sorted({(v["proc"], v["vma"], v["page"]) for v in model_violations
                    if v.get("stale")})
    if not stale:
        return None
    mte = _mte_pages_per_step(cs)
    # sightings in time order: (step, phase, proc, vma, page, pfn, under PROT_MTE)
    seen = []
    for k in sorted(res.steps):
        if not 0 < k <= len(cs.steps):
            continue
        st, ev = cs.steps[k - 1], res.steps[k]
        for phase, when, state in ((0, "before", mte[k - 1]), (1, "after", mte[k])):
            for page, pfn in sorted(ev.pfns.get(when, {}).items()):
                if pfn:
                    seen.append((k, phase, st.proc, st.vma, page, pfn, page in state.get((st.proc, st.vma), ())))
    problems: dict[tuple[str, str], list[tuple[int, int, int]]] = {}  # (proc, vma) -> (page, pfn, step)
    earlier_mte: set[int] = set()
    for proc, vma, page in stale:
        if proc not in cs.procs or vma not in cs.vmas:
            continue
        key = (cs.procs.index(proc), cs.vmas.index(vma), page)
        first = next((s for s in seen if s[2:5] == key), None)
        if first is None:
            problems.setdefault((proc, vma), []).append((page, 0, 0))
            continue
        before = {s[5] for s in seen if s[:2] < first[:2] and s[6]}
        earlier_mte |= before
        if first[5] not in before:
            problems.setdefault((proc, vma), []).append((page, first[5], first[0]))
    if not problems:
        return None
    parts = []
    for (proc, vma), items in problems.items():
        unseen = [p for p, f, _ in items if not f]
        got = [(p, f, k) for p, f, k in items if f]
        if got:
            steps = sorted({k for _, _, k in got})
            parts.append(
                f"pages {cgen._pages_text(tuple(p for p, _, _ in got))} of {vma} (proc {proc}) got pfns "
                f"{_hex_ranges([f for _, f, _ in got])} at step {','.join(map(str, steps))}, not frames of "
                f"an earlier PROT_MTE mapping (those: {_hex_ranges(sorted(earlier_mte))})")
        if unseen:
            parts.append(f"no PFN seen for pages {cgen._pages_text(tuple(unseen))} of {vma} (proc {proc})")
    return ("frames not reused: " + "; ".join(parts)
            + " -- the model's outcome there rests on stale tags an earlier owner left in the frames")


def run_batch(
    scenarios: list[Scenario],
    env: Env,
    kernels: list[str],
    device_choice: str,
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[Row], dict]:
    """Returns (rows, timings)."""
    t0 = time.monotonic()
    expanded = [cgen.expand(sc) for sc in scenarios]
    runs: dict[tuple, ModelRun] = {}

    def model(i: int, kernel: str, device: str, own: frozenset[int] = frozenset()) -> ModelRun:
        if (i, kernel, device, own) not in runs:
            runs[(i, kernel, device, own)] = model_run(scenarios[i], kernel, device, own)
        return runs[(i, kernel, device, own)]

    timings: dict = {"boots": []}
    with tempfile.TemporaryDirectory(prefix="mteswap-kernel-") as tmp:
        work = Path(tmp)
        exe = work / "test"
        t1 = time.monotonic()
        compile_c(cgen.batch_program(expanded), exe)
        timings["compile_s"] = round(time.monotonic() - t1, 2)
        program = exe.read_bytes()
        rows: list[Row] = []
        for kernel in kernels:
            for device in ("zram", "virtio-blk"):
                plan, members = [], []
                for i, sc in enumerate(scenarios):
                    if device in devices_for(sc, device_choice):
                        sizes = [p for p in sc.config.folio_pages if p > 1]
                        rot = device == "virtio-blk" and sc.config.swap_device == "rotational"
                        plan.append((i, sc.config.swap_slots, rot, sizes))
                        members.append(i)
                if device_choice == "all" and device == "zram":
                    for i, sc in enumerate(scenarios):
                        if i in members and _keeps_cached(sc):
                            members.remove(i)
                            plan = [p for p in plan if p[0] != i]
                            obs, other = model(i, kernel, device).observable, model(i, kernel, device).other
                            rows.append(Row(sc.name, sc.file, kernel, device, kernel_verdict="not applicable",
                                            model_verdict="fail" if obs else "pass", model_violations=obs,
                                            model_unobservable=other,
                                            detail="keep_cached needs an asynchronous device; zram frees the folio at once"))
                if not plan:
                    continue
                log(f"booting {kernel} with {device} swap for {len(plan)} scenario(s)")
                b = guest.boot(env, kernel, device, program, plan, work)
                timings["boots"].append({"kernel": kernel, "device": device, "scenarios": len(plan),
                                         "seconds": round(b.seconds, 1)})
                if b.error:
                    log(f"  boot problem: {b.error}")
                for i in members:
                    sc = scenarios[i]
                    own = own_reclaims(b.results.get(i))
                    mr = model(i, kernel, device, own)
                    row = Row(sc.name, sc.file, kernel, device, release=b.release,
                              model_verdict="fail" if mr.observable else "pass", model_violations=mr.observable,
                              model_unobservable=mr.other, boot_seconds=round(b.seconds, 1),
                              steps_kept=steps_kept(sc, device, own))
                    compare_one(row, b.results.get(i), expanded[i], b.error, mr.states)
                    rows.append(row)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    return rows, timings


def state_lines(row: Row, every_step: bool = False) -> list[str]:
    """Text lines for the row's state comparison: the counts and the first difference, with
    both sides' strings of that step (of every step with `every_step`)."""
    if not row.state_steps:
        return []
    n = row.state_steps
    both = sum(1 for e in row.states if e["kernel_pages"] is not None
               and (e["kernel_pages"], e["kernel_mte"]) == (e["model_pages"], e["model_mte"]))
    head = f"  states: {both}/{n} steps agree (pages {row.state_pages_agree}/{n}, mte {row.state_mte_agree}/{n})"
    d = row.first_state_diff
    out = [head + (f"; first difference at {describe_state_diff(d)}" if d else "")]
    for e in row.states:
        if e["kernel_pages"] is None or not (every_step or (d and e["step"] == d["step"])):
            continue
        mark = "" if (e["kernel_pages"], e["kernel_mte"]) == (e["model_pages"], e["model_mte"]) else "  <-"
        out.append(f"    step {e['step']} {e['proc']} {e['vma']}: kernel |{e['kernel_pages']}| "
                   f"|{e['kernel_mte']}|{mark}")
        out.append(f"    {' ' * len(str(e['step']))}      {' ' * len(e['proc'] + e['vma'])}   model  "
                   f"|{e['model_pages']}| |{e['model_mte']}|")
    return out


def totals_line(rows: list[Row]) -> str:
    """One line: verdict agreement, step-state agreement and the rows set aside per class."""
    compared = [r for r in rows if r.agree is not None]
    # states only of rows compared: after an unmet precondition they describe another scenario
    steps = sum(r.state_steps for r in compared)
    pages = sum(r.state_pages_agree for r in compared)
    mte = sum(r.state_mte_agree for r in compared)
    classes: dict[str, int] = {}
    for r in rows:
        if r.precondition:
            classes[r.precondition] = classes.get(r.precondition, 0) + 1
    aside = ", ".join(f"{c} {n}" for c, n in sorted(classes.items())) or "none"
    kept = sum(r.steps_kept for r in compared)
    return (f"verdicts: {sum(r.agree is True for r in compared)}/{len(compared)} agree; "
            f"step states: pages {pages}/{steps}, mte {mte}/{steps} agree; "
            f"set aside (precondition not met): {aside}"
            + (f"; disk steps compared as keep_cached: {kept}" if kept else ""))


def summarize_evidence(row: Row) -> list[str]:
    out = []
    for e in row.evidence:
        bits = []
        if e["counters"]:
            keys = [k for k in e["counters"] if k not in ("SwapCached_kB",) or e["op"] in ("reclaim", "evict", "pageout")]
            bits.append(" ".join(f"{k}{e['counters'][k]:+d}" for k in keys))
        after = e["pagemap"].get("after")
        if after:
            bits.append("pages " + _pagemap_summary(after))
        pfns = e.get("pfns", {}).get("after") or e.get("pfns", {}).get("before")
        if pfns and any(pfns.values()):
            bits.append("pfns " + _hex_ranges([f for f in pfns.values() if f]))
        for n in e["notes"]:
            bits.append(n)
        if bits:
            out.append(f"    step {e['step']} {e['op']}: " + "; ".join(b for b in bits if b))
    return out


def _pagemap_summary(text: str) -> str:
    states: dict[str, list[int]] = {}
    offs = []
    for item in text.split():
        p, _, s = item.partition(":")
        kind = s[:1]
        states.setdefault(kind, []).append(int(p))
        if kind == "S":
            offs.append(int(s[1:]))
    names = {"S": "swapped", "P": "present", "L": "present-large", "Z": "zero-page", "-": "none", "?": "?"}
    parts = [f"{names.get(k, k)} {cgen._pages_text(tuple(v))}" for k, v in states.items()]
    if len(offs) >= 16:
        runs = sum(1 for i in range(0, len(offs) - 15, 16)
                   if offs[i] % 16 == 0 and offs[i:i + 16] == list(range(offs[i], offs[i] + 16)))
        if runs:
            parts.append(f"{runs} run(s) of 16 contiguous aligned swap offsets")
    return ", ".join(parts)
