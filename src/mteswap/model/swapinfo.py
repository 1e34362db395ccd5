"""The one swap device: `struct swap_info_struct` (include/linux/swap.h) and its swap cache.

Only data and slot placement live here; the operations that free slots (and so call the arch
hook `arch_swap_invalidate_page`) are in swapfile.py.
"""

from __future__ import annotations

import weakref
from collections import deque
from copy import deepcopy
from array import array
from itertools import compress

from mteswap.model.snapshot import SwapSnapshot, swap_snapshot
from mteswap.model.state import Folio

# swap_map bit: a folio for this slot is in (or entering) the swap cache. The kernel's byte uses
# 0x40 and moves counts above SWAP_MAP_MAX (0x3e) to continuation pages (COUNT_CONTINUED); we
# keep the count unbounded in the low bits and the cache bit above any count.
SWAP_HAS_CACHE = 1 << 24
SWAP_MAP_MAX = 0x3E        # largest count one swap_map byte holds (not a limit here)
SWAP_MAP_BAD = 0x3F        # slot 0 holds the swap header and is never handed out
SWAPFILE_CLUSTER = 512     # slots per cluster with 4 KiB pages (mm/swapfile.c)
SWP_TYPE = 0               # the one swap device's type
SWP_TYPE_SHIFT = 58        # BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT on 64-bit


def swp_entry(type_: int, offset: int) -> int:
    """`swp_entry()` (include/linux/swapops.h): entry value of (type, offset)."""
    return (type_ << SWP_TYPE_SHIFT) | offset


def swp_offset(entry: int) -> int:
    """`swp_offset()` (include/linux/swapops.h)."""
    return entry & ((1 << SWP_TYPE_SHIFT) - 1)


def swp_type(entry: int) -> int:
    """`swp_type()` (include/linux/swapops.h)."""
    return entry >> SWP_TYPE_SHIFT


ABSENT = object()


# A folio's slots usually hold one value (same count, same cache bit): these test or update a
# run of swap_map values (an array slice) with one C `count` in that case, else slot by slot.
def any_slot_has(slots, mask: int) -> bool:
    """Does any value of the run have a bit of mask set?"""
    v0 = slots[0]
    if slots.count(v0) == len(slots):
        return bool(v0 & mask)
    return any(v & mask for v in slots)


def each_slot(slots, update) -> array:
    """The run with update(value) applied to each value (computed once when all are alike)."""
    v0 = slots[0]
    if slots.count(v0) == len(slots):
        return array("q", [update(v0)]) * len(slots)
    return array("q", [update(v) for v in slots])

# Tables of at most this many slots also keep the set of keys in use, so that reading all of
# them (snapshots, the oracle's checks after every step, clones: the explorer's small
# machines) costs what is stored, not the table size. Larger tables (a 1 GiB cost run) scan
# instead and save the set's ~60 bytes per entry.
INDEX_LIMIT = 1 << 16


