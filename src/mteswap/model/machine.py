"""The machine: every piece of state, the design's arch hooks, counters and the trace.

Kernel operations live in the modules named after the kernel files they mirror
(memory.py ~ mm/memory.c, vmscan.py ~ mm/vmscan.c, swapfile.py ~ mm/swapfile.c, ...). They all
take the machine as first argument, the way kernel functions reach global state.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from mteswap.model.state import (FOLIO_DIRTY, FOLIO_FREE, FOLIO_PARTIALLY_MAPPED,
                                  FOLIO_SWAPCACHE, NO_RMAP, ZERO_PFN, Counters, Folio, FolioMap,
                                  GenSlots, Mm, Page, PageArray, PageRange, Vma, rmap_count,
                                  folio_heads)
from mteswap.model.mte import page_itself
from mteswap.model.origin import STG, ZERO_PAGE_ORIGIN, TagOrigin
from mteswap.model.snapshot import MachineSnapshot, machine_snapshot
from mteswap.model.swapinfo import SlotMap, SwapInfo
from mteswap.model.tags import UNKNOWN
from mteswap.model.trace import TraceRegion


# The folio flag bits in the snapshot (state.py FOLIO_*; writeback completes within a step).
_FOLIO_STATE = FOLIO_SWAPCACHE | FOLIO_DIRTY | FOLIO_PARTIALLY_MAPPED


@dataclass(frozen=True)
class MachineConfig:
    """The machine's shape; mirrors a scenario's `config` (scenario-format.md)."""
    folio_pages: tuple[int, ...] = (1, 16)
    swap_device: str = "ssd"          # ssd | zram | rotational
    swap_slots: int = 1024
    frames: int = 256
    map_whole_folio: bool = True      # v6.11+: map every PTE of a large swap-cache folio
    large_swapin: bool = True         # v6.12+: zram swap-in may allocate a large folio
    tag_alloc_fail_after: int | None = None   # the (N+1)-th tag buffer allocation fails once
    tag_storage: str = "plain"        # plain | compressed (V7 inline compression, mtecomp.py)
    kernel: str = "6.12"              # 6.12 | 7.2: whose behaviour where they differ (model.md)
    reverts: frozenset = frozenset()  # fixes taken out (--revert): commit ids, model/reverts.py


class Machine:
    """State of the simulated arm64 system plus the design plugged into its arch hooks."""

    def __init__(self, config: MachineConfig, design):
        self.config = config
        self.design = design
        # The frames, one slot per pfn plus a last one for the zero page (ZERO_PFN = -1 indexes
        # it): packed tags (model/tags.py), data (the value the page holds, 0 = zero-filled),
        # flag bits (PG_MTE_TAGGED, PG_MTE_LOCK, PG_ANON_EXCLUSIVE), the order of the folio
        # holding the frame, and the rmap (state.py). Then the folios, read at their head
        # frame (state.py `Folio`). Arrays rather than an object per frame or per folio:
        # ~55 bytes per frame at 1 GiB.
        n = config.frames + 1
        # Tags nobody initialised are unknown (tags.UNKNOWN), not 0: a verdict must not rest on
        # what a frame held before the scenario. The zero page's are cleared at boot (below).
        self.frame_tags: list[int] = [UNKNOWN] * n
        self.frame_tags[ZERO_PFN] = 0
        self.frame_data = array("q", bytes(8 * n))
        self.frame_flags = bytearray(n)
        # The write-generation ghost of each frame's tags (not a kernel field: no kernel step
        # reads it, only the oracle): the generation of the program's tag store (`stg`, a
        # `write` with `tag:`) that produced them, numbered as data values are (the value
        # that write stores in that page, scenario/runner.py `page_value`); 0 for tags the
        # kernel initialised (zeroed) and for tags nobody set. It travels wherever the tags
        # travel (model/mte.py: save, restore, copy), so the oracle can tell tags of one write
        # from equal tags of another (docs/concurrency.md §4).
        self.frame_tgen = array("q", bytes(8 * n))
        self.frame_order = bytearray([FOLIO_FREE]) * n
        self.frame_rmap = array("q", [NO_RMAP]) * n
        self.folio_flags = bytearray(n)               # FOLIO_* bits
        self.folio_swap = array("q", bytes(8 * n))    # folio->swap
        self.folio_mapcounts = array("i", bytes(4 * n))
        self.folio_nr_mapped = array("i", bytes(4 * n))
        self.folio_arch: dict[int, int] = {}          # head pfn -> a design's non-zero state
        self.rmap_extra: dict[int, list[int]] = {}    # pfn -> second and later rmap keys
        self.frame_origin: dict[int, TagOrigin] = {}  # diagnostic: pfn -> who set the tags
        # The zero page's tags are cleared at boot (cpu_enable_mte, arch/arm64/kernel/mte.c); it
        # is not flagged PG_mte_tagged since "arm64: mte: Do not flag the zero page as
        # PG_mte_tagged". Its PTE is special, so mte_sync_tags never touches it.
        self.frame_origin[ZERO_PFN] = ZERO_PAGE_ORIGIN
        self.folio_count = 0                        # folios allocated (`len(m.folios)`)
        self.first_free = 0                         # lowest pfn that may be free
        self.mms: list[Mm] = []
        self.swap = SwapInfo(config.swap_slots, config.swap_device, config.kernel)
        self.swap.cache.m = self                    # its folios are this machine's (weakly)
        # The mte_pages xarray: entry -> saved tags (model/tags.py value), or with compressed
        # storage the negated inline handle of mtecomp.py (a handle is odd, so never 0).
        # indexed by entry (one device: = offset); its writes are logged with the slots'
        self.mte_pages = SlotMap(config.swap_slots, self.swap.written)
        self.tag_heap_bytes = 0                     # kmalloc'd bytes behind mte_pages
        # The ghost of mte_pages: entry -> write generation of the saved tags (as frame_tgen),
        # written with them by model/mte.py (mte_store_saved_tags); read only where
        # mte_pages holds a value, so an erase leaves it as it is.
        self.saved_tgen = GenSlots(config.swap_slots)
        self.saved_origin: dict[int, TagOrigin] = {}  # diagnostic: entry -> origin of saved tags
        self.tag_allocs = 0                         # tag buffers allocated so far (fail injection)
        self.counters = Counters()
        self.folio_sizes_desc = sorted(config.folio_pages, reverse=True)   # largest first
        self.compressed_tags = config.tag_storage == "compressed"   # V7 storage (mtecomp.py)
        if self.compressed_tags:
            self.counters.update(dict.fromkeys(Counters.COMPRESSED, 0))
        self.trace: list[tuple] = []                # (function, text) per kernel step, this op
        self.trace_regions: list[TraceRegion] = []  # open ordered regions (model/trace.py)
        # Whether kernel steps are recorded in `trace`: call sites test it before formatting
        # their text (`if m.tracing: m.log(...)`), so a run without --trace pays nothing.
        self.tracing = True
        self.stg_origin = TagOrigin(STG)            # diagnostic, shared by a step's STGs
        # Whether Page.origin / saved_origin record where tags came from (diagnostics only:
        # no kernel operation reads them). Off in `mteswap cost`, for speed and memory.
        self.track_origins = True
        # Whether the design keeps the kernel's per-page MTE flags: its `mte_flag_page` hook is
        # the kernel's own (`mte.page_itself`, asm/mte.h), not an override. Then `mte_flags`
        # need not call the hook for every page. An override is always called.
        self.flags_per_page = getattr(type(design), "mte_flag_page", None) is page_itself
        # (entry, swap_map at read) of saved-tag reads from a free slot, for the oracle's
        # use-after-free check (reads of a pinned slot are fine and not recorded).
        self.tag_reads: list[tuple[int, int]] = []
        self.step = 0
        # The scheduler of a `parallel` block (sched.py) while one runs; None otherwise, and
        # every kernel step boundary then costs one attribute test.
        self.sched = None
        # diagnostic: pfn -> (NO_SAVED_TAGS | SPLIT_CLEARED, text): why it has no saved tags
        self.pending_notes: dict[int, tuple[str, str]] = {}

    # Views of the frame and folio arrays, made on each access rather than kept: a view
    # kept in the machine would point back at it, and a machine in a reference cycle is
    # freed only by the garbage collector (the explorer discards a clone per transition).
    @property
    def pages(self) -> PageArray:
        """The frames as Page views, as `m.pages[pfn]`."""
        return PageArray(self, self.config.frames)

    @property
    def zero_page(self) -> Page:
        return Page(self, ZERO_PFN)

    @property
    def folios(self) -> FolioMap:
        """Head pfn -> folio (`FolioMap`)."""
        return FolioMap(self)

    # -- trace -------------------------------------------------------------------------
    def log(self, function: str, text: str = "", key: tuple | None = None) -> None:
        """Record one kernel step for `--trace` (ftrace-like: function, then arguments).
        `key` — ("slot" | "pfn" | "vpn", value) — says what the step is about, for ordering
        inside a range step (model/trace.py)."""
        if self.tracing:
            if self.trace_regions:
                self.trace_regions[-1].add(key, (function, text))
            else:
                self.trace.append((function, text))

    def log_range(self, function: str, kind: str, start: int, n: int, fmt) -> None:
        """Record a step over [start, start + n) of `kind`: one record, or inside a batch of
        faults one per fault, each `fmt(start_i, n_i)` (no record where that is empty)."""
        regions = self.trace_regions
        parts = regions[-1].geometry.split(kind, start, n) if regions else ((start, n),)
        for s, k in parts:
            text = fmt(s, k)
            if text:                                   # a part with nothing to say
                self.log(function, text, (kind, s))

    def begin_trace_region(self, geometry) -> None:
        """Start ordering records (only while tracing): a FaultBatch or SlotOrder."""
        self.trace_regions.append(TraceRegion(geometry))

    def end_trace_region(self) -> None:
        """Put the region's records in kernel order into the enclosing region or the trace."""
        region = self.trace_regions.pop()
        for key, (function, text) in region.ordered():
            self.log(function, text, key)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    # -- helpers shared by the kernel paths --------------------------------------------
    def page(self, pfn: int) -> Page:
        return Page(self, pfn)

    def folio_at(self, pfn: int) -> Folio | None:
        """The folio holding frame pfn (`page_folio`), or None for a free frame."""
        order = self.frame_order[pfn]
        if order == FOLIO_FREE:
            return None
        return Folio(self, pfn & -(1 << order), 1 << order)

    def folio_pages(self, folio: Folio) -> PageRange:
        """The folio's pages, as a sequence of Page views."""
        return PageRange(self, folio.pfn, folio.nr)

    def folio_mapcount(self, folio: Folio) -> int:
        return self.folio_mapcounts[folio.pfn]

    def mm(self, pid: int) -> Mm:
        return self.mms[pid]

    def snapshot(self, cached: bool = True) -> MachineSnapshot:
        """The whole machine as a canonical tuple of ints, for hashing by the explorer (named
        fields: model/snapshot.py).

        Diagnostic fields (trace, tag origins, names) are left out: they do not change what
        any later operation does. Built column by column (C-level slices and maps: the
        explorer takes one per transition); the page tables' part is cached between writes
        (`PageTable.snapshot`); `cached=False` builds every part afresh, the reference
        tests/test_snapshot_cache.py checks the cached one against after every step.
        """
        n = self.config.frames
        # Per frame, in columns by pfn: tags, data, flag byte (PG_MTE_TAGGED | PG_MTE_LOCK |
        # PG_ANON_EXCLUSIVE bits and the TAGS_INIT ghost, state.py), then the reverse map:
        # the first rmap key of each frame (relative to the pfn, NO_RMAP for none: the
        # array as it is) and the later keys of each frame mapped more than once.
        rmap = self.frame_rmap[:n]
        extra = tuple(sorted((pfn, tuple(keys)) for pfn, keys in self.rmap_extra.items()
                             if rmap[pfn] != NO_RMAP)) if self.rmap_extra else ()
        frames = (tuple(self.frame_tags[:n]), tuple(self.frame_data[:n]),
                  tuple(self.frame_flags[:n]), (tuple(rmap), extra))
        mms = tuple([(mm.alive, _vmas_snapshot(mm.vmas) if mm.vmas else (), mm.ptes.snapshot(cached))
                     for mm in self.mms])
        saved = self.mte_pages.items()
        gens = self.saved_tgen.slots
        # The write-generation ghost: of every frame by pfn, then of every saved buffer.
        tag_gens = (tuple(self.frame_tgen[:n]), tuple([gens[e] for e, _ in saved]))
        return machine_snapshot((frames, self._folios_snapshot(), mms, self.swap.snapshot(),
                                 tuple(saved), self.tag_allocs, tag_gens))

    def _folios_snapshot(self) -> tuple:
        """(head pfn, nr, PG_swapcache | PG_dirty | partially-mapped bits, folio->swap, arch)
        of every folio, by pfn (writeback is never set between steps)."""
        flags, swap, arch = self.folio_flags, self.folio_swap, self.folio_arch
        return tuple([(pfn, 1 << o, flags[pfn] & _FOLIO_STATE, swap[pfn], arch.get(pfn, 0))
                      for pfn, o in folio_heads(self.frame_order)])

    # -- branching (for the explorer) ------------------------------------------------------
    _CLONED = frozenset(("config", "design", "frame_tags", "frame_data", "frame_flags",
                         "frame_tgen", "saved_tgen",
                         "frame_order", "frame_rmap", "folio_flags", "folio_swap",
                         "folio_mapcounts", "folio_nr_mapped", "folio_arch", "rmap_extra", "frame_origin",
                         "folio_count", "first_free", "mms",
                         "swap", "mte_pages", "tag_heap_bytes", "saved_origin", "tag_allocs", "counters", "trace",
                         "tag_reads", "step", "pending_notes", "tracing", "stg_origin", "track_origins",
                         "flags_per_page", "compressed_tags", "folio_sizes_desc", "trace_regions",
                         "sched"))

    def clone(self) -> "Machine":
        """An independent copy of the machine between two steps, far cheaper than deepcopy.

        Everything mutable is copied (frames, folios, address spaces, the swap device, saved
        tags, counters); immutable values (config, origin tuples, ints) and the design
        (whose hooks keep their state in the machine: `Folio.arch`, `mte_pages`) are shared.
        `_CLONED` lists the attributes handled; a test fails when the machine gains one this
        method does not know.
        """
        new = Machine.__new__(Machine)
        new.__dict__.update(self.__dict__)           # scalars and shared immutables
        new.frame_tags = list(self.frame_tags)
        new.frame_data = array("q", self.frame_data)
        new.frame_flags = bytearray(self.frame_flags)
        new.frame_tgen = array("q", self.frame_tgen)
        new.frame_order = bytearray(self.frame_order)
        new.frame_rmap = array("q", self.frame_rmap)
        new.folio_flags = bytearray(self.folio_flags)
        new.folio_swap = array("q", self.folio_swap)
        new.folio_mapcounts = array("i", self.folio_mapcounts)
        new.folio_nr_mapped = array("i", self.folio_nr_mapped)
        new.folio_arch = dict(self.folio_arch)
        new.rmap_extra = {pfn: list(keys) for pfn, keys in self.rmap_extra.items()}
        new.frame_origin = dict(self.frame_origin)
        new.mms = [Mm(mm.pid, mm.name, [Vma(v.name, v.start, v.end, v.orig_start, v.vm_mte,
                                            v.anon_vma, v.anon_fork) for v in mm.vmas],
                      mm.ptes.copy(), mm.alive, mm.next_vpn) for mm in self.mms]
        new.swap = self.swap.clone()
        new.swap.cache.m = new
        new.mte_pages = self.mte_pages.copy(new.swap.written)
        new.saved_tgen = self.saved_tgen.copy()
        new.saved_origin = dict(self.saved_origin)
        new.counters = self.counters.copy()
        new.trace = list(self.trace)
        new.trace_regions = []                       # clones are taken between steps
        new.tag_reads = list(self.tag_reads)
        new.pending_notes = dict(self.pending_notes)
        new.sched = None                             # clones are taken outside a block
        return new


def _vmas_snapshot(vmas) -> tuple:
    """A process's VMAs, canonical: anon_vma ids are only compared within the process, so
    they are renumbered by first appearance (two histories that leave the same sharing of
    anon_vmas hash the same)."""
    ids = {0: 0}
    return tuple((v.start, v.end, v.orig_start, v.vm_mte,
                  ids.setdefault(v.anon_vma, len(ids)), v.anon_fork) for v in vmas)


def derived_state_errors(m: Machine) -> list[str]:
    """Where the folios' derived counters (`mapcount`, `nr_mapped`, kept by rmap.py) disagree
    with their pages' rmaps. Tests call it after every step; empty when consistent."""
    errors = []
    for folio in m.folios.values():
        counts = [rmap_count(m, pfn) for pfn in range(folio.pfn, folio.pfn + folio.nr)]
        mapcount = sum(counts)
        nr_mapped = sum(1 for c in counts if c)
        if (folio.mapcount, folio.nr_mapped) != (mapcount, nr_mapped):
            errors.append(f"folio {folio.pfn}: mapcount {folio.mapcount}/{mapcount}, "
                          f"nr_mapped {folio.nr_mapped}/{nr_mapped}")
    return errors
