"""Kernel threads for `parallel` blocks: Python threads passing one baton (docs/concurrency.md).

Each lane of a block runs the same model functions as a sequential step, in its own
`threading.Thread`; exactly one thread runs at a time. The model marks the boundary of each
atomic step (one critical section, or one lockless shared access: the race catalogue §1.2) with
`point(m, name)`: the thread parks there and the scheduler picks which thread runs next.
Without a scheduler (`m.sched is None`: every sequential run, the explorer, the cost model) the
callers test the attribute and skip the call, so nothing changes there.

Locks the kernel holds across two steps live in the scheduler's lock table: a thread whose
next step takes a lock another thread holds is not enabled (the PTL of an mm, a folio lock).
A thread that waits for a condition (`wait_until`: e.g. SWAP_HAS_CACHE of a slot clearing,
after `swapcache_prepare` lost) is not enabled until the condition holds: the refault loop of
the kernel becomes one blocked step, never a busy loop. No thread enabled while some are not
done is a deadlock.

Standard library only; the model never imports the explorer.
"""

from __future__ import annotations

import threading
from typing import Callable


class Abandon(BaseException):
    """Raised in a parked thread to unwind it when an interleaving stops early. A
    BaseException, so that no `except Exception` in the model catches it."""


class UseAfterFree(BaseException):
    """A thread read an object another thread had freed: stops the interleaving (what the
    model would do next reads memory that no longer exists)."""

    def __init__(self, obj: str, freer: str, reader: str, lane: int):
        self.obj, self.freer, self.reader, self.lane = obj, freer, reader, lane
        super().__init__(f"{obj} freed by {freer}, then read by {reader}")


class Deadlock(Exception):
    """No thread is enabled and not all are done."""

    def __init__(self, waiting: list[tuple[int, str]]):
        self.waiting = waiting
        super().__init__("; ".join(f"CPU{i} waits at {name}" for i, name in waiting))


def _baton() -> "threading.Lock":
    """A binary semaphore: a raw lock taken at birth; `release` hands the baton over,
    `acquire` waits for it. One C call each way (threading.Semaphore is a Condition in
    Python, which allocates a lock per wait): a block's interleaving hands the baton over
    at every atomic step, so this is most of what an interleaving costs."""
    b = threading.Lock()
    b.acquire()
    return b


class _Lane:
    """One kernel thread of a block: runs `body` between batons, on a pooled worker."""

    def __init__(self, sched: "Scheduler", index: int, body: Callable[[], None], name: str):
        self.sched, self.index, self.body = sched, index, body
        self.go = _baton()
        self.next = name              # the name of the step it runs when resumed
        self.lock: object = None      # the lock that step takes (must be free)
        self.wait: Callable[[], bool] | None = None   # ... or the condition it waits for
        self.done = False
        self.error: BaseException | None = None
        # The thread restores tags after dropping its own reference to the slots (a
        # reverted 6dca4ac6fc91): the buffers it looks up may be freed before it copies them.
        self.unpinned = False

    def run(self, worker: "_Worker") -> None:
        self.go.acquire()
        try:
            if not self.sched.abandoned:
                self.body()
        except Abandon:
            pass
        except BaseException as err:       # handed to the scheduler's thread, re-raised there
            self.error = err
        finally:
            self.done = True
            _POOL.give_back(worker)        # idle again before the scheduler goes on
            self.sched.parked.release()


class _Worker(threading.Thread):
    """An OS thread that runs lanes one after another. Exploring a block runs thousands of
    interleavings of two or three lanes each: starting a thread per lane cost more than the
    lane's steps, so threads are kept and handed the next lane."""

    def __init__(self, number: int):
        super().__init__(daemon=True, name=f"mteswap-cpu-worker{number}")
        self.job = _baton()
        self.lane: _Lane | None = None

    def run(self) -> None:
        while True:
            self.job.acquire()
            lane, self.lane = self.lane, None
            lane.run(self)


class _Pool:
    """The idle workers (a lock guards the list: explorers in several threads may run
    blocks at once, each with its own scheduler)."""

    def __init__(self):
        self.idle: list[_Worker] = []
        self.started = 0
        self.mutex = threading.Lock()

    def start(self, lane: _Lane) -> None:
        with self.mutex:
            worker = self.idle.pop() if self.idle else None
            if worker is None:
                self.started += 1
                worker = _Worker(self.started)
                worker.start()
        worker.lane = lane
        worker.job.release()

    def give_back(self, worker: _Worker) -> None:
        with self.mutex:
            self.idle.append(worker)

    def busy(self) -> int:
        """Workers running a lane (0 once every scheduler has returned)."""
        with self.mutex:
            return self.started - len(self.idle)


