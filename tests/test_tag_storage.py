"""Config `tag_storage: compressed`: saved tags run through Potapenko's V7 codec
(model/mtecomp.py) and are kept inline in the mte_pages slot when they fit in six runs.

Expected values are worked out by hand from the codec layout (mtecomp.py docstring): bit 0 set,
bits 1-3 largest_idx, 4-bit run tags from bit 4, 7-bit sizes (all but the largest run) from
bit 28. `m.mte_pages` holds the negated handle for an inline entry, the tags value otherwise.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from helpers import invoke, kinds, scenario
from mteswap.bundled import bundled_files
from mteswap.designs import BUILTIN, get_design
from mteswap.model import tags as T
from mteswap.model.mte import saved_tags
from mteswap.model.pte import pte_pfn
from mteswap.model.swap_slots import drain_slots_cache_cpu
from mteswap.model.state import Counters
from mteswap.model.swapinfo import SWAP_HAS_CACHE
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import Runner, run_scenario

MMAP16 = {"mmap": {"proc": "A", "vma": "buf", "pages": 16, "mte": True}}
WRITE16 = {"write": {"proc": "A", "vma": "buf", "pages": "0-15", "tag": "distinct"}}
RECLAIM = {"reclaim": {"proc": "A", "vma": "buf", "pages": "all"}}
READ = {"read": {"proc": "A", "vma": "buf", "pages": "all"}}
EXIT = {"exit": {"proc": "A"}}
BASE = 0x200          # first slot handed out (cluster 0 holds the header slot); type 0 entry == offset
COMPRESSED = set(Counters.COMPRESSED)


def distinct_tag(i: int) -> int:
    return i % 15 + 1                       # `tag: distinct`, page i


def uniform_handle(t: int) -> int:
    # One run becomes two 128-halves: largest_idx 0, tags t, t in bits 4-7 and 8-11, and the
    # second half's size 128 stored (masked to 7 bits) as 0.
    return 1 | t << 4 | t << 8


def start(steps, design="merged", **config) -> Runner:
    """A runner that has run nothing yet (run steps one by one with `step`)."""
    return Runner(scenario(steps, **config), get_design(design))


def step(r: Runner, index: int) -> None:
    r.run_step(r.scenario.steps[index - 1])


# ----------------------------------------------------------------- 1. one 64 KiB folio


@pytest.mark.parametrize("device", ["zram", "ssd"])
def test_compressed_roundtrip_of_a_distinctly_tagged_16_page_folio(device):
    r = start([MMAP16, WRITE16, RECLAIM, READ, EXIT], folio_pages=[1, 16], swap_device=device,
              tag_storage="compressed")
    m, c = r.m, r.m.counters
    assert COMPRESSED <= set(c)
    for i in (1, 2):
        step(r, i)
    assert all(c[name] == 0 for name in COMPRESSED)

    step(r, 3)                                          # reclaim: one large swap-out
    assert (c["swap_outs"], c["large_swap_outs"], c["pswpout"]) == (1, 1, 16)
    assert c["tag_saves"] == 16
    assert c["tag_saves_inline"] == 16
    assert c["tag_compressions"] == 16
    assert c["tag_decompressions"] == 0
    assert c["tag_bytes"] == c["tag_bytes_peak"] == 0 == m.tag_heap_bytes
    assert c["tag_bytes_plain"] == c["tag_bytes_plain_peak"] == 16 * 128
    assert m.mte_pages == {BASE + i: -uniform_handle(distinct_tag(i)) for i in range(16)}
    assert -m.mte_pages[BASE + 0] == 0x111              # tag 1 (page 0; page 15 too)
    assert -m.mte_pages[BASE + 14] == 0xFF1             # tag 15
    assert all(saved_tags(m, BASE + i) == distinct_tag(i) for i in range(16))

    step(r, 4)                                          # read every page back
    mm = m.mms[r.pids["A"]]
    assert [m.pages[pte_pfn(mm.ptes[v], v)].tags for v in range(16)] == [distinct_tag(i) for i in range(16)]
    assert c["tag_restores"] == 16
    assert c["tag_decompressions"] == 16                # every restore loaded an inline handle
    assert c["tag_saves"] == c["tag_compressions"] == c["tag_saves_inline"] == 16
    assert c["tag_bytes_peak"] == 0
    assert c["tag_bytes_plain_peak"] == 2048
    if device == "zram":
        # SWP_SYNCHRONOUS_IO: one 16-page swap-in bypassing the swap cache, one arch_swap_restore
        # over the folio, then every slot freed, so every inline entry erased.
        assert (c["swap_ins"], c["large_swap_ins"], c["restore_calls"]) == (1, 1, 1)
        assert m.mte_pages == {}
        assert c["tag_invalidations"] == c["tag_invalidations_inline"] == 16
        assert c["tag_bytes_plain"] == 0
    else:
        # ssd: 16 order-0 read faults, each folio left in the swap cache (swap is far from
        # full, so do_swap_page does not free the slot): swap_free drops the PTE's count, the
        # cache pin keeps each slot, and its entry and handle stay.
        assert (c["swap_ins"], c["large_swap_ins"], c["restore_calls"]) == (16, 0, 16)
        assert [m.swap.swap_map[BASE + i] for i in range(16)] == [SWAP_HAS_CACHE] * 16
        assert sorted(m.swap.cache) == [BASE + i for i in range(16)]
        assert len(m.mte_pages) == 16
        assert c["tag_invalidations"] == c["tag_invalidations_inline"] == 0
        assert c["tag_bytes_plain"] == 2048

    step(r, 5)                                          # exit: every slot freed by now
    assert m.mte_pages == {}
    assert c["tag_invalidations"] == c["tag_invalidations_inline"] == 16
    assert c["tag_bytes"] == 0 and c["tag_bytes_plain"] == 0
    assert c["tag_decompressions"] == 16                # erasing decompresses nothing
    assert kinds(r) == []


@pytest.mark.parametrize("device", ["zram", "ssd"])
def test_plain_roundtrip_of_the_same_folio_holds_128_bytes_per_page(device):
    r = start([MMAP16, WRITE16, RECLAIM, READ, EXIT], folio_pages=[1, 16], swap_device=device)
    m, c = r.m, r.m.counters
    for i in (1, 2, 3):
        step(r, i)
    assert m.mte_pages == {BASE + i: distinct_tag(i) for i in range(16)}
    assert c["tag_bytes"] == c["tag_bytes_peak"] == 2048 == m.tag_heap_bytes
    for i in (4, 5):
        step(r, i)
    assert c["tag_saves"] == 16 and c["tag_restores"] == 16
    assert c["tag_bytes_peak"] == 2048 and c["tag_bytes"] == 0
    assert not COMPRESSED & set(c)
    assert kinds(r) == []


# ------------------------------------------------- 2. compression does not change behaviour


def _compressed(s):
    return dataclasses.replace(s, config=dataclasses.replace(s.config, tag_storage="compressed"))


BUNDLED = [load_scenario(p) for p in bundled_files()]


@pytest.mark.parametrize("design", list(BUILTIN))
@pytest.mark.parametrize("s", BUNDLED, ids=[s.name for s in BUNDLED])
def test_bundled_scenario_behaves_the_same_with_compressed_storage(s, design):
    assert s.config.tag_storage == "plain"
    plain = run_scenario(s, get_design(design))
    comp = run_scenario(_compressed(s), get_design(design))
    assert ([(v.kind, v.step, v.page) for v in comp.violations]
            == [(v.kind, v.step, v.page) for v in plain.violations])
    assert [v.detail for v in comp.violations] == [v.detail for v in plain.violations]
    pc, cc = plain.counters, comp.counters
    assert not COMPRESSED & set(pc)
    assert set(cc) == set(pc) | COMPRESSED
    # Every behavioural counter is equal; the bytes held differ by design and are checked below.
    held = {"tag_bytes", "tag_bytes_peak"}
    assert {k: cc[k] for k in pc if k not in held} == {k: pc[k] for k in pc if k not in held}
    # What plain storage would hold is exactly what the plain run held.
    assert (cc["tag_bytes_plain"], cc["tag_bytes_plain_peak"]) == (pc["tag_bytes"], pc["tag_bytes_peak"])
    # Bundled scenarios only set uniform tags: every save compresses and fits inline, except
    # under folio-marker, which also saves pages without PG_mte_tagged: their tags, which
    # nobody set (tags.UNKNOWN), never compress and stay in plain 128-byte buffers.
    assert cc["tag_compressions"] == cc["tag_saves"]
    plain_saves = cc["tag_saves"] - cc["tag_saves_inline"]
    assert plain_saves == 0 or design == "folio-marker"
    if plain_saves:
        assert cc["tag_bytes_peak"] >= 128
        return
    assert cc["tag_bytes"] == cc["tag_bytes_peak"] == 0
    assert cc["tag_decompressions"] <= cc["restore_page_iterations"]
    assert cc["tag_decompressions"] >= cc["tag_restores"]
    # Every stored entry is inline, so every invalidation is of an inline entry (a re-save's
    # replacement of the old entry is not an invalidation).
    assert cc["tag_invalidations_inline"] == cc["tag_invalidations"]


# ------------------------------------------------------------- 3. mixed tags, direct


def _granules(*runs):
    out = [t for t, n in runs for _ in range(n)]
    assert len(out) == 256
    return out


SEVEN_RUNS = _granules((1, 10), (2, 10), (3, 10), (4, 10), (5, 10), (6, 10), (7, 196))
SIX_RUNS = _granules((1, 10), (2, 10), (3, 10), (4, 10), (5, 10), (6, 206))
# largest_idx 5; tags 1..6 in bits 4..27; the five other sizes (10 each) in 7-bit fields from 28.
SIX_RUNS_HANDLE = (1 | 5 << 1 | 1 << 4 | 2 << 8 | 3 << 12 | 4 << 16 | 5 << 20 | 6 << 24
                   | 10 << 28 | 10 << 35 | 10 << 42 | 10 << 49 | 10 << 56)
HALVES = _granules((9, 128), (4, 128))
HALVES_HANDLE = 1 | 9 << 4 | 4 << 8          # 128 stored as 0: the two-halves special case
LARGEST_INSIDE = _granules((3, 5), (8, 200), (3, 51))
# largest_idx 1; tags 3, 8, 3; stored sizes 5 then 51.
LARGEST_INSIDE_HANDLE = 1 | 1 << 1 | 3 << 4 | 8 << 8 | 3 << 12 | 5 << 28 | 51 << 35
ALTERNATING_7 = _granules((1, 1), (2, 1), (1, 1), (2, 1), (1, 1), (2, 1), (1, 250))

MIXED_CASES = {
    "7-runs": (SEVEN_RUNS, None),
    "7-runs-alternating": (ALTERNATING_7, None),
    "6-runs": (SIX_RUNS, SIX_RUNS_HANDLE),
    "two-halves": (HALVES, HALVES_HANDLE),
    "largest-not-first": (LARGEST_INSIDE, LARGEST_INSIDE_HANDLE),
}


def _swap_out_mixed(granule_tags, device, folio_pages, page=3, storage="compressed"):
    """Write every page with tag 5, give `page` the mixed tags (and tell the oracle the program
    now holds matching pointer tags), then reclaim. Returns (runner, pfn, mixed value)."""
    steps = [{"mmap": {"proc": "A", "vma": "buf", "pages": 16, "mte": True}},
             {"write": {"proc": "A", "vma": "buf", "pages": "all", "tag": 5}},
             RECLAIM, READ, EXIT]
    r = start(steps, folio_pages=folio_pages, swap_device=device, tag_storage=storage)
    step(r, 1)
    step(r, 2)
    pid = r.pids["A"]
    vpn = r.vmas[(pid, "buf")][0] + page
    pfn = pte_pfn(r.m.mms[pid].ptes[vpn], vpn)
    mixed = T.from_granules(granule_tags)
    assert not T.is_uniform(mixed)
    r.m.pages[pfn].tags = mixed
    _, value = r.oracle.expect.get(pid, vpn)
    r.oracle.expect.view[pid][vpn] = (mixed, value)
    step(r, 3)
    return r, vpn, mixed


@pytest.mark.parametrize("device, folio_pages", [("zram", [1, 16]), ("ssd", [1, 16]), ("ssd", [1])])
@pytest.mark.parametrize("case", list(MIXED_CASES))
def test_mixed_tags_are_stored_inline_or_plain_and_restored_exactly(case, device, folio_pages):
    granule_tags, handle = MIXED_CASES[case]
    r, vpn, mixed = _swap_out_mixed(granule_tags, device, folio_pages)
    m, c = r.m, r.m.counters
    entry = next(e for e in m.mte_pages if saved_tags(m, e) != 5)
    others = {e: v for e, v in m.mte_pages.items() if e != entry}
    assert len(m.mte_pages) == 16
    assert set(others.values()) == {-uniform_handle(5)} == {-0x551}
    assert saved_tags(m, entry) == mixed
    assert c["tag_saves"] == c["tag_compressions"] == 16
    assert c["tag_bytes_plain"] == c["tag_bytes_plain_peak"] == 2048
    if handle is None:                                  # 7+ runs: the plain 128-byte buffer
        assert m.mte_pages[entry] == mixed >= 0
        assert m.tag_heap_bytes == 128
        assert c["tag_saves_inline"] == 15
        assert c["tag_bytes"] == c["tag_bytes_peak"] == 128
    else:
        assert m.mte_pages[entry] == -handle
        assert m.tag_heap_bytes == 0
        assert c["tag_saves_inline"] == 16
        assert c["tag_bytes"] == c["tag_bytes_peak"] == 0

    step(r, 4)                                          # read everything back
    mm = m.mms[r.pids["A"]]
    page = m.pages[pte_pfn(mm.ptes[vpn], vpn)]
    assert page.tags == mixed
    assert T.granules(page.tags) == granule_tags
    assert c["tag_restores"] == 16
    assert c["tag_decompressions"] == (15 if handle is None else 16)   # a plain buffer is copied
    step(r, 5)
    if m.swap.slots_ret:
        # 6.12, order-0 slots: freed onto the slot cache's return list, tags kept until it is
        # drained (mm/swap_slots.c; model/swap_slots.py)
        assert sorted(m.mte_pages) == sorted(m.swap.slots_ret) and c["tag_invalidations"] == 0
        drain_slots_cache_cpu(m)
    assert m.mte_pages == {} and m.tag_heap_bytes == 0
    assert c["tag_invalidations"] == 16
    assert c["tag_invalidations_inline"] == (15 if handle is None else 16)
    assert c["tag_bytes"] == 0
    assert kinds(r) == []


@pytest.mark.parametrize("case", list(MIXED_CASES))
def test_mixed_tags_with_plain_storage_keep_the_value_itself(case):
    granule_tags, _ = MIXED_CASES[case]
    r, vpn, mixed = _swap_out_mixed(granule_tags, "zram", [1, 16], storage="plain")
    m = r.m
    assert sorted(m.mte_pages.values(), key=str) == sorted([5] * 15 + [mixed], key=str)
    assert m.tag_heap_bytes == 16 * 128
    step(r, 4)
    assert m.pages[pte_pfn(m.mms[r.pids["A"]].ptes[vpn], vpn)].tags == mixed
    assert kinds(r) == []


def test_a_wrong_restore_of_mixed_tags_would_be_seen():
    # The check above is not vacuous: the oracle flags a page whose tags differ from the mixed
    # pointer tags it was told about.
    r, vpn, mixed = _swap_out_mixed(SEVEN_RUNS, "zram", [1, 16])
    pid = r.pids["A"]
    r.oracle.expect.view[pid][vpn] = (T.from_granules(SIX_RUNS), r.oracle.expect.get(pid, vpn)[1])
    step(r, 4)
    assert kinds(r) == [("tag-check-fault", 4, 3)]
    assert "(granule 60)" in r.oracle.violations[0].detail   # first granule where 7 != 6


# ---------------------------------------------------------------------- 4. command line


SCENARIO = """\
version: 1
name: compressed-roundtrip
config: {{folio_pages: [1, 16], swap_device: zram, tag_storage: {storage}}}
steps:
  - mmap:    {{proc: A, vma: buf, pages: 16, mte: true}}
  - write:   {{proc: A, vma: buf, pages: 0-15, tag: distinct}}
  - reclaim: {{proc: A, vma: buf, pages: all}}
  - read:    {{proc: A, vma: buf, pages: all}}
