"""mm/memory.c (v3.7): anonymous faults, fork's page-table copy, zap, free_pgtables; and
include/linux/swapops.h migration_entry_to_page().

Differences from the kernel: every anonymous fault is a write fault (no zero page); a fault on a
present pte does nothing (COW, do_wp_page, is not modelled here); page tables exist for the
whole small address space, so pte_alloc never runs.
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
    PageTable,
    Present,
    Vma,
)
from rmapfuzz.kernel.rmap import Rmap

VM_FAULT_SIGBUS = -7
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
        """mm/memory.c copy_one_pte(): a writable migration entry in a COW mapping becomes
        read-only in parent and child; a present pte is write-protected and page_dup_rmap()ed."""
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
        yield from self.anon_vma_prepare(vma)
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

    def do_swap_page(self, mm: MM, vma: Vma, address: int, entry: Migration) -> Gen:
        """mm/memory.c do_swap_page(): only its migration-entry branch is modelled."""
        yield from self.migration_entry_wait(mm, address)  # type: ignore[attr-defined]
        return 0

    def handle_pte_fault(self, mm: MM, vma: Vma, address: int) -> Gen:
        """mm/memory.c handle_pte_fault(): read the pte without the lock and dispatch; a present
        pte is made young under the PTL."""
        pt = yield from self.pte_lockptr(mm, address)
        entry = yield ev.Load(pt, "ptes", address)
        if entry is None:
            return (yield from self.do_anonymous_page(mm, vma, address))
        if type(entry) is Migration:
            return (yield from self.do_swap_page(mm, vma, address, entry))
        yield ev.Acquire(pt.ptl)
        if (yield ev.Load(pt, "ptes", address)) == entry and entry.write and not entry.young:
            # pte_mkyoung() + ptep_set_access_flags(); a write to a read-only pte would be
            # do_wp_page(), which this model does not have
            yield ev.Store(pt, "ptes", Present(entry.page, True, True), address)
        yield ev.Release(pt.ptl)
        return 0

    def handle_mm_fault(self, mm: MM, vma: Vma, address: int) -> Gen:
        """mm/memory.c handle_mm_fault()."""
        return (yield from self.handle_pte_fault(mm, vma, address))

    def follow_page(self, vma: Vma, address: int) -> Gen:
        """mm/memory.c follow_page(): the page mapped at address, looked up under the PTL."""
        pt = yield from self.pte_lockptr(vma.vm_mm, address)
        if pt is None:
            return None
        yield ev.Acquire(pt.ptl)
        pte = yield ev.Load(pt, "ptes", address)
        yield ev.Release(pt.ptl)
        return pte.page if type(pte) is Present else None
