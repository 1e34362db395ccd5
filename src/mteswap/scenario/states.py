"""What a process's VMA looks like after a step, one character per page, in the letters the
scenario contract defines for `--states` (docs/scenario-format.md): where each page sits and
whether it is `PG_mte_tagged`. The real-kernel oracle reads the same from the guest's
`/proc/self/pagemap` and `/proc/kpageflags`, so model and kernel can be compared page by page.
"""

from __future__ import annotations

from mteswap.model.pte import is_swap_pte, pte_pfn, pte_to_swp_entry
from mteswap.model.state import FOLIO_FREE, PG_MTE_TAGGED, ZERO_PFN
from mteswap.model.swapinfo import swp_offset

HEAD, TAIL, SMALL, ZERO, SWAP, SWAP_CACHED, NONE, UNMAPPED = "HtpzSC-x"
TAGGED, UNTAGGED, NOT_PRESENT = "M", ".", " "


def vma_states(m, mm, name: str, start: int, pages: int) -> tuple[str, str]:
    """(pages, mte) of VMA `name` of process `mm`, first created at vpn `start` with `pages`
    pages: one character each, from the VMA's original start.

    pages: `H`/`t` head/tail page of a large folio, `p` a small folio, `z` the shared zero
    page, `S` a swap PTE, `C` a swap PTE whose slot's folio is in the swap cache, `-` no PTE,
    `x` not mapped (munmap). mte: `M` or `.` for a present page, by PG_mte_tagged of the
    page's folio head (what /proc/kpageflags shows for every page of a large folio), a space
    otherwise."""
    mapped = bytearray(pages)
    for vma in mm.vmas:
        if vma.name == name and vma.orig_start == start:
            for vpn in range(max(vma.start, start), min(vma.end, start + pages)):
                mapped[vpn - start] = 1
    where, mte = [], []
    for i in range(pages):
        place, flag = _page_state(m, mm, start + i) if mapped[i] else (UNMAPPED, NOT_PRESENT)
        where.append(place)
        mte.append(flag)
    return "".join(where), "".join(mte)


def _page_state(m, mm, vpn: int) -> tuple[str, str]:
    ents = mm.ptes.ents
    e = ents[vpn] if vpn < len(ents) else 0
    if not e:
        return NONE, NOT_PRESENT
    if is_swap_pte(e):
        cached = swp_offset(pte_to_swp_entry(e, vpn)) in m.swap.cache
        return (SWAP_CACHED if cached else SWAP), NOT_PRESENT
    pfn = pte_pfn(e, vpn)
    if pfn == ZERO_PFN:
        return ZERO, UNTAGGED             # the zero page is never PG_mte_tagged
    order = m.frame_order[pfn]
    assert order != FOLIO_FREE, f"a present PTE maps free frame {pfn}"   # a model bug
    head = pfn & -(1 << order)
    place = SMALL if order == 0 else HEAD if pfn == head else TAIL
    return place, (TAGGED if m.frame_flags[head] & PG_MTE_TAGGED else UNTAGGED)
