"""Every check of the oracle's registry, broken on purpose: each test builds a state (a short
scenario, under a design that really breaks the check or followed by a direct corruption of
the machine) and expects exactly that check's name, at the step (and page) where it breaks.

test_oracle_mutation.py switches each check off in turn and requires a test here to fail.
"""

import pytest
from helpers import scenario

from mteswap.bundled import bundled_files
from mteswap.designs import BUILTIN, get_design
from mteswap.model import tags as T
from mteswap.model.mte import page_mte_tagged
from mteswap.model.state import PG_MTE_LOCK, PG_MTE_TAGGED, TAGS_INIT
from mteswap.model.swapinfo import SWAP_HAS_CACHE
from mteswap.oracle import CHECKS, NOT_STATE_CHECKS, Oracle, check_names, registry
from mteswap.scenario.load import load_scenario
from mteswap.scenario.runner import Runner

MMAP = {"mmap": {"proc": "A", "vma": "buf", "pages": 4, "mte": True}}
WRITE = {"write": {"proc": "A", "vma": "buf", "pages": "0-3", "tag": "distinct"}}
PAGEOUT = {"pageout": {"proc": "A", "vma": "buf", "pages": "0-3"}}
PAGEOUT_CACHED = {"pageout": {"proc": "A", "vma": "buf", "pages": "0-3", "keep_cached": True}}
READ = {"read": {"proc": "A", "vma": "buf", "pages": "0-3"}}
# A step that changes nothing the checks read: the corrupted state is checked after it.
SPARE = {"mmap": {"proc": "A", "vma": "spare", "pages": 1, "mte": False}}
BASE = 0x200     # the first slot of a large folio (cluster 0 holds the header slot)
SLOT = 512       # the first slot of an order-0 folio (6.12: a free cluster before cluster 0)


def run(steps, corrupt=None, after=None, design="merged", **config):
    """Run `steps`; after step number `after` (1-based), call corrupt(m) on the machine."""
    r = Runner(scenario(steps, **config), get_design(design))
    for step in r.scenario.steps:
        r.run_step(step)
        if step.index == after:
            corrupt(r.m)
    return r


def found(r) -> list[tuple[str, int, int | None]]:
    return [(v.check, v.step, v.page) for v in r.oracle.violations]


def details(r, check: str) -> list[str]:
    return [v.detail for v in r.oracle.violations if v.check == check]


def test_the_registry_lists_every_check_once_and_every_invariant_of_section_5():
    assert check_names() == (
        "tag-check-fault", "data-corruption", "stale-tags", "tag-storage-use-after-free",
        "tag-storage-leak", "I1", "I1-lock", "I2", "I5", "I7", "I8", "I9", "I10")
    named = {n.split("-")[0] for n in check_names() if n.startswith("I")}
    assert named | set(NOT_STATE_CHECKS) == {f"I{i}" for i in range(1, 12)}
    assert not named & set(NOT_STATE_CHECKS)
    for check in CHECKS.values():
        assert check.doc and (check.run is None) == (check.name in ("tag-check-fault",
                                                                    "data-corruption",
                                                                    "stale-tags"))


def test_an_unknown_check_cannot_be_disabled():
    with pytest.raises(ValueError, match="unknown oracle check.*I12"):
        Oracle(disabled={"I12"})


# -- access checks ---------------------------------------------------------------------------

def test_tag_check_fault_where_the_allocation_tags_differ():
    r = run([MMAP, WRITE, READ], corrupt=lambda m: m.frame_tags.__setitem__(2, T.uniform(9)),
            after=2, folio_pages=[1])
    assert r.m.pages[2].rmap == ((0, 2),)
    assert found(r) == [("tag-check-fault", 3, 2)]
    assert details(r, "tag-check-fault")[0].startswith("expected tag 3, found 9")


def test_data_corruption_where_a_read_returns_another_value():
    r = run([MMAP, WRITE, READ], corrupt=lambda m: m.frame_data.__setitem__(1, 7),
            after=2, folio_pages=[1])
    assert found(r) == [("data-corruption", 3, 1)]
    assert details(r, "data-corruption")[0].endswith("found 0x7")


def test_stale_tags_where_the_tags_are_equal_but_of_another_write():
    """Page 2 keeps its tags (3) and data, but its tags' write-generation ghost says they are
    page 3's (step 2, page 3): no tag or value compare sees it, the ghost does
    (tests/test_write_generations.py has the paths that carry it)."""
    def corrupt(m):
        m.frame_tgen[2] = m.frame_tgen[3]
    r = run([MMAP, WRITE, READ], corrupt=corrupt, after=2, folio_pages=[1])
    assert r.m.pages[2].rmap == ((0, 2),)
    assert found(r) == [("stale-tags", 3, 2)]
    assert details(r, "stale-tags")[0].startswith(
        "tags 3 of generation 0x100004 met where the program set them at generation 0x100003")


def test_a_disabled_check_reports_nothing(monkeypatch):
    monkeypatch.setattr(registry, "DISABLED", frozenset({"tag-check-fault"}))
    r = run([MMAP, WRITE, READ], corrupt=lambda m: m.frame_tags.__setitem__(2, T.uniform(9)),
            after=2, folio_pages=[1])
    assert found(r) == []
    assert r.clone().oracle.disabled == {"tag-check-fault"}
    assert Oracle(disabled=()).disabled == frozenset()


