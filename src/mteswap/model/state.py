"""The state of the simulated machine: pages, folios, address spaces, the swap device.

Mutable while a kernel operation runs; `Machine.snapshot()` turns the whole of it into a
canonical tuple of ints (no str, no bytes) for the explorer to hash and store.
"""

from __future__ import annotations

from array import array
from itertools import compress
from dataclasses import dataclass, field

from mteswap.model.origin import NEVER, UNTRACKED_ORIGIN, TagOrigin

ZERO_PFN = -1   # the shared zero page (empty_zero_page), never allocated or freed


# Page flags kept per frame in `Machine.frame_flags` (one byte per frame).
PG_MTE_TAGGED = 1      # PG_arch_2
PG_MTE_LOCK = 2        # PG_arch_3
PG_ANON_EXCLUSIVE = 4  # PG_anon_exclusive
# Not a kernel flag: a ghost bit for the oracle's I1 (kernel-semantics.md §5), "this frame's
# tags were zeroed, copied or restored since it was allocated or last lost PG_mte_tagged".
# Set where the tags are written (model/mte.py, designs/common.py write_saved_tags), cleared
# with the other flags at free and by a split that clears PG_mte_tagged; no kernel step reads
# it. In a state that keeps I1 it equals page_mte_tagged() of the frame, so it adds no state.
TAGS_INIT = 8
# bytes.translate tables that set or clear a flag on a run of frames in one C call.
SET_ANON_EXCLUSIVE = bytes(f | PG_ANON_EXCLUSIVE for f in range(256))
CLEAR_ANON_EXCLUSIVE = bytes(f & ~PG_ANON_EXCLUSIVE for f in range(256))
# ... both flags and the ghost, for a run of frames whose tags were just written.
SET_TAGS_INIT_TAGGED_LOCK = bytes(f | TAGS_INIT | PG_MTE_TAGGED | PG_MTE_LOCK for f in range(256))
# ... and that reduce a run of flag bytes to 1/0 per frame for one flag (then `count(1)`).
IS_MTE_TAGGED = bytes(1 if f & PG_MTE_TAGGED else 0 for f in range(256))
IS_MTE_LOCK = bytes(1 if f & PG_MTE_LOCK else 0 for f in range(256))
IS_ANON_EXCLUSIVE = bytes(1 if f & PG_ANON_EXCLUSIVE else 0 for f in range(256))

class GenSlots:
    """The write-generation ghost of the saved tags (`Machine.saved_tgen`): one int per swap
    entry in an array (0 where nothing was saved), meaningful only where mte_pages holds a
    value. A copy shares the array until either side writes (the explorer copies a machine
    per transition, and most transitions save no tags); no key set or count, unlike SlotMap,
    since mte_pages already says which entries hold something."""

    __slots__ = ("slots", "shared")

    def __init__(self, nslots: int):
        self.slots = array("q", bytes(8 * nslots))
        self.shared = False

    def copy(self) -> "GenSlots":
        new = GenSlots.__new__(GenSlots)
        new.slots = self.slots
        new.shared = self.shared = True
        return new

    def set_range(self, start: int, gens: array) -> None:
        """The generations of entries start .. start + len(gens) - 1."""
        if self.shared:
            self.slots, self.shared = array("q", self.slots), False
        self.slots[start:start + len(gens)] = gens


