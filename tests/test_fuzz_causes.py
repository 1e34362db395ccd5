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


# Rows of the r3 corpus (seed 13) and of a kernel run, cut to what the rules read: each op,
# the kernel's swap offsets (pagemap evidence) where they matter, the guest's reclaim notes,
# and the steps whose states differ.
OWN = "reclaim by MADV_PAGEOUT of whole folios"
EXAMPLES = ROOT / "docs" / "fidelity-examples"


def real_row(name: str, file: str, kernel: str, ops: list[str], pagemaps: dict[int, str],
             own: set[int], states: list[tuple], first: tuple) -> dict:
    """states: (step, vma, kernel pages, kernel mte, model pages, model mte); first: the first
    differing (step, page, kernel letter, model letter)."""
    evidence = [{"step": k, "op": op, "counters": {}, "pfns": {},
                 "pagemap": {"after": pagemaps[k]} if k in pagemaps else {},
                 "notes": [OWN] if k in own else []} for k, op in enumerate(ops, start=1)]
    return {"scenario": name, "file": f"corpus/{file}", "kernel": kernel, "device": "zram",
            "agree": True, "evidence": evidence, "state_steps": len(states),
            "states": [{"step": s, "proc": "A", "vma": v, "kernel_pages": kp, "kernel_mte": km,
                        "model_pages": mp, "model_mte": mm} for s, v, kp, km, mp, mm in states],
            "first_state_diff": {"step": first[0], "page": first[1], "field": "pages",
                                 "kernel": first[2], "model": first[3]}}


def real_corpus(tmp_path: Path, rows: list[dict]) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for r in rows:
        shutil.copy(EXAMPLES / Path(r["file"]).name, folder / Path(r["file"]).name)
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def fuzz_0151(kernel_step16: str = "SSSSSSSSSSpppppppppp") -> dict:
    """fuzz-13-0151 on 6.12 / zram, run after fuzz-13-0150 in the same boot: its pageout of
    pages 6-7 (step 14) took slots 1-2, where the model, starting with the slot cache off,
    took 512-513; run alone on the kernel it agrees at every step."""
    ops = ["mmap", "reclaim", "write", "read", "reclaim", "mprotect", "reclaim", "split", "write",
           "reclaim", "mprotect", "write", "write", "pageout", "reclaim", "write", "munmap", "pageout",
           "read", "reclaim", "pageout", "swapoff", "write", "read", "pageout", "reclaim", "read",
           "write", "read"]
    step15 = " ".join(f"{p}:S{o}" for p, o in zip(range(20), [3, 4, 5, 6, 7, 8, 1, 2] + list(range(9, 21))))
    states = [(16, "v1", kernel_step16, "          MMMMMMMMMM", "SSSSSSSSHtttttttpppp", "        MMMMMMMMMMMM"),
              (17, "v1", "SSSSSSSSSxxxxxxxxxpp", "                  MM", "SSSSSSSSHxxxxxxxxxpp", "        M         MM"),
              (18, "v1", "SSSSSSSSSxxxxxxxxxpS", "                  M ", "SSSSSSSSHxxxxxxxxxpS", "        M         M "),
              (19, "v1", "SSpppSSSSxxxxxxxxxpS", "  MMM             M ", "SSpppSSSHxxxxxxxxxpS", "  MMM   M         M "),
              (20, "v1", "SSpppSSSSxxxxxxxxxSS", "  MMM               ", "SSpppSSSHxxxxxxxxxSS", "  MMM   M           ")]
    return real_row("fuzz-13-0151", "fuzz-13-0151.yaml", "6.12", ops,
                    {14: "6:S1 7:S2", 15: step15}, {2, 5, 7, 10, 15, 20}, states, (16, 8, "S", "H"))


def test_6_12_slot_cache_left_on_by_an_earlier_scenario_of_the_boot(tmp_path):
    """With the slot cache active from the start the model gives the kernel's states at every
    differing step: slot-cache-boot-6.12 (environment). A kernel state it does not give
    (step 16 changed here) leaves the row to slots-6.12."""
    mod = load_module()
    folder = real_corpus(tmp_path, [fuzz_0151(), fuzz_0151("SSSSSSSSSSSSpppppppp")])
    got = [mod.attribute(r) for r in mod.load([str(folder)])]
    assert [c for c, _ in got] == ["slot-cache-boot-6.12", "slots-6.12"]
    assert got[0][1].startswith("offsets differ from step 14; the model with the slot cache active")


def partial_reclaim(own: set[int]) -> dict:
    """docs/fidelity-examples/partial-reclaim-7.2.yaml as the 7.2 kernel ran it (zram): the
    guest reclaimed A's part-mapped folio (pages 4-7) by MADV_PAGEOUT, slots 4-7 in order."""
    ops = ["mmap", "write", "pageout", "mmap", "write", "dontneed", "reclaim", "read"]
    return real_row("partial-reclaim-72", "partial-reclaim-7.2.yaml", "7.2", ops,
                    {3: "0:S1 1:S2 2:S3", 7: "4:S4 5:S5 6:S6 7:S7"}, own,
                    [(8, "v", "----Httt", "    ....", "----pppp", "    ....")], (8, 4, "H", "p"))


def test_7_2_madv_pageout_of_a_part_mapped_folio_writes_in_address_order(tmp_path):
    """The model's reclaim wrote pages 7, 6, 5, 4 to slots 4-7, the kernel 4-7 in order: when the
    guest did that reclaim by MADV_PAGEOUT, pageout-partial-folio (environment); through the
    cgroup (no note), no rule explains it."""
    mod = load_module()
    folder = real_corpus(tmp_path, [partial_reclaim({7}), partial_reclaim(set())])
    rows = mod.load([str(folder)])
    trace = mod.ModelTrace(rows[0])
    assert trace.offsets[7] == {4: 7, 5: 6, 6: 5, 7: 4} and trace.partial[7] == frozenset(range(4, 8))
    got = [mod.attribute(r) for r in rows]
    assert [c for c, _ in got] == ["pageout-partial-folio", "unexplained"]
    assert got[0][1] == "step 7: the model wrote pages 4-7 of a part-mapped folio last first, the kernel in address order"
