"""VMA bookkeeping (mm/vma.c, mm/rmap.c): splitting, merging after a flag change, and the
`anon_vma` a VMA gets once it holds anonymous folios, which decides whether fork copies its
page tables (`vma_needs_copy`, mm/memory.c) and whether it may merge with a neighbour.

A `Vma.anon_vma` is an id (0 = none), meaningful only by equality within one process;
`Vma.anon_fork` says the VMA's `anon_vma_chain` links to a parent's anon_vmas (it was forked
with an anon_vma), which the kernel's merge rules read as "not singular".
"""

from __future__ import annotations

from dataclasses import replace


def split_vma(mm, vpn: int) -> None:
    """`split_vma()` (mm/vma.c): make vpn a VMA boundary if a VMA straddles it. Both halves
    keep the VMA's anon_vma and its chain (`anon_vma_clone`)."""
    for i, vma in enumerate(mm.vmas):
        if vma.start < vpn < vma.end:
            mm.vmas[i:i + 1] = [replace(vma, end=vpn), replace(vma, start=vpn)]
            return


def _new_anon_vma(mm) -> int:
    """An id no VMA of mm holds (`anon_vma_alloc`): only equality within mm is ever read."""
    return 1 + max((v.anon_vma for v in mm.vmas), default=0)


def anon_vma_prepare(mm, vma) -> None:
    """`anon_vma_prepare()` → `__anon_vma_prepare()` (mm/rmap.c), called before the first
    anonymous folio of a VMA is mapped (`vmf_anon_prepare` in do_anonymous_page's write path
    and wp_page_copy, mm/memory.c). `find_mergeable_anon_vma` reuses an adjacent VMA's
    anon_vma (next first, then prev) when the two could merge but for it
    (`anon_vma_compatible`: contiguous, same flags, same mapping) and that VMA's chain is
    singular (`reusable_anon_vma`); otherwise a new one."""
    if vma.anon_vma:
        return
    i = mm.vmas.index(vma)
    for j in (i + 1, i - 1):
        near = mm.vmas[j] if 0 <= j < len(mm.vmas) else None
        if (near is not None and _adjacent(mm.vmas[min(i, j)], mm.vmas[max(i, j)])
                and near.vm_mte == vma.vm_mte and near.anon_vma and not near.anon_fork):
            vma.anon_vma = near.anon_vma
            return
    vma.anon_vma = _new_anon_vma(mm)


def _adjacent(a, b) -> bool:
    """b starts where a ends, in the same mapping (the model's stand-in for contiguous
    `vm_pgoff`: separate mmaps never touch in the model, do_mmap leaves a gap)."""
    return a.end == b.start and (a.name, a.orig_start) == (b.name, b.orig_start)


def anon_vma_fork(child_mm, vma) -> None:
    """`anon_vma_fork()` (mm/rmap.c) for a child's copy of a VMA: none if the parent's VMA has
    none; otherwise the child VMA is linked to the parent's anon_vmas (`anon_vma_clone`, so
    its chain is not singular) and gets an anon_vma of its own, distinct from every other
    VMA's of the child (even pieces that shared one in the parent: each gets its own)."""
    if not vma.anon_vma:
        vma.anon_fork = False
        return
    vma.anon_vma = 0                       # drop the copied parent id, then pick the child's own
    vma.anon_vma = _new_anon_vma(child_mm)
    vma.anon_fork = True


def vma_needs_copy(vma) -> bool:
    """`vma_needs_copy()` (mm/memory.c), called by `copy_page_range` at fork: copy the page
    tables only where a fault could not refill them, i.e. for a private anonymous VMA, when
    it has an anon_vma. Its other reasons (uffd-wp, VM_PFNMAP/VM_MIXEDMAP, guard regions on
    newer kernels) never apply to the model's mappings. Without an anon_vma the VMA holds
    only zero-page PTEs, which the child faults in again."""
    return bool(vma.anon_vma)


def is_mergeable_anon_vma(m, src, tgt) -> bool:
    """May src's range merge into tgt as far as anon_vmas go (`is_mergeable_anon_vma`,
    mm/vma.c)? Equal anon_vmas always may, two different ones never. With one missing:
    - 6.12: only if tgt has an anon_vma with a singular chain (so a faulted range never merges
      into a neighbour that has none);
    - 7.2 ("mm/vma: fix incorrectly disallowed anonymous VMA merges", v6.16): unless the VMA
      that has one was forked with it (`vma_had_uncowed_parents`)."""
    if src.anon_vma and tgt.anon_vma:
        return src.anon_vma == tgt.anon_vma
    if not src.anon_vma and not tgt.anon_vma:
        return True
    if m.config.kernel == "6.12":
        return bool(tgt.anon_vma) and not tgt.anon_fork
    return not (src.anon_fork if src.anon_vma else tgt.anon_fork)


def _merge_part(mm, i, vma, into, start, end: int):
    """[start, end) of `vma` (its first or last part, or all of it) joins the neighbour `into`
    (vma_merge_existing_range, mm/vma.c); vma keeps the rest or, given whole, goes."""
    _merged_anon(into, vma)
    whole = (start, end) == (vma.start, vma.end)
    if into.end == vma.start:                # into is the previous VMA: it grows up to `end`
        into.end = end
        if not whole:
            vma.start = end
    else:                                    # the next VMA: it grows down to `start`
        into.start = start
        if not whole:
            vma.end = start
    if whole:
        del mm.vmas[i]
    return into


def _merged_anon(dst, *others) -> None:
    """`dup_anon_vma()` (mm/vma.c): the merged VMA keeps its anon_vma, or takes (and links
    to the chain of) the first merged one that has one."""
    for v in others:
        if not dst.anon_vma and v.anon_vma:
            dst.anon_vma, dst.anon_fork = v.anon_vma, v.anon_fork


def vma_modify_flags(m, mm, vma, start: int, end: int, vm_mte: bool):
    """`vma_modify_flags()` → `vma_modify()` (mm/vma.c): give [start, end) of vma the flags
    vm_mte, merging it into the previous and/or next VMA where flags, mapping and anon_vmas
    allow (`vma_merge_existing_range`: only a range touching the VMA's start can merge left,
    only one touching its end can merge right), else splitting vma at start and end. Returns
    the VMA that now covers [start, end)."""
    i = mm.vmas.index(vma)
    prev = mm.vmas[i - 1] if i > 0 else None
    nxt = mm.vmas[i + 1] if i + 1 < len(mm.vmas) else None
    left = (start == vma.start and prev is not None and _adjacent(prev, vma)
            and prev.vm_mte == vm_mte and is_mergeable_anon_vma(m, vma, prev))
    right = (end == vma.end and nxt is not None and _adjacent(vma, nxt)
             and nxt.vm_mte == vm_mte and is_mergeable_anon_vma(m, vma, nxt))
    if left and right and prev.anon_vma and nxt.anon_vma and prev.anon_vma != nxt.anon_vma:
        right = False          # can_vma_merge_right: prev and next must agree too
    if left and right:                       # prev, vma and next become one
        _merged_anon(prev, vma, nxt)
        prev.end = nxt.end
        mm.vmas[i:i + 2] = []
        return prev
    if left or right:
        return _merge_part(mm, i, vma, prev if left else nxt, start, end)
    split_vma(mm, start)
    split_vma(mm, end)
    vma = next(v for v in mm.vmas if v.start == start)
    vma.vm_mte = vm_mte
    return vma
