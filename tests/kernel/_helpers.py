"""Helpers for the sequential kernel tests: build a program, run it alone, read the machine.

Every test runs on one CPU with at most one task, so there is no concurrency: the setup runs
first, then the task's operations in order.  Return values of operations are only recorded for
task operations, so tests that check a return value put that operation in the task.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.kernel.objects import MM, AnonVma, Page, Present, Vma, table_index
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

PS = 0x1000

ESRCH = -3
EFAULT = -14
EAGAIN = -11
EINVAL = -22
VM_FAULT_SIGBUS = -7


def op(name: str, *args: int) -> Op:
    return Op(name, tuple(args))


def run(
    setup: tuple[Op, ...] | list[Op] = (),
    ops: tuple[Op, ...] | list[Op] = (),
    variant: type[Mainline] = Mainline,
) -> Outcome:
    """Run ``setup`` alone, then ``ops`` in one task on the same CPU (no concurrency)."""
    tasks = (TaskProgram(0, tuple(ops)),) if ops else ()
    return execute(variant, Program(cpus=1, setup=tuple(setup), tasks=tasks))


def clean(
    setup: tuple[Op, ...] | list[Op] = (),
    ops: tuple[Op, ...] | list[Op] = (),
    variant: type[Mainline] = Mainline,
) -> Outcome:
    """:func:`run`, asserting that no oracle reported anything."""
    out = run(setup, ops, variant)
    assert out.finding is None, out.finding
    return out


def results(out: Outcome) -> list[Any]:
    return list(out.result.tasks[0].results)


def mm_of(out: Outcome, pid: int) -> MM:
    mm = out.kernel.procs[pid].mm
    assert mm is not None, f"pid {pid} has no mm"
    return mm


def vmas(out: Outcome, pid: int) -> tuple[Vma, ...]:
    return mm_of(out, pid).mmap


def geometry(vma: Vma) -> tuple[int, int, int]:
    return (vma.vm_start, vma.vm_end, vma.vm_pgoff)


def pte_of(mm: MM, addr: int) -> Any:
    return mm.tables[table_index(addr)].ptes.get(addr)


def pte(out: Outcome, pid: int, addr: int) -> Any:
    return pte_of(mm_of(out, pid), addr)


def page(out: Outcome, pfn: int) -> Page:
    return out.kernel.pages[pfn - 1]


def anon_vma(out: Outcome, oid: int) -> AnonVma:
    return out.kernel.anon_vmas[oid - 1]


def chain(vma: Vma) -> list[AnonVma]:
    """The anon_vmas of vma->anon_vma_chain, newest first (the kernel's list order)."""
    return [avc.anon_vma for avc in vma.anon_vma_chain]


def tree(av: AnonVma) -> list[tuple[Vma, tuple[int, int]]]:
    """anon_vma->rb_root in traversal order: (vma, (start pgoff, last pgoff)) per avc."""
    return [(avc.vma, avc.key) for avc in av.rb_root.nodes]


def all_ptes(out: Outcome) -> dict[tuple[int, int], Any]:
    """Every non-empty pte of every live mm, by (mm oid, address)."""
    return {
        (mm.oid, addr): p
        for mm in out.kernel.mms
        if not mm.freed
        for pt in mm.tables.values()
        for addr, p in pt.ptes.items()
        if p is not None
    }


def _pte_value(p: Any) -> tuple[Any, ...]:
    """A pte as comparable data: kind, page, write bit, and the young bit of a present pte
    (a migration entry has none)."""
    young = p.young if type(p) is Present else None
    return (type(p).__name__, p.page.oid, p.write, young)


def snapshot(out: Outcome, npages: int | None = None) -> dict[str, Any]:
    """A comparable picture of the rmap state (ptes with their write and young bits, pages,
    anon_vmas, avcs, vmas)."""
    k = out.kernel

    def oid(x: Any) -> Any:
        return None if x is None else x.oid

    return {
        "ptes": {key: _pte_value(p) for key, p in all_ptes(out).items()},
        "pages": [(p.oid, oid(p.mapping), p.index, p.mapcount) for p in k.pages[:npages]],
        "anon_vmas": [
            (a.oid, a.freed, a.refcount, oid(a.root), tuple(n.oid for n in a.rb_root.nodes))
            for a in k.anon_vmas
        ],
        "avcs": [(c.oid, c.freed, oid(c.vma), oid(c.anon_vma), c.key) for c in k.avcs],
        "vmas": [
            (v.oid, v.freed, v.geometry, oid(v.anon_vma), tuple(c.oid for c in v.anon_vma_chain))
            for v in k.vmas
        ],
    }
