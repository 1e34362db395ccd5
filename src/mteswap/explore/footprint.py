"""Footprints of sequential steps, for sleep sets over the sequential alphabet (bfs.py;
docs/checking.md "Independence (sleep sets) over the sequential alphabet").

A footprint of an action run from state s is `(touched, written)`: two frozensets of cells,
`written` the cells the step changed (measured: the raw, unrenamed snapshots of s and of the
child compared), `touched` those plus the cells it may read (declared from s, conservatively).
`GLOBAL` (None) is dependent with everything. Two actions are independent at s when neither
writes a cell the other touches (`independent`).

Cells are ints, `kind << 48 | ...`, so that sleep sets pickle small and hash the same in every
process:

  P(pid)         the process: alive, its VMA list, its name-table entries
  TALL(pid)      every PTE of the process (written whenever one of its PTEs is)
  T(pid, vpn)    one PTE
  VALL(pid)      the program's whole view of the process (written whenever one entry is)
  V(pid, vpn)    one entry of the program's view (pointer tags, value, tag generation)
  F(pfn)         a frame: tags, data, flags, rmap, tag generation
  FOLIO(head)    the folio record headed at head (size, swap cache and entry, dirty,
                 partially mapped, the design's state); a split or a free writes the old
                 head's, an allocation the new one's
  S(off)         a swap slot: swap_map count, contents, zeromap bit, written tags, saved tags
  FALLOC         the frame allocator: which frames are free (lowest free first: observable)
  SALLOC         the slot allocator: which slots are used, cluster orders, per-order next,
                 free list, slot cache, SWP_WRITEOK
  TAGS           the tag-buffer allocation count (fault injection)

Writes mark the fine cell and its process-wide aggregate (a PTE write marks T and TALL), so a
coarse reader (TALL) conflicts with every PTE write of the process and a fine reader (T) only
with writes of its own PTEs. `touched` holds the reads and the fine writes, not the
aggregates written: two writers of different PTEs of one process do not conflict through
TALL (each conflicts with the other's fine cells, if it reads or writes them).

Reads, declared from s (the raw snapshot before the step):

* fork, exit, evict, swapoff, drop_caches, parallel blocks: GLOBAL;
* mmap of P: P(P) (the name table, the VMA list; it touches no page);
* read, write, stg of P that took no fault (the `faults` counter did not move) and wrote no
  allocator cell: P(P), and for each page named: its PTE, its view entry, the frame mapped
  there and that frame's folio record (the span walk reads the folio's order). A user
  access that does not trap runs no kernel code: it reads its PTEs and frames (and sets the
  folio dirty, a write, measured) and nothing else;
* pageout, reclaim, split, dontneed, mprotect that wrote nothing and had nothing to do, as
  the state before them shows (`NOTHING_TO_DO`: no page of the range mapped; no large folio
  in the range; no PTE in the range; every VMA already VM_MTE): the VMAs, the PTEs named
  (and for split, the records of the folios they map; for dontneed, the view entries);
* everything else (faulting accesses, pageout, reclaim, dontneed, munmap, mprotect, split):
  the *closure* of P — P(P), TALL(P), VALL(P), the three allocators, every frame of every folio
  P maps, every slot P's swap PTEs name — plus the whole swap domain (every used slot, every
  swap-cache folio's frames: slot allocation reclaims other slots' cache folios, a large
  swap-in checks a neighbouring range of slots) and every free frame (an allocation meets
  its leftover tags); closed under folio (all frames), swap cache (the folio of a slot, the
  slots of a cached folio), and for every frame and slot reached, P(Q) and TALL(Q) of every
  process Q that maps or names it (rmap and swap-PTE walks).
"""

from __future__ import annotations

from mteswap.model.pte import is_swap_pte, pte_to_swp_entry, vm_normal_pfn
from mteswap.model.state import FOLIO_SWAPCACHE, NO_RMAP
from mteswap.model.swapinfo import swp_offset
from mteswap.scenario.load import ALL