class PageTable:
    """One process's page table: the PTE of each virtual page number as an int (`ents`, 8
    bytes per page, 0 = pte_none), encoded and read only through model/pte.py. Indexing
    gives the int (`ptep_get`; 0 past the end); hot paths read and slice `ents` directly. It
    grows with the address space (`reserve`).

    `written`: the vpns whose PTE was written since the oracle's last state check (which
    empties it, `forget_writes`): its scoped checks look only there (oracle/scoped.py).
    Every write through this class records itself; code writing `ents` directly adds the
    vpns it wrote.

    `_snap`: the last `snapshot()` taken while `written` was empty (the explorer hashes
    one per state), or None. A write logs itself in `written`, and `forget_writes` (the
    only place `written` empties) drops `_snap`; so a cached tuple is never read after a
    write. Copies share it (an immutable tuple, equal for equal `ents`)."""

    __slots__ = ("ents", "written", "_snap")

    def __init__(self, ents: array | None = None, written: set | None = None,
                 snap: tuple | None = None):
        self.ents = ents if ents is not None else array("q")
        self.written: set[int] = written if written is not None else set()
        self._snap = snap

    def reserve(self, nvpn: int) -> None:
        """Room for vpns below nvpn (`do_mmap` calls it as the address space grows)."""
        if len(self.ents) < nvpn:
            self.ents.frombytes(bytes(8 * (nvpn - len(self.ents))))

    def copy(self) -> "PageTable":
        return PageTable(array("q", self.ents), set(self.written), self._snap)

    def forget_writes(self) -> None:
        """Empty the write log (after the oracle's state check), and with it the cached
        snapshot, which may predate the writes it held."""
        if self.written:
            self.written.clear()
            self._snap = None

    def __getitem__(self, vpn: int) -> int:
        """`ptep_get()`: the PTE at vpn (0, pte_none, if nothing is there)."""
        ents = self.ents
        return ents[vpn] if 0 <= vpn < len(ents) else 0

    def __setitem__(self, vpn: int, e: int) -> None:
        """`set_pte_at()` of a PTE built by model/pte.py for this vpn."""
        self.reserve(vpn + 1)
        self.ents[vpn] = e
        self.written.add(vpn)

    def __contains__(self, vpn: int) -> bool:
        return 0 <= vpn < len(self.ents) and self.ents[vpn] != 0

    def __delitem__(self, vpn: int) -> None:
        """`pte_clear()` of a PTE that is not none."""
        if vpn not in self:
            raise KeyError(vpn)
        self.ents[vpn] = 0
        self.written.add(vpn)

    def pop(self, vpn: int) -> int:
        """`ptep_get_and_clear()` of a PTE that is not none."""
        e = self[vpn]
        del self[vpn]
        return e

    def keys(self):
        return [vpn for vpn, e in enumerate(self.ents) if e]

    def items(self) -> tuple[tuple[int, int], ...]:
        """(vpn, PTE int) of every PTE that is not none, in vpn order: canonical, since the
        encoding is one-to-one given the vpn (what `Machine.snapshot` stores)."""
        ents = self.ents
        return tuple(compress(enumerate(ents), ents))

    def snapshot(self, cached: bool = True) -> tuple[tuple[int, int], ...]:
        """`items()`, cached between writes (`_snap`, class docstring); `cached=False`
        builds it afresh, the reference the cache is tested against."""
        if self.written or not cached:
            return self.items()            # mid-step or before the check: not cached
        snap = self._snap
        if snap is None:
            snap = self._snap = self.items()
        return snap

    def __len__(self) -> int:
        return len(self.ents) - self.ents.count(0)

    def __iter__(self):
        return iter(self.keys())

    def __eq__(self, other) -> bool:
        """Same PTEs at the same vpns (room reserved past the last one does not count), so
        that two `Mm`s compare by content."""
        return isinstance(other, PageTable) and self.items() == other.items()


