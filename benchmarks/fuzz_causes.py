"""The cause table of docs/fidelity.md: every compared fuzz row whose page states differ,
attributed to a cause by its first differing step.

    PYTHONPATH=src .venv/bin/python benchmarks/fuzz_causes.py OUT_DIR [OUT_DIR ...] [--rows]

Reads each `mteswap kernel fuzz` folder's rows.jsonl (as benchmarks/fuzz_table.py does), reruns
the model on the differing rows' scenarios exactly as `mteswap kernel run` did (compare.as_booted:
the device really used, one MADV_PAGEOUT pass on the disk as keep_cached), and reads the swap
offsets both sides gave the step's pages (the kernel's from the pagemap evidence `N:S<offset>`,
the model's from its swap PTEs). Each row goes to the first rule that matches its first
differing step (step s, page p, kernel letter k, model letter m):

1. keep-cached-check (environment): s is a `reclaim keep_cached` the guest did through the
   cgroup, k `S`, m `C`, and the guest's check ("swap-cache X/Y", mincore over the range) passed
   because it counts zero-page and other present PTEs as cached; the row should have been set
   aside as `keep-cached`.
2. cgroup-unmapped-cache (environment): k `S`, m `C`, and a `reclaim` at or before s went
   through the cgroup (guest note "reclaim through the cgroup") while the model had the page's
   folio in the swap cache with no process mapping it. `memory.reclaim` frees such a folio
   (nothing can hold it: mlock and page references need a mapping); the model reclaims only
   the range's mapped folios.
3. cgroup-writeback (environment): k `C`, m `S` at a `reclaim` (keep_cached false) the guest did
   through the cgroup: its two memory.reclaim passes left a folio under writeback.
4. pageout-partial-folio (environment): the guest's `reclaim` by MADV_PAGEOUT ("reclaim by
   MADV_PAGEOUT of whole folios") of a large folio the process maps only in part: MADV_PAGEOUT
   splits it itself (`madvise_cold_or_pageout_pte_range`) and reclaims the mapped pages only, in
   address order, where memory-pressure reclaim (the model's `reclaim`) takes the whole folio.
   Two forms: (a) k `C`, m `S`, and the model dropped the page's slot from the swap cache at
   such a reclaim (the folio's unmapped pages stay cached on the kernel); (b) 7.2, the offsets
   first differ at such a reclaim, where the model's offsets descend and the kernel's do not,
   over pages that before the step mapped a large folio the process maps only in part (7.2's
   reclaim writes a split folio's tails from the last page down; MADV_PAGEOUT's split does not).
5. slot-cache-boot-6.12 (environment): 6.12, the offsets differ at s or before, and the model
   rerun with the per-CPU slot cache already active at the start agrees with the kernel at
   every compared step of the row. `swap_slot_cache_active` (mm/swap_slots.c) is one flag for
   the whole boot, turned on by the first order-0 swap-out and not reset by swapoff/swapon, so
   a scenario run after another in the same boot starts with it on; the model starts as a
   fresh boot, with it off. It matters only until the scenario's first order-0 swap-out: the
   slots of a large folio freed before it go to the return list (cache on) or are freed at
   once, and the next order-0 pages land in cluster 0 or in the freed cluster.
6. slots-6.12 (model): 6.12, and the swap offsets of the step's pages differed between the
   kernel and the model at s or before: a slot-placement difference left (the per-CPU slot
   cache of mm/swap_slots.c and the per-order next offsets are modelled; model/swap_slots.py).
7. reverse-tails-7.2 (model): 7.2, the offsets first differ at a step where the kernel's
   offsets descend (page i+1 one slot below page i): how 7.2 writes a folio split during
   reclaim (head first, then its tails from the last page down: modelled, vmscan._queue_tails)
   still differs there.
8. anon-exclusive-7.2 (model): 7.2 on zram, the offsets agree up to s, and the kernel swaps in
   order 0 (`p`) where the model swaps in a large folio (`H`/`t`): in fuzz-13-0023 and in
   docs/fidelity-examples/swapin-exclusive-7.2.yaml, the swap PTEs' exclusive bits differ on
   the kernel (not observable from user space). Modelled since r3 (memory._swapin_exclusive):
   a row matching it on a newer corpus means that model still differs there.
9. unexplained: the rest, listed by row.

Prints the cause table (rows, differing steps in them, where, kind, example) and with --rows
every row with its cause. A row whose first differing step the model rerun here no longer gives
the recorded state is flagged (the model changed since the corpus run: re-run the corpus).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from mteswap.designs import get_design
from mteswap.kernel.compare import OWN_RECLAIM_NOTE, as_booted
from mteswap.model.pte import is_swap_pte, pte_present, pte_pfn, pte_to_swp_entry
from mteswap.model.swapinfo import swp_offset
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the corpus reader of fuzz_table.py
from fuzz_table import load  # noqa: E402

CGROUP_NOTE = "reclaim through the cgroup"
SWAP_RE = re.compile(r"(\d+):S(\d+)")
CAUSES = {
    "cgroup-unmapped-cache": ("environment", "a swap-cache folio no process maps cannot be held out "
                              "of the cgroup fallback's memory.reclaim, which frees it; the model "
                              "reclaims only the range's mapped folios"),
    "keep-cached-check": ("environment", "the guest's keep_cached check (mincore over the range) "
                          "counts zero-page PTEs as cached, so a fallback that freed the folio was "
                          "compared instead of set aside as keep-cached"),
    "pageout-partial-folio": ("environment", "the guest's reclaim by MADV_PAGEOUT of a folio mapped "
                              "only in part by the process splits it (madvise_cold_or_pageout_pte_range) "
                              "and reclaims only the mapped pages, in address order; memory-pressure "
                              "reclaim (the model) takes the whole folio, frees its unmapped swap-cache "
                              "pages too and on 7.2 writes the split tails from the last page down"),
    "slot-cache-boot-6.12": ("environment", "6.12's swap_slot_cache_active is one flag per boot, left "
                             "on by the previous scenario of the same boot; the model starts as a "
                             "fresh boot (off), which differs until the first order-0 swap-out"),
    "cgroup-writeback": ("environment", "memory.reclaim, run twice for keep_cached: false, left a "
                         "written folio in the swap cache (its write not yet complete); not "
                         "reproduced when the scenario is run again"),
    "slots-6.12": ("model", "6.12 slot placement still differs (the per-CPU slot cache and "
                   "next offsets are modelled): order-0 slots differ, so later large swap-ins/outs differ"),
    "reverse-tails-7.2": ("model", "the order 7.2 writes a folio split during reclaim in (head, "
                          "then the tails from the last page down: modelled) still differs here"),
    "anon-exclusive-7.2": ("model", "7.2 maps a folio swapped in from non-exclusive swap PTEs "
                           "(after fork) non-exclusive and a write makes only its page exclusive, so "
                           "the next swap-out leaves swap PTEs whose exclusive bits differ and no "
                           "large swap-in is possible (modelled since r3: memory._swapin_exclusive)"),
    "unexplained": ("unexplained", "see docs/fidelity.md"),
}


def kernel_offsets(ev: dict) -> dict[int, int]:
    return {int(p): int(o) for p, o in SWAP_RE.findall(ev.get("pagemap", {}).get("after", ""))}


class ModelTrace:
    """The model rerun as `mteswap kernel run` ran it, with what the rules need after each step:
    the swap offsets of the step's VMA, the swap cache's offsets, and every swap PTE (of any
    VMA) whose slot's folio is in the swap cache with no process mapping it."""

    def __init__(self, row: dict, warm_slot_cache: bool = False):
        """`warm_slot_cache`: start with 6.12's per-CPU slot cache active, as a scenario run
        after another in the same boot finds it (rule slot-cache-boot-6.12)."""
        path = Path(row["_folder"]).parent / row["file"]
        if not path.exists():
            path = Path(row["_folder"]) / Path(row["file"]).name
        own = frozenset(e["step"] for e in row["evidence"] if OWN_RECLAIM_NOTE in e["notes"])
        self.sc = as_booted(load_scenario(path), row["kernel"], row["device"], own)
        self.runner = Runner(self.sc, get_design("merged"), keep_states=True)
        if warm_slot_cache:
            self.runner.m.swap.slots_cache_active = self.runner.m.swap.has_slots_cache
        self.offsets: dict[int, dict[int, int]] = {}
        self.unmapped_cached: dict[int, dict[tuple[str, str, int], bool]] = {}
        self.cached: dict[int, frozenset[int]] = {0: frozenset()}     # swap-cache offsets
        self.partial: dict[int, frozenset[int]] = {}   # own reclaim step -> pages of a part-mapped folio
        self.own = own
        for step in self.sc.steps:
            if step.index in own:
                self.partial[step.index] = self._partly_mapped(step)
            self.runner.run_step(step)
            self.offsets[step.index] = self._offsets(step)
            self.cached[step.index] = frozenset(self.runner.m.swap.cache.keys())
            self.unmapped_cached[step.index] = self._unmapped_cached()

    def _vma(self, proc: str, name: str):
        pid = self.runner.pids.get(proc)
        if pid is None or (pid, name) not in self.runner.vmas:
            return None
        start, pages = self.runner.vmas[(pid, name)]
        return self.runner.m.mms[pid], start, pages

    def _offsets(self, step) -> dict[int, int]:
        where = self._vma(step.args.get("proc"), step.args.get("vma")) if step.args.get("vma") else None
        if where is None:
            return {}
        mm, start, pages = where
        ents = mm.ptes.ents
        out = {}
        for i in range(pages):
            e = ents[start + i] if start + i < len(ents) else 0
            if e and is_swap_pte(e):
                out[i] = swp_offset(pte_to_swp_entry(e, start + i))
        return out

    def _partly_mapped(self, step) -> frozenset[int]:
        """Pages of the step's VMA that map a large folio this process maps fewer pages of
        than it has (MADV_PAGEOUT splits such a folio itself)."""
        where = self._vma(step.args.get("proc"), step.args.get("vma"))
        if where is None:
            return frozenset()
        mm, start, pages = where
        m, ents = self.runner.m, mm.ptes.ents
        folios = {}
        for vpn, e in enumerate(ents):
            if e and pte_present(e) and (f := m.folio_at(pte_pfn(e, vpn))) is not None and f.nr > 1:
                folios.setdefault(f.pfn, [f.nr, set()])[1].add(vpn)
        return frozenset(vpn - start for nr, vpns in folios.values() if len(vpns) < nr
                         for vpn in vpns if start <= vpn < start + pages)

    def _unmapped_cached(self) -> dict[tuple[str, str, int], bool]:
        """(proc, vma, page) -> True for a swap PTE whose slot's folio is cached and unmapped."""
        m = self.runner.m
        mapped = set()
        for mm in m.mms:
            if mm is None:
                continue
            ents = mm.ptes.ents
            for vpn, e in enumerate(ents):
                if e and pte_present(e):
                    mapped.add(pte_pfn(e, vpn))
        cached_unmapped = {off for off, f in m.swap.cache.items()
                           if not any(pfn in mapped for pfn in range(f.pfn, f.pfn + f.nr))}
        out = {}
        for (pid, name), (start, pages) in self.runner.vmas.items():
            proc = next(p for p, q in self.runner.pids.items() if q == pid)
            mm = m.mms[pid] if pid < len(m.mms) else None
            ents = mm.ptes.ents if mm is not None else ()
            for i in range(pages):
                e = ents[start + i] if start + i < len(ents) else 0
                if e and is_swap_pte(e) and swp_offset(pte_to_swp_entry(e, start + i)) in cached_unmapped:
                    out[(proc, name, i)] = True
        return out