class SlotMap:
    """A per-slot table (offset or entry -> value) as one list slot per swap slot instead of a
    dict: 8 bytes per slot, the same dict-like interface (`get`, `[]`, `in`, `pop`, `items` in
    key order, `len`). Hot paths may read `slots` directly (`ABSENT` where nothing is stored);
    every write goes through a method, or through `writable_slots()` (then updating `n` and
    `keyset` as the methods do). A copy shares the slots until either side writes (the
    explorer copies a machine per transition and most transitions leave these tables alone).
    `log`, when set (`SwapInfo.written`), gathers the keys every write touches, for the
    oracle's scoped checks (oracle/scoped.py); keys are slot offsets (one device)."""

    __slots__ = ("slots", "n", "keyset", "shared", "log")

    def __init__(self, nslots: int, log: set | None = None):
        self.slots: list = [ABSENT] * nslots
        self.n = 0
        self.keyset: set[int] | None = set() if nslots <= INDEX_LIMIT else None
        self.shared = False
        self.log = log

    def copy(self, log: set | None = None) -> "SlotMap":
        """A copy sharing the slots until either side writes; its writes go to `log`."""
        new = SlotMap.__new__(type(self))
        new.slots, new.n, new.keyset, new.log = self.slots, self.n, self.keyset, log
        new.shared = self.shared = True
        return new

    def writable_slots(self):
        """The slots, no longer shared with a copy: call before writing to them (and record
        the keys written in `log`: the methods do)."""
        if self.shared:
            self.slots = self.slots[:]
            if self.keyset is not None:
                self.keyset = set(self.keyset)
            self.shared = False
        return self.slots

    def get(self, key: int, default=None):
        v = self.slots[key] if 0 <= key < len(self.slots) else ABSENT
        return default if v is ABSENT else v

    def __getitem__(self, key: int):
        v = self.get(key, ABSENT)
        if v is ABSENT:
            raise KeyError(key)
        return v

    def __setitem__(self, key: int, value) -> None:
        slots = self.writable_slots()
        if slots[key] is ABSENT:
            self.n += 1
            if self.keyset is not None:
                self.keyset.add(key)
        slots[key] = value
        if self.log is not None:
            self.log.add(key)

    def __contains__(self, key: int) -> bool:
        return 0 <= key < len(self.slots) and self.slots[key] is not ABSENT

    def pop(self, key: int, default=ABSENT):
        v = self.slots[key] if 0 <= key < len(self.slots) else ABSENT
        if v is ABSENT:
            if default is ABSENT:
                raise KeyError(key)
            return default
        self.writable_slots()[key] = ABSENT
        self.n -= 1
        if self.keyset is not None:
            self.keyset.discard(key)
        if self.log is not None:
            self.log.add(key)
        return v

    def __delitem__(self, key: int) -> None:
        self.pop(key)

    def set_range(self, start: int, values: list) -> None:
        """self[start + k] = values[k] for every k."""
        nr = len(values)
        slots = self.writable_slots()
        self.n += slots[start:start + nr].count(ABSENT)
        slots[start:start + nr] = values
        if self.keyset is not None:
            self.keyset.update(range(start, start + nr))
        if self.log is not None:
            self.log.update(range(start, start + nr))

    def clear_range(self, start: int, nr: int) -> int:
        """Remove whatever is stored for keys start .. start + nr - 1; how many were there."""
        gone = nr - self.slots[start:start + nr].count(ABSENT)
        if gone:
            self.writable_slots()[start:start + nr] = [ABSENT] * nr
            self.n -= gone
            if self.keyset is not None:
                self.keyset.difference_update(range(start, start + nr))
            if self.log is not None:
                self.log.update(range(start, start + nr))
        return gone

    def noted(self, keys) -> None:
        """Record keys whose slots a caller filled directly (`slots[k] = v`, n kept)."""
        if self.keyset is not None:
            self.keyset.update(keys)
        if self.log is not None:
            self.log.update(keys)

    def keys(self) -> list[int]:
        if not self.n:
            return []
        if self.keyset is not None:
            return sorted(self.keyset)
        return [k for k, v in enumerate(self.slots) if v is not ABSENT]

    def items(self) -> list[tuple[int, object]]:
        slots = self.slots
        return [(k, slots[k]) for k in self.keys()]

    def values(self) -> list:
        slots = self.slots
        return [slots[k] for k in self.keys()]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def __eq__(self, other) -> bool:
        return dict(self.items()) == (dict(other.items()) if isinstance(other, SlotMap) else other)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.items())})"


class IntSlotMap(SlotMap):
    """A SlotMap of ints (the data written to each slot) in an array: 8 bytes per slot, no
    int object per value, and runs copied array to array. Which slots hold a value is the key
    set on small devices; on large ones (no key set) a slot holding 0 reads as empty, which
    no caller can tell apart (`get(off, 0)`: nothing written reads as zeros). Written only
    through its methods."""

    def __init__(self, nslots: int, log: set | None = None):
        self.slots = array("q", bytes(8 * nslots))
        self.n = 0
        self.keyset = set() if nslots <= INDEX_LIMIT else None
        self.shared = False
        self.log = log

    def writable_slots(self):
        if self.shared:
            self.slots = array("q", self.slots)
            if self.keyset is not None:
                self.keyset = set(self.keyset)
            self.shared = False
        return self.slots

    def _present(self, key: int) -> bool:
        if self.keyset is not None:
            return key in self.keyset
        return 0 <= key < len(self.slots) and self.slots[key] != 0

    def _held(self, start: int, nr: int) -> int:
        if self.keyset is not None:
            return len(self.keyset.intersection(range(start, start + nr)))
        return nr - self.slots[start:start + nr].count(0)

    def clear_range(self, start: int, nr: int) -> int:
        gone = self._held(start, nr)
        if gone:
            self.writable_slots()[start:start + nr] = array("q", bytes(8 * nr))
            self.n -= gone
            if self.keyset is not None:
                self.keyset.difference_update(range(start, start + nr))
            if self.log is not None:
                self.log.update(range(start, start + nr))
        return gone

    def set_range(self, start: int, values) -> None:
        """self[start + k] = values[k]; `values` an array('q') (copied as is) or a list."""
        nr = len(values)
        self.n += nr - self._held(start, nr)
        self.writable_slots()[start:start + nr] = \
            values if isinstance(values, array) else array("q", values)
        if self.keyset is not None:
            self.keyset.update(range(start, start + nr))
        if self.log is not None:
            self.log.update(range(start, start + nr))

    def get(self, key: int, default=None):
        return self.slots[key] if self._present(key) else default

    def __setitem__(self, key: int, value: int) -> None:
        if not self._present(key):
            self.n += 1
            if self.keyset is not None:
                self.keyset.add(key)
        self.writable_slots()[key] = value
        if self.log is not None:
            self.log.add(key)

    def __contains__(self, key: int) -> bool:
        return self._present(key)

    def pop(self, key: int, default=ABSENT):
        if not self._present(key):
            if default is ABSENT:
                raise KeyError(key)
            return default
        v = self.slots[key]
        self.writable_slots()[key] = 0
        self.n -= 1
        if self.keyset is not None:
            self.keyset.discard(key)
        if self.log is not None:
            self.log.add(key)
        return v

    def keys(self) -> list[int]:
        if not self.n:
            return []
        if self.keyset is not None:
            return sorted(self.keyset)
        return list(compress(range(len(self.slots)), self.slots))

    def items(self) -> list[tuple[int, int]]:
        return [(k, self.slots[k]) for k in self.keys()]

    def values(self) -> list[int]:
        return [self.slots[k] for k in self.keys()]


