"""Estimated time from counters (issue 6): a linear cost model, documented in docs/cost-model.md.

Each counter a run reports is multiplied by a per-operation cost in nanoseconds; the products
are the components of the estimate and their sum is "total". The per-operation costs are the
fields of `CostParams`; their defaults come from published figures where any were found, and are
marked as assumptions where nothing was published (`SOURCES`, `ASSUMED`). Every value can be
overridden (`parse_overrides`), so an estimate can be redone for another device in one command.

Standard library only: this module is imported by the CLI and by the documentation test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

ASSUMPTION = "assumption, nothing published"


@dataclass(frozen=True)
class CostParams:
    """Per-operation costs in nanoseconds. docs/cost-model.md gives each value's derivation."""

    # Page faults (any fault the model counts: anonymous, swap, write-protect).
    fault_ns: float = 1000.0
    # Swap-out I/O: per folio written (request overhead) and per 4 KiB page written
    # (reclaim path + lz4 compression + zsmalloc store, everything not priced elsewhere).
    swap_out_op_ns: float = 2191.0
    swap_out_page_ns: float = 32876.0
    # Swap-in I/O: per folio read (without the fault) and per 4 KiB page read (lz4 decompression).
    swap_in_op_ns: float = 2191.0
    swap_in_page_ns: float = 14495.0
    # split_folio() of one large folio (64 KiB, the model's mTHP size).
    split_ns: float = 5000.0
    # folio_alloc_swap(): swap slots for one folio.
    slot_alloc_ns: float = 300.0
    # mte_save_page_tags() / mte_restore_page_tags(): LDGM / STGM over the page's 256 granules.
    tag_save_page_ns: float = 200.0
    tag_restore_page_ns: float = 200.0
    # kmalloc-128 for a saved-tag buffer, and its kfree.
    kmalloc_ns: float = 12.84
    kfree_ns: float = 12.84
    # The mte_pages xarray: store (save), erase (invalidate), load (restore).
    xa_store_ns: float = 100.0
    xa_erase_ns: float = 100.0
    xa_load_ns: float = 20.0
    # One restore-loop iteration with nothing to do (xa_load miss or page already tagged).
    restore_early_exit_ns: float = 25.0
    # One arch_swap_restore() call (entry computation, feature test), loop excluded.
    restore_call_ns: float = 10.0
    # Compressing / decompressing one page's 128-byte tag buffer (Potapenko's EA0 RLE).
    tag_compress_ns: float = 100.0
    tag_decompress_ns: float = 100.0


PARAM_NAMES: tuple[str, ...] = tuple(f.name for f in fields(CostParams))

MTHP_SWAPIN = ("Chuanhua Han & Barry Song, '[PATCH v7 0/2] mm: support mTHP swap-in for "
               "zRAM-like swapfile', linux-mm, 2024-08-21, "
               "lore.kernel.org/linux-mm/20240821074541.516249-1-hanchuanhua@oppo.com")

# Short citation per parameter ("assumption, nothing published" where that is the case).
SOURCES: dict[str, str] = {
    "fault_ns": ("Tirumalasetty et al., 'Reducing Minor Page Fault Overheads through Enhanced "
                 "Page Walker', ACM TACO, 2022-09-16, doi:10.1145/3547142: 'a few thousands "
                 "of CPU cycles' per minor fault; 3,000 cycles at 3 GHz"),
    "swap_out_op_ns": (ASSUMPTION + " (per-request share of a zram write not separated in any "
                       "figure found; set equal to swap_in_op_ns)"),
    "swap_out_page_ns": (MTHP_SWAPIN + ": lz4 swap-out 90,540 ms for 100 x 100 MiB at 4 KiB "
                         "granularity = 35,367 ns/page, minus swap_out_op_ns and slot_alloc_ns"),
    "swap_in_op_ns": (MTHP_SWAPIN + ": 0x11-filled swap-in 621,310 -> 1,137,359 bytes/ms "
                      "(4 KiB -> 64 KiB folios) gives 3,191 ns per folio incl. the fault, "
                      "minus fault_ns"),
    "swap_in_page_ns": (MTHP_SWAPIN + ": lz4 swap-in 45,274 ms for 100 x 100 MiB at 4 KiB = "
                        "17,685 ns/page, minus the 3,191 ns per-folio share (fault + op)"),
    "split_ns": ASSUMPTION,
    "slot_alloc_ns": ASSUMPTION,
    "tag_save_page_ns": (ASSUMPTION + " (no LDGM latency published; instruction count from "
                         "arch/arm64/lib/mte.S mte_save_page_tags)"),
    "tag_restore_page_ns": (ASSUMPTION + " (no STGM latency published; instruction count from "
                            "arch/arm64/lib/mte.S mte_restore_page_tags)"),
    "kmalloc_ns": ("Jesper Dangaard Brouer, SLUB bulk alloc/free series cover letter, linux-mm, "
                   "2015 (spinics linux-mm msg90283): alloc+free 102 cycles = 25.681 ns, "
                   "250-object working set, i7-4790K 4 GHz; halved"),
    "kfree_ns": ("Jesper Dangaard Brouer, SLUB bulk alloc/free cover letter, linux-mm, 2015 "
                 "(spinics linux-mm msg90283), as kmalloc_ns: 25.681 ns per alloc+free pair, "
                 "halved"),
    "xa_store_ns": ASSUMPTION,
    "xa_erase_ns": ASSUMPTION,
    "xa_load_ns": ASSUMPTION,
    "restore_early_exit_ns": ASSUMPTION + " (xa_load_ns + a PG_mte_tagged test)",
    "restore_call_ns": ASSUMPTION,
    "tag_compress_ns": (ASSUMPTION + " (Potapenko's MTE tag compression series, Jul-Dec 2023, "
                        "publishes compression ratios, not times)"),
    "tag_decompress_ns": ASSUMPTION + " (same series: no timing published)",
}

