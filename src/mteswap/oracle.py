"""What each simulated process should observe if memory never left RAM, and the checks that
turn a difference into a violation (scenario-format.md, "What the program expects").

The program side: per process and page, the pointer tags it holds (packed like allocation
tags, 0 for memory never tagged) and the value it last wrote. The kernel side is read from the
machine after every step: saved-tag leaks, reads of unpinned tag buffers, and the kernel
invariants I1-I11 of kernel-semantics.md §5 that a single state can show.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from itertools import compress
from typing import Callable

from mteswap.model import origin as O
from mteswap.model import tags as T
from mteswap.model.mte import mte_flags, page_mte_tagged, saved_tags
from mteswap.model.pte import is_swap_pte, pte_to_swp_entry, tagged_normal_pfns
from mteswap.model.state import PG_ANON_EXCLUSIVE, PG_MTE_LOCK, PG_MTE_TAGGED
from mteswap.model.swapinfo import SWAP_HAS_CACHE, swp_offset

KINDS = ("tag-check-fault", "data-corruption", "tag-storage-leak",
         "tag-storage-use-after-free", "invariant")


@dataclass(frozen=True)
class Violation:
    kind: str
    step: int
    op: str
    proc: str | None
    vma: str | None
    page: int | None
    detail: str
    # tag-check faults: where the tags met came from (model/origin.py), as data
    origin: O.TagOrigin | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        """The violation as the scenario contract prints it (`origin` is read in process)."""
        return {f: getattr(self, f) for f in ("kind", "step", "op", "proc", "vma", "page", "detail")}

    def short(self) -> str:
        """`kind@step`, the form tables use."""
        return f"{self.kind}@{self.step}"


@dataclass(frozen=True)
class StepContext:
    step: int
    op: str
    proc: str | None = None
    vma: str | None = None


_UNTOUCHED = (0, 0)   # what fresh anonymous memory holds: tag 0, value 0


class ProgramView:
    """One process's view, vpn -> (pointer tags, last value written), as three arrays indexed
    by vpn (8 + 8 + 1 bytes per page instead of a dict entry and two objects): `tags` (packed
    like allocation tags), `values`, and `present` (1 where the program wrote or tagged the page
    since it was last fresh; absent pages read as _UNTOUCHED). Grows on demand."""

    __slots__ = ("tags", "values", "present")

    def __init__(self, other: "ProgramView | None" = None):
        self.tags: list[int] = list(other.tags) if other else []
        self.values = array("q", other.values) if other else array("q")
        self.present = bytearray(other.present) if other else bytearray()

    def reserve(self, nvpn: int) -> None:
        grow = nvpn - len(self.present)
        if grow > 0:
            self.tags.extend([0] * grow)
            self.values.frombytes(bytes(8 * grow))
            self.present.extend(bytes(grow))

    def get(self, vpn: int, default=None):
        if vpn < len(self.present) and self.present[vpn]:
            return self.tags[vpn], self.values[vpn]
        return default

    def __getitem__(self, vpn: int) -> tuple[int, int]:
        got = self.get(vpn)
        if got is None:
            raise KeyError(vpn)
        return got

    def __setitem__(self, vpn: int, tv: tuple[int, int]) -> None:
        self.reserve(vpn + 1)
        self.tags[vpn], self.values[vpn] = tv
        self.present[vpn] = 1

    def pop(self, vpn: int, default=None):
        got = self.get(vpn, default)
        if vpn < len(self.present) and self.present[vpn]:
            self.present[vpn] = 0
            self.tags[vpn] = self.values[vpn] = 0
        return got

    def items(self) -> list[tuple[int, tuple[int, int]]]:
        """(vpn, (tags, value)) of the pages present, in vpn order."""
        return [(vpn, (self.tags[vpn], self.values[vpn]))
                for vpn in compress(range(len(self.present)), self.present)]


class Expectation:
    """The program's view: pid -> ProgramView (vpn -> (pointer tags, last value written))."""

    def __init__(self):
        self.view: dict[int, ProgramView] = {}

    def new_process(self, pid: int, parent: int | None = None) -> None:
        self.view[pid] = ProgramView(self.view[parent] if parent is not None else None)

    def reserve(self, pid: int, nvpn: int) -> None:
        """Room for vpns below nvpn (the runner calls it at mmap)."""
        self.view[pid].reserve(nvpn)

    def get(self, pid: int, vpn: int) -> tuple[int, int]:
        return self.view[pid].get(vpn, _UNTOUCHED)

    # The setters index the arrays directly: vpn lies in a VMA, reserved at mmap (or fork).
    # A page they mark present keeps the other half of its view: an absent page holds 0, 0.
    def set_tags_span(self, pid: int, vpn: int, tags: list[int], done: list[bool]) -> None:
        """The program now holds pointer tag tags[k] for page vpn + k, for every k where
        done[k] (the STG took effect)."""
        view = self.view[pid]
        n = len(tags)
        if done.count(True) == n:                    # every page tagged: one slice each
            view.tags[vpn:vpn + n] = T.uniform_each(tags)
            view.present[vpn:vpn + n] = b"\x01" * n
            return
        for k, (tag, did) in enumerate(zip(tags, done)):
            if did:
                view.tags[vpn + k] = T.uniform(tag)
                view.present[vpn + k] = 1

    def set_values_span(self, pid: int, vpn: int, values) -> None:
        """The program last wrote values[k] to page vpn + k, for every k (`values` an
        array('q') or a list)."""
        view = self.view[pid]
        n = len(values)
        view.values[vpn:vpn + n] = values if isinstance(values, array) else array("q", values)
        view.present[vpn:vpn + n] = b"\x01" * n

    def forget(self, pid: int, vpn: int) -> None:
        """`dontneed`/`munmap`: fresh anonymous memory reads zero with tag 0."""
        self.view[pid].pop(vpn, None)

    def snapshot(self) -> tuple:
        return tuple((pid, tuple(v.items())) for pid, v in sorted(self.view.items()))


