"""What the CPU does for a user access: fault the page in (`handle_mm_fault`, as the
exception path of arch/arm64/mm/fault.c would), then perform it. Tag checks compare with the
program's pointer tags, which the model does not know: it returns the allocation tags the
access met (or None through an untagged mapping) and the oracle judges."""

from __future__ import annotations

from mteswap.model import tags as T
from mteswap.model.memory import handle_mm_fault
from mteswap.model.state import PTE_PRESENT, ZERO_PFN


def _mapped_page(m, mm, vpn: int, write: bool):
    """The page the access reaches. The MMU walks the page table; only a PTE that is not
    present (or read-only, for a write) raises the exception that enters the kernel."""
    pte = mm.ptes.get(vpn)
    if pte is None or pte[0] != PTE_PRESENT or (write and not pte[3]):
        handle_mm_fault(m, mm, vpn, write)
        pte = mm.ptes[vpn]
    pfn = pte[1]
    return (m.zero_page if pfn == ZERO_PFN else m.pages[pfn]), pte[2]


def user_load(m, mm, vpn: int) -> tuple[int | None, int]:
    """A load of every granule: (allocation tags met if the PTE is tagged, data)."""
    page, tagged = _mapped_page(m, mm, vpn, write=False)
    return (page.tags if tagged else None), page.data


def user_stg(m, mm, vpn: int, tag: int) -> bool:
    """STG over every granule of the page. Needs write permission, so it faults like a store;
    through an untagged mapping it does nothing. A tag store dirties the page (semantics §11).
    Returns whether tags were set."""
    page, tagged = _mapped_page(m, mm, vpn, write=True)
    if not tagged:
        return False
    page.tags = T.uniform(tag)
    origin = m.stg_origin
    if origin[1] != m.step:                  # one shared tuple per step, not one per page
        origin = m.stg_origin = ("set by the program (STG)", m.step)
    page.origin = origin
    page.folio.dirty = True
    return True


def user_store(m, mm, vpn: int, value: int) -> int | None:
    """A store to every granule: returns the allocation tags met (None if untagged). The store
    lands even when the tag check fails, so one lost tag is reported once, not again as data
    corruption on every later read."""
    page, tagged = _mapped_page(m, mm, vpn, write=True)
    assert page.pfn != ZERO_PFN, "a write fault never leaves the zero page mapped"
    met = page.tags if tagged else None
    page.data = value
    page.folio.dirty = True
    return met