GLOBAL = None
_K = 48
P, TALL, T, VALL, V, F, S = (k << _K for k in range(1, 8))
FALLOC, SALLOC, TAGS, FOLIO = (k << _K for k in range(8, 12))
ALLOCATORS = frozenset((FALLOC, SALLOC, TAGS))
_AGGREGATE_KINDS = (TALL >> _K, VALL >> _K)
GLOBAL_OPS = frozenset(("fork", "exit", "evict", "swapoff", "drop_caches", "parallel"))
ACCESS_OPS = frozenset(("read", "write", "stg"))


def cell_name(c: int) -> str:
    """A cell as text, for test messages."""
    kind, rest = c >> _K, c & ((1 << _K) - 1)
    names = {1: "P", 2: "TALL", 3: "T", 4: "VALL", 5: "V", 6: "F", 7: "S", 8: "FALLOC",
             9: "SALLOC", 10: "TAGS", 11: "FOLIO"}
    if kind in (3, 5):
        return f"{names[kind]}({rest >> 32}, {rest & 0xFFFFFFFF})"
    return names[kind] if kind in (8, 9, 10) else f"{names[kind]}({rest})"


def independent(fa, fb) -> bool:
    """Neither writes a cell the other reads or writes (`touched` holds the fine writes)."""
    return (fa is not None and fb is not None
            and fa[1].isdisjoint(fb[0]) and fb[1].isdisjoint(fa[0]))


# -- writes: the raw snapshots compared ---------------------------------------------------------

def _dict_diff(a: dict, b: dict):
    return [k for k in a.keys() | b.keys() if a.get(k) != b.get(k)]


def _covered(folios) -> set:
    return {pfn for rec in folios for pfn in range(rec[0], rec[0] + rec[1])}


def _view_map(pages, gens) -> dict:
    return {vpn: (tv, g) for (vpn, tv), g in zip(pages, gens)}


def _frames_differing(a, b) -> set:
    """The pfns whose tags, data, flags or reverse map differ between two frame snapshots
    (model/snapshot.py: columns by pfn, the reverse map as its first-key column and the later
    keys of frames mapped more than once)."""
    out = set()
    for x, y in zip(a[:3], b[:3]):
        if x != y:
            out.update(pfn for pfn, (u, v) in enumerate(zip(x, y)) if u != v)
    (ra, ea), (rb, eb) = a[3], b[3]
    if ra != rb:
        out.update(pfn for pfn, (u, v) in enumerate(zip(ra, rb)) if u != v)
    if ea != eb:
        out.update(pfn for pfn, _ in set(ea) ^ set(eb))
    return out


def _rmap_keys(frames):
    """(pfn, rmap key) of every mapping in a frame snapshot (key: pid << 32 | vpn)."""
    first, extra = frames[3]
    for pfn, r in enumerate(first):
        if r != NO_RMAP:
            yield pfn, r + pfn
    for pfn, keys in extra:
        for key in keys:
            yield pfn, key


