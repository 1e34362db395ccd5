"""The state of the simulated machine: pages, folios, address spaces, the swap device.

Mutable while a kernel operation runs; `Machine.snapshot()` turns the whole of it into a
canonical tuple of ints (no str, no bytes) for the explorer to hash and store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Page-table entry kinds. A PTE is a small tuple so that copying a page table is cheap:
#   (PTE_PRESENT, pfn, tagged, writable)   tagged: MT_NORMAL_TAGGED attribute (VM_MTE)
#   (PTE_SWAP, entry, exclusive)           exclusive: the swap PTE's SWP_EXCLUSIVE bit
# An absent key is pte_none.
PTE_PRESENT = 1
PTE_SWAP = 2

ZERO_PFN = -1   # the shared zero page (empty_zero_page), never allocated or freed

# Page.origin of tags set while the machine does not track origins (Machine.track_origins
# False, as `mteswap cost` runs at scale): saves a tuple per page and per saved buffer.
UNTRACKED_ORIGIN = ("of unknown origin (origins are not tracked in this run; "
                    "replay it as a scenario with mteswap run to see where they came from)",)


class Page:
    """One physical 4 KiB frame (`struct page`). Tags and data survive free and reuse, as on
    hardware; the flags do not (free_pages_prepare clears PAGE_FLAGS_CHECK_AT_PREP)."""

    __slots__ = ("pfn", "tags", "data", "mte_tagged", "mte_lock", "anon_exclusive",
                 "folio", "rmap", "origin")

    def __init__(self, pfn: int):
        self.pfn = pfn
        self.tags = 0                # packed allocation tags, see model/tags.py
        self.data = 0                # the value the page holds; 0 = zero-filled
        self.mte_tagged = False      # PG_mte_tagged (PG_arch_2)
        self.mte_lock = False        # PG_mte_lock (PG_arch_3)
        self.anon_exclusive = False  # PG_anon_exclusive
        self.folio: Folio | None = None
        self.rmap: list[tuple[int, int]] = []   # (pid, vpn) of every PTE mapping this page
        self.origin: tuple = ("never written",)  # diagnostic only: who last set the tags

    @property
    def mapcount(self) -> int:
        return len(self.rmap)


class Folio:
    """A naturally aligned block of 2^order frames (`struct folio`). Identified by its head pfn."""

    __slots__ = ("pfn", "nr", "swapcache", "swap", "dirty", "partially_mapped", "writeback",
                 "arch", "mapcount", "nr_mapped")

    def __init__(self, pfn: int, nr: int):
        self.pfn = pfn
        self.nr = nr
        self.swapcache = False       # PG_swapcache
        self.swap = 0                # folio->swap: entry of the first page, valid in swap cache
        self.dirty = False           # PG_dirty
        self.partially_mapped = False  # PG_partially_mapped: queued for deferred split
        self.writeback = False       # never true between steps: writeback completes in-step
        self.arch = 0                # arch-private per-folio state a design may keep (an int)
        # Derived from the pages' rmaps and kept by rmap.py, as the kernel keeps them beside
        # the per-page mapcounts: PTEs mapping any page (`folio_mapcount`, `_large_mapcount`)
        # and pages mapped at least once (`_nr_pages_mapped`). O(1) instead of a walk of nr.
        self.mapcount = 0
        self.nr_mapped = 0

    @property
    def order(self) -> int:
        return self.nr.bit_length() - 1


@dataclass
class Vma:
    """A `vm_area_struct`: pages [start, end) of a process's virtual page numbers."""
    name: str
    start: int        # vpn
    end: int          # vpn, exclusive
    orig_start: int   # vpn of the start of the mapping as first created (scenario page 0)
    vm_mte: bool      # VM_MTE (sticky once set by PROT_MTE)


@dataclass
class Mm:
    """A process: its `mm_struct` (VMAs and page table)."""
    pid: int
    name: str
    vmas: list[Vma] = field(default_factory=list)
    ptes: dict[int, tuple] = field(default_factory=dict)   # vpn -> PTE tuple
    alive: bool = True
    next_vpn: int = 0

    def find_vma(self, vpn: int) -> Vma | None:
        """`find_vma` (mm/mmap.c) restricted to the VMA containing vpn."""
        for vma in self.vmas:
            if vma.start <= vpn < vma.end:
                return vma
        return None


class Counters(dict):
    """Named event counters (vmstat / mTHP stats analogues). Missing keys read as 0."""

    NAMES = ("tag_saves", "tag_restores", "restore_calls", "restore_page_iterations",
             "tag_invalidations", "tag_alloc_failures", "faults", "anon_fault_alloc",
             "zero_page_maps", "cow_copies", "swap_ins", "large_swap_ins", "pswpin",
             "swap_outs", "large_swap_outs", "pswpout", "swpout_zero", "swap_cache_hits",
             "splits", "swpout_fallback", "swap_slot_allocs", "swap_slot_alloc_fails",
             "tag_bytes", "tag_bytes_peak")
    # Only with config tag_storage: compressed (not reported otherwise, so `mteswap run`
    # output of plain runs is unchanged): saves stored inline, their erasures, codec calls,
    # and the bytes plain storage would have held at the same moment.
    COMPRESSED = ("tag_saves_inline", "tag_invalidations_inline", "tag_compressions",
                  "tag_decompressions", "tag_bytes_plain", "tag_bytes_plain_peak")

    def __init__(self):
        super().__init__((name, 0) for name in self.NAMES)

    def __missing__(self, key):
        return 0
