"""Real-kernel oracle, page states: parsing the guest's `@@Q` lines, comparing them step by step
with the model's (scenario/states.py), the precondition classes. No QEMU here; the real runs
are in test_kernel_run.py (marked `kernel`)."""

from __future__ import annotations

from pathlib import Path

from mteswap.kernel import cgen, compare, guest
from mteswap.scenario.load import load_scenario

ROOT = Path(__file__).parent.parent
S3Z = ROOT / "scenarios" / "s3z-fresh-large-swapin-zram.yaml"


def _guest_with(states: dict[int, tuple[str, str]], rc: int = 0) -> guest.GuestResult:
    res = guest.GuestResult(0, "x", rc=rc)
    for k, st in states.items():
        res.step(k).state = st
    return res


def _model(path=S3Z, device="zram"):
    sc = load_scenario(path)
    return sc, cgen.expand(sc), compare.model_run(sc, "6.12", device)


def test_parse_state_lines_spaces_travel_as_underscores():
    b = guest.Boot("6.12", "zram")
    guest.parse_console("@@BEGIN 0 x\n@@Q 2 HtttSSzx MMMM__._\n@@Q 3 ---- ____\n@@END 0 0\n", b)
    r = b.results[0]
    assert r.steps[2].state == ("HtttSSzx", "MMMM  . ")
    assert r.steps[3].state == ("----", "    ")


def test_model_states_of_a_bundled_scenario():
    _, _, mr = _model()
    # s3z: mmap, write (one 64 KiB folio), reclaim, read page 5, read all: one entry per step
    assert sorted(mr.states) == [1, 2, 3, 4, 5]
    assert mr.states[1] == ("A", "buf", "-" * 16, " " * 16)
    assert mr.states[2] == ("A", "buf", "H" + "t" * 15, "M" * 16)
    assert mr.states[3] == ("A", "buf", "S" * 16, " " * 16)


def test_identical_states_agree_and_are_counted():
    _, cs, mr = _model()
    res = _guest_with({k: (p, m) for k, (_, _, p, m) in mr.states.items()})
    row = compare.Row("s3z", "", "6.12", "zram")
    compare.compare_one(row, res, cs, None, mr.states)
    assert row.agree is True and row.states_agree is True and row.first_state_diff is None
    assert (row.state_steps, row.state_pages_agree, row.state_mte_agree) == (5, 5, 5)
    assert row.states[2] == {"step": 3, "proc": "A", "vma": "buf", "model_pages": "S" * 16,
                             "model_mte": " " * 16, "kernel_pages": "S" * 16, "kernel_mte": " " * 16}


def test_first_differing_step_and_page_is_reported():
    _, cs, mr = _model()
    kstates = {k: (p, m) for k, (_, _, p, m) in mr.states.items()}
    kstates[3] = ("SSCCCCCCCCSSSSSS", " " * 16)      # a disk: written folio still cached
    kstates[4] = (kstates[4][0], "." * 16)           # and a later mte difference
    row = compare.Row("s3z", "", "6.12", "virtio-blk")
    compare.compare_one(row, _guest_with(kstates), cs, None, mr.states)
    assert row.agree is True            # verdicts still agree: states are reported beside them
    assert row.states_agree is False
    assert row.first_state_diff == {"step": 3, "proc": "A", "vma": "buf", "page": 2, "field": "pages",
                                    "kernel": "C", "model": "S"}
    assert (row.state_steps, row.state_pages_agree, row.state_mte_agree) == (5, 4, 4)
    lines = compare.state_lines(row)
    assert lines[0].startswith("  states: 3/5 steps agree (pages 4/5, mte 4/5); first difference at "
                               "step 3 (A buf) page 2: kernel pages 'C', model 'S'")
    assert "|SSCCCCCCCCSSSSSS|" in lines[1] and "|SSSSSSSSSSSSSSSS|" in lines[2]
    assert "pages 4/5, mte 4/5" in compare.totals_line([row])


def test_mte_only_difference_names_the_mte_field():
    d = compare.first_difference({"step": 7, "proc": "B", "vma": "v", "kernel_pages": "pp",
                                  "model_pages": "pp", "kernel_mte": "M.", "model_mte": "MM"})
    assert d == {"step": 7, "proc": "B", "vma": "v", "page": 1, "field": "mte", "kernel": ".", "model": "M"}


