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
from rmapfuzz.kernel.exec import Exec
from rmapfuzz.kernel.migrate import Migrate, MigrationContext
from rmapfuzz.kernel.objects import (
    PAGE_SHIFT,
    PAGE_SIZE,
    TASK_HI,
    TASK_LO,
    VM_GROWSDOWN,
    VM_STACK_INCOMPLETE_SETUP,
    VM_WRITE,
    TaskStruct,
)
from rmapfuzz.kernel.rmap import SWAP_AGAIN, SWAP_SUCCESS, TTU_UNMAP

ESRCH = -3
EAGAIN = -11
EBUSY = -16
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
            "mmap a private anonymous region at addr (VM_GROWSDOWN if growsdown; 2: exec's "
            "stack before setup_arg_pages, VM_GROWSDOWN|VM_STACK_INCOMPLETE_SETUP)",
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
            "mremap",
            ("pid", "addr", "npages", "new_addr"),
            "sys_mremap",
            "move a range to new_addr (MREMAP_MAYMOVE|MREMAP_FIXED): copy_vma, move_ptes, "
            "munmap of the old range",
        ),
        OpSpec(
            "exec_shift",
            ("pid", "addr", "npages"),
            "sys_exec_shift",
            "exec's setup_arg_pages on the VM_STACK_INCOMPLETE_SETUP stack at addr: "
            "shift_arg_pages moves it npages down, then the flag is cleared",
        ),
        OpSpec(
            "migrate",
            ("pfn",),
            "compact_page",
            "compaction migrates page frame pfn (no mmap_sem; -EBUSY if it is not on the LRU)",
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
        OpSpec(
            "fail_nth",
            ("n", "times"),
            "write_fail_nth",
            "fault injection: the n-th next slab allocation of this task fails, and the "
            "times-1 after it (/proc/self/task/<tid>/fail-nth)",
        ),
        OpSpec(
            "read",
            ("pid", "addr"),
            "do_read_fault",
            "read fault at addr: swap-in without FAULT_FLAG_WRITE, young bit, migration wait",
        ),
        OpSpec(
            "swapout",
            ("pfn",),
            "shrink_page_swap",
            "reclaim swaps page frame pfn out: add_to_swap + try_to_unmap(TTU_UNMAP)",
        ),
        OpSpec(
            "pin",
            ("pfn",),
            "ksm_pin_page",
            "KSM stand-in: page_get_anon_vma, a locked walk of the pinned anon_vma, put_anon_vma",
        ),
    )
}


