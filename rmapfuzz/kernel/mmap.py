"""mm/mmap.c (v3.7) and mm/mprotect.c: vma list, merge, split, stack growth, munmap, exit.

Fields that change only under mmap_sem held for write (the vma list, vm_end, vm_flags,
anon_vma_chain of a vma being split) are read with plain Python reads by functions that hold
mmap_sem for write; everything else goes through engine events.  Differences from the kernel:

* mmap() never merges the new vma with its neighbours (mmap_region's vma_merge is skipped);
  mprotect() does merge, through vma_merge() and vma_adjust() exactly as in 3.7.
* change_protection() write-protects every present pte (a private anonymous vma's
  vm_page_prot never has the write bit: COW) and makes writable migration entries read-only.
* There is no map_count limit, no accounting (acct_stack_growth always succeeds).
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.memory import Memory, table_ranges
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    PAGE_SIZE,
    TASK_HI,
    TASK_LO,
    VM_WRITE,
    AnonVma,
    Migration,
    Present,
    Vma,
)
from rmapfuzz.kernel.rmap import ENOMEM

_RWX = 0x7


class Mmap(Memory):
    # ----------------------------------------------------------- list helpers

    def find_vma(self, mm: MM, addr: int) -> Gen:
        """mm/mmap.c find_vma(): the first vma with addr < vm_end (mmap_sem held)."""
        vmas = yield ev.Load(mm, "mmap")
        for vma in vmas:
            if addr < vma.vm_end:
                return vma
        return None

    def _vma_unlink(self, mm: MM, vma: Vma) -> Gen:
        """mm/mmap.c __vma_unlink()."""
        yield ev.Store(mm, "mmap", tuple(v for v in mm.mmap if v is not vma))

    def _insert_vm_struct(self, mm: MM, vma: Vma) -> Gen:
        """mm/mmap.c __insert_vm_struct()."""
        yield ev.Store(mm, "mmap", tuple(sorted((*mm.mmap, vma), key=lambda v: v.vm_start)))

    def find_vma_links(self, mm: MM, addr: int, end: int) -> Gen:
        """mm/mmap.c find_vma_links(): the vma after which [addr, end) would be linked
        (``*pprev``), or -ENOMEM if a vma overlaps the range.  mmap_sem held for write."""
        prev = None
        for vma in (yield ev.Load(mm, "mmap")):
            if vma.vm_end > addr:
                if vma.vm_start < end:
                    return ENOMEM
                break
            prev = vma
        return prev

    def vma_link(self, mm: MM, vma: Vma, prev: Vma | None) -> Gen:
        """mm/mmap.c vma_link() -> __vma_link(): into the mm's list and rbtree after prev
        (no file: no i_mmap_mutex).  The list is kept sorted, so prev only documents."""
        yield from self._insert_vm_struct(mm, vma)

    def remove_vma(self, vma: Vma) -> Gen:
        """mm/mmap.c remove_vma(): free the vma struct."""
        yield ev.Free(vma)

    # ------------------------------------------------------------ vma_adjust

    def anon_vma_merge(self, vma: Vma, next_: Vma) -> Gen:
        """include/linux/rmap.h anon_vma_merge(): same anon_vma means same chain (d0e9fe1758f2),
        so next's chain can simply be dropped."""
        if vma.anon_vma is not next_.anon_vma:
            raise KernelBug(
                f"VM_BUG_ON(vma->anon_vma != next->anon_vma) in anon_vma_merge({vma.short()}, "
                f"{next_.short()})"
            )
        yield from self.unlink_anon_vmas(next_)

    #: 4.9's __vma_adjust() imports case 6's anon_vma from next->vm_next in the first pass,
    #: before anything is removed; 3.7 imports it in the second pass, after next is freed, so
    #: an -ENOMEM there returns to mprotect_fixup() with its vma freed (Mainline sets this)
    import_from_next_next = False

    def vma_adjust_import(self, importer: Vma, exporter: Vma) -> Gen:
        """vma_adjust()'s "Easily overlooked" import (mm/mmap.c): attach the expanding vma to
        the shrinking one's chain, then set its ->anon_vma (3.7 order).  0 or -ENOMEM."""
        if (yield from self.anon_vma_clone(importer, exporter)):
            return ENOMEM
        yield ev.Store(importer, "anon_vma", exporter.anon_vma)
        return 0

    def vma_adjust(self, vma: Vma, start: int, end: int, pgoff: int, insert: Vma | None) -> Gen:
        """mm/mmap.c vma_adjust(): change vma's range under the root anon_vma lock, with the
        interval-tree pre/post update around the three field writes; merge cases remove or
        shift the next vma.  mmap_sem held for write.  Returns 0, or -ENOMEM when the import
        clone fails (in 3.7's second pass of case 6, after next was already removed)."""
        mm = vma.vm_mm
        next_ = self.vm_next(mm, vma)
        adjust_next = 0
        remove_next = 0
        again = False
        while True:
            if next_ is not None and insert is None:
                exporter = importer = None
                if again or end >= next_.vm_end:
                    # vma expands over all of next (and perhaps the one after: case 6)
                    remove_next = 1 + (end > next_.vm_end)
                    end = next_.vm_end
                    exporter, importer = next_, vma
                    if self.import_from_next_next:
                        if again:
                            exporter = None  # imported in the first pass
                        elif remove_next == 2 and next_.anon_vma is None:
                            exporter = self.vm_next(mm, next_)
                elif end > next_.vm_start:
                    # mprotect case 5: shift the boundary up
                    adjust_next = (end - next_.vm_start) >> PAGE_SHIFT
                    exporter, importer = next_, vma
                elif end < vma.vm_end:
                    # mprotect case 4: shift the boundary down
                    adjust_next = -((vma.vm_end - end) >> PAGE_SHIFT)
                    exporter, importer = vma, next_
                # "Easily overlooked": the importer must be attached to the exporter's chain.
                if (
                    exporter is not None
                    and importer is not None
                    and exporter.anon_vma
                    and not importer.anon_vma
                    and (yield from self.vma_adjust_import(importer, exporter))
                ):
                    return ENOMEM

            anon_vma: AnonVma | None = vma.anon_vma
            if anon_vma is None and adjust_next:
                anon_vma = next_.anon_vma  # type: ignore[union-attr]
            if anon_vma is not None:
                if adjust_next and next_.anon_vma and anon_vma is not next_.anon_vma:  # type: ignore[union-attr]
                    raise KernelBug(
                        "VM_BUG_ON(adjust_next && next->anon_vma && anon_vma != "
                        "next->anon_vma) in vma_adjust()"
                    )
                yield from self.anon_vma_lock_write(anon_vma)
                yield from self.anon_vma_interval_tree_pre_update_vma(vma)
                if adjust_next:
                    yield from self.anon_vma_interval_tree_pre_update_vma(next_)

            yield ev.Store(vma, "vm_start", start)
            yield ev.Store(vma, "vm_end", end)
            yield ev.Store(vma, "vm_pgoff", pgoff)
            if adjust_next:
                assert next_ is not None
                yield ev.Store(next_, "vm_start", next_.vm_start + (adjust_next << PAGE_SHIFT))
                yield ev.Store(next_, "vm_pgoff", next_.vm_pgoff + adjust_next)

            if remove_next:
                yield from self._vma_unlink(mm, next_)  # type: ignore[arg-type]
            elif insert is not None:
                yield from self._insert_vm_struct(mm, insert)

            if anon_vma is not None:
                yield from self.anon_vma_interval_tree_post_update_vma(vma)
                if adjust_next:
                    yield from self.anon_vma_interval_tree_post_update_vma(next_)
                yield from self.anon_vma_unlock_write(anon_vma)

            if remove_next:
                assert next_ is not None
                if next_.anon_vma is not None:
                    yield from self.anon_vma_merge(vma, next_)
                yield from self.remove_vma(next_)
                if remove_next == 2:
                    next_ = self.vm_next(mm, vma)
                    again = True
                    continue
            return 0

    # ------------------------------------------------------------- vma_merge

    @staticmethod
    def is_mergeable_anon_vma(a1: AnonVma | None, a2: AnonVma | None, vma: Vma | None) -> bool:
        """mm/mmap.c is_mergeable_anon_vma(): the list_is_singular() test avoids merging vmas
        cloned from parents."""
        if (a1 is None or a2 is None) and (vma is None or len(vma.anon_vma_chain) == 1):
            return True
        return a1 is a2

    def can_vma_merge_before(
        self, vma: Vma, flags: int, anon_vma: AnonVma | None, pgoff: int
    ) -> bool:
        """mm/mmap.c can_vma_merge_before()."""
        return (
            vma.vm_flags == flags
            and self.is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma)
            and vma.vm_pgoff == pgoff
        )

    def can_vma_merge_after(
        self, vma: Vma, flags: int, anon_vma: AnonVma | None, pgoff: int
    ) -> bool:
        """mm/mmap.c can_vma_merge_after()."""
        return (
            vma.vm_flags == flags
            and self.is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma)
            and vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT) == pgoff
        )

    def vma_merge(
        self,
        mm: MM,
        prev: Vma | None,
        addr: int,
        end: int,
        flags: int,
        anon_vma: AnonVma | None,
        pgoff: int,
    ) -> Gen:
        """mm/mmap.c vma_merge(): cases 1-8, all by vma_adjust().  mmap_sem held for write."""
        pglen = (end - addr) >> PAGE_SHIFT
        next_ = self.vm_next(mm, prev) if prev is not None else (mm.mmap[0] if mm.mmap else None)
        area = next_
        if next_ is not None and next_.vm_end == end:  # cases 6, 7, 8
            next_ = self.vm_next(mm, next_)
        if (
            prev is not None
            and prev.vm_end == addr
            and self.can_vma_merge_after(prev, flags, anon_vma, pgoff)
        ):
            if (
                next_ is not None
                and end == next_.vm_start
                and self.can_vma_merge_before(next_, flags, anon_vma, pgoff + pglen)
                and self.is_mergeable_anon_vma(prev.anon_vma, next_.anon_vma, None)
            ):  # cases 1, 6
                err = yield from self.vma_adjust(
                    prev, prev.vm_start, next_.vm_end, prev.vm_pgoff, None
                )
            else:  # cases 2, 5, 7
                err = yield from self.vma_adjust(prev, prev.vm_start, end, prev.vm_pgoff, None)
            return None if err else prev
        if (
            next_ is not None
            and end == next_.vm_start
            and self.can_vma_merge_before(next_, flags, anon_vma, pgoff + pglen)
        ):
            if prev is not None and addr < prev.vm_end:  # case 4
                err = yield from self.vma_adjust(prev, prev.vm_start, addr, prev.vm_pgoff, None)
            else:  # cases 3, 8
                assert area is not None
                err = yield from self.vma_adjust(
                    area, addr, next_.vm_end, next_.vm_pgoff - pglen, None
                )
            return None if err else area
        return None

    # ------------------------------------------- find_mergeable_anon_vma

    def anon_vma_compatible(self, a: Vma, b: Vma) -> Gen:
        """mm/mmap.c anon_vma_compatible(): adjacent, same flags but RWX, pgoff-linear.
        Each vma's fields are read as one struct read (mmap_sem is held for read only)."""
        a_start, a_end, a_pgoff, a_flags = yield ev.Load(a, "geometry")
        b_start, _, b_pgoff, b_flags = yield ev.Load(b, "geometry")
        return (
            a_end == b_start
            and not ((a_flags ^ b_flags) & ~_RWX)
            and b_pgoff == a_pgoff + ((b_start - a_start) >> PAGE_SHIFT)
        )

    def reusable_anon_vma(self, old: Vma, a: Vma, b: Vma) -> Gen:
        """mm/mmap.c reusable_anon_vma(): only a singular chain may be shared (d0e9fe1758f2)."""
        if (yield from self.anon_vma_compatible(a, b)):
            anon_vma = yield ev.Load(old, "anon_vma")
            if anon_vma is not None and len((yield ev.Load(old, "anon_vma_chain"))) == 1:
                return anon_vma
        return None

    def find_mergeable_anon_vma(self, vma: Vma) -> Gen:
        """mm/mmap.c find_mergeable_anon_vma(): reuse a neighbour's anon_vma, no locks taken."""
        mm = vma.vm_mm
        near = self.vm_next(mm, vma)
        if near is not None:
            anon_vma = yield from self.reusable_anon_vma(near, vma, near)
            if anon_vma is not None:
                return anon_vma
        near = self.vm_prev(mm, vma)
        if near is not None:
            anon_vma = yield from self.reusable_anon_vma(near, near, vma)
            if anon_vma is not None:
                return anon_vma
        return None

    # ---------------------------------------------------------- stack growth

    def expand_downwards(self, vma: Vma, address: int) -> Gen:
        """mm/mmap.c expand_downwards(): grow a VM_GROWSDOWN vma with mmap_sem held only for
        read; the root anon_vma lock is what serialises it against rmap walks and against
        concurrent expand_stack()s."""
        # "We must make sure the anon_vma is allocated so that the anon_vma locking is not
        # a noop" -- before security_mmap_addr() refuses an address below mmap_min_addr.
        if (yield from self.anon_vma_prepare(vma)):
            return ENOMEM
        if address < TASK_LO:
            return -1
        anon_vma = yield ev.Load(vma, "anon_vma")  # vma_lock_anon_vma()
        yield from self.anon_vma_lock_write(anon_vma)
        error = 0
        start = yield ev.Load(vma, "vm_start")
        if address < start:
            grow = (start - address) >> PAGE_SHIFT
            error = -1
            pgoff = yield ev.Load(vma, "vm_pgoff")
            if grow <= pgoff:
                error = 0
                yield from self.anon_vma_interval_tree_pre_update_vma(vma)
                yield ev.Store(vma, "vm_start", address)
                yield ev.Store(vma, "vm_pgoff", pgoff - grow)
                yield from self.anon_vma_interval_tree_post_update_vma(vma)
        yield from self.anon_vma_unlock_write(anon_vma)  # vma_unlock_anon_vma()
        return error

    def expand_stack(self, vma: Vma, address: int) -> Gen:
        """mm/mmap.c expand_stack() of 3.7 (CONFIG_STACK_GROWSUP off): expand_downwards() with
        mmap_sem held only for read.  Returns the vma now covering address, or None."""
        return vma if (yield from self.expand_downwards(vma, address)) == 0 else None

    # --------------------------------------------------------------- split

    def _split_vma(self, mm: MM, vma: Vma, addr: int, new_below: bool) -> Gen:
        """mm/mmap.c __split_vma(): copy vma, clone its anon_vma chain (no refcount change),
        then vma_adjust() the original with the copy inserted.  0 or -ENOMEM (out_err paths:
        the copy's chain is unlinked and the copy freed)."""
        if (yield from self.should_failslab("vm_area_cachep")):
            return ENOMEM
        new = self.kmem_cache_alloc_vma(
            vm_mm=mm,
            vm_start=vma.vm_start,
            vm_end=vma.vm_end,
            vm_pgoff=vma.vm_pgoff,
            vm_flags=vma.vm_flags,
            anon_vma=vma.anon_vma,
        )
        if new_below:
            new.vm_end = addr
        else:
            new.vm_start = addr
            new.vm_pgoff += (addr - vma.vm_start) >> PAGE_SHIFT
        yield ev.Alloc(new)
        if (yield from self.anon_vma_clone(new, vma)):
            yield from self.remove_vma(new)  # out_free_vma
            return ENOMEM
        if new_below:
            err = yield from self.vma_adjust(
                vma, addr, vma.vm_end, vma.vm_pgoff + ((addr - new.vm_start) >> PAGE_SHIFT), new
            )
        else:
            err = yield from self.vma_adjust(vma, vma.vm_start, addr, vma.vm_pgoff, new)
        if not err:
            return 0
        # "Clean everything up if vma_adjust failed." (it cannot: an insert never imports)
        yield from self.unlink_anon_vmas(new)
        yield from self.remove_vma(new)
        return err

    def split_vma(self, mm: MM, vma: Vma, addr: int, new_below: bool) -> Gen:
        """mm/mmap.c split_vma()."""
        return (yield from self._split_vma(mm, vma, addr, new_below))

    # --------------------------------------------------------------- munmap

    def detach_vmas_to_be_unmapped(self, mm: MM, vma: Vma, end: int) -> Gen:
        """mm/mmap.c detach_vmas_to_be_unmapped(): take [vma, end) off the mm's list."""
        gone = tuple(v for v in mm.mmap if v.vm_start >= vma.vm_start and v.vm_start < end)
        yield ev.Store(mm, "mmap", tuple(v for v in mm.mmap if v not in gone))
        return gone

    def unmap_region(self, mm: MM, vmas: tuple[Vma, ...], start: int, end: int) -> Gen:
        """mm/mmap.c unmap_region(): zap the ptes, then free_pgtables() (unlink_anon_vmas)."""
        yield from self.unmap_vmas(mm, vmas, start, end)
        yield from self.free_pgtables(vmas)

    def do_munmap(self, mm: MM, start: int, length: int) -> Gen:
        """mm/mmap.c do_munmap(): split at both ends if needed, detach, unmap, free."""
        end = start + length
        vma = yield from self.find_vma(mm, start)
        if vma is None or vma.vm_start >= end:
            return 0
        if start > vma.vm_start:
            error = yield from self._split_vma(mm, vma, start, False)
            if error:
                return error
        last = yield from self.find_vma(mm, end)
        if last is not None and end > last.vm_start:
            error = yield from self._split_vma(mm, last, end, True)
            if error:
                return error
        first = yield from self.find_vma(mm, start)
        gone = yield from self.detach_vmas_to_be_unmapped(mm, first, end)
        yield from self.unmap_region(mm, gone, start, end)
        for v in gone:
            yield from self.remove_vma(v)
        return 0

    # ----------------------------------------------------------------- mmap

    def mmap_region(self, mm: MM, addr: int, length: int, flags: int) -> Gen:
        """mm/mmap.c mmap_region() for a private anonymous mapping at a fixed address:
        pgoff = addr >> PAGE_SHIFT, no anon_vma until the first fault."""
        end = addr + length
        if addr < TASK_LO or end > TASK_HI or length <= 0:
            return -22
        for v in (yield ev.Load(mm, "mmap")):
            if v.vm_start < end and addr < v.vm_end:
                return -17  # occupied: this model does not do MAP_FIXED replacement
        if (yield from self.should_failslab("vm_area_cachep")):
            return ENOMEM
        vma = self.kmem_cache_alloc_vma(
            vm_mm=mm, vm_start=addr, vm_end=end, vm_pgoff=addr >> PAGE_SHIFT, vm_flags=flags
        )
        yield ev.Alloc(vma)
        yield from self._insert_vm_struct(mm, vma)
        return addr

    # ------------------------------------------------------------- mprotect

    def mprotect_fixup(
        self, vma: Vma, prev: Vma | None, start: int, end: int, newflags: int
    ) -> Gen:
        """mm/mprotect.c mprotect_fixup(): try vma_merge(), else split at start and end, then
        set the flags.  Returns the new *pprev, or -ENOMEM if a split failed."""
        mm = vma.vm_mm
        if newflags == vma.vm_flags:
            return vma
        pgoff = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
        merged = yield from self.vma_merge(mm, prev, start, end, newflags, vma.anon_vma, pgoff)
        if merged is not None:
            vma = merged
        else:
            if start != vma.vm_start:
                error = yield from self.split_vma(mm, vma, start, True)
                if error:
                    return error
            if end != vma.vm_end:
                error = yield from self.split_vma(mm, vma, end, False)
                if error:
                    return error
        yield ev.Store(vma, "vm_flags", newflags)
        yield from self.change_protection(vma, start, end)
        return vma

    def change_pte_range(self, mm: MM, addr: int, end: int) -> Gen:
        """mm/mprotect.c change_pte_range(): under the PTL, pte_modify() each present pte to
        the vma's new vm_page_prot -- read-only for a private anonymous vma whatever VM_WRITE
        says (writes COW through do_wp_page()) -- and make writable migration entries
        read-only; swap entries are left alone."""
        pt = yield from self.pte_lockptr(mm, addr)
        yield ev.Acquire(pt.ptl)
        for a in range(addr, end, PAGE_SIZE):
            pte = yield ev.Load(pt, "ptes", a)
            if type(pte) is Present and pte.write:
                yield ev.Store(pt, "ptes", Present(pte.page, False, pte.young), a)
            elif type(pte) is Migration and pte.write:
                yield ev.Store(pt, "ptes", Migration(pte.page, False), a)
        yield ev.Release(pt.ptl)

    def change_protection(self, vma: Vma, start: int, end: int) -> Gen:
        """mm/mprotect.c change_protection() (dirty_accountable is 0 for anonymous memory)."""
        for addr, nxt in table_ranges(start, end):
            yield from self.change_pte_range(vma.vm_mm, addr, nxt)

    def do_mprotect(self, mm: MM, start: int, length: int, write: bool) -> Gen:
        """mm/mprotect.c sys_mprotect() after down_write(mmap_sem): fix up each vma in range."""
        end = start + length
        vma = yield from self.find_vma(mm, start)
        if vma is None or vma.vm_start > start:
            return -12
        prev = self.vm_prev(mm, vma)
        if start > vma.vm_start:
            prev = vma
        nstart = start
        while True:
            newflags = (vma.vm_flags & ~_RWX) | (VM_WRITE if write else 0)
            tmp = min(vma.vm_end, end)
            prev = yield from self.mprotect_fixup(vma, prev, nstart, tmp, newflags)
            if type(prev) is int:
                return prev
            assert prev is not None
            nstart = max(tmp, prev.vm_end)
            if nstart >= end:
                return 0
            nxt = self.vm_next(mm, prev)
            if nxt is None or nxt.vm_start != nstart:
                return -12
            vma = nxt

    # ------------------------------------------------------------------ exit

    def exit_mmap(self, mm: MM) -> Gen:
        """mm/mmap.c exit_mmap(): no mmap_sem (no users left): zap everything, unlink every
        vma's anon_vmas (free_pgtables), free the vmas."""
        vmas = yield ev.Load(mm, "mmap")
        yield from self.unmap_vmas(mm, vmas, TASK_LO, TASK_HI)
        yield from self.free_pgtables(vmas)
        for vma in vmas:
            yield from self.remove_vma(vma)

    # ---------------------------------------------------------------- mremap

    def copy_vma(self, vma: Vma, addr: int, length: int, pgoff: int) -> Gen:
        """mm/mmap.c copy_vma(): the vma mremap moves vma's pages into, at [addr, addr+length)
        with pgoff: either a neighbour that vma_merge() extended over the range, or a copy of
        vma linked into every anon_vma of vma's chain (anon_vma_clone) and into the mm.

        Returns (new_vma or None, vma, need_rmap_locks) -- the kernel's return value and its
        ``*vmap`` and ``*need_rmap_locks`` out-parameters.  need_rmap_locks is False for a
        fresh copy: its avcs have a pgoff >= vma's and equal keys are walked in insertion
        order, so every rmap walk meets vma before new_vma.  mmap_sem held for write."""
        mm = vma.vm_mm
        vma_start = vma.vm_start
        faulted_in_anon_vma = True
        # "If anonymous vma has not yet been faulted, update new pgoff to match new location,
        # to increase its chance of merging."
        if vma.anon_vma is None:
            pgoff = addr >> PAGE_SHIFT
            faulted_in_anon_vma = False
        prev = yield from self.find_vma_links(mm, addr, addr + length)
        if isinstance(prev, int):
            return None, vma, False  # -ENOMEM: "should never get here"
        new_vma = yield from self.vma_merge(
            mm, prev, addr, addr + length, vma.vm_flags, vma.anon_vma, pgoff
        )
        if new_vma is not None:
            # "Source vma may have been merged into new_vma"
            if vma_start >= new_vma.vm_start and vma_start < new_vma.vm_end:
                # only an unfaulted vma, whose pgoff was just reset, can merge with itself
                if faulted_in_anon_vma:
                    raise KernelBug(
                        f"VM_BUG_ON(faulted_in_anon_vma) in copy_vma({vma.short()}): mremap "
                        f"merged a faulted vma with itself"
                    )
                vma = new_vma
            return new_vma, vma, new_vma.vm_pgoff <= vma.vm_pgoff
        if (yield from self.should_failslab("vm_area_cachep")):
            return None, vma, False
        _, _, _, flags = yield ev.Load(vma, "geometry")  # *new_vma = *vma
        new_vma = self.kmem_cache_alloc_vma(
            vm_mm=mm,
            vm_start=addr,
            vm_end=addr + length,
            vm_pgoff=pgoff,
            vm_flags=flags,
            anon_vma=vma.anon_vma,
        )
        yield ev.Alloc(new_vma)
        if (yield from self.anon_vma_clone(new_vma, vma)):
            yield ev.Free(new_vma)  # out_free_mempol, out_free_vma: kmem_cache_free()
            return None, vma, False
        yield from self.vma_link(mm, new_vma, prev)
        return new_vma, vma, False