class SwapCache:
    """The swap cache's index (the `swap_address_space` xarray): slot offset -> the folio
    holding it, kept as head pfn + 1 in an IntSlotMap (8 bytes a slot, no object; 0 = none).
    Hands out Folio views of the machine `m` it belongs to, which it holds by a weak
    reference: the machine holds the swap device, and a cycle would leave every machine the
    explorer discards to the garbage collector."""

    __slots__ = ("index", "_m")

    def __init__(self, nslots: int, log: set | None = None):
        self.index = IntSlotMap(nslots, log)
        self._m = None                     # set by the Machine

    @property
    def m(self):
        return self._m() if self._m is not None else None

    @m.setter
    def m(self, machine) -> None:
        self._m = weakref.ref(machine)

    def copy(self, log: set | None = None) -> "SwapCache":
        new = SwapCache.__new__(SwapCache)
        new.index, new._m = self.index.copy(log), self._m
        return new

    def __deepcopy__(self, memo) -> "SwapCache":
        """`copy.deepcopy` of a machine: the copy's cache belongs to the copied machine
        (a weak reference would otherwise be copied as it is, to the original)."""
        new = SwapCache.__new__(SwapCache)
        new.index = deepcopy(self.index, memo)
        m = self.m
        new._m = None if m is None else weakref.ref(memo.get(id(m), m))
        return new

    def get(self, offset: int, default=None):
        v = self.index.slots[offset]             # 0 where no folio (pfn + 1 is never 0)
        if not v:
            return default
        m = self.m
        return Folio(m, v - 1, 1 << m.frame_order[v - 1])

    def holds(self, offset: int, folio) -> bool:
        """Is `folio` still the folio at slot `offset`? The recheck after a folio lock another
        thread may have held (`folio_test_swapcache` and `folio->swap`); by pfn, since `get`
        hands out a fresh view at each lookup."""
        return self.index.slots[offset] == folio.pfn + 1

    def add(self, offset: int, folio, k: int = 1) -> None:
        """Every slot of the folio, from offset, now finds it; for k folios one after another
        (frames and slots), slot offset + j finds folio j // nr."""
        pfn, nr = folio.pfn, folio.nr
        if k == 1:
            heads = array("q", [pfn + 1]) * nr
        elif nr == 1:
            heads = array("q", range(pfn + 1, pfn + k + 1))
        else:
            heads = array("q", [pfn + 1 + j - j % nr for j in range(nr * k)])
        self.index.set_range(offset, heads)

    def __setitem__(self, offset: int, folio) -> None:
        self.index[offset] = folio.pfn + 1

    def clear_range(self, start: int, nr: int) -> int:
        return self.index.clear_range(start, nr)

    def keys(self) -> list[int]:
        return self.index.keys()

    def __iter__(self):
        return iter(self.index.keys())

    def items(self) -> list[tuple[int, "Folio"]]:
        m = self.m
        order = m.frame_order
        return [(off, Folio(m, v - 1, 1 << order[v - 1])) for off, v in self.index.items()]

    @property
    def n(self) -> int:
        return self.index.n

    def __contains__(self, offset: int) -> bool:
        return bool(self.index.slots[offset])

    def __len__(self) -> int:
        return self.index.n

    def __bool__(self) -> bool:
        return self.index.n > 0

    def __eq__(self, other) -> bool:
        return dict(self.items()) == (dict(other.items()) if isinstance(other, SwapCache) else other)

    def __repr__(self) -> str:
        return f"SwapCache({dict(self.items())})"