# -- saved-tag storage -----------------------------------------------------------------------

def test_tag_storage_leak_of_a_buffer_kept_for_a_free_slot():
    # After the write faults no page is swapped; slot 0x300 was never used (past the slot
    # cache's batch 0x200-0x23f, whose freed slots wait on its return list with their tags).
    def keep_buffer(m):
        assert m.swap.swap_map[0x300] == 0 and 0x300 not in m.mte_pages
        m.mte_pages[0x300] = T.uniform(2)
    r = run([MMAP, WRITE, PAGEOUT, WRITE, SPARE], corrupt=keep_buffer, after=4)
    assert found(r) == [("tag-storage-leak", 5, None)]
    assert details(r, "tag-storage-leak") == ["saved tags kept for free slot 0x300"]


def test_tag_storage_leak_of_a_buffer_left_after_the_last_process_exited():
    # One more reference on a swapped-out slot: the exit's zap leaves it at count 1, so
    # its buffer outlives every process (I7 reports the count too).
    def extra_reference(m):
        m.swap.swap_map[SLOT + 1] += 1
        m.swap.written.add(SLOT + 1)     # logged, as the model's swap_map writers do
    r = run([MMAP, WRITE, PAGEOUT, {"exit": {"proc": "A"}}], corrupt=extra_reference, after=3)
    assert ("tag-storage-leak", 4, None) in found(r)
    assert details(r, "tag-storage-leak") == [
        "saved tags of slot 0x201 left after the last process exited"]


@pytest.mark.parametrize("design", ["merged", "merged-split-fix"])
def test_no_leak_for_a_slot_only_the_swap_cache_holds_after_exit(design):
    """A split leaves the unmapped head of a swap-cache folio in the swap cache (as
    `__split_huge_page` does); after the last exit its slot and saved tags stay until reclaim
    frees the folio: reclaimable, not leaked (the counterexample `mteswap check --random`
    reported for merged-split-fix before). Page 2 is written, not only tagged: a zero-filled
    folio would go out as zeromap bits and be freed at once despite keep_cached."""
    r = run([MMAP, {"write": {"proc": "A", "vma": "buf", "pages": 2, "tag": 1}},
             {"reclaim": {"proc": "A", "vma": "buf", "pages": 3, "keep_cached": True}},
             {"munmap": {"proc": "A", "vma": "buf", "pages": 0}},
             {"read": {"proc": "A", "vma": "buf", "pages": 1}},
             {"split": {"proc": "A", "vma": "buf", "pages": 1}},
             {"exit": {"proc": "A"}}], design=design, folio_pages=[1, 4], frames=16)
    si = r.m.swap
    assert si.swap_map[BASE] == SWAP_HAS_CACHE and BASE in si.cache and BASE in r.m.mte_pages
    assert found(r) == []


def test_tag_storage_use_after_free_of_a_read_from_an_unpinned_slot():
    # What mte_restore_tags records when it reads a buffer whose slot has swap_map 0.
    r = run([MMAP, WRITE, PAGEOUT, SPARE], corrupt=lambda m: m.tag_reads.append((SLOT + 2, 0)),
            after=3)
    assert found(r) == [("tag-storage-use-after-free", 4, None)]
    assert details(r, "tag-storage-use-after-free") == [
        "tags of slot 0x202 read while the slot was free"]
    assert r.m.tag_reads == []      # each read is reported at the step it happened


# -- the invariants --------------------------------------------------------------------------

def _invariants(r, step: int) -> list[str]:
    return [v.check for v in r.oracle.violations if v.step == step and v.kind == "invariant"]


def test_i1_a_split_gives_never_initialised_tails_the_heads_flag():
    # S5: frames an earlier PROT_MTE mapping tagged are reused without PROT_MTE; mprotect
    # tags the head page only; the split copies its PG_mte_tagged onto pages 4-15.
    path = next(p for p in bundled_files() if p.stem == "s5-split-tagged-head-stale")
    r = Runner(load_scenario(path), get_design("merged"))
    res = r.run()
    first = res.first()
    assert (first.check, first.step, first.op) == ("I1", 7, "split")
    assert _invariants(r, 7) == ["I1"] * 12
    assert details(r, "I1")[0] == ("I1: pfn 4 is PG_mte_tagged but its tags were not zeroed, "
                                   "copied or restored since it was allocated")
    assert [int(d.split()[2]) for d in details(r, "I1")] == list(range(4, 16))


def test_i1_with_a_per_folio_flag_a_tagged_head_vouches_for_every_page():
    # per-folio-flag reads PG_mte_tagged at the head: a page whose frame was never
    # initialised breaks I1 once its head is tagged.
    def untagged_tail(m):
        m.frame_flags[5] &= ~TAGS_INIT
    r = run([{"mmap": {"proc": "A", "vma": "buf", "pages": 16, "mte": True}},
             {"write": {"proc": "A", "vma": "buf", "pages": 0}}, SPARE],
            corrupt=untagged_tail, after=2, design="per-folio-flag")
    assert r.m.folios[0].nr == 16 and page_mte_tagged(r.m, r.m.pages[5])
    assert found(r) == [("I1", 3, None)]
    assert details(r, "I1")[0].startswith("I1: pfn 5 is PG_mte_tagged")