def test_a_missing_kernel_state_is_not_counted_as_agreement():
    _, cs, mr = _model()
    kstates = {k: (p, m) for k, (_, _, p, m) in mr.states.items() if k != 4}
    row = compare.Row("s3z", "", "6.12", "zram")
    compare.compare_one(row, _guest_with(kstates), cs, None, mr.states)
    assert row.state_steps == 4 and row.states_agree is True
    assert row.states[3]["kernel_pages"] is None


def test_guest_precondition_class_is_kept():
    _, cs, mr = _model()
    res = _guest_with({}, rc=3)
    res.step(3).notes.append("precondition not met [keep-cached]: reclaim keep_cached but only 0 of 16 "
                             "swapped pages are in the swap cache (mincore)")
    row = compare.Row("s3z", "", "6.12", "virtio-blk")
    compare.compare_one(row, res, cs, None, mr.states)
    assert row.kernel_verdict == "precondition not met" and row.agree is None
    assert row.precondition == "keep-cached" and row.detail.startswith("step 3: precondition not met")
    assert "keep-cached 1" in compare.totals_line([row])


def test_reclaim_leaving_pages_the_model_swapped_is_set_aside():
    _, cs, mr = _model()
    kstates = {k: (p, m) for k, (_, _, p, m) in mr.states.items()}
    kstates[3] = ("pp" + "S" * 14, "MM" + " " * 14)
    row = compare.Row("s3z", "", "6.12", "zram")
    compare.compare_one(row, _guest_with(kstates), cs, None, mr.states)
    assert row.precondition == "reclaim-resident"
    assert row.detail == ("precondition not met: step 3: pages 0-1 still resident after reclaim "
                          "(the model swapped them out)")


def test_reclaim_leaving_pages_the_model_keeps_too_is_compared(tmp_path):
    # after swapoff neither side can swap: the pages stay, and that is a compared step
    f = tmp_path / "s.yaml"
    f.write_text("version: 1\nname: reclaim-no-swap\nconfig: {folio_pages: [1]}\nsteps:\n"
                 "  - mmap: {proc: A, vma: v, pages: 2, mte: true}\n"
                 "  - write: {proc: A, vma: v, pages: all, tag: 2}\n"
                 "  - swapoff\n"
                 "  - reclaim: {proc: A, vma: v, pages: all}\n")
    sc, cs, mr = _model(f, "virtio-blk")
    assert mr.states[4][2] == "pp"
    row = compare.Row(sc.name, "", "6.12", "virtio-blk")
    compare.compare_one(row, _guest_with({k: (p, m) for k, (_, _, p, m) in mr.states.items()}), cs, None,
                        mr.states)
    assert row.precondition is None and row.agree is True and row.states_agree is True


def test_the_model_runs_for_the_booted_device():
    sc = load_scenario(S3Z)
    assert compare.as_booted(sc, "6.12", "zram") is sc
    assert compare.as_booted(sc, "6.12", "virtio-blk").config.swap_device == "ssd"
    rot = load_scenario(ROOT / "scenarios" / "roundtrip-large-rotational.yaml")
    assert compare.as_booted(rot, "6.12", "virtio-blk").config.swap_device == "rotational"
    assert compare.as_booted(rot, "6.12", "zram").config.swap_device == "zram"


def test_split_of_small_folios_is_not_a_precondition():
    # the guest no longer sets a split of small folios aside: no such check in the program
    src = cgen.batch_program([cgen.expand(load_scenario(ROOT / "scenarios" / "s5-split-untagged-head.yaml"))])
    assert "no large folio mapped" not in src
    assert "precondition not met [keep-cached]" in src and "@@Q" in src


PAGEOUTS = """version: 1
name: pageouts
config: {folio_pages: [1, 16], swap_device: ssd}
steps:
  - mmap:    {proc: A, vma: buf, pages: 32, mte: true}
  - write:   {proc: A, vma: buf, pages: all, tag: 3}
  - pageout: {proc: A, vma: buf, pages: 0-15}
  - read:    {proc: A, vma: buf, pages: 3}
  - pageout: {proc: A, vma: buf, pages: 0-15, keep_cached: true}
  - reclaim: {proc: A, vma: buf, pages: 16-31}
"""


