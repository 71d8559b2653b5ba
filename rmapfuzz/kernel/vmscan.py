"""mm/vmscan.c, mm/swap.c, mm/compaction.c (v3.7): PageLRU, page isolation and putback.

Migration and reclaim work only on pages they have *isolated* from the LRU: under
``zone->lru_lock`` they test and clear PageLRU (and take a page reference).  A page that is not
on the LRU -- one that another migration or reclaim already isolated, or a page just allocated
that nobody has added to the LRU yet (a migration's new page, a fault's page before
page_add_new_anon_rmap()) -- cannot be isolated, and the caller leaves it alone (-EBUSY).  That
is what keeps two compactions, or compaction and reclaim, off the same page at once.

Modelled: PageLRU as ``Page.lru``; one zone, one ``zone->lru_lock`` spinlock; isolation as the
kernel's unlocked peek (where the kernel has one), then the lock, the test-and-clear as one
atomic step, the unlock.  Not modelled: the LRU lists themselves (which list, active/inactive,
scan order), page reference counts (``get_page``/``put_page``: the isolation reference
therefore does not exist, a migrated page is not freed, ``page_count(page) == 1`` is never
seen), unevictable pages, memcg lruvecs, and the per-CPU pagevecs: ``lru_cache_add_lru()``
adds the page at once, as if the pagevec were drained on the spot.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.engine.locks import spinlock
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.interval_tree import IntervalTreeOps
from rmapfuzz.kernel.objects import Page

EBUSY = -16


def _test_clear(v: bool) -> tuple[bool, bool]:
    return (False, v)


def _test_set(v: bool) -> tuple[bool, bool]:
    return (True, v)


class Vmscan(IntervalTreeOps):
    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        #: zone->lru_lock of the one zone
        self.lru_lock = spinlock("zone.lru_lock", "zone->lru_lock")

    # ------------------------------------------------------------------ mm/swap.c

    def lru_cache_add_lru(self, page: Page) -> Gen:
        """mm/swap.c lru_cache_add_lru() -> __lru_cache_add(), with the pagevec drained at once
        (__pagevec_lru_add_fn(): ``VM_BUG_ON(PageLRU(page)); SetPageLRU(page)``).

        One atomic step.  The kernel sets the bit under zone->lru_lock; the lock is left out
        here because until this store the page is its owner's alone (isolation tests PageLRU
        under the lock and leaves a page without it alone), so taking it changes no outcome."""
        if (yield ev.Rmw(page, "lru", _test_set, "SetPageLRU")):
            raise KernelBug(f"VM_BUG_ON(PageLRU({page.short()})) in __pagevec_lru_add_fn()")

    # ---------------------------------------------------------------- mm/vmscan.c

    def putback_lru_page(self, page: Page) -> Gen:
        """mm/vmscan.c putback_lru_page(): ``VM_BUG_ON(PageLRU(page))``, then back on the LRU
        through lru_cache_add_lru() (an evictable anonymous page; mlock is not modelled)."""
        yield from self.lru_cache_add_lru(page)

    def _isolate_lru_page(self, page: Page) -> Gen:
        """mm/vmscan.c __isolate_lru_page(): with zone->lru_lock held, take the page off the
        LRU if it is on it (``get_page_unless_zero()``; ``ClearPageLRU()``).  0 or -EBUSY."""
        was = yield ev.Rmw(page, "lru", _test_clear, "TestClearPageLRU")
        return 0 if was else EBUSY

    def isolate_lru_page(self, page: Page) -> Gen:
        """mm/vmscan.c isolate_lru_page(): "tries to isolate a page from its LRU list" --
        PageLRU() peeked without the lock, then under zone->lru_lock tested again and cleared
        (get_page(); ClearPageLRU()).  Returns 0, or -EBUSY "if the page was not on an LRU
        list" (someone else isolated it, or it was never added)."""
        if not (yield ev.Load(page, "lru")):
            return EBUSY
        yield ev.Acquire(self.lru_lock)  # spin_lock_irq(&zone->lru_lock)
        ret = yield from self._isolate_lru_page(page)
        yield ev.Release(self.lru_lock)
        return ret

    def isolate_lru_pages(self, page: Page) -> Gen:
        """mm/vmscan.c shrink_inactive_list() -> isolate_lru_pages() for an LRU list whose scan
        reaches ``page``: under zone->lru_lock, __isolate_lru_page().  0 or -EBUSY (the kernel
        moves a busy page to the list's tail and goes on)."""
        yield ev.Acquire(self.lru_lock)
        ret = yield from self._isolate_lru_page(page)
        yield ev.Release(self.lru_lock)
        return ret

    def putback_inactive_pages(self, page: Page) -> Gen:
        """mm/vmscan.c shrink_inactive_list() -> putback_inactive_pages() under zone->lru_lock:
        a page shrink_page_list() did not free goes back (``VM_BUG_ON(PageLRU(page));
        SetPageLRU(page)``).  Pages are never freed here, so every isolated page comes back."""
        yield ev.Acquire(self.lru_lock)
        if (yield ev.Rmw(page, "lru", _test_set, "SetPageLRU")):
            raise KernelBug(f"VM_BUG_ON(PageLRU({page.short()})) in putback_inactive_pages()")
        yield ev.Release(self.lru_lock)

    # ------------------------------------------------------------ mm/compaction.c

    def isolate_migratepages_range(self, page: Page) -> Gen:
        """mm/compaction.c isolate_migratepages_range() at ``page``'s pfn: "Check may be
        lockless but that's ok as we recheck later" -- PageLRU() peeked, zone->lru_lock
        taken, PageLRU() rechecked, __isolate_lru_page().  0 or -EBUSY (the scanner skips
        the pfn)."""
        if not (yield ev.Load(page, "lru")):
            return EBUSY
        yield ev.Acquire(self.lru_lock)  # compact_checklock_irqsave()
        ret = yield from self._isolate_lru_page(page)
        yield ev.Release(self.lru_lock)
        return ret
