"""mm/memory.c (v3.7): anonymous faults, COW (do_wp_page), swap-in (do_swap_page), fork's
page-table copy, zap, free_pgtables; and include/linux/swapops.h migration_entry_to_page().

Differences from the kernel: a read fault on an empty pte maps nothing (the kernel maps the zero
page, which has no rmap; a later write fault then allocates the page in do_wp_page() where the
model does it in do_anonymous_page(), both after anon_vma_prepare()); page reference counts
and the dirty bit are not modelled; page tables exist for the whole small address space, so
pte_alloc never runs.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTRS_PER_TABLE,
    VM_GROWSDOWN,
    VM_WRITE,
    Migration,
    Page,
    PageTable,
    Present,
    Swap,
    Vma,
)
from rmapfuzz.kernel.rmap import Rmap

VM_FAULT_SIGBUS = -7
VM_FAULT_OOM = -12
#: returned by a fault that made a pte writable (VM_FAULT_WRITE)
VM_FAULT_WRITE = 8
_TABLE_SPAN = PTRS_PER_TABLE << PAGE_SHIFT


def table_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """Split [start, end) at page-table boundaries (the pmd_addr_end() loop)."""
    out = []
    addr = start
    while addr < end:
        nxt = min((addr // _TABLE_SPAN + 1) * _TABLE_SPAN, end)
        out.append((addr, nxt))
        addr = nxt
    return out


class Memory(Rmap):
    def migration_entry_to_page(self, entry: Migration) -> Gen:
        """include/linux/swapops.h migration_entry_to_page(): "Any use of migration entries may
        only occur while the corresponding page is locked" -- BUG_ON(!PageLocked(p))."""
        page = entry.page
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(
                f"kernel BUG at include/linux/swapops.h: BUG_ON(!PageLocked(p)) in "
                f"migration_entry_to_page({page.short()}): a migration entry outlived its "
                f"migration"
            )
        return page

    # ---------------------------------------------------------------- fork

    def copy_one_pte(
        self, dst_pt: PageTable, src_pt: PageTable, vma: Vma, addr: int, pte: object
    ) -> Gen:
        """mm/memory.c copy_one_pte(): a swap entry is swap_duplicate()d; a writable migration
        entry in a COW mapping becomes read-only in parent and child; a present pte is
        write-protected in both and page_dup_rmap()ed."""
        if type(pte) is Swap:
            yield from self.swap_duplicate(pte.slot)
            yield ev.Store(dst_pt, "ptes", pte, addr)
            return
        if type(pte) is Migration:
            yield from self.migration_entry_to_page(pte)
            if pte.write:
                pte = Migration(pte.page, False)
                yield ev.Store(src_pt, "ptes", pte, addr)
            yield ev.Store(dst_pt, "ptes", pte, addr)
            return
        assert type(pte) is Present
        if pte.write:
            pte = Present(pte.page, False, pte.young)
            yield ev.Store(src_pt, "ptes", pte, addr)  # ptep_set_wrprotect()
        yield from self.page_dup_rmap(pte.page)
        yield ev.Store(dst_pt, "ptes", Present(pte.page, False, False), addr)  # pte_mkold()

    def copy_pte_range(self, dst_mm: MM, src_mm: MM, vma: Vma, addr: int, end: int) -> Gen:
        """mm/memory.c copy_pte_range(): dst PTL, then the source PTL nested, copy each pte."""
        dst_pt = yield from self.pte_lockptr(dst_mm, addr)
        yield ev.Acquire(dst_pt.ptl)
        src_pt = yield from self.pte_lockptr(src_mm, addr)
        yield ev.Acquire(src_pt.ptl)
        for a in range(addr, end, PAGE_SIZE):
            pte = yield ev.Load(src_pt, "ptes", a)
            if pte is not None:
                yield from self.copy_one_pte(dst_pt, src_pt, vma, a, pte)
        yield ev.Release(src_pt.ptl)
        yield ev.Release(dst_pt.ptl)

    def copy_page_range(self, dst_mm: MM, src_mm: MM, vma: Vma) -> Gen:
        """mm/memory.c copy_page_range(): nothing to copy for a vma without an anon_vma."""
        if vma.anon_vma is None:
            return 0
        for addr, end in table_ranges(vma.vm_start, vma.vm_end):
            yield from self.copy_pte_range(dst_mm, src_mm, vma, addr, end)
        return 0

    # ---------------------------------------------------------------- zap

    def zap_pte_range(self, mm: MM, addr: int, end: int) -> Gen:
        """mm/memory.c zap_pte_range(): under the PTL clear each pte; a present one drops its
        mapcount, a migration entry goes through migration_entry_to_page()."""
        pt = yield from self.pte_lockptr(mm, addr)
        yield ev.Acquire(pt.ptl)
        for a in range(addr, end, PAGE_SIZE):
            pte = yield ev.Load(pt, "ptes", a)
            if pte is None:
                continue
            if type(pte) is Present:
                yield ev.Store(pt, "ptes", None, a)  # ptep_get_and_clear_full()
                yield from self.page_remove_rmap(pte.page)
                continue
            if type(pte) is Swap:
                yield from self.free_swap_and_cache(pte.slot)
                yield ev.Store(pt, "ptes", None, a)  # pte_clear_not_present_full()
                continue
            yield from self.migration_entry_to_page(pte)
            yield ev.Store(pt, "ptes", None, a)  # pte_clear_not_present_full()
        yield ev.Release(pt.ptl)

    def unmap_vmas(self, mm: MM, vmas: tuple[Vma, ...], start: int, end: int) -> Gen:
        """mm/memory.c unmap_vmas(): zap [start, end) of each vma, table by table."""
        for vma in vmas:
            s, e = max(start, vma.vm_start), min(end, vma.vm_end)
            for addr, nxt in table_ranges(s, e):
                yield from self.zap_pte_range(mm, addr, nxt)

    def free_pgtables(self, vmas: tuple[Vma, ...]) -> Gen:
        """mm/memory.c free_pgtables(): "Hide vma from rmap and truncate_pagecache before
        freeing pgtables" -- unlink_anon_vmas() for each vma (page tables themselves stay)."""
        for vma in vmas:
            yield from self.unlink_anon_vmas(vma)

    # --------------------------------------------------------------- faults

    def check_stack_guard_page(self, vma: Vma, address: int) -> Gen:
        """mm/memory.c check_stack_guard_page(): touching the lowest page of a stack vma
        expands it by one page (expand_downwards with mmap_sem held for read)."""
        if not (vma.vm_flags & VM_GROWSDOWN):
            return 0
        if address != (yield ev.Load(vma, "vm_start")):
            return 0
        prev = self.vm_prev(vma.vm_mm, vma)
        if prev is not None and prev.vm_end == address:
            return 0 if prev.vm_flags & VM_GROWSDOWN else -12
        yield from self.expand_downwards(vma, address - PAGE_SIZE)  # type: ignore[attr-defined]
        return 0

    def do_anonymous_page(self, mm: MM, vma: Vma, address: int) -> Gen:
        """mm/memory.c do_anonymous_page(): anon_vma_prepare(), a new page, then under the PTL
        page_add_new_anon_rmap() and set_pte_at() unless someone else got there first."""
        if (yield from self.check_stack_guard_page(vma, address)) < 0:
            return VM_FAULT_SIGBUS
        if (yield from self.anon_vma_prepare(vma)):
            return VM_FAULT_OOM  # goto oom
        page = self.alloc_page()
        yield ev.Alloc(page)
        pt = yield from self.pte_lockptr(mm, address)
        yield ev.Acquire(pt.ptl)
        if (yield ev.Load(pt, "ptes", address)) is not None:
            yield ev.Release(pt.ptl)
            return 0
        yield from self.page_add_new_anon_rmap(page, vma, address)
        yield ev.Store(pt, "ptes", Present(page, bool(vma.vm_flags & VM_WRITE)), address)
        yield ev.Release(pt.ptl)
        return 0

    def do_wp_page(self, mm: MM, vma: Vma, address: int, pt: PageTable, orig_pte: Present) -> Gen:
        """mm/memory.c do_wp_page(): a write fault on a present read-only pte, PTL held (and
        released here).  An anonymous page that only this pte maps (reuse_swap_page(), under
        the page lock) is reused: page_move_anon_rmap() and the pte made writable.  Otherwise
        copy: anon_vma_prepare(), a new page, then under the PTL, if the pte is unchanged,
        page_add_new_anon_rmap() of the copy, the pte switched to it, and only then
        page_remove_rmap() of the old page."""
        old_page = orig_pte.page  # vm_normal_page()
        if (yield ev.Load(old_page, "mapping")) is not None:  # PageAnon(old_page)
            if not (yield ev.TryAcquire(old_page.lock)):
                yield ev.Release(pt.ptl)  # page_cache_get(); pte_unmap_unlock()
                yield ev.Acquire(old_page.lock)  # lock_page()
                pt = yield from self.pte_lockptr(mm, address)
                yield ev.Acquire(pt.ptl)
                if (yield ev.Load(pt, "ptes", address)) != orig_pte:
                    yield ev.Release(old_page.lock)
                    yield ev.Release(pt.ptl)
                    return 0
            if (yield from self.reuse_swap_page(old_page)):
                yield from self.page_move_anon_rmap(old_page, vma, address)
                yield ev.Release(old_page.lock)
                # reuse: pte_mkyoung, maybe_mkwrite(pte_mkdirty()), ptep_set_access_flags()
                entry = Present(old_page, bool(vma.vm_flags & VM_WRITE), True)
                yield ev.Store(pt, "ptes", entry, address)
                yield ev.Release(pt.ptl)
                return VM_FAULT_WRITE
            yield ev.Release(old_page.lock)
        # "Ok, we need to copy. Oh, well.."
        yield ev.Release(pt.ptl)
        if (yield from self.anon_vma_prepare(vma)):
            return VM_FAULT_OOM  # goto oom
        new_page = self.alloc_page()
        yield ev.Alloc(new_page)  # alloc_page_vma() + cow_user_page()
        pt = yield from self.pte_lockptr(mm, address)
        yield ev.Acquire(pt.ptl)
        ret = 0
        if (yield ev.Load(pt, "ptes", address)) == orig_pte:  # pte_same()
            yield ev.Store(pt, "ptes", None, address)  # ptep_clear_flush()
            yield from self.page_add_new_anon_rmap(new_page, vma, address)
            entry = Present(new_page, bool(vma.vm_flags & VM_WRITE), True)
            yield ev.Store(pt, "ptes", entry, address)  # set_pte_at_notify()
            yield from self.page_remove_rmap(old_page)
            ret = VM_FAULT_WRITE
        yield ev.Release(pt.ptl)
        return ret

    def do_swap_page(
        self, mm: MM, vma: Vma, address: int, orig_pte: Swap | Migration, write: bool
    ) -> Gen:
        """mm/memory.c do_swap_page(): a migration entry waits (migration_entry_wait); a swap
        entry finds its page in the swap cache, locks it, checks that it is still the swap
        cache page of the entry and, under the PTL, that the pte is unchanged; maps it,
        writable and exclusive if a write fault finds it is its only user
        (reuse_swap_page()), with do_page_add_anon_rmap(exclusive); swap_free(); then a write
        fault that could not reuse the page goes on to do_wp_page()."""
        if isinstance(orig_pte, Migration):
            yield from self.migration_entry_wait(mm, address)  # type: ignore[attr-defined]
            return 0
        slot = orig_pte.slot
        page: Page | None = yield from self.lookup_swap_cache(slot)
        if page is None:
            # swapin_readahead() would read the slot; here the page never leaves the swap
            # cache while a pte names the slot, so somebody else faulted this pte in
            pt = yield from self.pte_lockptr(mm, address)
            yield ev.Acquire(pt.ptl)
            same = (yield ev.Load(pt, "ptes", address)) == orig_pte
            yield ev.Release(pt.ptl)
            return VM_FAULT_OOM if same else 0
        yield ev.Acquire(page.lock)  # lock_page_or_retry()
        # "Make sure try_to_free_swap or reuse_swap_page or swapoff did not release the
        # swapcache from under us."
        if (yield ev.Load(page, "private")) is not slot:
            yield ev.Release(page.lock)
            return 0
        pt = yield from self.pte_lockptr(mm, address)
        yield ev.Acquire(pt.ptl)
        if (yield ev.Load(pt, "ptes", address)) != orig_pte:  # out_nomap
            yield ev.Release(pt.ptl)
            yield ev.Release(page.lock)
            return 0
        exclusive = False
        pte = Present(page, False, True)  # mk_pte(page, vma->vm_page_prot): read-only
        ret = 0
        if write and (yield from self.reuse_swap_page(page)):
            pte = Present(page, bool(vma.vm_flags & VM_WRITE), True)  # maybe_mkwrite()
            write = False
            ret = VM_FAULT_WRITE
            exclusive = True
        yield ev.Store(pt, "ptes", pte, address)  # set_pte_at()
        yield from self.do_page_add_anon_rmap(page, vma, address, exclusive)
        yield from self.swap_free(slot)
        yield ev.Release(page.lock)  # unlock_page()
        if write:
            return (yield from self.do_wp_page(mm, vma, address, pt, pte))
        yield ev.Release(pt.ptl)
        return ret

    def handle_pte_fault(self, mm: MM, vma: Vma, address: int, write: bool = True) -> Gen:
        """mm/memory.c handle_pte_fault(): read the pte without the lock and dispatch; on a
        present pte, under the PTL, a write fault on a read-only pte is do_wp_page(), else the
        pte is made young."""
        pt = yield from self.pte_lockptr(mm, address)
        entry = yield ev.Load(pt, "ptes", address)
        if entry is None:
            if not write:
                return 0  # the zero page: no rmap, not modelled
            return (yield from self.do_anonymous_page(mm, vma, address))
        if type(entry) is not Present:
            return (yield from self.do_swap_page(mm, vma, address, entry, write))
        yield ev.Acquire(pt.ptl)
        if (yield ev.Load(pt, "ptes", address)) != entry:  # pte_same()
            yield ev.Release(pt.ptl)
            return 0
        if write and not entry.write:
            return (yield from self.do_wp_page(mm, vma, address, pt, entry))
        if not entry.young:
            # pte_mkyoung() + ptep_set_access_flags()
            yield ev.Store(pt, "ptes", Present(entry.page, entry.write, True), address)
        yield ev.Release(pt.ptl)
        return 0

    def handle_mm_fault(self, mm: MM, vma: Vma, address: int, write: bool = True) -> Gen:
        """mm/memory.c handle_mm_fault() (FAULT_FLAG_WRITE when ``write``)."""
        return (yield from self.handle_pte_fault(mm, vma, address, write))

    def follow_page(self, vma: Vma, address: int) -> Gen:
        """mm/memory.c follow_page(): the page mapped at address, looked up under the PTL."""
        pt = yield from self.pte_lockptr(vma.vm_mm, address)
        if pt is None:
            return None
        yield ev.Acquire(pt.ptl)
        pte = yield ev.Load(pt, "ptes", address)
        yield ev.Release(pt.ptl)
        return pte.page if type(pte) is Present else None
