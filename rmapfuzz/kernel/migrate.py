"""mm/migrate.c (v3.7): migration of one anonymous page, and waiting on a migration entry.

The page has been isolated from the LRU by the caller (isolate_lru_page() for move_pages,
isolate_migratepages_range() for compaction, kernel/vmscan.py); the new page is not on the LRU
until unmap_and_move() puts it there after a successful migration, so no other migration or
reclaim can pick either page up meanwhile.

A page in the swap cache is unmapped into swap entries (try_to_unmap_one()) and its swap cache
entry moves to the new page (migrate_page_move_mapping()); an unmapped swap cache page, which
the kernel migrates without remapping (remap_swapcache = 0), is left alone here.

Differences from the kernel: the copy itself (migrate_page_copy) is not a step, and
migrate_page_move_mapping() never fails with -EAGAIN (page reference counts are not modelled),
so a migration fails only when try_to_unmap() left the page mapped.  Callers tell the walkers
in what context they migrate through :attr:`migration_context` (which mm's mmap_sem they hold
and, for a fault, the faulting vma and address): the Linus-2012 variant's rule needs it.
"""

from __future__ import annotations

from typing import Any

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.fork import Fork
from rmapfuzz.kernel.objects import MM, Migration, Page, Present, Vma
from rmapfuzz.kernel.rmap import SWAP_AGAIN, TTU_MIGRATION

EAGAIN = -11


@attrs.define
class MigrationContext:
    """Who is migrating: ``mm`` whose mmap_sem the migrator holds for read (None for
    compaction), and the ``vma``/``address`` of the fault that asked for it, if any."""

    mm: MM | None = None
    vma: Vma | None = None
    address: int | None = None
    decision: Any = None


class Migrate(Fork):
    def remove_migration_pte(self, new: Page, vma: Vma, addr: int, old: Page) -> Gen:
        """mm/migrate.c remove_migration_pte(): under the PTL, turn a migration entry for old
        back into a present pte for new.  "Peek to check is_swap_pte() before taking ptlock?
        No, we can race mremap's move_ptes(), which skips anon_vma lock." """
        mm = yield ev.Load(vma, "vm_mm")
        pt = yield from self.pte_lockptr(mm, addr)
        if pt is None:
            return SWAP_AGAIN
        yield ev.Acquire(pt.ptl)
        pte = yield ev.Load(pt, "ptes", addr)
        if type(pte) is Migration and (yield from self.migration_entry_to_page(pte)) is old:
            yield ev.Store(pt, "ptes", Present(new, pte.write, False), addr)  # pte_mkold()
            yield from self.page_add_anon_rmap(new, vma, addr)
        yield ev.Release(pt.ptl)
        return SWAP_AGAIN

    def remove_migration_ptes(self, old: Page, new: Page) -> Gen:
        """mm/migrate.c remove_migration_ptes(): rmap_walk(new, remove_migration_pte, old)."""
        yield from self.rmap_walk(new, self.remove_migration_pte, old)

    def migration_entry_wait(self, mm: MM, address: int) -> Gen:
        """mm/migrate.c migration_entry_wait(): under the PTL re-read the pte; if it is still a
        migration entry, wait for the page lock to go (and the fault is retried)."""
        pt = yield from self.pte_lockptr(mm, address)
        yield ev.Acquire(pt.ptl)
        pte = yield ev.Load(pt, "ptes", address)
        if type(pte) is not Migration:
            yield ev.Release(pt.ptl)
            return
        page = yield from self.migration_entry_to_page(pte)
        yield ev.Release(pt.ptl)
        yield ev.WaitUnlocked(page.lock)  # wait_on_page_locked()

    def move_to_new_page(self, newpage: Page, page: Page) -> Gen:
        """mm/migrate.c move_to_new_page(): newpage takes page's index and mapping, the ptes
        are switched to it, page->mapping is cleared."""
        if not (yield ev.TryAcquire(newpage.lock)):
            raise KernelBug(f"BUG: trylock_page({newpage.short()}) failed in move_to_new_page()")
        index = yield ev.Load(page, "index")
        yield ev.Store(newpage, "index", index)
        mapping = yield ev.Load(page, "mapping")
        yield ev.Store(newpage, "mapping", mapping)
        newpage.mapping_gen = page.mapping_gen  # ghost state for invariant I9
        slot = page.private  # PageSwapCache(): stable under the page lock we hold
        if slot is not None:
            # migrate_page_move_mapping(): the swap cache entry moves to newpage; then
            # migrate_page_copy() clears PageSwapCache and page_private of the old page
            yield ev.Store(newpage, "private", slot)
            yield ev.Store(slot, "page", newpage)  # radix_tree_replace_slot()
            yield ev.Store(page, "private", None)
        yield from self.remove_migration_ptes(page, newpage)
        yield ev.Store(page, "mapping", None)
        yield ev.Release(newpage.lock)
        return 0

    def _unmap_and_move(self, page: Page, newpage: Page) -> Gen:
        """mm/migrate.c __unmap_and_move(): lock the page, pin its anon_vma (page_get_anon_vma:
        "delays freeing anon_vma pointer until the end of migration"), install migration
        entries, move, restore the ptes on failure, unpin, unlock."""
        yield ev.Acquire(page.lock)  # lock_page()
        rc = EAGAIN
        anon_vma = yield from self.page_get_anon_vma(page)
        if anon_vma is not None:
            yield from self.try_to_unmap(page, TTU_MIGRATION)
            if (yield ev.Load(page, "mapcount")) < 0:
                rc = yield from self.move_to_new_page(newpage, page)
            if rc:
                yield from self.remove_migration_ptes(page, page)
            yield from self.put_anon_vma(anon_vma)
        yield ev.Mark("migration-end", page)
        yield ev.Release(page.lock)  # unlock_page()
        return rc

    def unmap_and_move(self, page: Page) -> Gen:
        """mm/migrate.c unmap_and_move(): get_new_page(), __unmap_and_move(), then
        putback_lru_page(newpage): "Move the new page to the LRU. If migration was not
        successful then this will free the page" (a freed page is not on the LRU: nothing
        to do here).  The old page, which the caller isolated: migrated (0), it "has all
        references removed and will be freed", so it does not come back to the LRU either;
        not migrated (-EAGAIN), it stays on the caller's list."""
        newpage = self.alloc_page()
        yield ev.Alloc(newpage)
        rc = yield from self._unmap_and_move(page, newpage)
        if rc == 0:
            yield from self.putback_lru_page(newpage)
        return rc

    def migrate_pages(self, page: Page, ctx: MigrationContext) -> Gen:
        """mm/migrate.c migrate_pages() -> unmap_and_move() for one isolated page, one pass
        (the kernel retries -EAGAIN up to 10 passes).  The caller puts the page back on the
        LRU if it was not migrated (putback_lru_pages())."""
        task = yield ev.CURRENT
        self.migration_context[task.tid] = ctx
        try:
            return (yield from self.unmap_and_move(page))
        finally:
            self.migration_context.pop(task.tid, None)

    def putback_lru_pages(self, page: Page) -> Gen:
        """mm/migrate.c putback_lru_pages() for a list holding ``page``: list_del(),
        putback_lru_page()."""
        yield from self.putback_lru_page(page)
