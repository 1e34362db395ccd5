"""Run a batch of scenarios on real kernels and compare with the model under `merged`."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mteswap.designs import get_design
from mteswap.ranges import format_ranges
from mteswap.scenario.load import Scenario
from mteswap.scenario.runner import run_scenario

from mteswap.model.origin import STALE

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


def model_outcome(sc: Scenario) -> tuple[list[dict], list[dict]]:
    res = run_scenario(sc, get_design("merged"))
    obs, other = [], []
    for v in res.violations:
        d = {"kind": v.kind, "step": v.step, "proc": v.proc, "vma": v.vma, "page": v.page, "detail": v.detail,
             # tags an earlier owner of the frame left (maybe saved and restored since): on a
             # kernel the page must land on such a frame (frame_reuse_problem)
             "stale": v.origin is not None and v.origin.rests_on(STALE)}
        (obs if v.kind in OBSERVABLE else other).append(d)
    return obs, other


def compare_one(row: Row, res: guest.GuestResult | None, cs: cgen.CScenario, boot_err: str | None) -> None:
    if res is None or res.rc is None:
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
    if res.rc == 3:
        row.kernel_verdict = "precondition not met"
        row.detail = "; ".join(n for e in res.steps.values() for n in e.notes if "precondition" in n)
        row.agree = None
        return
    if res.rc == 4:
        row.kernel_verdict = "error"
        row.detail = "skipped in the guest: " + "; ".join(res.errors)
        return
    if res.rc not in (0, 1):
        row.kernel_verdict = "error"
        row.detail = f"guest status {res.rc}: " + "; ".join(res.errors)
        return
    problem = frame_reuse_problem(row.model_violations, res, cs)
    if problem:
        row.kernel_verdict = "precondition not met"
        row.detail = "precondition not met: " + problem
        row.agree = None
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
    models = [model_outcome(sc) for sc in scenarios]
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
                            obs, other = models[i]
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
                    obs, other = models[i]
                    row = Row(sc.name, sc.file, kernel, device, release=b.release,
                              model_verdict="fail" if obs else "pass", model_violations=obs,
                              model_unobservable=other, boot_seconds=round(b.seconds, 1))
                    compare_one(row, b.results.get(i), expanded[i], b.error)
                    rows.append(row)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    return rows, timings


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
