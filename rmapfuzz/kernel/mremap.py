"""mm/mremap.c (v3.7): moving a mapping -- mremap(MREMAP_MAYMOVE|MREMAP_FIXED) to a new address.

Functions appear in the order of mm/mremap.c.  move_vma() makes the destination vma with
copy_vma() (mm/mmap.c, in ``kernel/mmap.py``), moves the ptes table by table with
move_page_tables()/move_ptes(), then unmaps the old range.  The rmap locks are taken in
move_ptes() only when copy_vma() says the destination may be walked before the source
(``need_rmap_locks``): otherwise the interval tree's traversal order guarantees that an rmap walk
sees the old pte, the new pte, or both (commit 38a76013ad80, "mm: avoid taking rmap locks in
move_ptes()").

Differences from the kernel, each deliberate:

* Only the MREMAP_FIXED move with old_len == new_len is modelled (no growing or shrinking, no
  in-place expansion).  Accounting (VM_ACCOUNT, hiwater_vm, locked_vm), KSM's
  ksm_madvise(MADV_UNMERGEABLE), mmu notifiers, cache and TLB flushes are not modelled.
* Page tables exist for the whole small address space, so get_old_pmd()/alloc_new_pmd() and
  __pte_alloc() never fail and move_page_tables() always moves everything: move_vma()'s "move
  entries back" path is written down but unreachable.  There are no huge pmds (move_huge_pmd,
  B14): extents are cut at the model's page-table boundaries, as the kernel cuts them at PMDs.
* move_pte() is the identity (x86): the pte keeps its page, write and young bits.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.fork import Fork
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTRS_PER_TABLE,
    TASK_HI,
    TASK_LO,
    Vma,
)

EFAULT = -14
EINVAL = -22
ENOMEM = -12

#: what a pte page covers: the model's PMD_SIZE
_TABLE_SPAN = PTRS_PER_TABLE << PAGE_SHIFT
_TABLE_MASK = ~(_TABLE_SPAN - 1)


class Mremap(Fork):
    def move_ptes(
        self,
        vma: Vma,
        old_addr: int,
        old_end: int,
        new_vma: Vma,
        new_addr: int,
        need_rmap_locks: bool,
    ) -> Gen:
        """mm/mremap.c move_ptes(): under the old pte page's PTL and the new one's (nested if it
        is another lock), ptep_get_and_clear() each old pte and set_pte_at() it at the new
        address.  The root anon_vma lock (3.7 anon_vma_lock(), the rwsem for write since 3.8)
        is taken first, and only if need_rmap_locks; mmap_sem is held for write."""
        anon_vma = None
        if need_rmap_locks and vma.anon_vma is not None:
            anon_vma = vma.anon_vma
            yield from self.anon_vma_lock_write(anon_vma)
        mm = vma.vm_mm
        # "We don't have to worry about the ordering of src and dst pte locks because
        # exclusive mmap_sem prevents deadlock."
        old_pt = yield from self.pte_lockptr(mm, old_addr)
        yield ev.Acquire(old_pt.ptl)
        new_pt = yield from self.pte_lockptr(mm, new_addr)
        if new_pt.ptl is not old_pt.ptl:
            yield ev.Acquire(new_pt.ptl)  # spin_lock_nested(SINGLE_DEPTH_NESTING)
        for addr in range(old_addr, old_end, PAGE_SIZE):
            pte = yield ev.Load(old_pt, "ptes", addr)
            if pte is None:
                continue
            yield ev.Store(old_pt, "ptes", None, addr)  # ptep_get_and_clear()
            yield ev.Store(new_pt, "ptes", pte, new_addr + (addr - old_addr))  # set_pte_at()
        if new_pt.ptl is not old_pt.ptl:
            yield ev.Release(new_pt.ptl)
        yield ev.Release(old_pt.ptl)
        if anon_vma is not None:
            yield from self.anon_vma_unlock_write(anon_vma)

    def move_page_tables(
        self,
        vma: Vma,
        old_addr: int,
        new_vma: Vma,
        new_addr: int,
        length: int,
        need_rmap_locks: bool,
    ) -> Gen:
        """mm/mremap.c move_page_tables(): move_ptes() extent by extent, each extent within
        one old and one new pte page.  Returns how much was moved (always all of it here)."""
        old_end = old_addr + length
        while old_addr < old_end:
            nxt = (old_addr + _TABLE_SPAN) & _TABLE_MASK
            extent = min(nxt - old_addr, old_end - old_addr)
            # get_old_pmd(), alloc_new_pmd(), __pte_alloc(): the tables always exist here
            nxt = (new_addr + _TABLE_SPAN) & _TABLE_MASK
            extent = min(extent, nxt - new_addr)
            yield from self.move_ptes(
                vma, old_addr, old_addr + extent, new_vma, new_addr, need_rmap_locks
            )
            old_addr += extent
            new_addr += extent
        return length + old_addr - old_end

    def move_vma(self, vma: Vma, old_addr: int, old_len: int, new_len: int, new_addr: int) -> Gen:
        """mm/mremap.c move_vma(): copy_vma() at the destination, move the page tables, then
        do_munmap() the old range.  Returns new_addr or -ENOMEM (copy_vma() failed)."""
        mm = vma.vm_mm
        new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> PAGE_SHIFT)
        new_vma, vma, need_rmap_locks = yield from self.copy_vma(vma, new_addr, new_len, new_pgoff)
        if new_vma is None:
            return ENOMEM
        moved_len = yield from self.move_page_tables(
            vma, old_addr, new_vma, new_addr, old_len, need_rmap_locks
        )
        if moved_len < old_len:
            # "On error, move entries back from new area to old, which will succeed since page
            # tables still there, and then proceed to unmap new area instead of old."
            yield from self.move_page_tables(new_vma, new_addr, vma, old_addr, moved_len, True)
            vma = new_vma
            old_len = new_len
            old_addr = new_addr
            new_addr = ENOMEM
        # do_munmap() may fail to split (-ENOMEM); the kernel then only fixes its accounting
        yield from self.do_munmap(mm, old_addr, old_len)
        return new_addr

    def vma_to_resize(self, mm: MM, addr: int, old_len: int, new_len: int) -> Gen:
        """mm/mremap.c vma_to_resize(): the vma [addr, addr+old_len) lies in, or -EFAULT.
        new_len == old_len here, so the growth, mlock and accounting checks all pass."""
        vma = yield from self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            return EFAULT
        # "We can't remap across vm area boundaries"
        if old_len > vma.vm_end - addr:
            return EFAULT
        return vma

    def mremap_to(self, mm: MM, addr: int, old_len: int, new_addr: int, new_len: int) -> Gen:
        """mm/mremap.c mremap_to(): unmap whatever is at the destination, then move_vma().
        The destination must not overlap the source.  mmap_sem held for write."""
        if new_addr & (PAGE_SIZE - 1):
            return EINVAL
        if not self.in_task_range(new_addr, new_len):
            return EINVAL
        # "Check if the location we're moving into overlaps the old location at all, and fail
        # if it does."
        if new_addr <= addr and new_addr + new_len > addr:
            return EINVAL
        if addr <= new_addr and addr + old_len > new_addr:
            return EINVAL
        ret = yield from self.do_munmap(mm, new_addr, new_len)
        if ret:
            return ret
        # old_len == new_len: do_munmap(mm, addr + new_len, 0) is -EINVAL, ignored
        vma = yield from self.vma_to_resize(mm, addr, old_len, new_len)
        if isinstance(vma, int):
            return vma
        # get_unmapped_area(MAP_FIXED) returns new_addr: it is page aligned and in range
        return (yield from self.move_vma(vma, addr, old_len, new_len, new_addr))

    @staticmethod
    def in_task_range(addr: int, length: int) -> bool:
        """The model's TASK_SIZE check: [addr, addr+length) within the modelled address space
        (whose page tables exist)."""
        return TASK_LO <= addr and addr + length <= TASK_HI
