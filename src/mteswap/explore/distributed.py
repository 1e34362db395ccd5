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

from mteswap.explore.alphabet import BadInput
from mteswap.explore.parallel import OrderedMapper


class DaskMapper(OrderedMapper):
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

    def _submit(self, fn, args):
        return self.client.submit(fn, *args, pure=False)

    def close(self):
        if self.own:
            self.client.close()
