"""Turn `mteswap kernel run ... --json` output into the markdown table of docs/fidelity.md.

    .venv/bin/mteswap kernel run scenarios/*.yaml --kernel all --device all \
        --skip-unsupported --json | .venv/bin/python benchmarks/fidelity_table.py
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    print("| scenario | kernel | swap device | model (merged) | kernel | agree | note |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("kernel_verdict") == "unsupported":
            print(f"| {r['scenario']} | all | all | - | unsupported | - | {r['detail']} |")
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
        print(f"| {r['scenario']} | {rel} | {r['device']} | {mv} | {kv} | {agree} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