_POOL = _Pool()


def busy_workers() -> int:
    return _POOL.busy()


class Scheduler:
    """Runs lane bodies one atomic step at a time. `choose(enabled, last)` picks the lane to
    run next from the enabled lane indices (`last`: the lane that ran the previous step, or
    None); `after_step(lane, name)` is called after each step (the oracle's per-step checks).
    `steps` records (lane, step name) in order: the schedule and the trace."""

    def __init__(self, m, bodies: list[tuple[str, Callable[[], None]]],
                 choose: Callable[[list[int], int | None], int],
                 after_step: Callable[[int, str], None] | None = None):
        self.m = m
        self.lanes = [_Lane(self, i, body, name) for i, (name, body) in enumerate(bodies)]
        self.choose = choose
        self.after_step = after_step
        self.parked = _baton()
        self.locks: dict[object, int] = {}
        self.current: int | None = None
        self.abandoned = False
        self.steps: list[tuple[int, str]] = []
        # The swap device's lifetime within the block: valid, dying (swapoff killed its
        # percpu ref: get_swap_device fails), freed (swap_map gone; by `freed_by`); and the
        # lanes holding a get_swap_device reference.
        self.device = "valid"
        self.freed_by = ""
        self.device_refs: set[int] = set()
        # Lanes inside the cluster allocator (SWP_SCANNING counted in si->flags by
        # cluster_alloc_swap): swapoff does not free swap_map while one is (swapoff_wait_users).
        self.scanning: set[int] = set()
        # Frames whose tag initialisation a lane has begun and not finished (claimed, tags
        # maybe not written, PG_mte_tagged maybe not set; model/mte.py `initialise_tags`):
        # the initialiser's own half state, which the per-step invariants I1 and I1-lock
        # leave alone. Whether another thread acts on it is what the oracle judges.
        self.tagging: set[int] = set()
        # lane -> pfns of the swap-cache folios a fault of that lane holds a reference to
        self.folio_refs: dict[int, set[int]] = {}
        # Tag-store buffers (mte_pages, arch/arm64/mm/mteswap.c) freed within the block: the
        # generation of each entry's buffer (one more each time one is freed, so a buffer
        # saved again at a reused slot is a new object), and who freed each (entry,
        # generation). Only entries whose buffer was freed during the block are here.
        self.tag_buffer_gen: dict[int, int] = {}
        self.tag_buffers_freed: dict[tuple[int, int], str] = {}

    # -- the scheduler's thread ---------------------------------------------------------------
    def run(self) -> None:
        """Run every lane to its end, or raise: Deadlock, or a lane's own exception. Parked
        lanes are unwound (Abandon) before anything is raised, so no thread is left behind."""
        self.m.sched = self
        for lane in self.lanes:
            _POOL.start(lane)
        try:
            self._loop()
        finally:
            self.m.sched = None
            self._abandon()

    def _loop(self) -> None:
        last = None
        while True:
            enabled = [lane.index for lane in self.lanes if not lane.done and self._enabled(lane)]
            if not enabled:
                waiting = [(lane.index, lane.next) for lane in self.lanes if not lane.done]
                if waiting:
                    raise Deadlock(waiting)
                return
            i = self.choose(enabled, last)
            lane = self.lanes[i]
            name = lane.next
            self._resume(lane)
            if lane.error is not None:
                raise lane.error
            self.steps.append((i, name))
            if self.after_step is not None:
                self.after_step(i, name)
            last = i

    def _enabled(self, lane: _Lane) -> bool:
        if lane.lock is not None and self.locks.get(lane.lock, lane.index) != lane.index:
            return False
        return lane.wait is None or lane.wait()

    def _resume(self, lane: _Lane) -> None:
        self.current = lane.index
        if lane.lock is not None:
            self.locks[lane.lock] = lane.index     # the step starts by taking it
        lane.lock = lane.wait = None
        lane.go.release()
        self.parked.acquire()                      # until it parks again or ends
        self.current = None

    def _abandon(self) -> None:
        self.abandoned = True
        for lane in self.lanes:
            if not lane.done:
                lane.go.release()
                self.parked.acquire()      # it unwinds (Abandon) and ends

    # -- the lanes' threads -------------------------------------------------------------------
    def park(self, name: str, lock: object = None, wait: Callable[[], bool] | None = None,
             device: bool = False) -> None:
        """End the current step; the next one, `name`, runs when the scheduler picks this
        lane again (after `lock` is free, or once `wait()` holds). `device`: that step reads
        the swap device (swap_map, the swap cache, the tag store)."""
        lane = self.lanes[self.current]
        lane.next, lane.lock, lane.wait = name, lock, wait
        self.parked.release()
        lane.go.acquire()
        if self.abandoned:
            raise Abandon()
        if device and self.device == "freed":
            raise UseAfterFree("swap device (swap_map)", self.freed_by, name, lane.index)

    def release(self, lock: object) -> None:
        """Drop `lock` (part of the current step)."""
        self.locks.pop(lock, None)

    def holder(self, lock: object) -> int | None:
        return self.locks.get(lock)


