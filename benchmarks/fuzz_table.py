"""The differential-fuzzing tables of docs/fidelity.md from `mteswap kernel fuzz` output folders.

    .venv/bin/python benchmarks/fuzz_table.py OUT_DIR [OUT_DIR ...]

Reads each folder's rows.jsonl (one finished row per line) and prints, per kernel and swap
device: rows run, compared and set aside (per precondition class), verdict agreement, steps
whose `pages` / `mte` strings agree, and the disk steps the model ran as keep_cached.
Then the rows whose states differ, grouped by their first differing step: that step's op and
the two letters at its first differing page (a later difference in the same row is usually a
consequence of the first), with the number of rows, of differing steps in them, and an example.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def load(folders: list[str]) -> list[dict]:
    rows = []
    for folder in folders:
        for line in (Path(folder) / "rows.jsonl").read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row["_folder"] = folder
                rows.append(row)
    return rows


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.2f} %" if b else "-"


def summary(rows: list[dict]) -> None:
    print("| kernel | swap device | rows | compared | set aside | verdicts agree | steps "
          "| `pages` agree | `mte` agree | both agree | rows whose states all agree | disk steps as keep_cached |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["kernel"], r["device"])].append(r)
    total = defaultdict(int)
    for (kernel, device), rs in sorted(groups.items()):
        cmp_ = [r for r in rs if r["agree"] is not None]
        aside: dict[str, int] = defaultdict(int)
        for r in rs:
            if r.get("precondition"):
                aside[r["precondition"]] += 1
            elif r["kernel_verdict"] == "error":
                aside["error"] += 1
        steps = sum(r["state_steps"] for r in cmp_)
        pages = sum(r["state_pages_agree"] for r in cmp_)
        mte = sum(r["state_mte_agree"] for r in cmp_)
        both = sum(both_agree(r) for r in cmp_)
        clean = sum(r["states_agree"] is True for r in cmp_)
        kept = sum(r.get("steps_kept", r.get("pageouts_kept", 0)) for r in cmp_)
        agree = sum(r["agree"] is True for r in cmp_)
        aside_s = ", ".join(f"{c} {n}" for c, n in sorted(aside.items())) or "0"
        print(f"| {kernel} | {device} | {len(rs)} | {len(cmp_)} | {aside_s} | {agree}/{len(cmp_)} | {steps} "
              f"| {pages} ({pct(pages, steps)}) | {mte} ({pct(mte, steps)}) | {both} ({pct(both, steps)}) "
              f"| {clean} | {kept} |")
        for key, val in (("rows", len(rs)), ("compared", len(cmp_)), ("aside", sum(aside.values())),
                         ("agree", agree), ("steps", steps), ("pages", pages), ("mte", mte), ("both", both)):
            total[key] += val
    t = total
    print(f"\nAll: {t['rows']} rows, {t['compared']} compared, {t['aside']} set aside "
          f"({pct(t['aside'], t['rows'])}); verdicts {t['agree']}/{t['compared']}; steps {t['steps']}: "
          f"pages {pct(t['pages'], t['steps'])}, mte {pct(t['mte'], t['steps'])}, both {pct(t['both'], t['steps'])}.")


def both_agree(r: dict) -> int:
    return sum(1 for e in r["states"] if e["kernel_pages"] is not None
               and (e["kernel_pages"], e["kernel_mte"]) == (e["model_pages"], e["model_mte"]))


def op_of(r: dict, step: int) -> str:
    for e in r["evidence"]:
        if e["step"] == step:
            return e["op"]
    return "?"


def causes(rows: list[dict]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        d = r.get("first_state_diff")
        if r["agree"] is None or not d:
            continue
        groups[(r["kernel"], r["device"], op_of(r, d["step"]), d["field"], d["kernel"], d["model"])].append(r)
    print("\n| kernel | device | first differing step's op | field | kernel | model | rows | differing steps in them | example (step, page) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        steps = sum(r["state_steps"] - both_agree(r) for r in rs)
        ex = rs[0]
        d = ex["first_state_diff"]
        print(f"| {' | '.join(key[:3])} | {key[3]} | `{key[4]}` | `{key[5]}` | {len(rs)} | {steps} "
              f"| {ex['scenario']} (step {d['step']}, page {d['page']}) |")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    rows = load(argv)
    summary(rows)
    causes(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
