"""Address-space operations: mmap/munmap (mm/mmap.c, mm/vma.c), mprotect (mm/mprotect.c),
fork (kernel/fork.c `dup_mmap` → mm/memory.c `copy_page_range`) and exit (`exit_mmap`).
VMA splitting, merging and anon_vmas are in model/vma.py."""

from __future__ import annotations

from dataclasses import replace
from itertools import compress

from mteswap.model import sched
from mteswap.model.memory import zap_pte_range
from mteswap.ranges import runs
from mteswap.model.pgtable import set_ptes
from mteswap.model.rmap import folio_add_anon_rmap_pte
from mteswap.model.pte import (is_swap_pte, pte_pfn, pte_present, pte_swp_clear_exclusive,
                               pte_tagged, pte_to_swp_entry, pte_wrprotect, pte_write)
from mteswap.model.state import ZERO_PFN, Mm, Vma
from mteswap.model.swapfile import swap_duplicate
from mteswap.model.vma import anon_vma_fork, split_vma, vma_modify_flags, vma_needs_copy


def new_mm(m, name: str) -> Mm:
    """A new process with an empty address space."""
    mm = Mm(pid=len(m.mms), name=name)
    m.mms.append(mm)
    return mm


def do_mmap(m, mm, name: str, pages: int, mte: bool) -> Vma:
    """`do_mmap()` of an anonymous private mapping; PROT_MTE gives VM_MTE. The start is
    aligned to the largest folio size so folio and page-index alignment agree (the contract),
    and a gap of that size keeps mappings from touching."""
    align = max(m.config.folio_pages)
    start = -(-mm.next_vpn // align) * align
    mm.next_vpn = start + pages + align
    vma = Vma(name, start, start + pages, start, mte)
    mm.vmas.append(vma)
    mm.ptes.reserve(mm.next_vpn)
    if m.tracing: m.log("do_mmap", f"pid={mm.pid} {name} vpn={start}-{start + pages - 1}{' PROT_MTE' if mte else ''}")
    return vma


def do_munmap(m, mm, vpns) -> None:
    """`do_vmi_munmap()`: split the VMAs at the range ends, zap the pages, drop the VMAs."""
    for start, end in runs(vpns):
        split_vma(mm, start)
        split_vma(mm, end)
        zap_pte_range(m, mm, start, end)
        mm.vmas = [v for v in mm.vmas if not (start <= v.start and v.end <= end)]
        if m.tracing: m.log("do_munmap", f"pid={mm.pid} vpn={start}-{end - 1}")


def do_mprotect_mte(m, mm, vpns) -> None:
    """`mprotect(PROT_MTE)` → `do_mprotect_pkey()` (mm/mprotect.c), VMA by VMA over the range:
    `mprotect_fixup()` does nothing for a VMA that already has VM_MTE (the flags do not
    change: no split, no PTE rewritten); otherwise `vma_modify_flags` merges the part into
    a neighbour with VM_MTE or splits it out (model/vma.py), and `change_pte_range()`
    rewrites each present PTE there tagged through `set_pte_at` → mte_sync_tags, one page at
    a time, so pages of a large folio outside the range stay untagged. Swap and none PTEs
    get nothing now; they are handled when they fault in."""
    for start, end in runs(vpns):
        vpn = start
        while vpn < end:
            vma = mm.find_vma(vpn)
            part_end = min(end, vma.end)
            if not vma.vm_mte:
                vma_modify_flags(m, mm, vma, vpn, part_end, True)
                _change_pte_range(m, mm, vpn, part_end)
                if m.tracing: m.log("mprotect_fixup", f"pid={mm.pid} vpn={vpn}-{part_end - 1} VM_MTE")
            vpn = part_end


def _change_pte_range(m, mm, start: int, end: int) -> None:
    """`change_pte_range()` (mm/mprotect.c) after VM_MTE was set: present PTEs become tagged.
    Between threads the range is one critical section of the mm's PTL (one PTL per mm), in
    which `set_pte_at` → `mte_sync_tags` initialises the tags of a page another process maps
    as steps of their own (model/mte.py `initialise_tags`): a thread of another mm, under its
    own PTL, can run between them. The VMA change before it runs under mmap_lock held for
    writing, which keeps this mm's faults out (scenario/load.py: no other lane of the same
    process beside an mprotect)."""
    if m.sched is not None:
        sched.lock(m, "change_pte_range:pte_offset_map_lock", sched.ptl(mm))
    for vpn in range(start, end):
        e = mm.ptes[vpn]
        if pte_present(e) and not pte_tagged(e):
            set_ptes(m, mm, vpn, pte_pfn(e, vpn), 1, True, pte_write(e), "change_pte_range (mprotect)")
    sched.unlock(m, sched.ptl(mm))


def copy_page_range(m, parent, child) -> None:
    """`dup_mmap()` (kernel/fork.c): VMAs copied, each child VMA given its anon_vma
    (`anon_vma_fork`), then `copy_page_range()` (mm/memory.c) for each VMA that
    `vma_needs_copy` (one with an anon_vma; a VMA that only ever mapped the zero page has
    none, and the child starts with no PTEs there): present anon pages shared copy-on-write
    (`copy_present_pte`: both PTEs write-protected, no longer anon-exclusive); swap PTEs
    duplicated (`copy_nonpresent_pte`: `swap_duplicate`, exclusive bit cleared on both)."""
    child.vmas = [replace(v) for v in parent.vmas]
    child.next_vpn = parent.next_vpn
    child.ptes.reserve(child.next_vpn)
    for pvma, cvma in zip(parent.vmas, child.vmas):
        anon_vma_fork(child, cvma)
        if vma_needs_copy(pvma):
            _copy_pte_range(m, parent, child, pvma.start, pvma.end)
    if m.tracing: m.log("copy_page_range", f"pid={parent.pid} -> pid={child.pid}")


def _copy_pte_range(m, parent, child, start: int, end: int) -> None:
    """`copy_pte_range()` (mm/memory.c) over one VMA's pages."""
    ents = parent.ptes.ents[start:end]
    for vpn, e in compress(enumerate(ents, start), ents):     # the PTEs that are not none
        if pte_present(e):
            pfn = pte_pfn(e, vpn)
            if pfn != ZERO_PFN:
                m.pages[pfn].anon_exclusive = False
                folio_add_anon_rmap_pte(m, pfn, child.pid, vpn, exclusive=False)
            parent.ptes[vpn] = child.ptes[vpn] = pte_wrprotect(e)
        elif is_swap_pte(e):
            swap_duplicate(m, pte_to_swp_entry(e, vpn))
            parent.ptes[vpn] = child.ptes[vpn] = pte_swp_clear_exclusive(e)


def exit_mmap(m, mm) -> None:
    """`exit_mmap()`: unmap every VMA."""
    for vma in sorted(mm.vmas, key=lambda v: v.start):
        zap_pte_range(m, mm, vma.start, vma.end)
    mm.vmas = []
    mm.alive = False
    if m.tracing: m.log("exit_mmap", f"pid={mm.pid}")
