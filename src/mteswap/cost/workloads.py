"""Parameterised, seeded workload generators for `mteswap cost`.

Each generator returns `(Config, steps)`: the scenario `config` and a list of steps as the
dicts a scenario file holds (`{"write": {"proc": "A", "vma": "heap", "pages": "0-15"}}`).
Nothing here models the kernel: the steps run on the one model (`scenario/runner.py`), and
`scenario_doc`/`to_yaml` turn a workload into a scenario file that `mteswap run` accepts and
that gives the same counters.

Page lists use the scenario format's compact forms: an int for one page, "a-b" for a range,
a list otherwise. Randomness comes only from `random.Random(seed)`, so a (workload, params,
seed) triple always yields the same steps.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Callable

import yaml

from mteswap.scenario.load import MAX_CONFIG_INT, MAX_VMA_PAGES, Config, Scenario, _scenario

FOLIO = 16                 # 64 KiB mTHP in 4 KiB pages
DEFAULT_PAGES = 4096       # small enough for tests; issue 6 wants up to 262,144
DEFAULT_SEED = 1
VMA = "heap"


def _spec(indices) -> int | str | list[int]:
    """The shortest PageSpec for these page indices (order kept)."""
    indices = list(indices)
    if len(indices) == 1:
        return indices[0]
    if indices == list(range(indices[0], indices[0] + len(indices))):
        return f"{indices[0]}-{indices[-1]}"
    return indices


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _config(pages: int, frames: int | None = None, slots: int | None = None, **kw) -> Config:
    """A machine with room for the workload: frames for every page (plus slack), and swap
    slots for every page plus cluster 0 (order-0 only, it holds the header) and one spare
    cluster, so that large folios can really swap out whole."""
    frames = frames if frames is not None else pages + 64
    slots = slots if slots is not None else _round_up(pages, 512) + 1024
    if max(frames, slots) > MAX_CONFIG_INT:
        raise ValueError(f"workload too large: needs {max(frames, slots)} frames/slots, "
                         f"the scenario format allows {MAX_CONFIG_INT}")
    return Config(folio_pages=(1, FOLIO), swap_device=kw.pop("swap_device", "ssd"),
                  swap_slots=slots, frames=frames, **kw)


def check_pages(pages: int) -> None:
    """A workload's size: whole 64 KiB folios, at most one VMA (1 GiB). ValueError if not."""
    if not (FOLIO <= pages <= MAX_VMA_PAGES) or pages % FOLIO:
        raise ValueError(f"expected a multiple of {FOLIO} from {FOLIO} to {MAX_VMA_PAGES}, "
                         f"got {pages}")


def _mmap(pages: int, mte: bool = True, proc: str = "A") -> dict:
    return {"mmap": {"proc": proc, "vma": VMA, "pages": pages, "mte": mte}}


def _op(op: str, pages, proc: str = "A", **extra) -> dict:
    return {op: {"proc": proc, "vma": VMA, "pages": _spec(pages) if pages != "all" else "all",
                 **extra}}


# --------------------------------------------------------------------------- workloads


def sequential(pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED,
               swap_device: str = "ssd") -> tuple[Config, list[dict]]:
    """Fill an MTE heap (distinct tags), swap all of it out, touch it all back. `seed` is
    unused (the workload is deterministic) but accepted like every generator's."""
    check_pages(pages)
    every = range(pages)
    steps = [_mmap(pages),
             _op("write", every, tag="distinct"),
             _op("reclaim", every),
             _op("read", every)]
    return _config(pages, swap_device=swap_device), steps


def refault(pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED,
            map_whole_folio: bool = True, swap_device: str = "ssd") -> tuple[Config, list[dict]]:
    """Fill, swap out but keep every folio in the swap cache (`keep_cached`), then refault
    page by page in a random order (one fault per step). With `map_whole_folio` (v6.11+) the
    first fault on a folio maps all of it; without (v6.10), every page faults."""
    check_pages(pages)
    order = list(range(pages))
    random.Random(seed).shuffle(order)
    every = range(pages)
    steps = [_mmap(pages),
             _op("write", every, tag="distinct"),
             _op("reclaim", every, keep_cached=True)]
    steps += [_op("read", [i]) for i in order]
    return _config(pages, map_whole_folio=map_whole_folio, swap_device=swap_device), steps