class Oracle:
    """Collects violations. Each distinct state-level problem is reported once."""

    def __init__(self):
        self.expect = Expectation()
        self.violations: list[Violation] = []
        self._reported: set = set()

    def clone(self) -> "Oracle":
        """An independent copy (for `Runner.clone`): the program's view, violations so far and
        the problems already reported."""
        new = Oracle.__new__(Oracle)
        new.expect = Expectation.__new__(Expectation)
        new.expect.view = {pid: ProgramView(v) for pid, v in self.expect.view.items()}
        new.violations = list(self.violations)
        new._reported = set(self._reported)
        return new

    # -- what the program observes --------------------------------------------------------
    def check_tags(self, ctx: StepContext, page: int, pid: int, vpn: int, met: int | None,
                   origin_of: Callable[[int], tuple]) -> None:
        """`met`: the allocation tags the access met (None through an untagged mapping).
        `origin_of(vpn)` gives the page's tag origin; it is called only for a violation (a
        hot path at scale: most accesses match)."""
        if met is None:
            return
        view = self.expect.view[pid]
        want = view.tags[vpn] if vpn < len(view.present) else 0   # absent pages hold 0
        if want == met:
            return
        g, exp, found = T.first_difference(want, met)
        where = "" if g == 0 else f" (granule {g})"
        origin = origin_of(vpn)
        self._add("tag-check-fault", ctx, page,
                  f"expected tag {exp}, found {found}{where}: {describe_origin(origin)}", origin)

    def check_tags_span(self, ctx: StepContext, page: int, pid: int, vpn: int, mets: list,
                        origin_of: Callable[[int], tuple]) -> None:
        """check_tags for pages page, page + 1, ... at vpn, vpn + 1, ...: one comparison of
        the lists when every tag matches, else page by page."""
        if mets == self.expect.view[pid].tags[vpn:vpn + len(mets)]:
            return
        for k, met in enumerate(mets):
            self.check_tags(ctx, page + k, pid, vpn + k, met, origin_of)

    def check_values_span(self, ctx: StepContext, page: int, pid: int, vpn: int,
                          data) -> None:
        """check_value for a span of pages, as check_tags_span (`data` a list or an array)."""
        want = self.expect.view[pid].values[vpn:vpn + len(data)]
        if (data if isinstance(data, array) else array("q", data)) == want:
            return
        for k, value in enumerate(data):
            self.check_value(ctx, page + k, pid, vpn + k, value)

    def check_value(self, ctx: StepContext, page: int, pid: int, vpn: int, data: int) -> None:
        view = self.expect.view[pid]
        want = view.values[vpn] if vpn < len(view.present) else 0   # absent pages hold 0
        if data != want:
            self._add("data-corruption", ctx, page, f"expected value {want:#x}, found {data:#x}")

    # -- what the kernel state shows --------------------------------------------------------
    def check_state(self, ctx: StepContext, m) -> None:
        for entry, swap_map in m.tag_reads:
            if swap_map == 0:
                self._add("tag-storage-use-after-free", ctx, None,
                          f"tags of slot {swp_offset(entry):#x} read while the slot was free")
        m.tag_reads.clear()
        self._check_leaks(ctx, m)
        for name, detail in kernel_invariant_breaks(m):
            self._once(("invariant", name, detail), "invariant", ctx, None, f"{name}: {detail}")

    def _check_leaks(self, ctx: StepContext, m) -> None:
        si = m.swap
        everyone_gone = bool(m.mms) and not any(mm.alive for mm in m.mms)
        for entry in sorted(m.mte_pages):
            off = swp_offset(entry)
            if off >= len(si.swap_map) or si.swap_map[off] == 0:
                why = f"saved tags kept for free slot {off:#x}"
            elif not si.active:
                why = f"saved tags of slot {off:#x} left after swapoff"
            elif everyone_gone:
                why = f"saved tags of slot {off:#x} left after the last process exited"
            else:
                continue
            self._once(("leak", entry), "tag-storage-leak", ctx, None, why)

    def _once(self, key, kind, ctx, page, detail) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self._add(kind, ctx, page, detail)

    def _add(self, kind: str, ctx: StepContext, page: int | None, detail: str,
             origin: O.TagOrigin | None = None) -> None:
        self.violations.append(Violation(kind, ctx.step, ctx.op, ctx.proc, ctx.vma, page, detail,
                                         origin))