def slot_divergence(row: dict, trace: ModelTrace, upto: int) -> int | None:
    """The first step <= upto at which a page swapped on both sides has different offsets."""
    for ev in row["evidence"]:
        if ev["step"] > upto:
            break
        k = kernel_offsets(ev)
        mo = trace.offsets.get(ev["step"], {})
        if any(p in mo and mo[p] != o for p, o in k.items()):
            return ev["step"]
    return None


def descending(offsets: dict[int, int]) -> frozenset[int]:
    """Pages p whose next page p + 1 has the slot just below p's (written last first)."""
    return frozenset(p for p, o in offsets.items() if offsets.get(p + 1) == o - 1)


def warm_cache_agrees(row: dict) -> bool:
    """Does the model, rerun with 6.12's slot cache active from the start, give the kernel's
    pages and mte at every compared step of the row?"""
    warm = {x["step"]: (x["pages"], x["mte"]) for x in ModelTrace(row, warm_slot_cache=True).runner.states}
    return all(warm.get(e["step"]) == (e["kernel_pages"], e["kernel_mte"])
               for e in row["states"] if e["kernel_pages"] is not None)


def attribute(row: dict) -> tuple[str, str]:
    """(cause, why) of a row's first differing step; `why` starts with a warning when the model
    rerun here no longer gives that step the state the row recorded (the model changed since
    the corpus was run: re-run the corpus)."""
    trace = ModelTrace(row)
    cause, why = _attribute(row, trace)
    d = row["first_state_diff"]
    entry = next(e for e in row["states"] if e["step"] == d["step"])
    now = next((x for x in trace.runner.states if x["step"] == d["step"]), None)
    if now is None or now["pages"] != entry["model_pages"]:
        why = "MODEL CHANGED since the corpus run; " + why
    return cause, why


