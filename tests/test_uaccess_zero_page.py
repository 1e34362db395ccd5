"""user_load_span (model/uaccess.py) over the zero page followed by frame 0: pte.py encodes a
present PTE as pfn - vpn, so the zero page (pfn -1) at vpn and frame 0 at vpn + 1 are the same
int, and the "consecutive frames" shortcut once sliced from pfn -1: no data at all, so the read
checked nothing."""

from mteswap.designs import get_design
from mteswap.model.pte import pte_pfn
from mteswap.model.state import ZERO_PFN
from mteswap.model.uaccess import user_load_span
from mteswap.scenario.load import parse_scenario
from mteswap.scenario.runner import Runner

DOC = """
version: 1
name: zero-page-then-frame-0
config: {folio_pages: [1], frames: 16}
steps:
  - mmap:  {proc: A, vma: buf, pages: 2}
  - write: {proc: A, vma: buf, pages: 1}
  - fork:  {proc: A, child: B}
  - read:  {proc: A, vma: buf, pages: 0}
"""


def test_a_load_over_the_zero_page_then_frame_0_reads_both_pages():
    r = Runner(parse_scenario(DOC, "zp.yaml"), get_design("merged"))
    for step in r.scenario.steps:
        r.run_step(step)
    mm = r.m.mms[0]
    ents = mm.ptes.ents
    assert ents[0] == ents[1]                                  # the same int ...
    assert (pte_pfn(ents[0], 0), pte_pfn(ents[1], 1)) == (ZERO_PFN, 0)   # ... two frames
    tags, data = user_load_span(r.m, mm, 0, 2)
    assert list(data) == [0, r.m.frame_data[0]] and r.m.frame_data[0] != 0
    assert tags == [None, None]