def written_cells(ps, cs) -> set:
    """The cells whose value differs between raw runner snapshots `ps` (before) and `cs`."""
    w: set = set()
    pm, cm = ps.machine, cs.machine
    if pm.frames != cm.frames:
        w.update(F | pfn for pfn in _frames_differing(pm.frames, cm.frames))
    if pm.tag_gens[0] != cm.tag_gens[0]:
        w.update(F | pfn for pfn, (x, y) in enumerate(zip(pm.tag_gens[0], cm.tag_gens[0]))
                 if x != y)
    if pm.folios != cm.folios:
        w.update(FOLIO | rec[0] for rec in set(pm.folios) ^ set(cm.folios))
        if _covered(pm.folios) != _covered(cm.folios):
            w.add(FALLOC)
    if pm.mms != cm.mms:
        for pid in range(max(len(pm.mms), len(cm.mms))):
            x = pm.mms[pid] if pid < len(pm.mms) else (None, None, ())
            y = cm.mms[pid] if pid < len(cm.mms) else (None, None, ())
            if x[:2] != y[:2]:
                w.add(P | pid)
            if x[2] != y[2]:
                w.add(TALL | pid)
                w.update(T | pid << 32 | vpn for vpn in _dict_diff(dict(x[2]), dict(y[2])))
    if ps.view != cs.view:
        old = {pid: _view_map(pages, gens) for pid, pages, gens in ps.view}
        new = {pid: _view_map(pages, gens) for pid, pages, gens in cs.view}
        for pid in old.keys() | new.keys():
            diff = _dict_diff(old.get(pid, {}), new.get(pid, {}))
            if diff or (pid in old) != (pid in new):
                w.add(VALL | pid)
                w.update(V | pid << 32 | vpn for vpn in diff)
    if ps.names != cs.names:
        w.update(P | e[0] for e in set(ps.names) ^ set(cs.names))
    _swap_writes(pm.swap, cm.swap, w)
    if pm.mte_pages != cm.mte_pages or pm.tag_gens[1] != cm.tag_gens[1]:
        old = {e: (t, g) for (e, t), g in zip(pm.mte_pages, pm.tag_gens[1])}
        new = {e: (t, g) for (e, t), g in zip(cm.mte_pages, cm.tag_gens[1])}
        w.update(S | swp_offset(e) for e in _dict_diff(old, new))
    if pm.tag_allocs != cm.tag_allocs:
        w.add(TAGS)
    return w


def _swap_writes(ps, cs, w: set) -> None:
    if ps.active != cs.active or ps.cluster_order != cs.cluster_order:
        w.add(SALLOC)
    if ps.used != cs.used:
        old, new = dict(ps.used), dict(cs.used)
        w.update(S | off for off in _dict_diff(old, new))
        if old.keys() != new.keys():
            w.add(SALLOC)
    if ps.contents != cs.contents:
        w.update(S | off for off in _dict_diff(dict(ps.contents), dict(cs.contents)))
    if ps.zeromap != cs.zeromap:
        w.update(S | off for off in set(ps.zeromap) ^ set(cs.zeromap))
    if ps.written_tags != cs.written_tags:
        w.update(S | off for off in _dict_diff(dict(ps.written_tags), dict(cs.written_tags)))


# -- reads: declared from the state before the step ---------------------------------------------

