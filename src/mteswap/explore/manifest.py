"""The manifest of check presets: for each (preset, design, depth) the verdict of an exhaustive
`mteswap check` (pass, or the kind of the first violation), its distinct states and
transitions, and the sometimes properties it reached, pinned exactly by
tests/test_check_manifest.py (as tlaplus/Examples and stateright's examples pin their counts).
A change to the model that moves a count shows up there, and is accepted by regenerating:

    PYTHONPATH=src python -m mteswap.explore.manifest tests/check_manifest.yaml
"""

from __future__ import annotations

import sys
import tempfile

import yaml

from mteswap.designs import BUILTIN

# small and zram at depth 3 under every design; zram at depth 4 where it first tells designs
# apart: rfc-v2 and rfc-v3 fail through a large swap-in, merged passes (about 25 s of one
# core in all).
RUNS = ([("small", d, 3) for d in BUILTIN] + [("zram", d, 3) for d in BUILTIN]
        + [("zram", d, 4) for d in ("rfc-v2", "rfc-v3", "merged", "merged-split-fix")])

HEADER = """\
# The manifest of check presets: preset x design x depth -> verdict (pass, or the first
# violation's kind), distinct states, transitions and the sometimes properties reached, of
# `mteswap check --model PRESET --design DESIGN --depth N --no-por` (exhaustive, symmetry
# on, sleep sets off: every transition is counted).
# Checked exactly by tests/test_check_manifest.py. Regenerate after a change that moves them:
#   PYTHONPATH=src python -m mteswap.explore.manifest tests/check_manifest.yaml
"""


def measure(preset: str, design: str, depth: int) -> dict:
    """One manifest entry, from an in-process, one-worker exhaustive search without sleep
    sets (the manifest pins the state space: every transition; tests/test_sleep_sets.py
    checks that sleep sets keep its states and verdicts)."""
    from mteswap.explore.check import Options, run_check
    with tempfile.TemporaryDirectory() as out:
        s, _ = run_check(Options(design=design, model=preset, depth=depth, workers=1,
                                 progress=False, out=out, por=False))
    return {"preset": preset, "design": design, "depth": depth,
            "verdict": s["violation"]["kind"] if s["violation"] else "pass",
            "distinct_states": s["distinct_states"], "transitions": s["transitions"],
            "reached": [name for name, got in s["sometimes"].items() if got["reached"]]}


def render(entries: list[dict]) -> str:
    lines = [HEADER, "runs:"]
    for e in entries:
        lines.append(f"  - {{preset: {e['preset']}, design: {e['design']}, depth: {e['depth']}, "
                     f"verdict: {e['verdict']}, distinct_states: {e['distinct_states']}, "
                     f"transitions: {e['transitions']},")
        reached = yaml.safe_dump(e["reached"], default_flow_style=True, width=1000).strip()
        lines.append(f"     reached: {reached}}}")
    return "\n".join(lines) + "\n"


def load(path) -> list[dict]:
    with open(path) as f:
        return yaml.safe_load(f)["runs"]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mteswap.explore.manifest PATH.yaml", file=sys.stderr)
        return 2
    text = render([measure(*run) for run in RUNS])
    with open(argv[0], "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