class SwapInfo:
    """Per-slot swap_map bytes, per-cluster order, the swap cache and what the device holds."""

    def __init__(self, nslots: int, device: str, kernel: str = "6.12"):
        self.device = device
        # 6.12 places slots differently from 7.2 (find_slots; docs/model.md): a free cluster
        # before a partly used one, and it scans on from `next` even in a cluster freed since.
        self.free_first = kernel == "6.12"
        # Whether slots come from clusters with a `next` offset per order: not a rotational
        # disk on 6.12, which keeps the old linear scan from slot 1 (no SWP_SOLIDSTATE).
        self.uses_next = not (kernel == "6.12" and device == "rotational")
        # The per-CPU (7.2 rotational: global) cluster `next` offset per order: where the next
        # search for that order starts, in the cluster its last slots came from. An order is
        # absent when unset (SWAP_NEXT_INVALID).
        self.next_off: dict[int, int] = {}
        self.synchronous = device == "zram"          # SWP_SYNCHRONOUS_IO
        self.rotational = device == "rotational"
        # Whether a large folio can get slots: 6.12 gives a rotational disk no cluster info
        # (setup_clusters only for SWP_SOLIDSTATE), so `scan_swap_map_slots` refuses order > 0;
        # 7.2 keeps clusters on every device (one global cluster instead of per-CPU ones for a
        # rotational disk), so a rotational disk takes large folios like an ssd (model.md).
        self.large_slots = not (self.rotational and kernel == "6.12")
        # 6.12's per-CPU swap slot cache (model/swap_slots.py): order-0 slots handed out in
        # batches, and freed slots waiting on a return list; both pinned by SWAP_HAS_CACHE.
        self.has_slots_cache = kernel == "6.12"
        self.slots_cache_enabled = self.has_slots_cache   # swap_slot_cache_enabled
        self.slots_cache_active = False                   # swap_slot_cache_active
        self.slots_cache: tuple[int, ...] = ()            # cache->slots[cur..], in order
        self.slots_ret: tuple[int, ...] = ()              # cache->slots_ret
        self.active = True                           # SWP_WRITEOK until swapoff
        # Offsets whose swap_map value, swap-cache folio, written tags or saved tags (the
        # machine's mte_pages logs here too) changed since the oracle's last state check,
        # which empties it: its scoped checks look only there (oracle/scoped.py). The tables
        # below record their writes themselves (SlotMap.log); swap_map writers add theirs.
        self.written: set[int] = set()
        self.swap_map = array("q", bytes(8 * nslots))   # an int per slot, no object
        self.swap_map[0] = SWAP_MAP_BAD
        self.inuse = 0                               # si->inuse_pages: swap_map != 0, header excluded
        # The offsets in use, kept for small devices only (INDEX_LIMIT; see SlotMap).
        self._allocated: set[int] | None = set() if nslots <= INDEX_LIMIT else None
        self.nclusters = (nslots + SWAPFILE_CLUSTER - 1) // SWAPFILE_CLUSTER
        # Order each cluster serves while it has allocated slots; None = free cluster.
        # Cluster 0 holds the header slot, so it starts as an order-0 cluster.
        self.cluster_order: list[int | None] = [None] * self.nclusters
        self.cluster_order[0] = 0
        # Slots in use per cluster (swap_map != 0), kept by take_slot/release_slot so that
        # `inuse_pages` and `cluster_free` cost O(1) (the kernel keeps the same counts).
        self.cluster_used = [0] * self.nclusters
        self.cluster_used[0] = 1
        # Indexes for find_slots, derived from the two lists above (the kernel keeps per-order
        # nonfull lists and a free list for the same reason): `room[order]` holds the clusters
        # serving that order with room for one more folio of it by count; `free_list` the free
        # full-size clusters as the kernel's `free_clusters` list orders them: by index at
        # swapon (`setup_clusters`; it interleaves columns of 32 clusters on larger devices,
        # not modelled), then each cluster freed again at the tail (`free_cluster` →
        # `list_move_tail`). Entries are (cluster, generation), lazily cleaned: an entry whose
        # cluster was taken, or freed again since (a newer generation), is stale.
        self.last_partial = nslots % SWAPFILE_CLUSTER != 0 and self.nclusters > 1
        # Whether the slot allocator's containers (ALLOCATOR) are shared with a clone: then
        # the first write copies them (`_own_allocator`, called by each method that writes
        # them). Most of an explorer's transitions allocate or free no slot.
        self._alloc_shared = False
        self.room: dict[int, set[int]] = {0: set()}
        self._update_room(0)
        self.free_list = deque((ci, 0) for ci in range(1, self.nclusters) if self.cluster_is_full_size(ci))
        self.free_gen = [0] * self.nclusters
        # Per cluster, an offset below which every slot is in use (the kernel's per-CPU
        # `next` offset plays this part): the in-cluster search starts there.
        self.cluster_next = [ci * SWAPFILE_CLUSTER for ci in range(self.nclusters)]
        self.cache = SwapCache(nslots, self.written)   # offset -> Folio (swap address space)
        self.contents = IntSlotMap(nslots)           # offset -> data written to the slot
        self.zeromap: set[int] = set()               # slots written as zero-filled, no I/O
        # ghost for I8/I9: tags at write time (None: untagged)
        self.written_tags = SlotMap(nslots, self.written)

    # -- reading swap_map ----------------------------------------------------------------
    def count(self, offset: int) -> int:
        """`swap_count()`: references from page tables, without the cache bit."""
        return self.swap_map[offset] & ~SWAP_HAS_CACHE

    def has_cache(self, offset: int) -> bool:
        return bool(self.swap_map[offset] & SWAP_HAS_CACHE)

    def nr_swap_pages(self) -> int:
        """`get_nr_swap_pages()`: free slots (the header and slots pinned in the slot caches
        are not free)."""
        return len(self.swap_map) - 1 - self.inuse

    def in_slot_caches(self, offset: int) -> bool:
        """Is the slot waiting in 6.12's per-CPU slot cache or its return list (pinned by
        SWAP_HAS_CACHE without a swap-cache folio)?"""
        return offset in self.slots_cache or offset in self.slots_ret

    def inuse_pages(self) -> int:
        """`si->inuse_pages`: slots allocated (the header slot not counted)."""
        return self.inuse

    @property
    def allocated(self) -> set[int]:
        """Offsets with swap_map != 0, the header excluded (for checks and snapshots; do not
        modify the set returned)."""
        if self._allocated is not None:
            return self._allocated
        return set(compress(range(1, len(self.swap_map)), self.swap_map[1:]))

    def take_slot(self, offset: int, value: int) -> None:
        """A free slot becomes allocated with swap_map byte `value`."""
        self.take_slots(offset, 1, value)

    def take_slots(self, offset: int, nr: int, value: int) -> None:
        """nr free slots from offset (inside one cluster, as a folio's are) become allocated."""
        self._own_allocator()
        ci = offset // SWAPFILE_CLUSTER
        assert (offset + nr - 1) // SWAPFILE_CLUSTER == ci
        if nr == 1:            # (6.12's slot cache takes 64 at a time, one by one)
            self.swap_map[offset] = value
            self.written.add(offset)
            if self._allocated is not None:
                self._allocated.add(offset)
        else:
            self.swap_map[offset:offset + nr] = array("q", [value]) * nr
            self.written.update(range(offset, offset + nr))
            if self._allocated is not None:
                self._allocated.update(range(offset, offset + nr))
        self.cluster_used[ci] += nr
        self.inuse += nr
        if offset == self.cluster_next[ci]:
            self.cluster_next[ci] = offset + nr    # still: every slot below it is in use
        self._update_room(ci)

    def release_slot(self, offset: int) -> None:
        """An allocated slot becomes free (swap_map byte 0)."""
        self.release_slots(offset, 1)

    def release_slots(self, offset: int, nr: int) -> None:
        """nr allocated slots from offset become free, with one count update per cluster."""
        self._own_allocator()
        if nr == 1:
            self.swap_map[offset] = 0
        else:
            self.swap_map[offset:offset + nr] = array("q", bytes(8 * nr))
        self.written.update(range(offset, offset + nr))
        self.inuse -= nr
        if self._allocated is not None:
            self._allocated.difference_update(range(offset, offset + nr))
        end = offset + nr
        for ci in range(offset // SWAPFILE_CLUSTER, (end - 1) // SWAPFILE_CLUSTER + 1):
            lo = max(offset, ci * SWAPFILE_CLUSTER)
            hi = min(end, (ci + 1) * SWAPFILE_CLUSTER)
            self.cluster_used[ci] -= hi - lo
            self._update_room(ci)
            if lo < self.cluster_next[ci]:
                self.cluster_next[ci] = lo

    def _update_room(self, ci: int) -> None:
        order = self.cluster_order[ci]
        if order is None:
            return
        room = self.room.setdefault(order, set())
        size = SWAPFILE_CLUSTER if ci < self.nclusters - 1 \
            or not len(self.swap_map) % SWAPFILE_CLUSTER else len(self.cluster_range(ci))
        if self.cluster_used[ci] + (1 << order) <= size:
            room.add(ci)
        else:
            room.discard(ci)

    def vm_swap_full(self) -> bool:
        """`vm_swap_full()` (include/linux/swap.h): less than half of the swap space free."""
        total = len(self.swap_map) - 1
        return (total - self.inuse) * 2 < total      # inuse: `inuse_pages()`

    # -- slot placement (mm/swapfile.c cluster allocator; 6.12 or 7.2, semantics §11) --
    def cluster_range(self, ci: int) -> range:
        start = ci * SWAPFILE_CLUSTER
        return range(start, min(start + SWAPFILE_CLUSTER, len(self.swap_map)))

    def cluster_is_full_size(self, ci: int) -> bool:
        return len(self.cluster_range(ci)) == SWAPFILE_CLUSTER

    def cluster_free(self, ci: int) -> bool:
        return self.cluster_used[ci] == 0

    def find_slots(self, nr: int, reclaim=None) -> int | None:
        """First offset of nr free, naturally aligned slots, as `cluster_alloc_swap_entry`
        would choose them, or None. A large folio only gets slots inside one full-size
        cluster; never on a rotational disk on 6.12 (`large_slots`). First the cluster of
        this order's `next` offset, from there up (`_scan_from_next`: freed slots below it
        wait); else a new cluster, in the order `config.kernel` tries them (6.12: a free
        cluster before partly used ones of the order, 7.2 the reverse; docs/model.md, "Kernel
        versions"); else, for order 0, any free slot (the frag list).

        `reclaim(offset, nr)` (swapfile.py `cluster_reclaim_range`): while swap is more than
        half full (`vm_swap_full`), a run whose slots are free or SWAP_HAS_CACHE only is a
        candidate too, as `cluster_scan_range` takes it: the cache-only slots are reclaimed
        and the run is taken if it is all free afterwards (`_reclaimed`). Without it, or
        with swap at most half full, only free runs count."""
        if nr > 1 and not self.large_slots:
            return None
        self._own_allocator()
        order = nr.bit_length() - 1
        if reclaim is not None and not self.vm_swap_full():
            reclaim = None
        found = self._scan_from_next(nr, order, reclaim) if self.uses_next else None
        if found is None:
            if self.free_first and self.uses_next:
                found = self._find_free_then_nonfull(nr, reclaim)
            else:
                found = self._find_in_clusters(nr, nr > 1, reclaim)
        if found is None and nr == 1:
            found = next((o for o in range(1, len(self.swap_map)) if self.swap_map[o] == 0), None)
        if found is not None and reclaim is not None:
            self._claim_cluster(found // SWAPFILE_CLUSTER, order)
        if self.uses_next:
            # alloc_swap_scan_cluster leaves `next` after the slots it took, unset at the
            # cluster's end
            if found is None or (found + nr) % SWAPFILE_CLUSTER == 0:
                self.next_off.pop(order, None)
            else:
                self.next_off[order] = found + nr
        return found

    def _scan_from_next(self, nr: int, order: int, reclaim=None) -> int | None:
        """`alloc_swap_scan_cluster` from this order's `next` offset to the end of its
        cluster. A cluster freed since (every slot released) is scanned on from `next` by 6.12,
        which does not look at the cluster's state (fuzz-13-0219: slots 517 and up after
        512-516 were freed), and left by 7.2, where it went to the tail of the free list
        (seen on 7.2 / zram: a 64 KiB folio swapped out, in and out again took slots 512-527,
        then 1024-1039; test_kernel_versions.py LARGE_AGAIN). A cluster serving another order
        by now is left (6.12 would scan it too: not modelled)."""
        nxt = self.next_off.get(order, -1)
        if nxt < 0:
            return None
        ci = nxt // SWAPFILE_CLUSTER
        co = self.cluster_order[ci]
        if co is None and not self.free_first:
            return None
        elif co is not None and co != order:
            return None
        swap_map = self.swap_map
        stop = min((ci + 1) * SWAPFILE_CLUSTER, len(swap_map))      # cluster_range(ci).stop
        size = stop - ci * SWAPFILE_CLUSTER
        if (nr > 1 and size != SWAPFILE_CLUSTER) or self.cluster_used[ci] + nr > size:
            return None
        if nr == 1 and reclaim is None:
            # the first free slot from `next` on: the loop below, as one C-level search
            # (the slot cache's refill runs this 64 times in a row)
            try:
                off = swap_map.index(0, nxt, stop)
            except ValueError:
                return None
            return self._took_from(ci, co, order, off)
        for off in range(nxt, stop - nr + 1, nr):
            if swap_map[off:off + nr].count(0) == nr or (
                    reclaim is not None and self._reclaimed(off, nr, reclaim)):
                return self._took_from(ci, co, order, off)
        return None

    def _took_from(self, ci: int, co: int | None, order: int, off: int) -> int:
        """`_scan_from_next` found `off` in cluster ci (of order co): a free cluster comes off
        the free list (`cluster_alloc_range`)."""
        if co is None:
            self.cluster_order[ci] = order
            self._update_room(ci)
        return off

    def _find_free_then_nonfull(self, nr: int, reclaim=None) -> int | None:
        """6.12's `cluster_alloc_swap_entry` once `next` gave nothing: a free cluster, and
        only then the partly used clusters of the order (cluster 0, with the header, is an
        order-0 one from `setup_clusters`). So the first order-0 pages go to slot 512 and
        up, not slot 1. (7.2 tries the partly used clusters first: `_find_in_clusters`.)
        A short last cluster is not on the free list: `setup_clusters` counts the slots past
        the device's end as in use, so it is a partly used order-0 cluster after cluster 0
        (641 slots: the first order-0 pages at slot 1; `_find_in_clusters` reaches it)."""
        ci = self._first_free_cluster()
        if ci is not None:
            self.cluster_order[ci] = nr.bit_length() - 1
            self._update_room(ci)
            return ci * SWAPFILE_CLUSTER
        return self._find_in_clusters(nr, nr > 1, reclaim)

    def _find_in_clusters(self, nr: int, full_size_only: bool, reclaim=None) -> int | None:
        """Partly used clusters already serving this order, lowest index first, then the
        first free one (`free_list`). `room` only narrows the candidates; the choice is the
        one a scan of every cluster in index order would make."""
        order = nr.bit_length() - 1
        swap_map = self.swap_map
        room = self.room.get(order, ())
        # (a list: a reclaim during the scan may change `room`)
        for ci in (list(room) if len(room) < 2 else sorted(room)):
            stop = min((ci + 1) * SWAPFILE_CLUSTER, len(swap_map))
            if full_size_only and stop - ci * SWAPFILE_CLUSTER != SWAPFILE_CLUSTER:
                continue
            first = self.cluster_next[ci]
            while first < stop and swap_map[first]:
                first += 1                         # every slot below `first` is in use
            self.cluster_next[ci] = first
            if reclaim is not None \
                    and swap_map[ci * SWAPFILE_CLUSTER:first].count(SWAP_HAS_CACHE):
                # some slot in use below `first` is cache-only: the kernel's scan of a
                # nonfull cluster starts at the cluster's first slot
                first = ci * SWAPFILE_CLUSTER
            start = -(-first // nr) * nr           # aligned runs wholly at or above it
            for off in range(start, stop - nr + 1, nr):
                if swap_map[off:off + nr].count(0) == nr or (
                        reclaim is not None and self._reclaimed(off, nr, reclaim)):
                    return off
        ci = self._first_free_cluster()
        if ci is None:
            ci = self._short_last_cluster(nr)      # the short last cluster comes last
        if ci is None:
            return None
        self.cluster_order[ci] = order
        self._update_room(ci)
        return ci * SWAPFILE_CLUSTER

    def _reclaimed(self, off: int, nr: int, reclaim) -> bool:
        """The rest of `cluster_scan_range()` for a run not all free: its slots free or
        SWAP_HAS_CACHE only while swap is more than half full, then `cluster_reclaim_range()`
        (`reclaim`): are the nr slots from off free now?"""
        run = self.swap_map[off:off + nr]
        if run.count(0) + run.count(SWAP_HAS_CACHE) != nr or not self.vm_swap_full():
            return False
        return reclaim(off, nr)

    def _claim_cluster(self, ci: int, order: int) -> None:
        """A reclaim that emptied the cluster it scanned put it back on the free list; the
        slots taken there make it the order's again (`cluster_alloc_range`)."""
        if self.cluster_order[ci] is None:
            self.cluster_order[ci] = order
            self._update_room(ci)

    def _free_entry_valid(self, entry: tuple[int, int]) -> bool:
        ci, gen = entry
        return gen == self.free_gen[ci] and self.cluster_order[ci] is None

    def _first_free_cluster(self) -> int | None:
        """The head of the kernel's `free_clusters` list (fuzz-13-0093, 6.12: a cluster freed
        by swap-ins goes behind the never-used ones, so an order-3 folio got cluster 2 where
        the lowest free cluster was 1)."""
        free = self.free_list
        while free and not self._free_entry_valid(free[0]):
            free.popleft()                         # stale: taken or freed again since
        return free[0][0] if free else None

    def _short_last_cluster(self, nr: int) -> int | None:
        """The short last cluster, unused, for order 0 once no full-size one is free."""
        last = self.nclusters - 1
        if self.last_partial and nr == 1 \
                and self.cluster_free(last) and self.cluster_order[last] is None:
            return last
        return None

    def release_cluster_if_free(self, offset: int) -> None:
        """A cluster whose slots are all free again goes back to the free list."""
        ci = offset // SWAPFILE_CLUSTER
        if ci != 0 and self.cluster_free(ci) and self.cluster_order[ci] is not None:
            self._own_allocator()
            self.room.get(self.cluster_order[ci], set()).discard(ci)
            self.cluster_order[ci] = None
            if not (self.last_partial and ci == self.nclusters - 1):
                self.free_gen[ci] += 1
                self.free_list.append((ci, self.free_gen[ci]))

    def drop_next(self, order: int) -> None:
        """Unset this order's `next` offset (SWAP_NEXT_INVALID)."""
        self._own_allocator()
        self.next_off.pop(order, None)

    # The slot allocator's containers: written only by the methods above that call
    # `_own_allocator` first (take_slots, release_slots, find_slots and what it calls,
    # release_cluster_if_free, drop_next).
    ALLOCATOR = ("cluster_order", "cluster_used", "room", "free_list", "free_gen",
                 "cluster_next", "next_off", "_allocated")

    def _own_allocator(self) -> None:
        """Copy the allocator's containers if a clone shares them (copy on write)."""
        if self._alloc_shared:
            self.cluster_order = list(self.cluster_order)
            self.cluster_used = list(self.cluster_used)
            self.room = {order: set(cis) for order, cis in self.room.items()}
            self.free_list = deque(self.free_list)
            self.free_gen = list(self.free_gen)
            self.cluster_next = list(self.cluster_next)
            self.next_off = dict(self.next_off)
            if self._allocated is not None:
                self._allocated = set(self._allocated)
            self._alloc_shared = False

    _CLONED = frozenset(("device", "synchronous", "rotational", "large_slots", "active",
                         "swap_map", "nclusters", "cluster_order", "cluster_used", "inuse", "_allocated", "cache", "contents",
                         "zeromap", "written_tags", "written", "last_partial", "room", "free_list", "free_gen",
                         "cluster_next",
                         "free_first", "uses_next", "next_off", "has_slots_cache",
                         "slots_cache_enabled", "slots_cache_active", "slots_cache", "slots_ret",
                         "_alloc_shared"))

    def clone(self) -> "SwapInfo":
        """An independent copy (for `Machine.clone`, which points the copy's cache at the copy
        machine)."""
        new = SwapInfo.__new__(SwapInfo)
        new.__dict__.update(self.__dict__)
        new.swap_map = array("q", self.swap_map)
        new._alloc_shared = self._alloc_shared = True     # ALLOCATOR: copied on write
        new.written = set(self.written)
        new.cache = self.cache.copy(new.written)
        new.contents = self.contents.copy()
        new.zeromap = set(self.zeromap)
        new.written_tags = self.written_tags.copy(new.written)
        return new

    def snapshot(self) -> SwapSnapshot:
        # (Empty tables, most of an explorer's states, skip their comprehensions.)
        used = sorted(self.allocated)                                   # in offset order
        used = tuple(zip(used, map(self.swap_map.__getitem__, used))) if used else ()
        # The allocator's state beside each cluster's order, as it decides later placement:
        # the per-order `next` offsets ((order, offset) pairs in order), the free list, and
        # 6.12's slot cache (active or not, its batch and return list).
        # None (no order) is -1: hash(None) differs between processes.
        nxt, orders = self.next_off, self.cluster_order
        placement = (tuple([o if o is not None else -1 for o in orders]),
                     tuple([x for item in sorted(nxt.items()) for x in item]) if nxt else (),
                     tuple([ci for ci, _ in filter(self._free_entry_valid, self.free_list)]),
                     (int(self.slots_cache_active), self.slots_cache, self.slots_ret))
        wt = self.written_tags
        return swap_snapshot((self.active, used, placement,
                              tuple(self.contents.items()) if self.contents.n else (),
                              tuple(sorted(self.zeromap)) if self.zeromap else (),
                              tuple([(o, -1 if t is None else t) for o, t in wt.items()])
                              if wt.n else ()))