def test_disk_pageout_is_modelled_as_one_pass_that_keeps_the_written_folio(tmp_path):
    """One MADV_PAGEOUT pass on the virtio disk leaves the written folio in the swap cache
    (the write completes after the pass): the model runs such a step with keep_cached true
    there, and only there -- every pageout, and a reclaim only when the guest says it did it
    by MADV_PAGEOUT (not through the cgroup); the row counts the steps so changed."""
    path = tmp_path / "p.yaml"
    path.write_text(PAGEOUTS)
    sc = load_scenario(path)
    kept = lambda s: [(st.index, st.args.get("keep_cached")) for st in s.steps if "keep_cached" in st.args]
    assert kept(compare.as_booted(sc, "6.12", "virtio-blk")) == [(3, True), (5, True), (6, False)]
    assert kept(compare.as_booted(sc, "6.12", "virtio-blk", frozenset({6}))) == [(3, True), (5, True), (6, True)]
    assert compare.as_booted(sc, "6.12", "zram", frozenset({6})).steps == sc.steps
    assert compare.steps_kept(sc, "virtio-blk") == 1 and compare.steps_kept(sc, "virtio-blk", frozenset({6})) == 2
    assert compare.steps_kept(sc, "zram", frozenset({6})) == 0
    # the model then shows the folio cached (C), not freed (S), after step 3; a large folio
    # found in the swap cache is mapped whole by the fault of step 4
    disk = compare.model_run(sc, "6.12", "virtio-blk", frozenset({6})).states
    assert disk[3][2][:16] == "C" * 16 and disk[4][2][:16] == "H" + "t" * 15
    assert disk[6][2][16:] == "C" * 16
    zram = compare.model_run(sc, "6.12", "zram").states
    assert zram[3][2][:16] == "S" * 16 and zram[6][2][16:] == "S" * 16
    row = compare.Row("pageouts", str(path), "6.12", "virtio-blk", agree=True, steps_kept=2)
    assert "disk steps compared as keep_cached: 2" in compare.totals_line([row])


def test_the_guests_own_reclaims_are_read_from_its_notes():
    b = guest.Boot("6.12", "virtio-blk")
    guest.parse_console("@@BEGIN 0 x\n@@N 4 reclaim by MADV_PAGEOUT of whole folios\n"
                        "@@N 7 reclaim through the cgroup (a folio of the range is shared or crosses a VMA "
                        "boundary)\n@@END 0 0\n", b)
    assert compare.own_reclaims(b.results[0]) == frozenset({4})
    assert compare.own_reclaims(None) == frozenset()


def test_guest_turns_swap_readahead_off_and_restores_it():
    """page-cluster 0 (no readahead on either path of swapin_readahead, as in the model),
    written before the scenario and put back after it."""
    src = cgen.batch_program([cgen.expand(load_scenario(S3Z))])
    setting = src.index('write_file("/proc/sys/vm/page-cluster", "0")')
    restore = src.index('write_file("/proc/sys/vm/page-cluster", old_cluster)')
    assert src.index("TAP_PLAN(sc->nsteps)") > setting and restore > src.index("TAP_STEP(k, st->desc")


def test_guest_reclaims_whole_folios_of_the_range_itself_before_the_cgroup():
    """reclaim: MADV_PAGEOUT of the range widened to whole folios by the worker (reclaim_own),
    unless a folio is mapped more than once (/proc/kpagecount) or crosses a VMA boundary; the
    cgroup's memory.reclaim only then, or after swapoff."""
    src = cgen.batch_program([cgen.expand(load_scenario(S3Z))])
    own = src[src.index("static int reclaim_own("):src.index("static void worker(void)")]
    assert "/proc/kpagecount" in own and "cnt > 1" in own and "vmte[v][p] != vmte[v][lo]" in own
    assert "MADV_PAGEOUT_" in own
    ctl = src[src.index("if (op == OP_RECLAIM && !swap_on) {"):]
    assert ctl.index("nothing to reclaim") < ctl.index(compare.OWN_RECLAIM_NOTE) < ctl.index("reclaim_through_cgroup(")
    assert "swap_on = 0;" in src[src.index("case OP_SWAPOFF:"):]