# -- what the model calls (each a no-op without a scheduler) --------------------------------

def point(m, name: str, device: bool = False) -> None:
    """An atomic-step boundary: the next step of this thread is `name` (`device`: it reads
    the swap device, a use-after-free once swapoff freed it)."""
    if m.sched is not None:
        m.sched.park(name, device=device)


def lock(m, name: str, key: object, device: bool = False) -> None:
    """A boundary whose next step, `name`, starts by taking the lock `key` (blocking)."""
    if m.sched is not None:
        m.sched.park(name, lock=key, device=device)


def unlock(m, key: object) -> None:
    """Release `key` inside the current step."""
    if m.sched is not None:
        m.sched.release(key)


def wait_until(m, name: str, cond: Callable[[], bool]) -> None:
    """Block until cond() holds; the step `name` then runs (a refault that sleeps until what
    it waits for changes, instead of spinning)."""
    if m.sched is not None:
        m.sched.park(name, wait=cond)


def trylock(m, key: object) -> bool:
    """A trylock of `key` by code that does not keep it across a step (folio_trylock in
    reclaim): False when another thread holds it."""
    s = m.sched
    return s is None or s.locks.get(key, s.current) == s.current


def trylock_hold(m, key: object) -> bool:
    """`folio_trylock` (include/linux/pagemap.h) by code that keeps the lock across steps
    (reclaim's `shrink_folio_list`, r1 to r4; swapoff's unuse): False when another thread holds
    it; else this thread holds it until `unlock`."""
    s = m.sched
    if s.locks.get(key, s.current) != s.current:
        return False
    s.locks[key] = s.current
    return True


def get_folio_ref(m, folio) -> None:
    """A thread holds a reference to the swap-cache folio it looked up (`swap_cache_get_folio`
    or `swapin_readahead` in do_swap_page and unuse_pte_range, `filemap_get_folio` in
    `__try_to_reclaim_swap`; mm/swap_state.c, mm/swapfile.c) until `put_folio_refs`:
    reclaim's `__remove_mapping` cannot free the folio meanwhile."""
    s = m.sched
    if s is not None:
        s.folio_refs.setdefault(s.current, set()).add(folio.pfn)


def put_folio_refs(m) -> None:
    s = m.sched
    if s is not None:
        s.folio_refs.pop(s.current, None)


def referenced_elsewhere(m, folio) -> bool:
    """`folio_ref_freeze` in `__remove_mapping` (mm/vmscan.c) fails: another thread holds a
    reference."""
    s = m.sched
    return any(folio.pfn in refs for lane, refs in s.folio_refs.items() if lane != s.current)


def ptl(mm) -> tuple:
    """The key of an mm's page-table lock (split PTLs are not modelled: one per mm)."""
    return ("ptl", mm.pid)


def folio_lock_key(folio) -> tuple:
    return ("folio", folio.pfn)


def tagging_in_progress(m) -> set[int]:
    """Frames whose tag initialisation a lane is in the middle of (empty without a
    scheduler): for the invariants, which hold between system calls for these frames."""
    s = m.sched
    return s.tagging if s is not None else set()


# -- the swap device's lifetime (get_swap_device / swapoff) ---------------------------------

