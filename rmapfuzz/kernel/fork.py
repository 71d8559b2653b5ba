"""kernel/fork.c and kernel/exit.c (v3.7): dup_mmap(), mm reference counting, exit_mm()."""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.mmap import Mmap
from rmapfuzz.kernel.objects import MM, TaskStruct
from rmapfuzz.kernel.rmap import ENOMEM


class Fork(Mmap):
    def dup_mmap(self, mm: MM, oldmm: MM) -> Gen:
        """kernel/fork.c dup_mmap(): both mmap_sems for write; for each parent vma copy the
        struct, anon_vma_fork() it, link it into the child, copy_page_range().  Returns 0 or
        -ENOMEM (fail_nomem, fail_nomem_anon_vma_fork: the half-built vma is freed, the vmas
        already linked stay for dup_mm() to tear down)."""
        retval = 0
        yield ev.Acquire(oldmm.mmap_sem, "w")
        yield ev.Acquire(mm.mmap_sem, "w")  # down_write_nested(SINGLE_DEPTH_NESTING)
        for mpnt in oldmm.mmap:
            if (yield from self.should_failslab("vm_area_cachep")):
                retval = ENOMEM  # fail_nomem
                break
            start, end, pgoff, flags = yield ev.Load(mpnt, "geometry")  # *tmp = *mpnt
            tmp = self.kmem_cache_alloc_vma(
                vm_mm=mm,
                vm_start=start,
                vm_end=end,
                vm_pgoff=pgoff,
                vm_flags=flags,
                anon_vma=mpnt.anon_vma,
            )
            yield ev.Alloc(tmp)
            if (yield from self.anon_vma_fork(tmp, mpnt)):
                yield from self.remove_vma(tmp)  # fail_nomem_anon_vma_fork
                retval = ENOMEM
                break
            yield ev.Store(mm, "mmap", (*mm.mmap, tmp))  # __vma_link_rb()
            yield from self.copy_page_range(mm, oldmm, mpnt)
        yield ev.Release(mm.mmap_sem, "w")
        yield ev.Release(oldmm.mmap_sem, "w")
        return retval

    def do_fork(self, parent: TaskStruct, oldmm: MM) -> Gen:
        """kernel/fork.c do_fork() -> copy_process() -> copy_mm() -> dup_mm(); the child becomes
        visible (wake_up_new_task) only when its mm is complete.  Returns the child's pid, or
        -ENOMEM: allocate_mm() failed, or dup_mmap() did and dup_mm()'s free_pt mmput()s the
        partial mm (exit_mmap() unlinks what was copied).  Unlike copy_process(), the pid is
        taken first, so a failed fork uses one up."""
        pid = self.alloc_pid()
        if (yield from self.should_failslab("mm_cachep")):
            return ENOMEM
        mm = self.mm_alloc()
        yield ev.Alloc(mm)
        if (yield from self.dup_mmap(mm, oldmm)):
            yield from self.mmput(mm)  # free_pt
            return ENOMEM
        child = TaskStruct(pid, mm=mm)
        yield ev.Alloc(child)
        self.procs[pid] = child
        return pid

    def get_task_mm(self, task: TaskStruct) -> Gen:
        """kernel/fork.c get_task_mm(): take an mm_users reference under task_lock()."""
        yield ev.Acquire(task.alloc_lock)
        mm = yield ev.Load(task, "mm")
        if mm is not None:
            yield self.atomic_inc(mm, "mm_users")
        yield ev.Release(task.alloc_lock)
        return mm

    def mmput(self, mm: MM) -> Gen:
        """kernel/fork.c mmput(): the last user tears the address space down (exit_mmap), then
        the mm_struct goes (mmdrop)."""
        if (yield self.atomic_dec_and_test(mm, "mm_users")):
            yield from self.exit_mmap(mm)
            yield ev.Free(mm)

    def exit_mm(self, task: TaskStruct) -> Gen:
        """kernel/exit.c exit_mm(): task->mm = NULL under task_lock(), then mmput().
        Returns -ESRCH for a task that has exited already (the exit operation's result)."""
        yield ev.Acquire(task.alloc_lock)
        mm = yield ev.Load(task, "mm")
        yield ev.Store(task, "mm", None)
        yield ev.Release(task.alloc_lock)
        if mm is None:
            return -3  # -ESRCH: this process has exited already
        yield from self.mmput(mm)
        return 0
