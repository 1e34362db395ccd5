"""The estimated-time cost model (issue 6): formulas, overrides, sources, and the document."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from mteswap.cost.model import (ASSUMED, COMPONENTS, FORMULAS, PARAM_NAMES, SOURCES, CostParams,
                                describe_params, estimate, parse_overrides)
from mteswap.cost.run import COST_COUNTERS
from mteswap.model.state import Counters

DOC = Path(__file__).parent.parent / "docs" / "cost-model.md"
P = CostParams()


def nonzero(result: dict) -> dict:
    return {k: v for k, v in result.items() if v}


# -- exact estimates for hand-computed counters ----------------------------------------------

def test_faults_one_swap_out_and_tag_saves():
    counters = {"faults": 16, "swap_outs": 1, "swap_slot_allocs": 1, "tag_saves": 16}
    r = estimate(counters)
    assert r["faults"] == 16 * P.fault_ns
    assert r["swap_out_ops"] == 1 * P.swap_out_op_ns
    assert r["swap_slot_allocs"] == 1 * P.slot_alloc_ns
    assert r["tag_saves"] == 16 * (P.kmalloc_ns + P.tag_save_page_ns + P.xa_store_ns)
    assert set(nonzero(r)) == {"faults", "swap_out_ops", "swap_slot_allocs", "tag_saves", "total"}
    assert r["total"] == pytest.approx(
        16 * P.fault_ns + P.swap_out_op_ns + P.slot_alloc_ns
        + 16 * (P.kmalloc_ns + P.tag_save_page_ns + P.xa_store_ns), rel=1e-15)
    # The same number from the defaults, written out (16000 + 2191 + 300 + 5005.44).
    assert r["total"] == pytest.approx(23496.44, rel=1e-15)


def test_worked_example_of_the_document():
    """docs/cost-model.md: one 64 KiB folio, 16 faults, one folio write of 16 pages, 16 saves."""
    r = estimate({"faults": 16, "swap_outs": 1, "swap_slot_allocs": 1, "pswpout": 16,
                  "tag_saves": 16})
    assert r["swap_out_pages"] == 16 * P.swap_out_page_ns
    assert r["total"] == pytest.approx(549512.44, rel=1e-15)
    assert "549512.44" in DOC.read_text()


def test_restore_terms_and_early_exits():
    # The discussion's 16 x 16: 16 restore calls, 256 iterations, no tags written.
    r = estimate({"restore_calls": 16, "restore_page_iterations": 256, "tag_restores": 0})
    assert r["restore_calls"] == 16 * P.restore_call_ns
    assert r["restore_early_exits"] == 256 * P.restore_early_exit_ns
    assert r["tag_restores"] == 0
    # restore-all-unmarked: 256 iterations, all of them writing tags: no early exit.
    r = estimate({"restore_calls": 16, "restore_page_iterations": 256, "tag_restores": 256})
    assert r["restore_early_exits"] == 0
    assert r["tag_restores"] == 256 * (P.xa_load_ns + P.tag_restore_page_ns)
    # Mixed: 20 iterations of which 4 restored tags -> 16 early exits.
    r = estimate({"restore_page_iterations": 20, "tag_restores": 4})
    assert r["restore_early_exits"] == 16 * P.restore_early_exit_ns
    # Never negative, even for counters from a design that counts restores on its own.
    assert estimate({"restore_page_iterations": 1, "tag_restores": 3})["restore_early_exits"] == 0


def test_every_term_with_integer_prices_is_exact():
    """With integer prices every component and the total are exact integers."""
    params = CostParams(**{name: float(i + 1) for i, name in enumerate(PARAM_NAMES)})
    counters = {"faults": 3, "swap_outs": 2, "pswpout": 17, "swap_ins": 5, "pswpin": 20,
                "splits": 1, "swap_slot_allocs": 4, "tag_saves": 17, "restore_calls": 6,
                "restore_page_iterations": 30, "tag_restores": 12, "tag_invalidations": 9,
                "tag_compressions": 7, "tag_decompressions": 8, "tag_saves_inline": 5,
                "tag_invalidations_inline": 4}
    p = params
    expected = {
        "faults": 3 * p.fault_ns,
        "swap_out_ops": 2 * p.swap_out_op_ns,
        "swap_out_pages": 17 * p.swap_out_page_ns,
        "swap_in_ops": 5 * p.swap_in_op_ns,
        "swap_in_pages": 20 * p.swap_in_page_ns,
        "splits": 1 * p.split_ns,
        "swap_slot_allocs": 4 * p.slot_alloc_ns,      # given explicitly: not swap_outs
        "tag_saves": 17 * (p.kmalloc_ns + p.tag_save_page_ns + p.xa_store_ns) + 5 * p.kfree_ns,
        "restore_calls": 6 * p.restore_call_ns,
        "tag_restores": 12 * (p.xa_load_ns + p.tag_restore_page_ns),
        "restore_early_exits": (30 - 12) * p.restore_early_exit_ns,
        "tag_invalidations": 9 * p.xa_erase_ns + (9 - 4) * p.kfree_ns,
        "tag_compressions": 7 * p.tag_compress_ns,
        "tag_decompressions": 8 * (p.tag_decompress_ns + p.kmalloc_ns + p.kfree_ns),
    }
    r = estimate(counters, params)
    assert {k: r[k] for k in COMPONENTS} == expected
    assert r["total"] == sum(expected.values())
    assert list(r) == list(COMPONENTS) + ["total"]


def test_missing_and_unknown_counters():
    assert estimate({}) == {**{k: 0.0 for k in COMPONENTS}, "total": 0.0}
    assert estimate({"tag_bytes_peak": 4096, "violations": 3})["total"] == 0.0


def test_accepts_cost_counters_and_model_counters():
    """Both dict shapes mteswap produces: CostResult.counters and every model counter."""
    cost = {name: 1 for name in COST_COUNTERS}
    assert estimate(cost)["total"] > 0
    raw = Counters()
    raw["faults"] = 2
    raw["swap_outs"] = 1
    raw["swap_slot_allocs"] = 1
    r = estimate(raw)
    assert r["faults"] == 2 * P.fault_ns
    assert r["swap_slot_allocs"] == P.slot_alloc_ns


def test_every_formula_names_only_known_counters_and_params():
    counters = set(Counters.NAMES) | set(COST_COUNTERS) | set(Counters.COMPRESSED)
    for component, formula in FORMULAS.items():
        words = set(re.findall(r"[a-z_]+", formula)) - {"max"}
        assert words <= counters | set(PARAM_NAMES), (component, words - counters)
        assert words & set(PARAM_NAMES), component


# -- overrides --------------------------------------------------------------------------------

COUNTERS = {"faults": 16, "swap_outs": 1, "swap_slot_allocs": 1, "pswpout": 16, "swap_ins": 2, "pswpin": 16,
            "splits": 1, "tag_saves": 16, "restore_calls": 4, "restore_page_iterations": 64,
            "tag_restores": 16, "tag_invalidations": 16, "tag_compressions": 16,
            "tag_decompressions": 16, "tag_saves_inline": 8, "tag_invalidations_inline": 8}


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_an_override_changes_exactly_its_terms(name):
    before = estimate(COUNTERS)
    params = parse_overrides([f"{name}={getattr(P, name) + 1000}"])
    assert getattr(params, name) == getattr(P, name) + 1000
    assert all(getattr(params, other) == getattr(P, other) for other in PARAM_NAMES
               if other != name)
    after = estimate(COUNTERS, params)
    changed = {k for k in COMPONENTS if after[k] != before[k]}
    expected = {k for k, formula in FORMULAS.items()
                if re.search(rf"\b{name}\b", formula)}
    assert changed == expected and changed
    assert after["total"] > before["total"]


def test_override_value_is_used_exactly():
    params = parse_overrides(["fault_ns=250", " swap_out_op_ns = 1e5 ", "kmalloc_ns=0"])
    assert (params.fault_ns, params.swap_out_op_ns, params.kmalloc_ns) == (250.0, 1e5, 0.0)
    r = estimate({"faults": 4, "swap_outs": 1}, params)
    assert r["faults"] == 1000.0
    assert r["swap_out_ops"] == 100000.0
    assert parse_overrides([]) == CostParams()
    # The last of repeated names wins.
    assert parse_overrides(["split_ns=1", "split_ns=2"]).split_ns == 2.0


@pytest.mark.parametrize("item, says", [
    ("fault_ns", "expected name=value"),
    ("faults=3", "unknown name 'faults'"),
    ("fault_ns=fast", "'fast' is not a number"),
    ("fault_ns=", "'' is not a number"),
    ("fault_ns=-1", ">= 0"),
    ("fault_ns=nan", "finite"),
    ("fault_ns=inf", "finite"),
])
def test_bad_overrides_name_the_item_and_the_known_names(item, says):
    with pytest.raises(ValueError) as err:
        parse_overrides(["split_ns=10", item])
    message = str(err.value)
    assert repr(item) in message
    assert says in message
    assert all(name in message for name in PARAM_NAMES)


# -- sources and the document -----------------------------------------------------------------

def test_every_param_has_a_source():
    assert set(SOURCES) == set(PARAM_NAMES)
    assert all(SOURCES[name].strip() for name in PARAM_NAMES)
    rows = describe_params()
    assert [r[0] for r in rows] == list(PARAM_NAMES)
    assert all(value == getattr(P, name) and source == SOURCES[name]
               for name, value, source in rows)
    assert all(isinstance(f.default, float) and f.default >= 0 for f in fields(CostParams))


def test_published_params_cite_something_and_assumptions_say_so():
    published = set(PARAM_NAMES) - ASSUMED
    assert published == {"fault_ns", "swap_out_page_ns", "swap_in_op_ns", "swap_in_page_ns",
                         "kmalloc_ns", "kfree_ns"}
    for name in published:
        assert re.search(r"20\d\d", SOURCES[name]), name


def test_the_document_lists_every_param_with_its_default():
    text = DOC.read_text()
    for name in PARAM_NAMES:
        row = re.search(rf"^\| `{name}` \| ([^|]+) \| ns \| ([^|]+) \|", text, re.M)
        assert row, f"docs/cost-model.md has no table row for {name}"
        assert float(row.group(1)) == getattr(P, name), name
        if name in ASSUMED:
            assert "assumption" in row.group(2).lower(), name
        else:
            assert "assumption" not in row.group(2).lower(), name
    # The list of assumptions in the text is the set in the code.
    listed = re.search(r"^Assumptions \(nothing published\):(.*?)\.\n", text, re.M | re.S)
    assert listed and set(re.findall(r"`([a-z_]+)`", listed.group(1))) == ASSUMED


def test_the_document_gives_every_formula():
    text = DOC.read_text()
    for component, formula in FORMULAS.items():
        shown = formula.replace(" * ", " × ").replace(" - ", " − ")
        assert f"| `{component}` | `{shown}` |" in text, component