_PLAIN = {
    O.NEVER_WRITTEN: "never written",
    O.UNTRACKED: "of unknown origin (origins are not tracked in this run; "
                 "replay it as a scenario with mteswap run to see where they came from)",
    O.ZERO_PAGE: "the shared zero page (tags always 0)",
}
_AT_STEP = {   # causes told as "tags <what> at step N"
    O.ALLOC_ZEROED: "zeroed at allocation (__GFP_ZEROTAGS)",
    O.STG: "set by the program (STG)",
    O.RESTORE_ZEROED: "zeroed by arch_swap_restore",
}


def describe_origin(origin: O.TagOrigin) -> str:
    """Human account of where a page's current tags came from (model/origin.py), then what
    happened to the page since (a split's flag copy)."""
    cause = origin.cause
    if cause == O.SYNC_ZEROED:
        text = f"tags zeroed by mte_sync_tags at step {origin.step} ({origin.why})"
        if origin.note:
            text += f": {origin.note}"
    elif cause == O.RESTORED:
        text = f"tags restored at step {origin.step} from slot {swp_offset(origin.entry):#x}"
        if origin.earlier is not None:
            text += f" [saved there from a page whose {describe_origin(origin.earlier)}]"
    elif cause == O.STALE:
        text = (f"stale tags left in pfn {origin.pfn} by an earlier owner "
                f"(page allocated at step {origin.step} without zeroing)")
    elif cause == O.COPIED:
        text = f"tags copied at step {origin.step} from pfn {origin.pfn} by copy_highpage"
    elif cause in _AT_STEP:
        text = f"tags {_AT_STEP[cause]} at step {origin.step}"
    else:
        text = _PLAIN[cause]
    return "; ".join((text,) + origin.notes)