def zygote(pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED, children: int = 4,
           touch: float = 0.125, swap_device: str = "ssd") -> tuple[Config, list[dict]]:
    """A parent (A) fills an MTE heap, then children are forked one after another; each
    reads a random `touch` fraction of the pages, writes (COW) half as many, then memory
    pressure reclaims the parent's heap (shared folios, unmapped from every process), the
    child touches its pages again (swap-in) and exits. The parent finally reads everything."""
    check_pages(pages)
    rng = random.Random(seed)
    every = range(pages)
    steps = [_mmap(pages), _op("write", every, tag="distinct")]
    n = max(1, int(pages * touch))
    for c in range(1, children + 1):
        child = f"C{c}"
        reads = sorted(rng.sample(range(pages), n))
        writes = sorted(rng.sample(range(pages), max(1, n // 2)))
        steps += [{"fork": {"proc": "A", "child": child}},
                  _op("read", reads, proc=child),
                  _op("write", writes, proc=child, tag="distinct"),
                  _op("reclaim", every),
                  _op("read", reads, proc=child),
                  {"exit": {"proc": child}}]
    steps.append(_op("read", every))
    # Each child's COW copies live until it exits; swapped-in shared pages come back order 0.
    frames = 2 * pages + 64
    slots = _round_up(2 * pages, 512) + 1024
    return _config(pages, frames=frames, slots=slots, swap_device=swap_device), steps


def allocator_churn(pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED, holes: int = 1,
                    swap_device: str = "ssd") -> tuple[Config, list[dict]]:
    """jemalloc-style purging: fill, swap everything out (folios leave the swap cache), then
    punch `holes` random 4 KiB MADV_DONTNEED holes into each swapped-out 64 KiB range, one
    madvise per range, and touch everything back (holes read as zero)."""
    check_pages(pages)
    if not 0 <= holes <= FOLIO:
        raise ValueError(f"holes must be 0-{FOLIO}, got {holes}")
    rng = random.Random(seed)
    every = range(pages)
    steps = [_mmap(pages), _op("write", every, tag="distinct"), _op("reclaim", every)]
    if holes:
        for base in range(0, pages, FOLIO):
            hole = sorted(rng.sample(range(base, base + FOLIO), holes))
            steps.append(_op("dontneed", hole))
    steps.append(_op("read", every))
    return _config(pages, swap_device=swap_device), steps


def partial_mte(pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED, mte_pages: int = 4,
                fraction: float = 0.25, swap_device: str = "ssd") -> tuple[Config, list[dict]]:
    """Fill a heap without MTE, then `mprotect(PROT_MTE)` a random run of `mte_pages` pages
    inside a random `fraction` of the 64 KiB folios and tag them (STG), then pressure
    (reclaim everything) and touch it all back."""
    check_pages(pages)
    if not 1 <= mte_pages <= FOLIO:
        raise ValueError(f"mte_pages must be 1-{FOLIO}, got {mte_pages}")
    rng = random.Random(seed)
    every = range(pages)
    nfolios = pages // FOLIO
    chosen = sorted(rng.sample(range(nfolios), max(1, int(nfolios * fraction))))
    tagged = []
    for f in chosen:
        start = f * FOLIO + rng.randrange(FOLIO - mte_pages + 1)
        tagged.extend(range(start, start + mte_pages))
    steps = [_mmap(pages, mte=False),
             _op("write", every),
             {"mprotect": {"proc": "A", "vma": VMA, "pages": _spec(tagged), "mte": True}},
             _op("stg", tagged, tag="distinct"),
             _op("reclaim", every),
             _op("read", every)]
    return _config(pages, swap_device=swap_device), steps


WORKLOADS: dict[str, Callable[..., tuple[Config, list[dict]]]] = {
    "sequential": sequential,
    "refault": refault,
    "zygote": zygote,
    "allocator-churn": allocator_churn,
    "partial-mte": partial_mte,
}


# --------------------------------------------------------------------------- scenarios


@dataclass
class Workload:
    name: str
    seed: int
    params: dict
    config: Config
    steps: list[dict] = field(repr=False)

    @property
    def scenario_name(self) -> str:
        return f"cost-{self.name}"

    def doc(self) -> dict:
        return scenario_doc(self.scenario_name, self.config, self.steps,
                            f"mteswap cost workload {self.name} seed={self.seed} {self.params}")

    def to_yaml(self) -> str:
        return to_yaml(self.doc())

    def with_config(self, **changes) -> "Workload":
        """The same steps on a machine with these config keys changed."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))

    def scenario(self, file: str = "<workload>") -> Scenario:
        """The validated scenario, built from the dicts without a YAML round trip (the same
        validation `parse_scenario` does after parsing)."""
        return _scenario(self.doc(), file)


def build(name: str, pages: int = DEFAULT_PAGES, seed: int = DEFAULT_SEED, **params) -> Workload:
    try:
        gen = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
    config, steps = gen(pages=pages, seed=seed, **params)
    return Workload(name, seed, {"pages": pages, **params}, config, steps)


def scenario_doc(name: str, config: Config, steps: list[dict], description: str = "") -> dict:
    cfg = dataclasses.asdict(config)
    cfg["folio_pages"] = list(cfg["folio_pages"])
    if cfg["tag_alloc_fail_after"] is None:
        del cfg["tag_alloc_fail_after"]
    return {"version": 1, "name": name, "description": description, "config": cfg,
            "steps": steps}


def to_yaml(doc: dict) -> str:
    """YAML for a scenario document: one step per line, readable and `parse_scenario`-able."""
    head = {k: v for k, v in doc.items() if k != "steps"}
    text = yaml.safe_dump(head, sort_keys=False, default_flow_style=False)
    lines = ["steps:"]
    for step in doc["steps"]:
        lines.append("  - " + yaml.safe_dump(step, default_flow_style=True, width=1 << 30,
                                              sort_keys=False).strip())
    return text + "\n".join(lines) + "\n"