class Parent:
    """The footprints of the actions run from one state: built before the first of them runs
    (the raw snapshot, the fault count, the name tables), then `measure` per child."""

    def __init__(self, runner):
        self.snap = runner.snapshot()
        self.faults = runner.counters.get("faults", 0)
        self.pids = dict(runner.pids)
        self.vmas = dict(runner.vmas)
        self._index = None
        self._full: dict = {}

    def measure(self, step, child):
        """The footprint of `step` (run from this state) given `child`, the state after it."""
        op = step.op
        if op in GLOBAL_OPS:
            return GLOBAL
        w = written_cells(self.snap, child.snapshot())
        pid = self.pids[step.args["proc"]]
        reads = None
        if op == "mmap":
            reads = (P | pid,)
        elif (op in ACCESS_OPS and child.counters.get("faults", 0) == self.faults
              and ALLOCATORS.isdisjoint(w)):
            reads = self._access_reads(pid, step)
        elif not w and op in NOTHING_TO_DO:
            reads = NOTHING_TO_DO[op](self, pid, step)
        if reads is None:
            reads = self.full_reads(pid)
        written = frozenset(w)
        # A write's aggregates (TALL, VALL) are for coarse readers: two writers of different
        # PTEs of one process do not conflict through them.
        fine = [c for c in w if c >> _K not in _AGGREGATE_KINDS]
        return frozenset(reads).union(fine), written

    def _vpns(self, pid: int, step) -> list[int]:
        start, n = self.vmas[(pid, step.args["vma"])]
        pages = step.args["pages"]
        return [start + i for i in (range(n) if pages == ALL else pages)]

    def _access_reads(self, pid: int, step) -> set:
        ptes = self._ptes(pid)
        folio_of = self.index()[0]
        reads = {P | pid}
        for vpn in self._vpns(pid, step):
            reads.add(T | pid << 32 | vpn)
            reads.add(V | pid << 32 | vpn)
            pfn = vm_normal_pfn(ptes.get(vpn, 0), vpn)
            if pfn is not None:
                reads.add(F | pfn)
                reads.add(FOLIO | folio_of.get(pfn, (pfn, 1))[0])
        return reads

    def _ptes(self, pid: int) -> dict:
        return dict(self.snap.machine.mms[pid][2])

    def _no_pages(self, pid: int, step):
        """pageout, reclaim: no page named is mapped (none, swap or the zero page): the range
        walk (`_mapped_folios`, `_pageout_run`) finds no folio and `shrink_folio_list` gets
        an empty list. They read the VMAs and those PTEs only."""
        ptes, vpns = self._ptes(pid), self._vpns(pid, step)
        if any(vm_normal_pfn(ptes.get(v, 0), v) is not None for v in vpns):
            return None
        return {P | pid} | {T | pid << 32 | v for v in vpns}

    def _no_large(self, pid: int, step):
        """split: no large folio is mapped from the first page named to the last, so
        `split_huge_pages_pid` splits nothing: it reads the VMAs, those PTEs and the
        records of the folios they map (their size)."""
        ptes, vpns = self._ptes(pid), self._vpns(pid, step)
        folio_of = self.index()[0]
        reads = {P | pid}
        for v in range(min(vpns), max(vpns) + 1):
            reads.add(T | pid << 32 | v)
            pfn = vm_normal_pfn(ptes.get(v, 0), v)
            if pfn is not None:
                head, nr = folio_of.get(pfn, (pfn, 1))
                if nr > 1:
                    return None
                reads.add(FOLIO | head)
        return reads

    def _no_ptes(self, pid: int, step):
        """dontneed: every PTE named is none, so `zap_pte_range` unmaps nothing; the
        program's view of those pages is forgotten (a write, measured: none here)."""
        ptes, vpns = self._ptes(pid), self._vpns(pid, step)
        if any(ptes.get(v, 0) for v in vpns):
            return None
        return {P | pid} | {T | pid << 32 | v for v in vpns} | {V | pid << 32 | v for v in vpns}

    def _vma_flags_only(self, pid: int, step):
        """mprotect(PROT_MTE) that changed nothing: every VMA of the range already had
        VM_MTE (otherwise its flags, in P, would have changed), so `mprotect_fixup` did
        nothing; it read the VMA list."""
        return {P | pid}

    def index(self):
        """(pfn -> (head, nr) of its folio; slot -> head of its swap-cache folio; pfn -> pids
        mapping it (PTEs and rmap); slot -> pids naming it; the swap domain's slots; the
        swap-cache folios' frames; the free frames), built once per state."""
        if self._index is None:
            self._index = _index(self.snap.machine)
        return self._index

    def full_reads(self, pid: int) -> frozenset:
        got = self._full.get(pid)
        if got is None:
            got = self._full[pid] = self._closure(pid)
        return got

    def _closure(self, pid: int) -> frozenset:
        folio_of, cache_of, mappers, namers, domain_slots, cached, free = self.index()
        frames, slots = set(cached) | free, set(domain_slots)
        for vpn, e in self.snap.machine.mms[pid][2]:
            pfn = vm_normal_pfn(e, vpn)
            if pfn is not None:
                frames.add(pfn)
            elif is_swap_pte(e):
                slots.add(swp_offset(pte_to_swp_entry(e, vpn)))
        todo_f, todo_s = list(frames), list(slots)
        while todo_f or todo_s:
            while todo_f:
                head, nr = folio_of.get(todo_f.pop(), (None, 0))
                if head is None:
                    continue
                for f in range(head, head + nr):
                    if f not in frames:
                        frames.add(f)
                        todo_f.append(f)
                for off in cache_of.get(("folio", head), ()):
                    if off not in slots:
                        slots.add(off)
                        todo_s.append(off)
            while todo_s:
                head = cache_of.get(todo_s.pop())
                if head is not None and head not in frames:
                    frames.add(head)
                    todo_f.append(head)
        procs = {pid}
        for f in frames:
            procs.update(mappers.get(f, ()))
        for off in slots:
            procs.update(namers.get(off, ()))
        reads = {FALLOC, SALLOC, TAGS, VALL | pid}
        reads.update(F | f for f in frames)
        reads.update(FOLIO | folio_of[f][0] for f in frames if f in folio_of)
        reads.update(S | off for off in slots)
        for q in procs:
            reads.add(P | q)
            reads.add(TALL | q)
        return frozenset(reads)