def kernel_invariant_breaks(m):
    """Yield (name, detail) for each invariant of kernel-semantics.md §5 that the state breaks.
    Checked here: I1 (flags), I2, I5 (cache pins), I7 (swap_map counts), I8, I9, I10.
    I3, I4 and I6 are about the order of calls; they show up as tag-check faults or as
    tag-storage-use-after-free instead."""
    yield from _flags_and_ptes(m)
    yield from _swap_slots(m)
    yield from _saved_tags(m)


def _flags_and_ptes(m):
    for folio in m.folios.values():
        if m.flags_per_page:                 # only a half-set pair can break I1
            run = m.frame_flags[folio.pfn:folio.pfn + folio.nr]
            if run.count(0) + run.count(PG_MTE_TAGGED | PG_MTE_LOCK) \
                    + run.count(PG_ANON_EXCLUSIVE) \
                    + run.count(PG_MTE_TAGGED | PG_MTE_LOCK | PG_ANON_EXCLUSIVE) == folio.nr:
                continue
        for page in m.folio_pages(folio):
            flags = mte_flags(m, page)
            if flags.mte_tagged and not flags.mte_lock:
                yield "I1", f"pfn {page.pfn} is PG_mte_tagged without PG_mte_lock"
            if flags.mte_lock and not flags.mte_tagged:
                yield "I1", f"pfn {page.pfn} left locked for tag initialisation (PG_mte_lock without PG_mte_tagged)"
    for mm in m.mms:
        for vpn, pfn in tagged_normal_pfns(mm.ptes.items()):
            if not page_mte_tagged(m, m.pages[pfn]):
                yield "I2", f"pid {mm.pid} vpn {vpn}: tagged PTE maps pfn {pfn} without PG_mte_tagged"


def _swap_slots(m):
    si = m.swap
    swap_map, cache = si.swap_map, si.cache
    refs: dict[int, int] = {}
    for mm in m.mms:
        for vpn, e in mm.ptes.items():
            if is_swap_pte(e):
                off = swp_offset(pte_to_swp_entry(e, vpn))
                refs[off] = refs.get(off, 0) + 1
    # Only slots in use, named by a PTE or in the cache can break these: not every slot.
    for off in sorted(si.allocated | refs.keys() | set(cache.keys())):
        value = swap_map[off]
        count, cached = value & ~SWAP_HAS_CACHE, bool(value & SWAP_HAS_CACHE)
        if count != refs.get(off, 0):
            yield "I7", f"slot {off:#x}: swap_map count {count} but {refs.get(off, 0)} swap PTE(s) refer to it"
        if cached != (off in cache):
            yield "I5", f"slot {off:#x}: SWAP_HAS_CACHE is {int(cached)} but the swap cache {'holds' if off in cache else 'lacks'} it"
    for off, folio in cache.items():
        start = swp_offset(folio.swap)
        if folio.swap % folio.nr or not start <= off < start + folio.nr:
            yield "I10", f"folio {folio.pfn} (nr {folio.nr}) at entry {folio.swap:#x} is not naturally aligned"
        elif not swap_map[off] & SWAP_HAS_CACHE:
            yield "I10", f"slot {off:#x} of swap-cache folio {folio.pfn} lacks SWAP_HAS_CACHE"


def _saved_tags(m):
    si = m.swap
    for off, written in si.written_tags.items():
        folio = si.cache.get(off)
        if written is None or (folio is not None and folio.dirty):
            continue   # nothing tagged was written, or a rewrite is pending
        saved = saved_tags(m, off)
        if saved is None and written == 0:
            continue   # all-zero tags need no buffer: mte_sync_tags recreates them on swap-in
        if saved is None:
            yield "I8", f"slot {off:#x} holds a page written while PG_mte_tagged, but no saved tags"
        elif saved != written:
            yield "I9", f"saved tags of slot {off:#x} ({T.describe(saved)}) differ from the tags written with it ({T.describe(written)})"