class Syscalls(Migrate, Exec):
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
        if growsdown == 2:  # fs/exec.c __bprm_mm_init(): VM_STACK_FLAGS | INCOMPLETE_SETUP
            flags |= VM_STACK_INCOMPLETE_SETUP
        ret = yield from self.mmap_region(mm, addr, npages << PAGE_SHIFT, flags)
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def sys_mremap(self, pid: int, addr: int, npages: int, new_addr: int) -> Gen:
        """mm/mremap.c sys_mremap(addr, old_len, new_len = old_len, MREMAP_MAYMOVE |
        MREMAP_FIXED, new_addr): mmap_sem for write around mremap_to().  Returns new_addr or
        a negative errno."""
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "w")
        if addr & (PAGE_SIZE - 1) or npages <= 0:
            ret = EINVAL
        else:
            length = npages << PAGE_SHIFT
            ret = yield from self.mremap_to(mm, addr, length, new_addr, length)
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def sys_exec_shift(self, pid: int, addr: int, npages: int) -> Gen:
        """fs/exec.c setup_arg_pages() for the temporary stack vma at addr (see
        kernel/exec.py): mmap_sem for write, shift the stack npages down, clear
        VM_STACK_INCOMPLETE_SETUP.  -EINVAL unless addr is in a temporary stack with no vma
        above it and room below it."""
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "w")
        ret = EINVAL
        vma = yield from self.find_vma(mm, addr)
        if (
            vma is not None
            and vma.vm_start <= addr
            and vma.vm_flags & VM_GROWSDOWN
            and vma.vm_flags & VM_STACK_INCOMPLETE_SETUP == VM_STACK_INCOMPLETE_SETUP
            and self.vm_next(mm, vma) is None
            and npages > 0
            and vma.vm_start - (npages << PAGE_SHIFT) >= TASK_LO
        ):
            ret = yield from self.setup_arg_pages(vma, npages << PAGE_SHIFT)
        yield ev.Release(mm.mmap_sem, "w")
        yield from self.mmput(mm)
        return ret

    def do_page_fault(self, pid: int, addr: int, write: bool = True) -> Gen:
        """arch/x86/mm/fault.c __do_page_fault(): mmap_sem for read, find_vma, expand_stack
        below a VM_GROWSDOWN vma, handle_mm_fault()."""
        addr &= ~(PAGE_SIZE - 1)
        mm = yield from self._mm_of(pid)
        if mm is None:
            return ESRCH
        yield ev.Acquire(mm.mmap_sem, "r")
        ret = yield from self.do_page_fault_locked(mm, addr, write)
        yield ev.Release(mm.mmap_sem, "r")
        yield from self.mmput(mm)
        return ret

    def do_read_fault(self, pid: int, addr: int) -> Gen:
        """arch/x86/mm/fault.c __do_page_fault() for a read access (no FAULT_FLAG_WRITE)."""
        return (yield from self.do_page_fault(pid, addr, False))

    def do_page_fault_locked(self, mm: Any, addr: int, write: bool = True) -> Gen:
        vma = yield from self.find_vma(mm, addr)
        if vma is None:
            return EFAULT
        if (yield ev.Load(vma, "vm_start")) > addr:
            if not vma.vm_flags & VM_GROWSDOWN:
                return EFAULT
            vma = yield from self.expand_stack(vma, addr)
            if vma is None:
                return EFAULT
        if write and not vma.vm_flags & VM_WRITE:
            return EFAULT  # access_error(): anonymous vmas are always readable
        return (yield from self.handle_mm_fault(mm, vma, addr, write))

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

    def write_fail_nth(self, n: int, times: int) -> Gen:
        """fs/proc/base.c proc_fail_nth_write(): ``current->fail_nth = n`` for the task running
        the operation; n = 0 disarms it.  ``times`` > 1 goes beyond fail-nth (which fails one
        call): the times-1 allocations after the n-th fail too (see should_failslab()).
        Takes no step: nothing shared is touched."""
        if n < 0 or times < 1:
            return EINVAL
        task = yield ev.CURRENT
        if n == 0:
            self.fail_nth.pop(task.tid, None)
        else:
            self.fail_nth[task.tid] = [n, times]
        return 0

    def compact_page(self, pfn: int) -> Gen:
        """mm/compaction.c compact_zone() for one page frame, with no mmap_sem (the walkers
        must fend for themselves): isolate_migratepages_range() (-EBUSY: the scanner skips a
        page that is not on the LRU), migrate_pages(), putback_lru_pages() if it failed."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        if (yield from self.isolate_migratepages_range(page)):
            return EBUSY
        ret = yield from self.migrate_pages(page, MigrationContext())
        if ret:
            yield from self.putback_lru_pages(page)  # "Release LRU pages not migrated"
        return ret

    def sys_move_pages(self, pid: int, addr: int) -> Gen:
        """mm/migrate.c sys_move_pages() -> do_move_page_to_node_array(): mmap_sem held for
        read across follow_page(), isolate_lru_page() (its -EBUSY is the page's status) and
        migrate_pages() (the NUMA-fault context of 2012); putback_lru_pages() on failure."""
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
                ret = yield from self.isolate_lru_page(page)
                if ret == 0:
                    ret = yield from self.migrate_pages(page, MigrationContext(mm, vma, addr))
                    if ret:
                        yield from self.putback_lru_pages(page)
        yield ev.Release(mm.mmap_sem, "r")
        yield from self.mmput(mm)
        return ret

    def shrink_page(self, pfn: int) -> Gen:
        """mm/vmscan.c shrink_inactive_list() for one page: isolate_lru_pages() (a page
        that is not on the LRU is not scanned), shrink_page_list()'s trylock_page() and
        page_referenced(), putback_inactive_pages()."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        if (yield from self.isolate_lru_pages(page)):
            return 0
        referenced = 0
        if (yield ev.TryAcquire(page.lock)):
            referenced = yield from self.page_referenced(page)
            yield ev.Release(page.lock)
        yield from self.putback_inactive_pages(page)
        return referenced

    def shrink_page_swap(self, pfn: int) -> Gen:
        """mm/vmscan.c shrink_page_list() for one anonymous page that page_check_references()
        let go (the `reclaim` op is that check): trylock_page(); add_to_swap() unless already
        in the swap cache; try_to_unmap(TTU_UNMAP) writes a swap entry into every pte.  The
        page stays in the swap cache (pageout() is instantaneous, the pass that frees the page
        is not modelled), so putback_inactive_pages() puts it back on the LRU.  The page is
        isolated first, as in shrink_inactive_list() -> isolate_lru_pages(); one that is not
        on the LRU is not scanned.  Returns 1 if the page ended unmapped, else 0."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        if (yield from self.isolate_lru_pages(page)):
            return 0
        ret = yield from self.shrink_page_list(page)
        yield from self.putback_inactive_pages(page)
        return ret

    def shrink_page_list(self, page: Any) -> Gen:
        """mm/vmscan.c shrink_page_list() for one isolated anonymous page, force_reclaim."""
        if not (yield ev.TryAcquire(page.lock)):
            return 0
        ret = 0
        # A page that nothing maps and that is not in the swap cache has been freed: reclaim
        # does not see it.  PageAnon() is the mapping.
        mapped = (yield ev.Load(page, "mapcount")) >= 0
        anon = (yield ev.Load(page, "mapping")) is not None
        if anon and (mapped or (yield ev.Load(page, "private")) is not None):
            ok = True
            if (yield ev.Load(page, "private")) is None:
                ok = bool((yield from self.add_to_swap(page)))
            if ok and (yield ev.Load(page, "mapcount")) >= 0:
                ok = (yield from self.try_to_unmap(page, TTU_UNMAP)) == SWAP_SUCCESS
            ret = int(ok)
        yield ev.Release(page.lock)
        return ret

    def ksm_pin_page(self, pfn: int) -> Gen:
        """A stand-in for KSM's long-lived anon_vma references (mm/ksm.c keeps
        rmap_item->anon_vma pinned while the item sits in the stable tree, and rmap_walk_ksm()
        walks it under anon_vma_lock_read()): page_get_anon_vma(), then a page_referenced()
        walk of the pinned anon_vma's tree under its root rwsem, then put_anon_vma().  The pin
        spans every step in between, which the engine interleaves with other tasks.  Returns
        the number of young ptes seen, or -EAGAIN if the page had no anon_vma to pin."""
        page = self.find_page(pfn)
        if page is None:
            return EINVAL
        anon_vma = yield from self.page_get_anon_vma(page)
        if anon_vma is None:
            return EAGAIN
        yield from self.anon_vma_lock_read(anon_vma)
        pgoff = yield ev.Load(page, "index")
        arg = {"referenced": 0, "mapcount": -1}  # never counts down to 0: visit every vma
        yield from self.anon_vma_interval_tree_foreach(
            "rmap_walk_ksm", page, anon_vma, pgoff, self.ksm_referenced_one, arg
        )
        yield from self.anon_vma_unlock_read(anon_vma)
        yield from self.put_anon_vma(anon_vma)
        return arg["referenced"]

    def ksm_referenced_one(self, page: Any, vma: Any, address: int, arg: Any) -> Gen:
        """page_referenced_one() as rmap_walk_ksm()'s rmap_one: every vma is visited."""
        yield from self.page_referenced_one(page, vma, address, arg)
        return SWAP_AGAIN

    # ------------------------------------------------------------ boot

    def boot(self) -> None:
        """Create pid 1 with an empty address space (what init has before any mmap)."""
        pid = self.alloc_pid()
        mm = self.mm_alloc()
        self.procs[pid] = TaskStruct(pid, mm=mm)