def _attribute(row: dict, trace: ModelTrace) -> tuple[str, str]:
    d = row["first_state_diff"]
    s, p = d["step"], d["page"]
    ev = {e["step"]: e for e in row["evidence"]}
    entry = next(e for e in row["states"] if e["step"] == s)
    cg_steps = [k for k in sorted(ev) if k <= s and any(CGROUP_NOTE in n for n in ev[k]["notes"])]
    if d["field"] == "pages" and d["kernel"] == "C" and d["model"] == "S":
        if s in cg_steps and not trace.sc.steps[s - 1].args.get("keep_cached"):
            return "cgroup-writeback", f"step {s}: memory.reclaim twice left the page's folio cached"
        slot = trace.offsets.get(s, {}).get(p)
        for r in sorted(trace.own, reverse=True):
            if r <= s and slot in trace.cached[r - 1] and slot not in trace.cached[r]:
                return "pageout-partial-folio", f"slot {slot} freed from the model's swap cache at step {r}"
    if d["field"] == "pages" and d["kernel"] == "S" and d["model"] == "C" and cg_steps:
        step = trace.sc.steps[s - 1]
        notes = ev[s]["notes"]
        if s in cg_steps and step.op == "reclaim" and step.args.get("keep_cached") \
                and any(re.search(r"swap-cache (\d+)/(\d+)", n) for n in notes):
            return "keep-cached-check", f"step {s}: {next(n for n in notes if 'swap-cache' in n)}"
        key = (entry["proc"], entry["vma"], p)
        for c in cg_steps:
            before = trace.unmapped_cached.get(c - 1, {}) if c > 1 else {}
            if before.get(key) or trace.unmapped_cached.get(c, {}).get(key):
                return "cgroup-unmapped-cache", f"cgroup reclaim at step {c}"
    div = slot_divergence(row, trace, s)
    if div is not None and row["kernel"] != "6.12" and div in trace.own:
        down = descending(trace.offsets.get(div, {})) & trace.partial.get(div, frozenset())
        if down and not descending(kernel_offsets(ev[div])) & down:
            return "pageout-partial-folio", (f"step {div}: the model wrote pages {min(down)}-{max(down) + 1} "
                                             "of a part-mapped folio last first, the kernel in address order")
    if div is not None and row["kernel"] == "6.12":
        if warm_cache_agrees(row):
            return "slot-cache-boot-6.12", (f"offsets differ from step {div}; the model with the slot "
                                            "cache active from the start agrees at every step")
        return "slots-6.12", f"offsets differ from step {div}"
    if div is not None:
        if descending(kernel_offsets(ev[div])):
            return "reverse-tails-7.2", f"offsets differ from step {div}, kernel's descend there"
    if div is None and row["kernel"] != "6.12" and row["device"] == "zram" \
            and d["kernel"] == "p" and d["model"] in "Ht":
        return "anon-exclusive-7.2", "offsets agree; the kernel swapped in order 0 where the model did not"
    return "unexplained", "offsets agree" if div is None else f"offsets differ from step {div}"


