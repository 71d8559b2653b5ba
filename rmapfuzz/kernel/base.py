"""State of one modelled machine and the low-level helpers every kernel file uses.

Allocation: every slab hands out objects with ids from its own counter, so runs are
deterministic.  The anon_vma slab is SLAB_DESTROY_BY_RCU: a freed anon_vma goes to the head of
its free list and is the next one handed out (SLUB's LIFO freelist), keeping its rwsem and tree.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.locks import spinlock
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    PTRS_PER_TABLE,
    TASK_HI,
    TASK_LO,
    AnonVma,
    AnonVmaChain,
    Page,
    PageTable,
    SwapSlot,
    TaskStruct,
    Vma,
    table_index,
)

Gen = Generator[Any, Any, Any]

#: slots of the swap device: a handful is enough for the few pages of a program
SWAP_SLOTS = 8


# atomic_t operations, as Rmw functions: old -> (new, result)
def _inc(v: int) -> tuple[int, int]:
    return v + 1, v + 1


def _dec(v: int) -> tuple[int, int]:
    return v - 1, v - 1


def _dec_and_test(v: int) -> tuple[int, bool]:
    return v - 1, v - 1 == 0


def _inc_not_zero(v: int) -> tuple[int, bool]:
    return (v + 1, True) if v else (v, False)


def _inc_and_test(v: int) -> tuple[int, bool]:
    return v + 1, v + 1 == 0


def _add_negative_minus1(v: int) -> tuple[int, bool]:
    return v - 1, v - 1 < 0


class KernelBase:
    """The machine: processes, pages, slabs.  Kernel files are mixins over this class."""

    #: variant metadata, overridden by variants
    name = "base"
    summary = ""
    expected = "safe"
    knobs: dict[str, Any] = {}

    def __init__(self, **knobs: Any) -> None:
        unknown = set(knobs) - set(type(self).knobs)
        if unknown:
            from rmapfuzz.errors import UsageError

            raise UsageError(
                f"variant {self.name} has no knob {sorted(unknown)[0]!r}"
                + (f" (knobs: {', '.join(sorted(type(self).knobs))})" if type(self).knobs else "")
            )
        self.knob = {**type(self).knobs, **knobs}
        self.procs: dict[int, TaskStruct] = {}
        self.pages: list[Page] = []
        self.vmas: list[Vma] = []
        self.anon_vmas: list[AnonVma] = []
        self.avcs: list[AnonVmaChain] = []
        self.mms: list[MM] = []
        self._anon_vma_free: list[AnonVma] = []
        self._next_pid = 1
        self._avc_seq = 0
        self._table_ids = 0
        #: task id -> MigrationContext of the migration that task is running
        self.migration_context: dict[int, Any] = {}
        #: task id -> [countdown, times] armed by the fail_nth operation (should_failslab)
        self.fail_nth: dict[int, list[int]] = {}
        #: swap_map of the one swap device (kernel/swap.py)
        self.swap_slots: list[SwapSlot] = [SwapSlot(i) for i in range(1, SWAP_SLOTS + 1)]

    # ------------------------------------------------------------------ ids

    def alloc_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    # --------------------------------------------------------------- atomics

    @staticmethod
    def atomic_inc(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _inc, "atomic_inc")

    @staticmethod
    def atomic_dec(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _dec, "atomic_dec")

    @staticmethod
    def atomic_dec_and_test(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _dec_and_test, "atomic_dec_and_test")

    @staticmethod
    def atomic_inc_not_zero(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _inc_not_zero, "atomic_inc_not_zero")

    @staticmethod
    def atomic_inc_and_test(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _inc_and_test, "atomic_inc_and_test")

    @staticmethod
    def atomic_add_negative(obj: Any, field: str) -> ev.Rmw:
        return ev.Rmw(obj, field, _add_negative_minus1, "atomic_add_negative")

    # ------------------------------------------------------------ allocators

    def should_failslab(self, cache: str, gfp: str = "GFP_KERNEL") -> Gen:
        """mm/failslab.c should_failslab() -> lib/fault-inject.c should_fail() with the calling
        task's /proc/self/task/<tid>/fail-nth (Documentation/fault-injection): every modelled
        slab allocation of a task counts down its fail-nth; the one that reaches zero fails.

        ``times`` > 1 (the fail_nth operation's second argument) lets the following
        ``times - 1`` allocations of the task fail too: what memory exhaustion does to an
        OOM victim, and the only way to fail both the GFP_NOWAIT attempt and the GFP_KERNEL
        retry of anon_vma_clone().  failslab is configured as syzkaller does
        (ignore-gfp-wait=N): GFP_KERNEL allocations are eligible.  No step: a failed
        allocation touches no shared memory; a mark names it in the trace."""
        task = yield ev.CURRENT
        armed = self.fail_nth.get(task.tid)
        if armed is None:
            return False
        armed[0] -= 1
        if armed[0] > 0:
            return False
        armed[1] -= 1
        if armed[1] > 0:
            armed[0] = 1
        else:
            del self.fail_nth[task.tid]
        yield ev.Mark("failslab", f"kmem_cache_alloc({cache}, {gfp}) fails (fail-nth)")
        return True

    def kmem_cache_alloc_anon_vma(self) -> AnonVma:
        """Take an anon_vma slot: the most recently freed one first (type-stable reuse)."""
        if self._anon_vma_free:
            av = self._anon_vma_free.pop()
        else:
            av = AnonVma(len(self.anon_vmas) + 1)
            self.anon_vmas.append(av)
        av.gen += 1
        return av

    def kmem_cache_free_anon_vma(self, av: AnonVma) -> None:
        self._anon_vma_free.append(av)

    def kmem_cache_alloc_avc(self) -> AnonVmaChain:
        avc = AnonVmaChain(len(self.avcs) + 1)
        self.avcs.append(avc)
        return avc

    def kmem_cache_alloc_vma(self, **fields: Any) -> Vma:
        vma = Vma(len(self.vmas) + 1, **fields)
        self.vmas.append(vma)
        return vma

    def alloc_page(self) -> Page:
        page = Page(len(self.pages) + 1)
        self.pages.append(page)
        return page

    def mm_alloc(self) -> MM:
        mm = MM(len(self.mms) + 1)
        for base in range(TASK_LO, TASK_HI, PTRS_PER_TABLE << PAGE_SHIFT):
            self._table_ids += 1
            pt = PageTable(self._table_ids, mm=mm, base=base)
            pt.ptl = spinlock(f"ptl({mm.short()},{base:#x})", "pte_lock")
            mm.tables[table_index(base)] = pt
        self.mms.append(mm)
        return mm

    def next_avc_seq(self) -> int:
        self._avc_seq += 1
        return self._avc_seq

    # --------------------------------------------------------- page tables

    def pte_lockptr(self, mm: MM, addr: int) -> Gen:
        """mm/memory.c pte_offset_map + pte_lockptr(): find the pte page of ``addr``.

        Reads the mm's page-table pointer: a walker holding a stale vma of an exited mm
        reads freed memory here."""
        pt = yield ev.Load(mm, "tables", table_index(addr))
        return pt

    # ------------------------------------------------------ vma list helpers

    @staticmethod
    def vm_next(mm: MM, vma: Vma) -> Vma | None:
        vmas = mm.mmap
        i = vmas.index(vma)
        return vmas[i + 1] if i + 1 < len(vmas) else None

    @staticmethod
    def vm_prev(mm: MM, vma: Vma) -> Vma | None:
        vmas = mm.mmap
        i = vmas.index(vma)
        return vmas[i - 1] if i > 0 else None

    # -------------------------------------------------------- lookups (ghost)

    def find_page(self, pfn: int) -> Page | None:
        if 1 <= pfn <= len(self.pages):
            return self.pages[pfn - 1]
        return None

    def live_vmas(self) -> list[Vma]:
        return [v for v in self.vmas if not v.freed]

    def live_anon_vmas(self) -> list[AnonVma]:
        return [a for a in self.anon_vmas if not a.freed]
