"""benchmarks/fuzz_causes.py: the attribution of docs/fidelity.md's cause table, on a two-row
corpus made here from docs/fidelity-examples/swapcache-free-zram-7.2.yaml (A's four pages swapped
out at step 3, shared after fork, faulted back by A and B; step 8 swaps them out again).

The model gives slots 1-4 at step 3 and 5-8 at step 8 on 7.2 (it frees the swap cache when B's
fault removes the last swap reference, as the 7.2 kernel did), 512-515 at both on 6.12. The
kernel rows below give those slots, or others; each row gets a made-up state difference at
step 8 so that it is attributed."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "fidelity-examples" / "swapcache-free-zram-7.2.yaml"
OPS = ["mmap", "write", "pageout", "fork", "read", "read", "exit", "pageout"]


def load_module():
    spec = importlib.util.spec_from_file_location("fuzz_causes", ROOT / "benchmarks" / "fuzz_causes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def row(kernel: str, first: int, again: int, diff: tuple[str, str], notes8=()) -> dict:
    """A compared row of `mteswap kernel fuzz --json` for the example: the kernel's slots are
    first.. at step 3 and again.. at step 8, where pages differ (kernel, model letters)."""
    pagemap = {3: " ".join(f"{i}:S{first + i}" for i in range(4)),
               8: " ".join(f"{i}:S{again + i}" for i in range(4))}
    evidence = [{"step": k, "op": op, "counters": {}, "pfns": {},
                 "pagemap": {"after": pagemap[k]} if k in pagemap else {},
                 "notes": list(notes8) if k == 8 else []} for k, op in enumerate(OPS, start=1)]
    states = [{"step": 8, "proc": "A", "vma": "v1", "kernel_pages": diff[0] + "SSS",
               "model_pages": diff[1] + "SSS", "kernel_mte": "    ", "model_mte": "    "}]
    return {"scenario": "swapcache-free-zram-72", "file": "corpus/swapcache-free-zram-7.2.yaml",
            "kernel": kernel, "device": "zram", "agree": True, "evidence": evidence, "states": states,
            "state_steps": 1, "first_state_diff": {"step": 8, "page": 0, "field": "pages",
                                                    "kernel": diff[0], "model": diff[1]}}


def corpus(tmp_path: Path, rows: list[dict]) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def attributed(mod, folder: Path) -> list[str]:
    return [mod.attribute(r)[0] for r in mod.load([str(folder)])]


def test_6_12_slots_that_differ(tmp_path):
    mod = load_module()
    folder = corpus(tmp_path, [row("6.12", 513, 517, ("p", "H")), row("6.12", 512, 512, ("p", "H"))])
    assert attributed(mod, folder) == ["slots-6.12", "unexplained"]


def test_offsets_that_agree(tmp_path):
    """An order-0 swap-in on 7.2 / zram where the model's is large: anon-exclusive-7.2; other
    letters, or 6.12: unexplained."""
    mod = load_module()
    folder = corpus(tmp_path, [row("7.2", 1, 5, ("p", "H")), row("7.2", 1, 5, ("z", "S"))])
    assert attributed(mod, folder) == ["anon-exclusive-7.2", "unexplained"]


def test_descending_kernel_offsets_are_reverse_tails(tmp_path):
    mod = load_module()
    r = row("7.2", 1, 9, ("p", "H"))
    r["evidence"][7]["pagemap"]["after"] = "0:S9 1:S12 2:S11 3:S10"    # head, then tails last first
    assert attributed(mod, corpus(tmp_path, [r])) == ["reverse-tails-7.2"]


def test_cgroup_reclaim_of_an_unmapped_cached_page(tmp_path):
    """Kernel `S`, model `C` after a reclaim through the cgroup: the model's page must be a swap
    PTE whose folio is cached and unmapped, else the rule does not apply (here it is not: the
    model's pages at step 8 are plain swap PTEs, so the row falls through to the slot rules)."""
    mod = load_module()
    cg = ("reclaim through the cgroup (a folio of the range is shared or crosses a VMA boundary)",)
    folder = corpus(tmp_path, [row("7.2", 1, 5, ("S", "C"), notes8=cg)])
    assert attributed(mod, folder) == ["unexplained"]


def test_a_changed_model_is_reported(tmp_path, capsys):
    """The rows above record the model's `p`/`H`; the model really gives `SSSS` at step 8."""
    mod = load_module()
    r = row("7.2", 1, 5, ("p", "S"))
    r["states"][0]["model_pages"] = "SSSS"
    folder = corpus(tmp_path, [r, row("7.2", 1, 5, ("p", "H"))])
    whys = [mod.attribute(x)[1] for x in mod.load([str(folder)])]
    assert not whys[0].startswith("MODEL CHANGED") and whys[1].startswith("MODEL CHANGED")
    assert mod.main([str(folder)]) == 0
    assert "1 row(s) rerun here no longer give the recorded model state" in capsys.readouterr().out


def test_cause_table_and_bad_folder(tmp_path, capsys):
    mod = load_module()
    folder = corpus(tmp_path, [row("7.2", 1, 5, ("p", "H")), row("6.12", 513, 517, ("p", "H"))])
    assert mod.main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "| anon-exclusive-7.2 | 1 | 1 | 7.2 zram: 1 | model |" in out
    assert "| slots-6.12 | 1 | 1 | 6.12 zram: 1 | model |" in out
    assert "2 rows with a state difference, 2 differing steps." in out
    assert mod.main([str(tmp_path / "nothing")]) == 2
    assert "no rows.jsonl" in capsys.readouterr().err