def test_i1_lock_a_tagged_page_without_the_lock():
    r = run([MMAP, WRITE, SPARE], corrupt=lambda m: m.frame_flags.__setitem__(
        1, m.frame_flags[1] & ~PG_MTE_LOCK), after=2)
    assert found(r) == [("I1-lock", 3, None)]
    assert details(r, "I1-lock") == ["I1-lock: pfn 1 is PG_mte_tagged without PG_mte_lock"]


def test_i2_a_tagged_pte_mapping_a_page_without_pg_mte_tagged():
    clear = ~(PG_MTE_TAGGED | PG_MTE_LOCK | TAGS_INIT) & 0xff
    r = run([MMAP, WRITE, SPARE], corrupt=lambda m: m.frame_flags.__setitem__(
        3, m.frame_flags[3] & clear), after=2, folio_pages=[1])
    assert found(r) == [("I2", 3, None)]
    assert details(r, "I2") == ["I2: pid 0 vpn 3: tagged PTE maps pfn 3 without PG_mte_tagged"]


def test_i5_swap_has_cache_on_a_slot_the_cache_does_not_hold():
    def pin(m):
        assert m.swap.swap_map[SLOT] == 1 and SLOT not in m.swap.cache
        m.swap.swap_map[SLOT] |= SWAP_HAS_CACHE
        m.swap.written.add(SLOT)     # logged, as the model's swap_map writers do (oracle/scoped.py)
    r = run([MMAP, WRITE, PAGEOUT, SPARE], corrupt=pin, after=3)
    assert found(r) == [("I5", 4, None)]
    assert details(r, "I5") == ["I5: slot 0x200: SWAP_HAS_CACHE is 1 but the swap cache lacks it"]


def test_i7_a_swap_count_other_than_the_swap_ptes_naming_the_slot():
    def count_twice(m):
        m.swap.swap_map[SLOT + 3] += 1
        m.swap.written.add(SLOT + 3)     # logged, as the model's swap_map writers do
    r = run([MMAP, WRITE, PAGEOUT, SPARE], corrupt=count_twice, after=3)
    assert found(r) == [("I7", 4, None)]
    assert details(r, "I7") == ["I7: slot 0x203: swap_map count 2 but 1 swap PTE(s) refer to it"]


def test_i8_rfc_v1_saves_only_the_first_page_of_a_large_folio():
    path = next(p for p in bundled_files() if p.stem == "roundtrip-large-ssd")
    r = Runner(load_scenario(path), get_design("rfc-v1"))
    r.run()
    first = r.oracle.violations[0]
    assert (first.check, first.step, first.op) == ("I8", 3, "reclaim")
    assert set(_invariants(r, 3)) == {"I8"}
    slots = [int(d.split()[2], 16) for d in details(r, "I8")]
    assert slots == [s for s in range(BASE, BASE + 32) if s % 16]   # all but each folio's first


def test_i9_saved_tags_other_than_those_written():
    def resave(m):
        assert m.mte_pages[SLOT + 2] == T.uniform(3)
        m.mte_pages[SLOT + 2] = T.uniform(12)
    r = run([MMAP, WRITE, PAGEOUT, SPARE], corrupt=resave, after=3)
    assert found(r) == [("I9", 4, None)]
    assert details(r, "I9")[0].startswith("I9: saved tags of slot 0x202 (")


def test_i10_a_swap_cache_folio_not_aligned_to_its_slots():
    def misalign(m):
        folio = m.folios[0]
        assert folio.nr == 4 and folio.swapcache and folio.swap == BASE
        folio.swap = BASE + 1
    r = run([MMAP, WRITE, PAGEOUT_CACHED, SPARE], corrupt=misalign, after=3, folio_pages=[1, 4])
    assert found(r) == [("I10", 4, None)]
    assert details(r, "I10") == ["I10: folio 0 (nr 4) at entry 0x201 is not naturally aligned"]


# -- the ghost behind I1 ---------------------------------------------------------------------

@pytest.mark.parametrize("design", list(BUILTIN))
def test_the_i1_ghost_equals_pg_mte_tagged_wherever_i1_holds(design):
    """TAGS_INIT adds no state to what the explorer hashes: after every step of every bundled
    scenario, on every frame I1 does not report, it equals page_mte_tagged()."""
    for path in bundled_files():
        r = Runner(load_scenario(path), get_design(design))
        for step in r.scenario.steps:
            r.run_step(step)
            m = r.m
            broken = {int(v.detail.split()[2]) for v in r.oracle.violations if v.check == "I1"}
            ghost = [p.pfn for p in m.pages if p.tags_init]
            tagged = [p.pfn for p in m.pages if page_mte_tagged(m, p)]
            assert ghost == [pfn for pfn in tagged if pfn not in broken], (path.stem, step.index)
