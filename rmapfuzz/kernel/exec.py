"""fs/exec.c (v3.7): exec's temporary stack relocation, setup_arg_pages() -> shift_arg_pages().

exec builds the new stack in a vma born with VM_STACK_INCOMPLETE_SETUP (__bprm_mm_init()), at
the top of the address space, and copies argv and envp into it; setup_arg_pages() then moves it
down to its final place with shift_arg_pages(): vma_adjust() to cover old and new range,
move_page_tables() with need_rmap_locks = false (no rmap lock at all), vma_adjust() to shrink
to the new range, and finally clears the flag.  Between the two vma_adjust()s vma_address()
of every stack page already points at the new place while its pte may still be at the old
one: migration would miss it, so try_to_unmap_anon(TTU_MIGRATION) skips a vma for which
is_vma_temporary_stack() holds (mm/rmap.c; a8bef8ff6ea1, 2.6.34, Mel Gorman) and no migration
entry is ever written into the temporary stack.

What is modelled: the stack is a VM_GROWSDOWN vma that ``mmap`` created with
VM_STACK_INCOMPLETE_SETUP (growsdown=2, standing for __bprm_mm_init()), possibly faulted in (the
argv copy) and possibly shared with forked children; the ``exec_shift`` operation runs
setup_arg_pages() on it.  Simplified: no linux_binprm, no argv/envp copy (faults stand for it),
no de_thread()/exec_mmap() (the mm is not new and other threads of the program may run),
arch_align_stack() and the RLIMIT_STACK checks are not modelled, the shift is an argument, and
the final expand_stack() of the stack by 128 KiB is left out (it would not fit the address
space; stack growth is modelled by faults).  The stack must be the topmost vma: with a vma above
it, the final shrinking vma_adjust() would take mprotect's case 4 and move the next vma's start
down -- a state exec never reaches, since at setup_arg_pages() time the stack is the only vma.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.mremap import EFAULT, ENOMEM, Mremap
from rmapfuzz.kernel.objects import VM_STACK_INCOMPLETE_SETUP, Vma


class Exec(Mremap):
    def shift_arg_pages(self, vma: Vma, shift: int) -> Gen:
        """fs/exec.c shift_arg_pages(): move the stack vma and its ptes down by shift bytes.
        vm_pgoff does not change: page->index of the stack pages stays valid."""
        mm = vma.vm_mm
        old_start = vma.vm_start
        old_end = vma.vm_end
        length = old_end - old_start
        new_start = old_start - shift
        new_end = old_end - shift
        if new_start > new_end:
            raise KernelBug("BUG_ON(new_start > new_end) in shift_arg_pages()")
        # "ensure there are no vmas between where we want to go and where we are"
        if vma is not (yield from self.find_vma(mm, new_start)):
            return EFAULT
        # "cover the whole range: [new_start, old_end)"
        if (yield from self.vma_adjust(vma, new_start, old_end, vma.vm_pgoff, None)):
            return ENOMEM
        # "move the page tables downwards, on failure we rely on process cleanup to remove
        # whatever mess we made."
        moved = yield from self.move_page_tables(vma, old_start, vma, new_start, length, False)
        if moved != length:
            return ENOMEM
        # lru_add_drain(), tlb_gather_mmu(), free_pgd_range(), tlb_finish_mmu(): the page
        # tables of the model's small address space are never freed
        # "Shrink the vma to just the new range.  Always succeeds."
        yield from self.vma_adjust(vma, new_start, new_end, vma.vm_pgoff, None)
        return 0

    def setup_arg_pages(self, vma: Vma, stack_shift: int) -> Gen:
        """fs/exec.c setup_arg_pages() from down_write(&mm->mmap_sem), for the model's stack vma:
        mprotect_fixup() to the stack flags with VM_STACK_INCOMPLETE_SETUP (the vma already has
        them: a no-op), shift_arg_pages(), then clear the flag ("mprotect_fixup is overkill to
        remove the temporary stack flags": a plain store, which walkers may race with)."""
        vm_flags = vma.vm_flags | VM_STACK_INCOMPLETE_SETUP
        ret = yield from self.mprotect_fixup(vma, None, vma.vm_start, vma.vm_end, vm_flags)
        if isinstance(ret, int):
            return ret
        if stack_shift:
            ret = yield from self.shift_arg_pages(vma, stack_shift)
            if ret:
                return ret
        yield ev.Store(vma, "vm_flags", vma.vm_flags & ~VM_STACK_INCOMPLETE_SETUP)
        # expand_stack(vma, stack_base): not modelled (see the module docstring)
        return 0