"""


def test_cli_run_json_reports_compressed_counters(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SCENARIO.format(storage="compressed"))
    result = invoke("run", "--json", path)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stderr == ""
    (doc,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert doc["verdict"] == "pass" and doc["violations"] == []
    counters = doc["counters"]
    assert {name: counters[name] for name in sorted(COMPRESSED)} == {
        "tag_bytes_plain": 0, "tag_bytes_plain_peak": 2048,
        "tag_compressions": 16, "tag_decompressions": 16,
        "tag_invalidations_inline": 16, "tag_saves_inline": 16,
    }
    assert (counters["tag_saves"], counters["tag_restores"], counters["tag_invalidations"]) == (16, 16, 16)
    assert counters["tag_bytes_peak"] == 0 and counters["tag_bytes"] == 0


def test_cli_run_json_plain_has_no_compressed_counters(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SCENARIO.format(storage="plain"))
    result = invoke("run", "--json", path)
    assert result.exit_code == 0, result.stdout + result.stderr
    (doc,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert not COMPRESSED & set(doc["counters"])
    assert doc["counters"]["tag_bytes_peak"] == 2048


@pytest.mark.parametrize("bad", ["zip", "Compressed", "7"])
def test_cli_rejects_an_unknown_tag_storage(tmp_path, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.format(storage=bad))
    result = invoke("run", "--json", path)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr
    assert "Traceback" not in err
    assert err.startswith("mteswap: error: ") and err.count("\n") == 1, err
    assert str(path) in err
    assert "tag_storage" in err
    assert "plain" in err and "compressed" in err
    assert bad in err