class Page:
    """One physical 4 KiB frame (`struct page`), as a view of the machine's per-frame arrays
    (`Machine.frame_*`): the machine keeps no object per frame, so a 1 GiB machine costs a few
    bytes per frame. Views are made on demand (`m.pages[pfn]`); two views of one frame are
    equal. Tags and data survive free and reuse, as on hardware; the flags do not
    (free_pages_prepare clears PAGE_FLAGS_CHECK_AT_PREP). ZERO_PFN (-1) indexes the last slot of
    every array, which holds the shared zero page."""

    __slots__ = ("m", "pfn")

    def __init__(self, m, pfn: int):
        self.m = m
        self.pfn = pfn

    def __eq__(self, other) -> bool:
        return isinstance(other, Page) and other.m is self.m and other.pfn == self.pfn

    def __hash__(self) -> int:
        return hash(self.pfn)

    def __repr__(self) -> str:
        return f"Page(pfn={self.pfn})"

    # packed allocation tags, see model/tags.py
    @property
    def tags(self) -> int:
        return self.m.frame_tags[self.pfn]

    @tags.setter
    def tags(self, value: int) -> None:
        self.m.frame_tags[self.pfn] = value

    # the oracle's write-generation ghost of the tags (Machine.frame_tgen): not a kernel field
    @property
    def tag_gen(self) -> int:
        return self.m.frame_tgen[self.pfn]

    @tag_gen.setter
    def tag_gen(self, value: int) -> None:
        self.m.frame_tgen[self.pfn] = value

    # the value the page holds; 0 = zero-filled
    @property
    def data(self) -> int:
        return self.m.frame_data[self.pfn]

    @data.setter
    def data(self, value: int) -> None:
        self.m.frame_data[self.pfn] = value

    def _flag(self, bit: int) -> bool:
        return bool(self.m.frame_flags[self.pfn] & bit)

    def _set_flag(self, bit: int, on: bool) -> None:
        flags = self.m.frame_flags
        flags[self.pfn] = flags[self.pfn] | bit if on else flags[self.pfn] & ~bit

    mte_tagged = property(lambda p: p._flag(PG_MTE_TAGGED),
                          lambda p, v: p._set_flag(PG_MTE_TAGGED, v))
    mte_lock = property(lambda p: p._flag(PG_MTE_LOCK),
                        lambda p, v: p._set_flag(PG_MTE_LOCK, v))
    anon_exclusive = property(lambda p: p._flag(PG_ANON_EXCLUSIVE),
                              lambda p, v: p._set_flag(PG_ANON_EXCLUSIVE, v))
    # the oracle's ghost (TAGS_INIT above), not a kernel flag
    tags_init = property(lambda p: p._flag(TAGS_INIT),
                         lambda p, v: p._set_flag(TAGS_INIT, v))

    @property
    def folio(self) -> "Folio | None":
        return self.m.folio_at(self.pfn)

    @property
    def rmap(self) -> tuple[tuple[int, int], ...]:
        """(pid, vpn) of every PTE mapping this page, oldest first (read-only: rmap.py keeps it)."""
        return tuple(rmap_unkey(k) for k in rmap_keys(self.m, self.pfn))

    @property
    def mapcount(self) -> int:
        return rmap_count(self.m, self.pfn)

    # diagnostic only: who last set the tags
    @property
    def origin(self) -> TagOrigin:
        m = self.m
        return m.frame_origin.get(self.pfn, NEVER if m.track_origins else UNTRACKED_ORIGIN)

    @origin.setter
    def origin(self, origin: TagOrigin) -> None:
        if self.m.track_origins:
            self.m.frame_origin[self.pfn] = origin


class PageArray:
    """`m.pages`: the frames as Page views, indexable and sliceable like the list they were."""

    __slots__ = ("m", "n")

    def __init__(self, m, n: int):
        self.m = m
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [Page(self.m, pfn) for pfn in range(*i.indices(self.n))]
        if not -1 <= i < self.n:
            raise IndexError(i)
        return Page(self.m, i)

    def __iter__(self):
        m = self.m
        return (Page(m, pfn) for pfn in range(self.n))


