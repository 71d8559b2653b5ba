"""The operations a program can run: system calls and kernel activities, by name.

Each entry point takes the locks its kernel path takes before reaching the modelled functions
(mmap_sem for read or write, an mm_users reference) and returns what the kernel would return
(0, a pid, a negative errno).  An operation on a process that does not exist (yet or any more)
returns -ESRCH; one on a page frame that does not exist returns -EINVAL.
"""

from __future__ import annotations

from typing import Any

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.migrate import Migrate, MigrationContext
from rmapfuzz.kernel.objects import (
    PAGE_SHIFT,
    PAGE_SIZE,
    TASK_HI,
    TASK_LO,
    VM_GROWSDOWN,
    VM_WRITE,
    TaskStruct,
)

ESRCH = -3
EINVAL = -22
EFAULT = -14


@attrs.frozen
class OpSpec:
    name: str
    args: tuple[str, ...]
    method: str
    doc: str


OPS: dict[str, OpSpec] = {
    s.name: s
    for s in (
        OpSpec(
            "mmap",
            ("pid", "addr", "npages", "growsdown"),
            "sys_mmap",
            "mmap a private anonymous region at addr (VM_GROWSDOWN if growsdown)",
        ),
        OpSpec(
            "fault",
            ("pid", "addr"),
            "do_page_fault",
            "write fault at addr: anonymous fault, stack growth, or migration-entry wait",
        ),
        OpSpec("fork", ("pid",), "sys_fork", "fork the process (dup_mmap); returns the child pid"),
        OpSpec("exit", ("pid",), "do_exit", "the process exits (exit_mm -> mmput -> exit_mmap)"),
        OpSpec(
            "munmap",
            ("pid", "addr", "npages"),
            "sys_munmap",
            "unmap a range, splitting vmas at its ends",
        ),
        OpSpec(
            "mprotect",
            ("pid", "addr", "npages", "write"),
            "sys_mprotect",
            "change VM_WRITE on a range: vma_merge or split",
        ),
        OpSpec(
            "migrate", ("pfn",), "compact_page", "compaction migrates page frame pfn (no mmap_sem)"
        ),
        OpSpec(
            "move_pages",
            ("pid", "addr"),
            "sys_move_pages",
            "migrate the page mapped at addr with mmap_sem held for read (NUMA)",
        ),
        OpSpec(
            "reclaim",
            ("pfn",),
            "shrink_page",
            "reclaim probes page frame pfn: trylock_page + page_referenced()",
        ),
    )
}


class Syscalls(Migrate):
    def start_op(self, name: str, args: tuple[int, ...]) -> Gen:
        """A fresh generator running operation ``name`` with ``args``."""
        return getattr(self, OPS[name].method)(*args)

    def _task(self, pid: int) -> Any:
        return self.procs.get(pid)

    def _mm_of(self, pid: int) -> Gen:
        task = self._task(pid)
        if task is None:
            return None
        return (yield from self.get_task_mm(task))

    # --------------------------------------------------------------- ops

    def sys_mmap(self, pid: int, addr: int, npages: int, growsdown: int) -> Gen:
        """mm/mmap.c sys_mmap_pgoff(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE)."""
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "w")
        flags = VM_WRITE | (VM_GROWSDOWN if growsdown else 0)
        ret = yield from self.mmap_region(mm, addr, npages << PAGE_SHIFT, flags)
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def do_page_fault(self, pid: int, addr: int) -> Gen:
        """arch/x86/mm/fault.c __do_page_fault(): mmap_sem for read, find_vma, expand_stack
        below a VM_GROWSDOWN vma, handle_mm_fault()."""
        addr &= ~(PAGE_SIZE - 1)
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "r")
        ret = yield from self.do_page_fault_locked(mm, addr)
        yield ev.Release(mm.mmap_sem, "r")
        yield from self.mmput(mm)
        return ret

    def do_page_fault_locked(self, mm: Any, addr: int) -> Gen:
        vma = yield from self.find_vma(mm, addr)
        if vma is None:
            return EFAULT
        if (yield ev.Load(vma, "vm_start")) > addr:
            if not vma.vm_flags & VM_GROWSDOWN:
                return EFAULT
            vma = yield from self.expand_stack(vma, addr)
            if vma is None:
                return EFAULT
        if not vma.vm_flags & VM_WRITE:
            return EFAULT  # access_error(): every modelled fault is a write fault
        return (yield from self.handle_mm_fault(mm, vma, addr))

    def sys_fork(self, pid: int) -> Gen:
        """kernel/fork.c sys_fork() -> do_fork()."""
        task = self._task(pid)
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        child = yield from self.do_fork(task, mm)
        yield from self.mmput(mm)
        return child

    def do_exit(self, pid: int) -> Gen:
        """kernel/exit.c do_exit() -> exit_mm()."""
        task = self._task(pid)
        if task is None:
            return ESRCH
        return (yield from self.exit_mm(task))

    def sys_munmap(self, pid: int, addr: int, npages: int) -> Gen:
        """mm/mmap.c sys_munmap() -> vm_munmap(): do_munmap() under mmap_sem for write."""
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        if addr & (PAGE_SIZE - 1) or npages <= 0 or addr < TASK_LO or addr >= TASK_HI:
            yield from self.mmput(mm)
            return EINVAL
        yield ev.Acquire(mm.mmap_sem, "w")
        ret = yield from self.do_munmap(mm, addr, npages << PAGE_SHIFT)
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def sys_mprotect(self, pid: int, addr: int, npages: int, write: int) -> Gen:
        """mm/mprotect.c sys_mprotect(): mmap_sem for write, mprotect_fixup() each vma."""
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        if addr & (PAGE_SIZE - 1) or npages <= 0:
            yield from self.mmput(mm)
            return EINVAL
        yield ev.Acquire(mm.mmap_sem, "w")
        ret = yield from self.do_mprotect(mm, addr, npages << PAGE_SHIFT, bool(write))
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def compact_page(self, pfn: int) -> Gen:
        """mm/compaction.c compact_zone() -> migrate_pages() for one isolated page frame, with
        no mmap_sem: the walkers must fend for themselves."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        return (yield from self.migrate_pages(page, MigrationContext()))

    def sys_move_pages(self, pid: int, addr: int) -> Gen:
        """mm/migrate.c sys_move_pages() -> do_move_page_to_node_array(): mmap_sem held for
        read across follow_page() and migrate_pages() (the NUMA-fault context of 2012)."""
        addr &= ~(PAGE_SIZE - 1)
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "r")
        ret = EFAULT
        vma = yield from self.find_vma(mm, addr)
        if vma is not None and (yield ev.Load(vma, "vm_start")) <= addr:
            page = yield from self.follow_page(vma, addr)
            if page is not None:
                ret = yield from self.migrate_pages(page, MigrationContext(mm, vma, addr))
        yield ev.Release(mm.mmap_sem, "r")
        yield from self.mmput(mm)
        return ret

    def shrink_page(self, pfn: int) -> Gen:
        """mm/vmscan.c shrink_page_list() for one page: trylock_page(), page_referenced()."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        if not (yield ev.TryAcquire(page.lock)):
            return 0
        referenced = yield from self.page_referenced(page)
        yield ev.Release(page.lock)
        return referenced

    # ------------------------------------------------------------ boot

    def boot(self) -> None:
        """Create pid 1 with an empty address space (what init has before any mmap)."""
        pid = self.alloc_pid()
        mm = self.mm_alloc()
        self.procs[pid] = TaskStruct(pid, mm=mm)
