"""mm/rmap.c (v3.7 with the 3.8 rwsem conversion) and the inline helpers of include/linux/rmap.h.

Functions appear in the order of mm/rmap.c.  Differences from the kernel, each deliberate:

* The B18 fix (``rcu_read_unlock()`` before ``put_anon_vma()`` in page_get_anon_vma() and
  page_lock_anon_vma_read(), 2014) is applied: mainline is "3.7 + every later fix".
* ``try_to_unmap`` is modelled for TTU_MIGRATION (migration entries, or swap entries for a
  page in the swap cache) and TTU_UNMAP (swap-out, with the young-bit check); mlock is not.
* A freshly allocated avc or anon_vma is initialised with plain assignments (it is not yet
  reachable by anyone else), every access after publication is an engine event.

Walkers announce themselves to the oracles with instant marks (``walk-begin``, ``walk-visit``,
``vma-geometry``, ``walk-end``); marks are not steps and do not change the schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug, SleepInAtomic
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    VM_GROWSDOWN,
    VM_STACK_INCOMPLETE_SETUP,
    AnonVma,
    AnonVmaChain,
    Migration,
    Page,
    Present,
    Swap,
    Vma,
)
from rmapfuzz.kernel.swap import Swapfile

SWAP_SUCCESS = 0
SWAP_AGAIN = 1
SWAP_FAIL = 2

ENOMEM = -12

TTU_UNMAP = "unmap"
TTU_MIGRATION = "migration"  # with TTU_IGNORE_MLOCK|TTU_IGNORE_ACCESS, as migration passes it

RmapOne = Callable[[Page, Vma, int, Any], Gen]


@attrs.frozen
class Walk:
    """What a walker tells the oracles when it starts: who, which page, which tree."""

    fn: str
    page: Page
    anon_vma: AnonVma
    pgoff: int


class Rmap(Swapfile):
    # ------------------------------------------------- include/linux/rmap.h

    def get_anon_vma(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h get_anon_vma(): atomic_inc(&anon_vma->refcount)."""
        yield self.atomic_inc(anon_vma, "refcount")

    def put_anon_vma(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h put_anon_vma()."""
        if (yield self.atomic_dec_and_test(anon_vma, "refcount")):
            yield from self._put_anon_vma(anon_vma)

    def anon_vma_lock_write(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h anon_vma_lock_write(): down_write(&anon_vma->root->rwsem)."""
        root = yield ev.Load(anon_vma, "root")
        yield ev.Acquire(root.rwsem, "w")

    def anon_vma_unlock_write(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h anon_vma_unlock_write(): up_write(&anon_vma->root->rwsem)."""
        root = yield ev.Load(anon_vma, "root")
        yield ev.Release(root.rwsem, "w")

    def anon_vma_lock_read(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h anon_vma_lock_read(): down_read(&anon_vma->root->rwsem)."""
        root = yield ev.Load(anon_vma, "root")
        yield ev.Acquire(root.rwsem, "r")

    def anon_vma_unlock_read(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h anon_vma_unlock_read(): up_read(&anon_vma->root->rwsem)."""
        root = yield ev.Load(anon_vma, "root")
        yield ev.Release(root.rwsem, "r")

    def page_anon_vma(self, page: Page) -> Gen:
        """mm/util.c page_anon_vma(): page->mapping without the ANON bit (no checks)."""
        mapping = yield ev.Load(page, "mapping")
        return mapping

    def page_dup_rmap(self, page: Page) -> Gen:
        """include/linux/rmap.h page_dup_rmap(): atomic_inc(&page->_mapcount) at fork."""
        yield self.atomic_inc(page, "mapcount")

    # ------------------------------------------------------------ mm/rmap.c

    def anon_vma_alloc(self) -> Gen:
        """mm/rmap.c anon_vma_alloc(): refcount = 1, root = self; None if the slab allocation
        fails (fail-nth).

        The slot may be one that an RCU reader still looks at (SLAB_DESTROY_BY_RCU), so the two
        initialising stores are real, separately visible writes."""
        if (yield from self.should_failslab("anon_vma_cachep")):
            return None
        anon_vma = self.kmem_cache_alloc_anon_vma()
        yield ev.Alloc(anon_vma)
        yield ev.Store(anon_vma, "refcount", 1)
        yield ev.Store(anon_vma, "root", anon_vma)
        return anon_vma

    def might_sleep(self, fn: str) -> Gen:
        """include/linux/kernel.h might_sleep() with CONFIG_DEBUG_ATOMIC_SLEEP: ``fn`` may block,
        so calling it in atomic context or an RCU read-side section is a BUG even when it does
        not block this time (the report a blocking lock gives, contended or not)."""
        task = yield ev.CURRENT
        if task.atomic:
            raise SleepInAtomic(task, fn, "might_sleep()")

    def anon_vma_free(self, anon_vma: AnonVma) -> Gen:
        """mm/rmap.c anon_vma_free(): VM_BUG_ON(refcount), might_sleep(), the rwsem dance,
        kmem_cache_free.  The might_sleep() came with B18's fix (7f39dda9d86f, 3.16, Hugh
        Dickins: "add might_sleep() to anon_vma_free(), as suggested by Peter Zijlstra"): the
        lock dance blocks only if the root rwsem is held, but a caller in atomic context is
        wrong either way."""
        if (yield ev.Load(anon_vma, "refcount")):
            raise KernelBug(
                f"VM_BUG_ON(atomic_read(&anon_vma->refcount)) in anon_vma_free({anon_vma.short()})"
            )
        yield from self.might_sleep("anon_vma_free")
        # Synchronise against page_lock_anon_vma_read(), which may hold the root rwsem
        # without a reference (see the comment in mm/rmap.c).
        root = yield ev.Load(anon_vma, "root")
        if (yield ev.Load(root.rwsem, "locked")):
            yield from self.anon_vma_lock_write(anon_vma)
            yield from self.anon_vma_unlock_write(anon_vma)
        yield ev.Free(anon_vma)
        self.kmem_cache_free_anon_vma(anon_vma)

    def anon_vma_chain_alloc(self, gfp: str = "GFP_KERNEL") -> Gen:
        """mm/rmap.c anon_vma_chain_alloc(); None if the slab allocation fails (fail-nth)."""
        if (yield from self.should_failslab("anon_vma_chain_cachep", gfp)):
            return None
        avc = self.kmem_cache_alloc_avc()
        yield ev.Alloc(avc)
        return avc

    def anon_vma_chain_free(self, avc: AnonVmaChain) -> Gen:
        """mm/rmap.c anon_vma_chain_free()."""
        yield ev.Free(avc)

    def anon_vma_chain_link(self, vma: Vma, avc: AnonVmaChain, anon_vma: AnonVma) -> Gen:
        """mm/rmap.c anon_vma_chain_link(): list_add at the head of vma's chain, tree insert."""
        avc.vma = vma
        avc.anon_vma = anon_vma
        yield ev.Store(vma, "anon_vma_chain", (avc, *vma.anon_vma_chain))
        yield from self.anon_vma_interval_tree_insert(avc, anon_vma.rb_root)

    def anon_vma_prepare(self, vma: Vma) -> Gen:
        """mm/rmap.c anon_vma_prepare(): give vma an anon_vma (reused or new), mmap_sem read held.

        Takes the anon_vma lock even for a brand-new anon_vma: an RCU reader may already be
        looking at the recycled slot (d9d332e0874f).  Returns 0 or -ENOMEM."""
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is not None:
            return 0
        mm = vma.vm_mm
        avc = yield from self.anon_vma_chain_alloc()
        if avc is None:
            return ENOMEM  # out_enomem
        anon_vma = yield from self.find_mergeable_anon_vma(vma)
        allocated = None
        if anon_vma is None:
            anon_vma = yield from self.anon_vma_alloc()
            if anon_vma is None:
                yield from self.anon_vma_chain_free(avc)  # out_enomem_free_avc
                return ENOMEM
            allocated = anon_vma
        yield from self.anon_vma_lock_write(anon_vma)
        yield ev.Acquire(mm.page_table_lock)
        if (yield ev.Load(vma, "anon_vma")) is None:
            yield ev.Store(vma, "anon_vma", anon_vma)
            yield from self.anon_vma_chain_link(vma, avc, anon_vma)
            allocated = None
            avc = None
        yield ev.Release(mm.page_table_lock)
        yield from self.anon_vma_unlock_write(anon_vma)
        if allocated is not None:
            yield from self.put_anon_vma(allocated)
        if avc is not None:
            yield from self.anon_vma_chain_free(avc)
        return 0

    def lock_anon_vma_root(self, root: AnonVma | None, anon_vma: AnonVma) -> Gen:
        """mm/rmap.c lock_anon_vma_root(): take the root rwsem once for a chain traversal."""
        new_root = yield ev.Load(anon_vma, "root")
        if new_root is not root:
            if root is not None:
                yield ev.Mark("warn", f"WARN_ON_ONCE(root) in lock_anon_vma_root({root.short()})")
                yield ev.Release(root.rwsem, "w")
            root = new_root
            yield ev.Acquire(root.rwsem, "w")
        return root

    def unlock_anon_vma_root(self, root: AnonVma | None) -> Gen:
        """mm/rmap.c unlock_anon_vma_root()."""
        if root is not None:
            yield ev.Release(root.rwsem, "w")

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Gen:
        """mm/rmap.c anon_vma_clone(): attach dst to every anon_vma src is attached to.

        Walks src's chain in reverse (root first) so the root lock is taken once.  Each avc is
        first tried with GFP_NOWAIT under the lock; if that fails the root lock is dropped for
        a sleeping GFP_KERNEL retry, and if that fails too (enomem_failure) whatever was
        linked is unlinked again.  Returns 0 or -ENOMEM."""
        root = None
        for pavc in reversed(src.anon_vma_chain):
            avc = yield from self.anon_vma_chain_alloc("GFP_NOWAIT")
            if avc is None:
                yield from self.unlock_anon_vma_root(root)
                root = None
                avc = yield from self.anon_vma_chain_alloc()
                if avc is None:
                    yield from self.unlink_anon_vmas(dst)  # enomem_failure
                    return ENOMEM
            anon_vma = pavc.anon_vma
            root = yield from self.lock_anon_vma_root(root, anon_vma)
            yield from self.anon_vma_chain_link(dst, avc, anon_vma)
        yield from self.unlock_anon_vma_root(root)
        return 0

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Gen:
        """mm/rmap.c anon_vma_fork(): clone the parent's chain, then add our own anon_vma.

        The child vma is in every ancestor's tree (anon_vma_clone) before the root is pinned.
        Returns 0 or -ENOMEM (out_error paths: the child vma is left with no avcs)."""
        if pvma.anon_vma is None:
            return 0
        if (yield from self.anon_vma_clone(vma, pvma)):
            return ENOMEM
        anon_vma = yield from self.anon_vma_alloc()
        if anon_vma is None:
            yield from self.unlink_anon_vmas(vma)  # out_error
            return ENOMEM
        avc = yield from self.anon_vma_chain_alloc()
        if avc is None:
            yield from self.put_anon_vma(anon_vma)  # out_error_free_anon_vma
            yield from self.unlink_anon_vmas(vma)
            return ENOMEM
        root = yield ev.Load(pvma.anon_vma, "root")
        yield ev.Store(anon_vma, "root", root)
        yield from self.get_anon_vma(root)
        yield ev.Store(vma, "anon_vma", anon_vma)
        yield from self.anon_vma_lock_write(anon_vma)
        yield from self.anon_vma_chain_link(vma, avc, anon_vma)
        yield from self.anon_vma_unlock_write(anon_vma)
        return 0

    def unlink_anon_vmas(self, vma: Vma) -> Gen:
        """mm/rmap.c unlink_anon_vmas(): pass 1 under the root lock removes every avc from its
        tree, keeping those whose anon_vma became empty; pass 2 drops their references."""
        root = None
        for avc in vma.anon_vma_chain:
            anon_vma = avc.anon_vma
            root = yield from self.lock_anon_vma_root(root, anon_vma)
            yield from self.anon_vma_interval_tree_remove(avc, anon_vma.rb_root)
            if not (yield ev.Load(anon_vma.rb_root, "nodes")):
                continue  # leave empty anon_vmas on the list: freed outside the lock
            yield ev.Store(
                vma, "anon_vma_chain", tuple(a for a in vma.anon_vma_chain if a is not avc)
            )
            yield from self.anon_vma_chain_free(avc)
        yield from self.unlock_anon_vma_root(root)
        for avc in vma.anon_vma_chain:
            yield from self.put_anon_vma(avc.anon_vma)
            yield ev.Store(
                vma, "anon_vma_chain", tuple(a for a in vma.anon_vma_chain if a is not avc)
            )
            yield from self.anon_vma_chain_free(avc)

    def page_get_anon_vma(self, page: Page) -> Gen:
        """mm/rmap.c page_get_anon_vma(): pin page's anon_vma under RCU if page is mapped."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        # If the page is still mapped its anon_vma cannot have been freed; if not, the
        # inc_not_zero above may have pinned a recycled slot: drop it.
        if (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            yield from self.put_anon_vma(anon_vma)
            return None
        yield ev.RCU_READ_UNLOCK
        return anon_vma

    def page_lock_anon_vma_read(self, page: Page) -> Gen:
        """mm/rmap.c page_lock_anon_vma_read(): page's anon_vma with its root rwsem held for read.

        Fast path: down_read_trylock on the root read under RCU, valid only if the page is
        still mapped (f18194275c39, eee0f252c653).  Slow path: pin, sleep on the lock, unpin."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        root_anon_vma = yield ev.Load(anon_vma, "root")
        if (yield ev.TryAcquire(root_anon_vma.rwsem, "r")):
            if (yield ev.Load(page, "mapcount")) < 0:
                yield ev.Release(root_anon_vma.rwsem, "r")
                anon_vma = None
            yield ev.RCU_READ_UNLOCK
            return anon_vma
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            yield from self.put_anon_vma(anon_vma)
            return None
        # we pinned the anon_vma, it is safe to sleep
        yield ev.RCU_READ_UNLOCK
        yield from self.anon_vma_lock_read(anon_vma)
        if (yield self.atomic_dec_and_test(anon_vma, "refcount")):
            # We held the last reference: release the lock and bail.
            yield from self.anon_vma_unlock_read(anon_vma)
            yield from self._put_anon_vma(anon_vma)
            return None
        return anon_vma

    def page_unlock_anon_vma_read(self, anon_vma: AnonVma) -> Gen:
        """mm/rmap.c page_unlock_anon_vma_read(): anon_vma_unlock_read() (re-reads ->root)."""
        yield from self.anon_vma_unlock_read(anon_vma)

    def vma_address(self, page: Page, vma: Vma) -> Gen:
        """mm/rmap.c vma_address(): where page should be mapped in vma, from vma's fields as read
        one at a time; VM_BUG_ON if outside [vm_start, vm_end) as read."""
        index = yield ev.Load(page, "index")
        start = yield ev.Load(vma, "vm_start")
        pgoff = yield ev.Load(vma, "vm_pgoff")
        address = start + ((index - pgoff) << PAGE_SHIFT)
        end = yield ev.Load(vma, "vm_end")
        yield ev.Mark("vma-geometry", (vma, start, end, pgoff))
        if address < start or address >= end:
            raise KernelBug(
                f"VM_BUG_ON(address < vma->vm_start || address >= vma->vm_end) in vma_address("
                f"{page.short()}, {vma.short()}): {address:#x} outside [{start:#x}, {end:#x})"
            )
        return address

    def page_check_address(self, page: Page, mm: MM, address: int, sync: bool) -> Gen:
        """mm/rmap.c page_check_address(): peek at the pte unlocked (unless sync), then take the
        PTL and check that it maps page.  Returns (page table, pte) with the PTL held, or None."""
        pt = yield from self.pte_lockptr(mm, address)
        if pt is None:
            return None
        pte = yield ev.Load(pt, "ptes", address)
        if not sync and type(pte) is not Present:
            return None
        yield ev.Acquire(pt.ptl)
        pte = yield ev.Load(pt, "ptes", address)
        if type(pte) is Present and pte.page is page:
            return pt, pte
        yield ev.Release(pt.ptl)
        return None

    def page_referenced_one(self, page: Page, vma: Vma, address: int, arg: Any) -> Gen:
        """mm/rmap.c page_referenced_one(): count the pte if young, and clear the young bit."""
        mm = yield ev.Load(vma, "vm_mm")
        found = yield from self.page_check_address(page, mm, address, False)
        if found is None:
            return SWAP_AGAIN
        pt, pte = found
        if pte.young:  # ptep_clear_flush_young_notify()
            yield ev.Store(pt, "ptes", Present(page, pte.write, False), address)
            arg["referenced"] += 1
        arg["mapcount"] -= 1
        yield ev.Release(pt.ptl)
        return SWAP_AGAIN if arg["mapcount"] else SWAP_SUCCESS

    def page_referenced_anon(self, page: Page) -> Gen:
        """mm/rmap.c page_referenced_anon(): walk the page's anon_vma under its root read lock."""
        anon_vma = yield from self.page_lock_anon_vma_read(page)
        if anon_vma is None:
            return 0
        mapcount = (yield ev.Load(page, "mapcount")) + 1
        arg = {"referenced": 0, "mapcount": mapcount}
        pgoff = yield ev.Load(page, "index")
        yield from self.anon_vma_interval_tree_foreach(
            "page_referenced_anon", page, anon_vma, pgoff, self.page_referenced_one, arg
        )
        yield from self.page_unlock_anon_vma_read(anon_vma)
        return arg["referenced"]

    def page_referenced(self, page: Page) -> Gen:
        """mm/rmap.c page_referenced(): the reclaim probe (anon pages, page lock not required)."""
        if (yield ev.Load(page, "mapcount")) < 0 or (yield ev.Load(page, "mapping")) is None:
            return 0
        return (yield from self.page_referenced_anon(page))

    def _page_set_anon_rmap(self, page: Page, vma: Vma, address: int, exclusive: bool) -> Gen:
        """mm/rmap.c __page_set_anon_rmap(): the first mapping sets page->mapping and ->index;
        a non-exclusive one must use the oldest (root) anon_vma (ea90002b0fa7)."""
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is None:
            raise KernelBug(f"BUG_ON(!anon_vma) in __page_set_anon_rmap({vma.short()})")
        if (yield ev.Load(page, "mapping")) is not None:
            return
        if not exclusive:
            anon_vma = yield ev.Load(anon_vma, "root")
        yield ev.Store(page, "mapping", anon_vma)
        page.mapping_gen = anon_vma.gen  # ghost state for invariant I9
        index = yield from self.linear_page_index(vma, address)
        yield ev.Store(page, "index", index)

    def page_move_anon_rmap(self, page: Page, vma: Vma, address: int) -> Gen:
        """mm/rmap.c page_move_anon_rmap(): do_wp_page() reuses a page only this vma maps:
        "Move it to our anon_vma so the rmap code will not search our parent or siblings.
        Protected against the rmap code by the page lock."  With the VM_BUG_ONs."""
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"VM_BUG_ON(!PageLocked(page)) in page_move_anon_rmap({page.short()})")
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is None:
            raise KernelBug(f"VM_BUG_ON(!anon_vma) in page_move_anon_rmap({vma.short()})")
        index = yield ev.Load(page, "index")
        if index != (yield from self.linear_page_index(vma, address)):
            raise KernelBug(
                f"VM_BUG_ON(page->index != linear_page_index(vma, address)) in "
                f"page_move_anon_rmap({page.short()}, {vma.short()}, {address:#x})"
            )
        yield ev.Store(page, "mapping", anon_vma)
        page.mapping_gen = anon_vma.gen  # ghost state for invariant I9

    def linear_page_index(self, vma: Vma, address: int) -> Gen:
        """include/linux/pagemap.h linear_page_index()."""
        start = yield ev.Load(vma, "vm_start")
        pgoff = yield ev.Load(vma, "vm_pgoff")
        return ((address - start) >> PAGE_SHIFT) + pgoff

    def do_page_add_anon_rmap(self, page: Page, vma: Vma, address: int, exclusive: bool) -> Gen:
        """mm/rmap.c do_page_add_anon_rmap(): the first mapping of an existing page sets its
        anon_vma (do_swap_page() passes exclusive when reuse_swap_page() said so)."""
        first = yield self.atomic_inc_and_test(page, "mapcount")
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"VM_BUG_ON(!PageLocked(page)) in page_add_anon_rmap({page.short()})")
        if first:
            yield from self._page_set_anon_rmap(page, vma, address, exclusive)

    def page_add_anon_rmap(self, page: Page, vma: Vma, address: int) -> Gen:
        """mm/rmap.c page_add_anon_rmap(): do_page_add_anon_rmap(exclusive=0)."""
        yield from self.do_page_add_anon_rmap(page, vma, address, False)

    def page_add_new_anon_rmap(self, page: Page, vma: Vma, address: int) -> Gen:
        """mm/rmap.c page_add_new_anon_rmap(): a new page, exclusively ours; then
        lru_cache_add_lru(): from here on migration and reclaim can isolate it."""
        yield ev.Store(page, "mapcount", 0)
        yield from self._page_set_anon_rmap(page, vma, address, True)
        yield from self.lru_cache_add_lru(page)  # mlocked_vma_newpage() is never true here

    def page_remove_rmap(self, page: Page) -> Gen:
        """mm/rmap.c page_remove_rmap(): drop a mapcount; page->mapping is left alone, so it is
        only trustworthy while page_mapped()."""
        yield self.atomic_add_negative(page, "mapcount")

    def try_to_unmap_one(self, page: Page, vma: Vma, address: int, flags: str) -> Gen:
        """mm/rmap.c try_to_unmap_one(): replace the pte by a swap entry if the page is in the
        swap cache (swap_duplicate), else by a migration entry (TTU_MIGRATION only).  Without
        TTU_IGNORE_ACCESS (swap-out) a young pte is made old and the unmap fails."""
        mm = yield ev.Load(vma, "vm_mm")
        found = yield from self.page_check_address(page, mm, address, False)
        if found is None:
            return SWAP_AGAIN
        pt, pte = found
        if flags == TTU_UNMAP and pte.young:  # ptep_clear_flush_young_notify()
            yield ev.Store(pt, "ptes", Present(page, pte.write, False), address)
            yield ev.Release(pt.ptl)
            return SWAP_FAIL
        yield ev.Store(pt, "ptes", None, address)  # ptep_clear_flush()
        # PageSwapCache(page), page_private(page): stable under the page lock our caller holds
        slot = page.private
        if slot is not None:
            yield from self.swap_duplicate(slot)
            entry: Any = Swap(slot)
        else:
            if flags != TTU_MIGRATION:
                raise KernelBug(
                    f"BUG_ON(TTU_ACTION(flags) != TTU_MIGRATION) in try_to_unmap_one("
                    f"{page.short()}): an anonymous page outside the swap cache"
                )
            entry = Migration(page, pte.write)
        yield ev.Store(pt, "ptes", entry, address)
        yield from self.page_remove_rmap(page)
        yield ev.Release(pt.ptl)
        return SWAP_AGAIN

    def anon_vma_interval_tree_foreach(
        self, fn: str, page: Page, anon_vma: AnonVma, pgoff: int, rmap_one: RmapOne, arg: Any
    ) -> Gen:
        """The anon_vma_interval_tree_foreach() loop shared by the walkers of mm/rmap.c:
        visit each vma whose avc covers pgoff, call rmap_one at vma_address(); stop when it
        returns anything but SWAP_AGAIN.  ``fn`` names the walker for the oracles."""
        tree = anon_vma.rb_root
        yield ev.Mark("walk-begin", Walk(fn, page, anon_vma, pgoff))
        ret = SWAP_AGAIN
        avc = yield from self.anon_vma_interval_tree_iter_first(tree, pgoff)
        while avc is not None:
            vma = yield ev.Load(avc, "vma")
            yield ev.Mark("walk-visit", (avc, vma))
            # try_to_unmap_anon(): "During exec, a temporary VMA is setup and later moved ...
            # migration skips temporary VMAs until after exec() completes."  Here, before
            # vma_address(), so that every variant's try_to_unmap_anon() keeps the check.
            if (
                arg == TTU_MIGRATION
                and rmap_one == self.try_to_unmap_one_check_mapped
                and (yield from self.is_vma_temporary_stack(vma))
            ):
                avc = yield from self.anon_vma_interval_tree_iter_next(tree, avc, pgoff)
                continue
            address = yield from self.vma_address(page, vma)
            ret = yield from rmap_one(page, vma, address, arg)
            if ret != SWAP_AGAIN:
                break
            avc = yield from self.anon_vma_interval_tree_iter_next(tree, avc, pgoff)
        yield ev.Mark("walk-end", ret == SWAP_AGAIN)
        return ret

    def try_to_unmap_one_check_mapped(self, page: Page, vma: Vma, address: int, flags: Any) -> Gen:
        """try_to_unmap_anon()'s loop body: unmap one, stop once !page_mapped(page)."""
        ret = yield from self.try_to_unmap_one(page, vma, address, flags)
        if ret == SWAP_AGAIN and (yield ev.Load(page, "mapcount")) < 0:
            return SWAP_SUCCESS
        return ret

    def is_vma_temporary_stack(self, vma: Vma) -> Gen:
        """mm/rmap.c is_vma_temporary_stack(): a VM_GROWSDOWN vma with VM_STACK_INCOMPLETE_SETUP
        is exec's stack before shift_arg_pages() has put it in place.

        vm_flags is read in the step that loaded avc->vma (no step of its own): the two
        commute, as avc->vma never changes while the avc is in a tree."""
        flags = vma.vm_flags
        if not flags & VM_GROWSDOWN:
            return False
        return flags & VM_STACK_INCOMPLETE_SETUP == VM_STACK_INCOMPLETE_SETUP
        yield  # a generator, like every model function

    def try_to_unmap_anon(self, page: Page, flags: str) -> Gen:
        """mm/rmap.c try_to_unmap_anon(): walk under page_lock_anon_vma_read()."""
        anon_vma = yield from self.page_lock_anon_vma_read(page)
        if anon_vma is None:
            return SWAP_AGAIN
        pgoff = yield ev.Load(page, "index")
        ret = yield from self.anon_vma_interval_tree_foreach(
            "try_to_unmap_anon", page, anon_vma, pgoff, self.try_to_unmap_one_check_mapped, flags
        )
        yield from self.page_unlock_anon_vma_read(anon_vma)
        return ret

    def try_to_unmap(self, page: Page, flags: str) -> Gen:
        """mm/rmap.c try_to_unmap(): BUG_ON(!PageLocked(page)); anon pages only."""
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"BUG_ON(!PageLocked(page)) in try_to_unmap({page.short()})")
        ret = yield from self.try_to_unmap_anon(page, flags)
        if (yield ev.Load(page, "mapcount")) < 0:
            ret = SWAP_SUCCESS
        return ret

    def _put_anon_vma(self, anon_vma: AnonVma) -> Gen:
        """mm/rmap.c __put_anon_vma(): drop the child's pin on its root, free both if last (3.7
        order: the root first)."""
        root = yield ev.Load(anon_vma, "root")
        if root is not anon_vma and (yield self.atomic_dec_and_test(root, "refcount")):
            yield from self.anon_vma_free(root)
        yield from self.anon_vma_free(anon_vma)

    def rmap_walk_anon(self, page: Page, rmap_one: RmapOne, arg: Any) -> Gen:
        """mm/rmap.c rmap_walk_anon(): page_anon_vma() without page_mapped() checks (callers
        hold a pin), the walk under anon_vma_lock_read() of the root (3.8)."""
        anon_vma = yield from self.page_anon_vma(page)
        if anon_vma is None:
            return SWAP_AGAIN
        yield from self.anon_vma_lock_read(anon_vma)
        pgoff = yield ev.Load(page, "index")
        ret = yield from self.anon_vma_interval_tree_foreach(
            "rmap_walk_anon", page, anon_vma, pgoff, rmap_one, arg
        )
        yield from self.anon_vma_unlock_read(anon_vma)
        return ret

    def rmap_walk(self, page: Page, rmap_one: RmapOne, arg: Any) -> Gen:
        """mm/rmap.c rmap_walk(): VM_BUG_ON(!PageLocked(page)); anon pages only."""
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"VM_BUG_ON(!PageLocked(page)) in rmap_walk({page.short()})")
        return (yield from self.rmap_walk_anon(page, rmap_one, arg))
