"""`--scheduler ADDRESS`: the same search on a Dask distributed cluster.

Exhaustive search: each level's frontier is partitioned by trace prefix into the same chunks as
locally (lexicographic order, so a chunk holds consecutive prefixes); every chunk runs as one
task (`expand_chunk`, fingerprints deduplicated within the partition), and the client merges
the results in order against the global `seen` set, exactly as with local workers — so the
counterexample and the counts are the same as one process. Random search: walk batches are
independent seeded shards (walk i of seed s is the same wherever it runs).

Workers need the same mteswap (and design files at the same paths) as the client.
"""

from __future__ import annotations

from collections import deque

from mteswap.explore.alphabet import BadInput
from mteswap.explore.bfs import expand_chunk
from mteswap.explore.random_walk import walk_batch


class DaskMapper:
    def __init__(self, address, problem):
        try:
            from distributed import Client
        except ImportError:                         # pragma: no cover
            raise BadInput("--scheduler needs dask[distributed] installed") from None
        try:
            self.client = address if hasattr(address, "submit") else Client(address, timeout=20)
        except (OSError, TimeoutError, ValueError) as err:
            raise BadInput(f"--scheduler: cannot connect to {address}: {err}") from None
        self.own = not hasattr(address, "submit")
        threads = sum(self.client.nthreads().values()) or 1
        self.ahead = 3 * threads

    def ordered(self, fn, calls):
        pending: deque = deque()
        try:
            for args in calls:
                pending.append(self.client.submit(fn, *args, pure=False))
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

    def close(self):
        if self.own:
            self.client.close()
