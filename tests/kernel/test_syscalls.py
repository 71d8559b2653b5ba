"""kernel/syscalls.py entry points: errors, run alone.

An operation on a process that does not exist, or exists no more, is -ESRCH: it never gets
an mm (get_task_mm() returns NULL once exit_mm() has cleared task->mm).  A page frame that
does not exist is -EINVAL.
"""

from __future__ import annotations

import pytest

from ._helpers import EINVAL, ESRCH, all_ptes, clean, op, results, run, snapshot

ON_PID = [
    ("mmap", (0x10000, 4, 0)),
    ("fault", (0x10000,)),
    ("fork", ()),
    ("munmap", (0x10000, 1)),
    ("mprotect", (0x10000, 1, 0)),
    ("move_pages", (0x10000,)),
]
SETUP = [op("mmap", 1, 0x10000, 4, 0), op("fault", 1, 0x10000)]


@pytest.mark.parametrize("name,args", ON_PID + [("exit", ())], ids=lambda x: str(x))
def test_op_on_missing_pid_is_esrch(name: str, args: tuple[int, ...]) -> None:
    """find_task_by_vpid() finds no pid 9 (only pid 1 exists): -ESRCH, nothing changes, and no
    pid is allocated (a later fork still gets pid 2)."""
    out = clean(SETUP, [op(name, 9, *args), op("fork", 1)])
    assert results(out) == [ESRCH, 2]
    assert snapshot(out) == snapshot(clean(SETUP + [op("fork", 1)]))


@pytest.mark.parametrize("name,args", ON_PID, ids=lambda x: str(x))
def test_op_on_exited_pid_is_esrch(name: str, args: tuple[int, ...]) -> None:
    """After exit_mm(), task->mm is NULL: get_task_mm() returns NULL and the op fails with
    -ESRCH without touching anything (everything was freed by the exit)."""
    out = clean(SETUP + [op("exit", 1)], [op(name, 1, *args)])
    assert results(out) == [ESRCH]
    assert all_ptes(out) == {} and out.kernel.procs[1].mm is None
    assert len(out.kernel.vmas) == 1 and out.kernel.vmas[0].freed


def test_exit_of_exited_pid_is_esrch() -> None:
    """A task that has run do_exit() cannot exit again: the op is on a process that exists no
    more, -ESRCH like every other op on it (exit_mm() finds task->mm NULL and touches
    nothing)."""
    out = run(SETUP, [op("exit", 1), op("exit", 1)])
    assert out.finding is None
    assert results(out) == [0, ESRCH]
    assert all_ptes(out) == {} and out.kernel.procs[1].mm is None
    assert len(out.kernel.vmas) == 1 and out.kernel.vmas[0].freed


def test_missing_page_frame_is_einval() -> None:
    """migrate and reclaim name a page frame: pfn 0 and pfn 5 do not exist here."""
    out = clean(SETUP, [op("migrate", 5), op("reclaim", 5), op("migrate", 0), op("reclaim", 0)])
    assert results(out) == [EINVAL] * 4
    assert len(out.kernel.pages) == 1


def test_munmap_of_unaligned_address_is_einval() -> None:
    """do_munmap(): start & ~PAGE_MASK -> -EINVAL, nothing unmapped."""
    out = clean(SETUP, [op("munmap", 1, 0x10800, 1)])
    assert results(out) == [EINVAL]
    assert len(all_ptes(out)) == 1