class FolioMap:
    """`m.folios`: head pfn -> Folio (a view), read from the machine's `frame_order`. Dict-like;
    iteration in pfn order. `n`: folios allocated (the machine's `folio_count`)."""

    __slots__ = ("m",)

    def __init__(self, m):
        self.m = m

    @property
    def n(self) -> int:
        return self.m.folio_count

    @n.setter
    def n(self, value: int) -> None:
        self.m.folio_count = value

    def get(self, pfn: int, default=None):
        order = self.m.frame_order
        if not 0 <= pfn < len(order) - 1:
            return default
        o = order[pfn]
        if o == FOLIO_FREE or pfn & ((1 << o) - 1):
            return default
        return Folio(self.m, pfn, 1 << o)

    def __getitem__(self, pfn: int) -> "Folio":
        f = self.get(pfn)
        if f is None:
            raise KeyError(pfn)
        return f

    def __contains__(self, pfn: int) -> bool:
        """Is a folio's head at pfn? (`folio.pfn in m.folios`: is that folio still allocated
        with this head, i.e. not freed.)"""
        order = self.m.frame_order
        if not 0 <= pfn < len(order) - 1:
            return False
        o = order[pfn]
        return o != FOLIO_FREE and not pfn & ((1 << o) - 1)

    def values(self) -> list["Folio"]:
        m = self.m
        return [Folio(m, pfn, 1 << o) for pfn, o in folio_heads(m.frame_order)]

    def keys(self) -> list[int]:
        return [f.pfn for f in self.values()]

    def items(self) -> list[tuple[int, "Folio"]]:
        return [(f.pfn, f) for f in self.values()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return self.m.folio_count


def folio_heads(frame_order) -> list[tuple[int, int]]:
    """(head pfn, order) of every allocated folio, by pfn: a walk of `frame_order` that steps
    over free frames one by one and over each folio whole (its last entry is the zero page's)."""
    out = []
    pfn, end = 0, len(frame_order) - 1
    while pfn < end:
        o = frame_order[pfn]
        if o == FOLIO_FREE:
            pfn += 1
            continue
        out.append((pfn, o))
        pfn += 1 << o
    return out


class PageRange:
    """The pages pfn .. pfn + nr - 1 as a sequence of Page views, made only when iterated or
    indexed (`m.folio_pages(folio)`, what `set_ptes` hands to `sync_tags`). Code that works on
    the frame arrays reads `pfns` instead."""

    __slots__ = ("m", "pfns")

    def __init__(self, m, pfn: int, nr: int):
        self.m = m
        self.pfns = range(pfn, pfn + nr)

    def __len__(self) -> int:
        return len(self.pfns)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [Page(self.m, pfn) for pfn in self.pfns[i]]
        return Page(self.m, self.pfns[i])

    def __iter__(self):
        m = self.m
        return (Page(m, pfn) for pfn in self.pfns)


# Reverse map: `Machine.frame_rmap[pfn]` holds the first (pid, vpn) mapping the frame as one int
# key minus the pfn (NO_RMAP if none): a folio mapped in order (page i at vpn + i) then holds
# one repeated value, written at once. Further mappings, in the order they were added, are in
# `Machine.rmap_extra[pfn]` (keys as they are). Most pages are mapped once: 8 bytes a frame.
NO_RMAP = -(1 << 62)       # never a key - pfn (keys are >= 0, pfns < 2^31)
RMAP_VPN_BITS = 32


def rmap_key(pid: int, vpn: int) -> int:
    return pid << RMAP_VPN_BITS | vpn


def rmap_unkey(key: int) -> tuple[int, int]:
    return key >> RMAP_VPN_BITS, key & ((1 << RMAP_VPN_BITS) - 1)


def rmap_keys(m, pfn: int) -> list[int]:
    first = m.frame_rmap[pfn]
    if first == NO_RMAP:
        return []
    extra = m.rmap_extra.get(pfn)
    return [first + pfn] + extra if extra else [first + pfn]


def rmap_count(m, pfn: int) -> int:
    if m.frame_rmap[pfn] == NO_RMAP:
        return 0
    extra = m.rmap_extra.get(pfn)
    return 1 + len(extra) if extra else 1


# Folios live in per-frame arrays of the machine, read at a folio's head frame (a `struct
# folio` is the head `struct page` too): `frame_order` (the order of the folio holding each
# frame, FOLIO_FREE for a free frame), `folio_flags` (the FOLIO_* bits below), `folio_swap`,
# `folio_mapcount`, `folio_nr_mapped`, and `folio_arch` (a dict: few folios carry arch state).
# No object per folio: a 1 GiB machine swapped in page by page has 262,144 folios.
FOLIO_FREE = 255
FOLIO_SWAPCACHE, FOLIO_DIRTY, FOLIO_PARTIALLY_MAPPED, FOLIO_WRITEBACK = 1, 2, 4, 8
# bytes.translate tables that set or clear a folio flag on the heads of a run of folios.
SET_FOLIO_SWAPCACHE = bytes(f | FOLIO_SWAPCACHE for f in range(256))
CLEAR_FOLIO_SWAPCACHE = bytes(f & ~FOLIO_SWAPCACHE for f in range(256))
SET_FOLIO_DIRTY = bytes(f | FOLIO_DIRTY for f in range(256))


def folio_mark_dirty(m, folio, k: int = 1) -> None:
    """`folio_mark_dirty()` (mm/page-writeback.c) of the folio, or of k folios of folio.nr
    pages one after another (a batch of faults): PG_dirty at each head."""
    heads = slice(folio.pfn, folio.pfn + folio.nr * k, folio.nr)
    m.folio_flags[heads] = m.folio_flags[heads].translate(SET_FOLIO_DIRTY)


def _folio_bit(bit: int) -> property:
    def get(f) -> bool:
        return bool(f.m.folio_flags[f.pfn] & bit)

    def set_(f, on: bool) -> None:
        flags = f.m.folio_flags
        flags[f.pfn] = flags[f.pfn] | bit if on else flags[f.pfn] & ~bit
    return property(get, set_)


def _set_swap(f, value: int) -> None:
    f.m.folio_swap[f.pfn] = value


def _set_mapcount(f, value: int) -> None:
    f.m.folio_mapcounts[f.pfn] = value


def _set_nr_mapped(f, value: int) -> None:
    f.m.folio_nr_mapped[f.pfn] = value


class Folio:
    """A naturally aligned block of 2^order frames (`struct folio`), identified by its head
    pfn: a view of the machine's folio arrays at that frame (as Page is of the frame arrays).
    Two views of one folio compare equal. `nr` is the size when the view was made: a split
    (`split_folio`) updates the view it is given; other views of the split folio must be
    taken again (`m.folios`, `m.folio_at`, the swap cache hand out fresh ones)."""

    __slots__ = ("m", "pfn", "nr")

    def __init__(self, m, pfn: int, nr: int):
        self.m = m
        self.pfn = pfn
        self.nr = nr

    @property
    def order(self) -> int:
        return self.nr.bit_length() - 1

    def __eq__(self, other) -> bool:
        return isinstance(other, Folio) and other.pfn == self.pfn and other.m is self.m

    def __hash__(self) -> int:
        return hash(self.pfn)

    def __repr__(self) -> str:
        return f"Folio(pfn={self.pfn}, nr={self.nr})"

    swapcache = _folio_bit(FOLIO_SWAPCACHE)             # PG_swapcache
    dirty = _folio_bit(FOLIO_DIRTY)                     # PG_dirty
    partially_mapped = _folio_bit(FOLIO_PARTIALLY_MAPPED)   # queued for deferred split
    writeback = _folio_bit(FOLIO_WRITEBACK)   # never true between steps: completes in-step
    swap = property(lambda f: f.m.folio_swap[f.pfn], _set_swap)   # folio->swap: first entry
    # Derived from the pages' rmaps and kept by rmap.py, as the kernel keeps them beside the
    # per-page mapcounts: PTEs mapping any page (`folio_mapcount`, `_large_mapcount`) and
    # pages mapped at least once (`_nr_pages_mapped`). O(1) instead of a walk of nr.
    mapcount = property(lambda f: f.m.folio_mapcounts[f.pfn], _set_mapcount)
    nr_mapped = property(lambda f: f.m.folio_nr_mapped[f.pfn], _set_nr_mapped)

    @property
    def arch(self) -> int:
        """Arch-private per-folio state a design may keep (an int, 0 by default)."""
        return self.m.folio_arch.get(self.pfn, 0)

    @arch.setter
    def arch(self, value: int) -> None:
        if value:
            self.m.folio_arch[self.pfn] = value
        else:
            self.m.folio_arch.pop(self.pfn, None)


def folio_head(frame_order, pfn: int) -> int:
    """The head pfn of the (allocated) folio holding frame pfn: folios are naturally aligned."""
    return pfn & -(1 << frame_order[pfn])


@dataclass
class Vma:
    """A `vm_area_struct`: pages [start, end) of a process's virtual page numbers."""
    name: str
    start: int        # vpn
    end: int          # vpn, exclusive
    orig_start: int   # vpn of the start of the mapping as first created (scenario page 0)
    vm_mte: bool      # VM_MTE (sticky once set by PROT_MTE)
    anon_vma: int = 0        # its `anon_vma`, an id compared within the process; 0 = none
    anon_fork: bool = False  # forked with an anon_vma: its `anon_vma_chain` is not singular


@dataclass
class Mm:
    """A process: its `mm_struct` (VMAs and page table)."""
    pid: int
    name: str
    vmas: list[Vma] = field(default_factory=list)
    ptes: PageTable = field(default_factory=PageTable)   # vpn -> PTE int (model/pte.py)
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

    def copy(self) -> "Counters":
        new = Counters.__new__(Counters)
        dict.update(new, self)
        return new