def differing_steps(r: dict) -> int:
    return sum(1 for e in r["states"] if e["kernel_pages"] is not None
               and (e["kernel_pages"], e["kernel_mte"]) != (e["model_pages"], e["model_mte"]))


def example(r: dict) -> str:
    d = r["first_state_diff"]
    e = next(e for e in r["states"] if e["step"] == d["step"])
    op = next(x["op"] for x in r["evidence"] if x["step"] == d["step"])
    field = "pages" if d["field"] == "pages" else "mte"
    return (f"{r['scenario']}, {r['kernel']}/{r['device']}, step {d['step']} `{op}` page {d['page']}: "
            f"`{e['kernel_' + field]}` / `{e['model_' + field]}`")


def shortest(items: list[tuple[dict, str]]) -> dict:
    """The row whose first differing step shows the shortest VMA: the easiest to read."""
    return min((r for r, _ in items), key=lambda r: (len(next(
        e for e in r["states"] if e["step"] == r["first_state_diff"]["step"])["model_pages"]), r["scenario"]))


def main(argv: list[str]) -> int:
    show_rows = "--rows" in argv
    folders = [a for a in argv if a != "--rows"]
    if not folders:
        print(__doc__, file=sys.stderr)
        return 2
    missing = [f for f in folders if not (Path(f) / "rows.jsonl").is_file()]
    if missing:
        print(f"fuzz_causes: no rows.jsonl in {', '.join(missing)} (expected a `mteswap kernel fuzz --out` folder)",
              file=sys.stderr)
        return 2
    rows = [r for r in load(folders) if r["agree"] is not None and r.get("first_state_diff")]
    by_cause: dict[str, list[tuple[dict, str]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["scenario"], r["kernel"], r["device"])):
        cause, why = attribute(r)
        by_cause[cause].append((r, why))
        if show_rows:
            print(f"{cause:22} {r['scenario']} {r['kernel']:4} {r['device']:10} "
                  f"step {r['first_state_diff']['step']:2} page {r['first_state_diff']['page']:2} "
                  f"{r['first_state_diff']['kernel']}/{r['first_state_diff']['model']}  {why}")
    print("\n| cause | rows | steps | where | kind | example: first differing step, kernel / model |")
    print("|---|---|---|---|---|---|")
    for cause in CAUSES:
        items = by_cause.get(cause, [])
        if not items:
            continue
        where = defaultdict(int)
        for r, _ in items:
            where[f"{r['kernel']} {r['device']}"] += 1
        print(f"| {cause} | {len(items)} | {sum(differing_steps(r) for r, _ in items)} "
              f"| {', '.join(f'{k}: {n}' for k, n in sorted(where.items()))} "
              f"| {CAUSES[cause][0]} | {example(shortest(items))} |")
    changed = sum(why.startswith("MODEL CHANGED") for v in by_cause.values() for _, why in v)
    if changed:
        print(f"\n{changed} row(s) rerun here no longer give the recorded model state at their first "
              "differing step: the model changed since the corpus run; re-run the corpus (--rows lists them).")
    total = sum(len(v) for v in by_cause.values())
    print(f"\n{total} rows with a state difference, {sum(differing_steps(r) for r in rows)} differing steps.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
