"""Turn `mteswap kernel run ... --json` output into the markdown table of docs/fidelity.md.

    .venv/bin/mteswap kernel run scenarios/*.yaml --kernel all --device all \
        --skip-unsupported --json | .venv/bin/python benchmarks/fidelity_table.py
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    print("| scenario | kernel | swap device | model (merged) | kernel | agree | step states agree (pages, mte) | first state difference | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("kernel_verdict") == "unsupported":
            print(f"| {r['scenario']} | all | all | - | unsupported | - | - | - | {r['detail']} |")
            continue
        first = r["kernel_violations"][0] if r["kernel_violations"] else None
        kv = r["kernel_verdict"]
        if first:
            seen = f"fail: {first['kind']} (step {first['step']})"
            # a verdict without its precondition stays one; what the guest saw is kept beside it
            kv = f"{kv} (observed {seen})" if kv == "precondition not met" else seen
        mv = r["model_verdict"]
        if r["model_violations"]:
            m = r["model_violations"][0]
            mv = f"fail: {m['kind']} (step {m['step']})"
        agree = {True: "yes", False: "**NO**", None: "-"}[r["agree"]]
        note = r.get("detail", "").replace("|", "/")
        if r.get("model_unobservable"):
            note = (note + "; " if note else "") + "model also reports " + ", ".join(
                sorted({v["kind"] for v in r["model_unobservable"]})) + " (not observable)"
        rel = r.get("release") or r["kernel"]
        n = r.get("state_steps", 0)
        st = f"{r['state_pages_agree']}/{n}, {r['state_mte_agree']}/{n}" if n else "-"
        d = r.get("first_state_diff")
        first = (f"step {d['step']} page {d['page']}: kernel {d['field']} '{d['kernel']}', model '{d['model']}'"
                 if d else "-")
        print(f"| {r['scenario']} | {rel} | {r['device']} | {mv} | {kv} | {agree} | {st} | {first} | {note} |")
    print()
    print(totals(rows))
    return 0


def totals(rows: list[dict]) -> str:
    """The summary line under the table: verdicts and step states over the rows compared."""
    ran = [r for r in rows if r.get("kernel_verdict") not in ("unsupported", "not applicable", "error")]
    compared = [r for r in ran if r.get("agree") is not None]
    # states only of rows compared: after an unmet precondition they describe another scenario
    steps = sum(r.get("state_steps", 0) for r in compared)
    pages = sum(r.get("state_pages_agree", 0) for r in compared)
    mte = sum(r.get("state_mte_agree", 0) for r in compared)
    aside: dict[str, int] = {}
    for r in ran:
        if r.get("precondition"):
            aside[r["precondition"]] = aside.get(r["precondition"], 0) + 1
    pct = (lambda a, b: f"{100 * a / b:.1f} %" if b else "-")
    return (f"Verdicts: {sum(r['agree'] is True for r in compared)}/{len(compared)} agree. "
            f"Step states: pages {pages}/{steps} ({pct(pages, steps)}), PG_mte_tagged {mte}/{steps} "
            f"({pct(mte, steps)}). Set aside: "
            + (", ".join(f"{c} {n}" for c, n in sorted(aside.items())) or "none") + ".")


if __name__ == "__main__":
    sys.exit(main())