# Steps that wrote nothing and, from what the state before them shows, had nothing to do:
# what they read instead of the closure (None: the condition does not hold, use the closure).
NOTHING_TO_DO = {"pageout": Parent._no_pages, "reclaim": Parent._no_pages,
                 "split": Parent._no_large, "dontneed": Parent._no_ptes,
                 "mprotect": Parent._vma_flags_only}


def _index(m) -> tuple:
    folio_of: dict = {}
    cache_of: dict = {}
    cached: set = set()
    covered: set = set()
    for rec in m.folios:
        head, nr, swapcache, swap = rec[0], rec[1], rec[2] & FOLIO_SWAPCACHE, rec[3]
        for f in range(head, head + nr):
            folio_of[f] = (head, nr)
            covered.add(f)
        if swapcache:
            off0 = swp_offset(swap)
            offs = range(off0, off0 + nr)
            cache_of[("folio", head)] = offs
            for off in offs:
                cache_of[off] = head
            cached.update(range(head, head + nr))
    mappers: dict = {}
    namers: dict = {}
    for pid, (_, _, ptes) in enumerate(m.mms):
        for vpn, e in ptes:
            pfn = vm_normal_pfn(e, vpn)
            if pfn is not None:
                mappers.setdefault(pfn, set()).add(pid)
            elif is_swap_pte(e):
                namers.setdefault(swp_offset(pte_to_swp_entry(e, vpn)), set()).add(pid)
    for pfn, key in _rmap_keys(m.frames):          # rmap keys: pid << 32 | vpn
        mappers.setdefault(pfn, set()).add(key >> 32)
    sw = m.swap
    domain = {off for off, _ in sw.used} | {off for off, _ in sw.contents} | set(sw.zeromap) \
        | {off for off, _ in sw.written_tags} | {swp_offset(e) for e, _ in m.mte_pages} \
        | {k for k in cache_of if isinstance(k, int)}
    free = set(range(len(m.frames[0]))) - covered
    return folio_of, cache_of, mappers, namers, domain, cached, free


# -- sleep sets ---------------------------------------------------------------------------------
# A sleep set is a tuple of (action, touched, written), in action order.

def child_sleep(fp, candidates) -> tuple:
    """The sleep set of the child reached by an action of footprint `fp`: the candidates
    (the parent's sleep set, and the actions explored from the parent before this one) that
    are independent of it."""
    if fp is None:
        return ()
    # A candidate run as a GLOBAL step carries (None, None): asleep nowhere.
    out = [c for c in candidates if c[1] is not None and independent(fp, c[1:])]
    out.sort(key=_first)
    return tuple(out)


def _first(c):
    return c[0]


def intersect(za: tuple, zb: tuple) -> tuple:
    """The sleep set of a state reached twice at the same depth: the actions asleep on both
    arrivals, each with the union of its two footprints (both are sound; the union is too)."""
    if not za or not zb:
        return ()
    other = {c[0]: c for c in zb}
    out = []
    for a, t, w in za:
        c = other.get(a)
        if c is not None:
            out.append((a, t | c[1], w | c[2]) if (t, w) != (c[1], c[2]) else (a, t, w))
    return tuple(out)