def _fn(src: str, head: str) -> str:
    """The body of the C function starting at `head` (up to the next top-level closing brace)."""
    start = src.index(head)
    return src[start:src.index("\n}\n", start)]


def test_cgroup_reclaim_holds_everything_but_the_targets_one_target_at_a_time():
    """The cgroup fallback: the named worker records the range's folios (whole, by PFN through
    kpageflags) as targets; for each target in turn every live process mlocks (MLOCK_ONFAULT)
    its other scenario pages and references its other large folios, memory.reclaim runs, and
    everything is released before the next target."""
    src = cgen.batch_program([cgen.expand(load_scenario(S3Z))])
    own = _fn(src, "static int reclaim_own(")
    assert own.index("rc = 1; /* mapped more than once") < own.index("record_targets(")
    ext = _fn(src, "static void folio_extent(")
    assert "KPF_COMPOUND_HEAD_" in ext and "KPF_COMPOUND_TAIL_" in ext
    hold = _fn(src, "static int hold_others(")
    assert "hold_page(pmfd, v, p)" in hold and "mlock_onfault(" in hold
    assert "return !((e & PM_PRESENT_) && is_target(e & PM_PFN_MASK_));" in _fn(src, "static int hold_page(")
    assert "SYS_mlock2" in _fn(src, "static int mlock_onfault(") and "MLOCK_ONFAULT" in src
    refs = _fn(src, "static int ref_large_folios(")
    assert "vmsplice(refpipe[1]" in refs and "KPF_THP_" in refs
    rel = _fn(src, "static void release_held(")
    assert "munlock(" in rel and "close(refpipe[0])" in rel
    cg = _fn(src, "static int reclaim_through_cgroup(")
    loop = cg[cg.index("for (int i = 0; i < (n ? n : 1); i++)"):]
    assert loop.index("ntg = n ? 1 : 0;") < loop.index("hold_all(k, 1)") < loop.index("cg_reclaim();") \
        < loop.index("hold_all(k, 0)")
    # a diagnostic: munlock must merge back every VMA the hold split (counted in /proc/PID/maps)
    both = _fn(src, "static int hold_all(")
    assert "vmas_before[i] = count_vmas(ppid_of[i]);" in both and "not merged back after the hold" in both
    ctl = src[src.index("case OP_EVICT:"):src.index("case OP_SPLIT: {")]
    assert ctl.index("ntg = 0;") < ctl.index("reclaim_through_cgroup(k, st->op == OP_RECLAIM && !st->keep)")


def test_program_memory_is_locked_and_only_scenario_vmas_are_evictable_and_large():
    """Every process locks its own memory (MCL_ONFAULT: nothing faulted in; a fork child again,
    as fork passes no lock on); a scenario mmap is munlocked and madvised MADV_HUGEPAGE, the only
    memory whose THP sizes are enabled ("madvise", defrag never)."""
    src = cgen.batch_program([cgen.expand(load_scenario(S3Z))])
    lock = _fn(src, "static int lock_program(")
    assert "MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT" in lock and "/proc/self/maps" in lock
    run = _fn(src, "static int run_scenario(")
    assert run.index("lock_program(0)") < run.index("pid_t a0 = fork();") < run.rindex("lock_program(0);")
    fork = src[src.index("case OP_FORK: {"):src.index("case OP_EXIT:")]
    assert fork.index("me = st->child;") < fork.index("lock_program(1);")
    mm = src[src.index("case OP_MMAP: {"):src.index("case OP_MUNMAP:")]
    assert mm.index("munlock(p, len);") < mm.index("madvise(p, len, MADV_HUGEPAGE);") < mm.index("vbase[v] = p;")
    assert "echo never > $T/defrag" in guest.INIT_HEAD
    assert "echo madvise > $T/hugepages-${s}kB/enabled" in guest.INIT_HEAD


def test_swap_area_has_exactly_swap_slots():
    """The guest's swap area is the model's: swap_slots slots (plus the header page), so that
    6.12's cluster placement works on the same clusters."""
    assert [guest.device_slots(n) for n in (100, 512, 1024, 4096)] == [100, 512, 1024, 4096]
    init = guest._scenario_init(3, "zram", None, 1024, False, [1, 16])
    assert f"echo {1025 * 4096} > /sys/block/zram0/disksize" in init
