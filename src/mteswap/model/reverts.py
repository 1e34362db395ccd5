"""Fixes the model can take out (`--revert COMMIT`, `config: {revert: [...]}`): the code then
runs as the kernel had it before the fix. Each id is tested where the model reads it (the
constant named in the comment) and has a bundled scenario that passes without the revert and
fails with it (docs/concurrency.md)."""

from __future__ import annotations

# commit id (12 hex digits, mainline) -> its title
REVERTS: dict[str, str] = {
    # memory.py REVERT_SKIP_SWAPCACHE_PIN: do_swap_page's skip-swapcache path takes no
    # SWAP_HAS_CACHE pin (swapcache_prepare / swapcache_clear), as from 0bcac06f27d7 (2017)
    # until v6.8.
    "13ddaf26be32": "mm/swap: fix race when skipping swapcache",
    # memory.py REVERT_SWAPOFF_REF: do_swap_page takes no get_swap_device reference, so
    # swapoff may free the device while a fault still reads it (before v5.14).
    "2799e77529c2": "swap: fix do_swap_page() race with swapoff",
    # memory.py REVERT_RESTORE_BEFORE_FREE: do_swap_page restores the tags after swap_free_nr
    # and folio_free_swap (from set_pte_at, as before v6.5), so a slot freed there has lost
    # its tags, and another thread may free the buffer between the restore's lookup and
    # its copy (p13: use-after-free).
    "6dca4ac6fc91": "mm: call arch_swap_restore() from do_swap_page()",
    # swapfile.py REVERT_ZAP_SWAPOFF_REF: free_swap_and_cache_nr (the zap path) takes no
    # get_swap_device reference (before v6.9); swapoff's synchronize_rcu still waits for a
    # zap that holds its PTL (docs/concurrency.md §6).
    "82b1c07a0af6": "mm: swap: fix race between free_swap_and_cache() and swapoff()",
    # mte.py REVERT_TAGGED_AFTER_INIT: mte_sync_tags / mte_restore_tags take PG_mte_tagged
    # with test_and_set_bit before writing the tags, and take no PG_mte_lock (before v6.2):
    # another mapper sees the flag and maps the page with its old tags.
    "e059853d14ca": "arm64: mte: Fix/clarify the PG_mte_tagged semantics",
    # mte.py REVERT_TAGGING_LOCK: PG_mte_tagged tested, tags written, flag set, with no
    # PG_mte_lock (between e059853d14ca and this fix, v6.2-rc): two initialisers may both
    # write; closed on private anonymous memory (docs/concurrency.md §6).
    "d77e59a8fccd": "arm64: mte: Lock a page for MTE tag initialisation",
    # swapfile.py REVERT_ALLOC_SWAPOFF: the cluster allocator counts no SWP_SCANNING and does
    # not recheck SWP_WRITEOK after relocking (5f843a9a3a1e until this fix, v6.12-rc): swapoff
    # frees swap_map while an allocation is between its lock drops for reclaim (p14).
    "0ec8bc9e880e": "mm, swap: fix allocation and scanning race with swapoff",
}