ASSUMED: frozenset[str] = frozenset(n for n, s in SOURCES.items() if s.startswith(ASSUMPTION))

# Counters a future compressed-tag-storage design counts; absent counters are 0.
TAG_COMPRESSIONS = "tag_compressions"
TAG_DECOMPRESSIONS = "tag_decompressions"

# Component -> formula over counters and parameters (the order in which `estimate` sums them).
FORMULAS: dict[str, str] = {
    "faults": "faults * fault_ns",
    "swap_out_ops": "swap_outs * swap_out_op_ns",
    "swap_out_pages": "pswpout * swap_out_page_ns",
    "swap_in_ops": "swap_ins * swap_in_op_ns",
    "swap_in_pages": "pswpin * swap_in_page_ns",
    "splits": "splits * split_ns",
    "swap_slot_allocs": "swap_slot_allocs * slot_alloc_ns",
    "tag_saves": "tag_saves * (kmalloc_ns + tag_save_page_ns + xa_store_ns) + tag_saves_inline * kfree_ns",
    "restore_calls": "restore_calls * restore_call_ns",
    "tag_restores": "tag_restores * (xa_load_ns + tag_restore_page_ns)",
    "restore_early_exits": "max(0, restore_page_iterations - tag_restores) * restore_early_exit_ns",
    "tag_invalidations": "tag_invalidations * xa_erase_ns + (tag_invalidations - tag_invalidations_inline) * kfree_ns",
    "tag_compressions": "tag_compressions * tag_compress_ns",
    "tag_decompressions": "tag_decompressions * (tag_decompress_ns + kmalloc_ns + kfree_ns)",
}

COMPONENTS: tuple[str, ...] = tuple(FORMULAS)


def _count(counters: dict, name: str) -> float:
    value = counters.get(name, 0) or 0
    return float(value)


def estimate(counters: dict, params: CostParams = CostParams()) -> dict[str, float]:
    """Per-component estimated nanoseconds (see FORMULAS) and their sum under "total".

    `counters` may be `CostResult.counters` (the COST_COUNTERS subset) or every model counter
    (`Counters.NAMES`); missing counters count 0 and unknown keys are ignored."""
    c = lambda name: _count(counters, name)  # noqa: E731
    p = params
    slot_allocs = c("swap_slot_allocs")
    early_exits = max(0.0, c("restore_page_iterations") - c("tag_restores"))
    out = {
        "faults": c("faults") * p.fault_ns,
        "swap_out_ops": c("swap_outs") * p.swap_out_op_ns,
        "swap_out_pages": c("pswpout") * p.swap_out_page_ns,
        "swap_in_ops": c("swap_ins") * p.swap_in_op_ns,
        "swap_in_pages": c("pswpin") * p.swap_in_page_ns,
        "splits": c("splits") * p.split_ns,
        "swap_slot_allocs": slot_allocs * p.slot_alloc_ns,
        # Compressed storage (V7): the buffer is still allocated and filled, then freed when
        # the handle fits inline; erasing an inline entry frees nothing.
        "tag_saves": c("tag_saves") * (p.kmalloc_ns + p.tag_save_page_ns + p.xa_store_ns)
                     + c("tag_saves_inline") * p.kfree_ns,
        "restore_calls": c("restore_calls") * p.restore_call_ns,
        "tag_restores": c("tag_restores") * (p.xa_load_ns + p.tag_restore_page_ns),
        "restore_early_exits": early_exits * p.restore_early_exit_ns,
        "tag_invalidations": c("tag_invalidations") * p.xa_erase_ns
                             + max(0.0, c("tag_invalidations") - c("tag_invalidations_inline"))
                             * p.kfree_ns,
        "tag_compressions": c(TAG_COMPRESSIONS) * p.tag_compress_ns,
        # Restoring an inline handle decompresses into a temporary buffer, freed afterwards.
        "tag_decompressions": c(TAG_DECOMPRESSIONS) * (p.tag_decompress_ns + p.kmalloc_ns
                                                       + p.kfree_ns),
    }
    assert tuple(out) == COMPONENTS
    out["total"] = math.fsum(out.values())
    return out


def parse_overrides(items: list[str], base: CostParams = CostParams()) -> CostParams:
    """`CostParams` from `base` with `name=value` overrides (value in ns, a finite float >= 0).
    Raises ValueError naming the bad item and listing the known names."""
    changes: dict[str, float] = {}
    known = ", ".join(PARAM_NAMES)
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"cost parameter {item!r}: expected name=value (value in ns); "
                             f"known names: {known}")
        if name not in PARAM_NAMES:
            raise ValueError(f"cost parameter {item!r}: unknown name {name!r}; "
                             f"known names: {known}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"cost parameter {item!r}: {text.strip()!r} is not a number "
                             f"(value in ns); known names: {known}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"cost parameter {item!r}: value must be a finite number of ns "
                             f">= 0; known names: {known}")
        changes[name] = value
    return replace(base, **changes)


def describe_params(params: CostParams = CostParams()) -> list[tuple[str, float, str]]:
    """(name, value in ns, source) for every parameter, in declaration order."""
    return [(name, getattr(params, name), SOURCES[name]) for name in PARAM_NAMES]
