"""model/pte.py: the PTE encoding read back through every accessor, the property the span
code relies on (a folio mapped in order is one repeated int), and `PageTable` handing out
ints."""

from hypothesis import given, strategies as st

from mteswap.model.pte import (is_swap_pte, mk_pte, nr_access_permitted, pte_access_permitted,
                               pte_mkwrite, pte_none, pte_pfn, pte_present,
                               pte_swp_clear_exclusive, pte_swp_exclusive, pte_tagged,
                               pte_to_swp_entry, pte_wrprotect, pte_write, ptes_pfns,
                               ptes_tagged, swp_entry_to_pte, tagged_normal_pfns, vm_normal_pfn)
from mteswap.model.state import ZERO_PFN, PageTable

vpns = st.integers(0, 1 << 20)
pfns = st.one_of(st.just(ZERO_PFN), st.integers(0, 1 << 20))   # the zero page often
entries = st.integers(0, 1 << 24)


def kind(e: int) -> str:
    kinds = [name for name, f in (("none", pte_none), ("present", pte_present),
                                  ("swap", is_swap_pte)) if f(e)]
    assert len(kinds) == 1, (e, kinds)
    return kinds[0]


@given(pfns, st.booleans(), st.booleans(), vpns)
def test_present_pte_reads_back_what_mk_pte_was_given(pfn, tagged, writable, vpn):
    e = mk_pte(pfn, tagged, writable, vpn)
    assert kind(e) == "present"
    assert (pte_pfn(e, vpn), pte_tagged(e), pte_write(e)) == (pfn, tagged, writable)
    assert vm_normal_pfn(e, vpn) == (None if pfn == ZERO_PFN else pfn)
    assert pte_access_permitted(e, write=False) and pte_access_permitted(e, write=True) == writable


@given(entries, st.booleans(), vpns)
def test_swap_pte_reads_back_its_entry_and_exclusive_bit(entry, exclusive, vpn):
    e = swp_entry_to_pte(entry, exclusive, vpn)
    assert kind(e) == "swap"
    assert (pte_to_swp_entry(e, vpn), pte_swp_exclusive(e)) == (entry, exclusive)
    assert vm_normal_pfn(e, vpn) is None
    assert not pte_access_permitted(e, write=False)


def test_pte_none_is_zero_and_reaches_nothing():
    assert kind(0) == "none"
    assert vm_normal_pfn(0, 5) is None and not pte_access_permitted(0, write=False)


@given(st.integers(0, 1 << 20), st.booleans(), st.booleans(), vpns, st.integers(1, 512))
def test_a_folio_mapped_in_order_is_one_repeated_int(pfn, tagged, writable, vpn, nr):
    assert {mk_pte(pfn + i, tagged, writable, vpn + i) for i in range(nr)} \
        == {mk_pte(pfn, tagged, writable, vpn)}
    assert {swp_entry_to_pte(pfn + i, tagged, vpn + i) for i in range(nr)} \
        == {swp_entry_to_pte(pfn, tagged, vpn)}


@given(st.tuples(pfns, st.booleans(), st.booleans()), st.tuples(pfns, st.booleans(), st.booleans()),
       st.tuples(entries, st.booleans()), vpns)
def test_the_encoding_is_one_to_one_at_a_vpn(p1, p2, s1, vpn):
    """`Machine.snapshot` hashes the ints: two different PTEs at one vpn must differ."""
    assert (mk_pte(*p1, vpn) == mk_pte(*p2, vpn)) == (p1 == p2)
    assert mk_pte(*p1, vpn) != swp_entry_to_pte(*s1, vpn)


@given(pfns, st.booleans(), st.booleans(), vpns, entries, st.booleans())
def test_permission_changes_touch_one_bit(pfn, tagged, writable, vpn, entry, exclusive):
    e = mk_pte(pfn, tagged, writable, vpn)
    assert pte_wrprotect(e) == mk_pte(pfn, tagged, False, vpn)
    assert pte_mkwrite(e) == mk_pte(pfn, tagged, True, vpn)
    s = swp_entry_to_pte(entry, exclusive, vpn)
    assert pte_swp_clear_exclusive(s) == swp_entry_to_pte(entry, False, vpn)


ptes_at = st.lists(st.one_of(
    st.just(0),
    st.tuples(st.just("p"), pfns, st.booleans(), st.booleans()),
    st.tuples(st.just("s"), entries, st.booleans())), max_size=20)


def _encode(items, vpn):
    out = []
    for v, item in enumerate(items, vpn):
        if item == 0:
            out.append(0)
        elif item[0] == "p":
            out.append(mk_pte(item[1], item[2], item[3], v))
        else:
            out.append(swp_entry_to_pte(item[1], item[2], v))
    return out


@given(ptes_at, vpns, st.booleans())
def test_span_helpers_agree_with_the_accessors_pte_by_pte(items, vpn, write):
    ents = _encode(items, vpn)
    permitted = [pte_access_permitted(e, write) for e in ents]
    assert nr_access_permitted(ents, write) == (permitted + [False]).index(False)
    present = [(v, e) for v, e in enumerate(ents, vpn) if pte_present(e)]
    assert [p for p, e in zip(ptes_pfns(ents, vpn), ents) if pte_present(e)] \
        == [pte_pfn(e, v) for v, e in present]
    assert ptes_tagged(ents) == [pte_tagged(e) for e in ents]
    assert tagged_normal_pfns([0] * vpn + list(ents)) == \
        [(v, vm_normal_pfn(e, v)) for v, e in present if pte_tagged(e) and vm_normal_pfn(e, v) is not None]


def test_page_table_stores_and_returns_ints():
    pt = PageTable()
    pt.reserve(8)
    e = mk_pte(40, True, True, 3)
    pt[3] = e
    pt[5] = swp_entry_to_pte(0x200, False, 5)
    assert pt[3] == e and pt[4] == 0 and pt[100] == 0 and pt[-1] == 0
    assert pt.items() == ((3, e), (5, swp_entry_to_pte(0x200, False, 5)))
    assert len(pt) == 2 and 3 in pt and 4 not in pt
    assert pt.pop(3) == e and pt[3] == 0 and len(pt) == 1
    other = PageTable()
    other[5] = swp_entry_to_pte(0x200, False, 5)
    assert pt == other and pt.copy() == pt      # by content, not by room reserved
    other[6] = swp_entry_to_pte(0x201, False, 6)
    assert pt != other


def test_swap_entries_of_a_table_are_its_swap_ptes_entries():
    from mteswap.model.pte import swap_entries, swp_entry_to_pte
    ents = [swp_entry_to_pte(0x200, True, 0), mk_pte(5, True, True, 1), 0,
            swp_entry_to_pte(0x7, False, 3)]
    assert swap_entries(ents) == [0x200, 0x7]
