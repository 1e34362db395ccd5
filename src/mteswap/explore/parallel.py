"""Mappers that run `expand_chunk` / `walk_batch` calls: in-process, on a local process pool
(`--workers`), or on Dask (`distributed.py`). Each yields results in submission order, with a
bounded number of calls in flight, and stops submitting when closed."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

from mteswap.explore.bfs import expand_chunk
from mteswap.explore.model import get_model
from mteswap.explore.random_walk import walk_batch


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # pragma: no cover
        return os.cpu_count() or 1


def _init(problem):
    get_model(problem)


class OrderedMapper:
    """Runs calls through `_submit` (a future per call), yields results in submission order
    with at most `ahead` calls in flight, and cancels what is pending when stopped."""

    ahead = 1

    def _submit(self, fn, args):
        raise NotImplementedError

    def ordered(self, fn, calls):
        pending: deque = deque()
        try:
            for args in calls:
                pending.append(self._submit(fn, args))
                if len(pending) >= self.ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()

    def chunks(self, problem, chunk_list):
        return self.ordered(expand_chunk, ((problem, c) for c in chunk_list))

    def walks(self, problem, seed, batches, length):
        return self.ordered(walk_batch, ((problem, seed, b, length) for b in batches))


class PoolMapper(OrderedMapper):
    """A process pool (fork start method: workers inherit the imported model)."""

    def __init__(self, workers: int, problem):
        ctx = multiprocessing.get_context("fork")
        self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init,
                                        initargs=(problem,))
        self.ahead = 3 * workers

    def _submit(self, fn, args):
        return self.pool.submit(fn, *args)

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


class SerialMapper:
    def chunks(self, problem, chunk_list):
        for c in chunk_list:
            yield expand_chunk(problem, c)

    def walks(self, problem, seed, batches, length):
        for b in batches:
            yield walk_batch(problem, seed, b, length)

    def close(self):
        pass