def get_swap_device(m) -> bool:
    """`get_swap_device()`: a reference that keeps swapoff from freeing the device; fails
    once swapoff killed the percpu ref (the device is dying)."""
    s = m.sched
    if s is None:
        return True
    if s.device != "valid":
        return False
    s.device_refs.add(s.current)
    return True


def put_swap_device(m) -> None:
    s = m.sched
    if s is not None:
        s.device_refs.discard(s.current)


def swapoff_wait_users(m, name: str) -> None:
    """swapoff's `percpu_ref_kill`, `synchronize_rcu()` and wait for the users: from here
    get_swap_device fails; the step `name` runs once no thread holds a reference, no
    thread is inside a spinlock's critical section (`rcu_readers`) and no allocator is
    between the SWP_SCANNING count and its end (`swap_scanning`; the loop "wait for anyone
    still in scan_swap_map_slots" before swap_map is freed)."""
    s = m.sched
    if s is not None:
        s.device = "dying"
        s.park(name, wait=lambda: not s.device_refs and not rcu_readers(s) and not s.scanning)


def swap_scanning(m, on: bool) -> None:
    """`si->flags += SWP_SCANNING` (on) / `-= SWP_SCANNING` around the cluster allocator's scan
    (`cluster_alloc_swap`, mm/swapfile.c): swapoff's wait "for anyone still in
    scan_swap_map_slots" holds it back from freeing swap_map until the scan is over, lock drops
    included. No-op without a scheduler."""
    s = m.sched
    if s is not None and s.current is not None:
        (s.scanning.add if on else s.scanning.discard)(s.current)


def rcu_readers(s) -> bool:
    """Is a thread inside an RCU read-side section that `synchronize_rcu()` waits out? Every
    spinlock-held region is one (it disables preemption; on PREEMPT_RT `spin_lock` takes
    `rcu_read_lock`), so a thread holding a PTL across steps counts (swapoff's comment
    before `percpu_ref_kill`: "all swap operations protected by RCU reader side lock
    (including any spinlock) will be waited too"). Folio locks sleep: not counted."""
    return any(key[0] == "ptl" for key in s.locks)


def swap_device_freed(m, freer: str) -> None:
    """swapoff freed swap_map (and the tag store of the area): any later read of it by
    another thread is a use-after-free."""
    s = m.sched
    if s is not None:
        s.device, s.freed_by = "freed", freer


# -- tag-store buffers' lifetime (mte_save_tags / mte_invalidate_tags / mte_restore_tags) ----

def tag_buffers_freed(m, entries, freer: str) -> None:
    """`freer` (mte_invalidate_tags, or mte_save_tags replacing a buffer) kfree'd the
    buffers of `entries`: a thread that looked one up before and copies from it afterwards
    reads freed memory (`copy_tag_buffers`). No-op without a scheduler."""
    s = m.sched
    if s is None:
        return
    if s.current is not None:         # the step it ran in, and the thread
        freer = f"{freer} ({s.lanes[s.current].next} on CPU{s.current})"
    for e in entries:
        gen = s.tag_buffer_gen.get(e, 0)
        s.tag_buffers_freed[(e, gen)] = freer
        s.tag_buffer_gen[e] = gen + 1


def restore_unpinned(m, on: bool) -> None:
    """Mark the running thread as restoring tags without a reference of its own to the
    slots (set and cleared around the restore of a reverted 6dca4ac6fc91)."""
    s = m.sched
    if s is not None and s.current is not None:
        s.lanes[s.current].unpinned = on


def restoring_unpinned(m) -> bool:
    s = m.sched
    return s is not None and s.current is not None and s.lanes[s.current].unpinned


def copy_tag_buffers(m, entries, name: str) -> None:
    """`mte_restore_tags()` looked the buffers of `entries` up (`xa_load`) in the step that
    ends here; the copy from them is the next step, `name`. Another thread may free one in
    between (nothing pins a slot this thread no longer references): the copy is then a
    `use-after-free` of that buffer, and the interleaving stops."""
    s = m.sched
    held = [(e, s.tag_buffer_gen.get(e, 0)) for e in entries]
    s.park(name)        # reads the buffers, not swap_map: their own lifetime is checked
    for e, gen in held:
        freer = s.tag_buffers_freed.get((e, gen))
        if freer is not None:
            raise UseAfterFree(f"tag buffer of entry {e:#x}", freer, name, s.current)
