"""The `split` step is the `split_huge_pages` debugfs file over the range from the step's first
page to its last: `split_huge_pages_pid` walks it page by page and stops at the first address
no VMA covers (fuzz-13-0203 on 6.12 and 7.2: `ppp x…x tttt` on the kernel)."""

from helpers import kinds
from helpers import scenario as make_scenario
from mteswap.designs import get_design
from mteswap.scenario.runner import Runner


def _states(steps, **config):
    r = Runner(make_scenario(steps, **config), get_design("merged"), keep_states=True)
    r.run()
    return r, [s["pages"] for s in r.states]


A = {"proc": "A", "vma": "v"}
# Two 8-page folios (pages 0-7, 8-15) and a hole (pages 3-9) between their mapped parts.
HOLE = [{"mmap": {**A, "pages": 16, "mte": True}}, {"write": {**A, "pages": "all", "tag": 1}},
        {"munmap": {**A, "pages": "3-9"}}]


def test_split_stops_at_the_first_page_no_vma_covers():
    r, states = _states(HOLE + [{"split": {**A, "pages": "all"}}], folio_pages=[1, 8])
    assert states[-2] == "Httxxxxxxxtttttt"
    assert states[-1] == "pppxxxxxxxtttttt"      # the folio beyond the hole stays whole
    assert r.m.counters["splits"] == 1 and kinds(r) == []


def test_split_of_a_range_starting_beyond_the_hole_splits_that_folio():
    r, states = _states(HOLE + [{"split": {**A, "pages": "10-15"}}], folio_pages=[1, 8])
    assert states[-1] == "Httxxxxxxxpppppp"
    assert r.m.counters["splits"] == 1 and kinds(r) == []
