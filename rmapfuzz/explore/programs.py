"""Small fixed programs for the exhaustive explorer (issue 5): a walker racing one mutator.

Each setup maps a three-page private anonymous region in pid 1, faults two of its pages in and
forks once, so pid 1 and pid 2 share the root anon_vma and page frame 1 is mapped in both.
Task 0 (CPU 0) migrates page frame 1 (compaction: no mmap_sem); task 1 (CPU 1) runs the mutator.
"""

from __future__ import annotations

from rmapfuzz.kernel.objects import PAGE_SIZE, TASK_LO
from rmapfuzz.program import Op, Program, TaskProgram

BASE = TASK_LO
SETUP = (
    Op("mmap", (1, BASE, 3, 0)),
    Op("fault", (1, BASE)),
    Op("fault", (1, BASE + PAGE_SIZE)),
    Op("fork", (1,)),
)
WALKER = Op("migrate", (1,))

MUTATORS = {
    "fork-migrate": Op("fork", (1,)),
    "exit-migrate": Op("exit", (2,)),
    # split: unmap the middle page, which splits the vma in two (__split_vma + vma_adjust)
    "split-migrate": Op("munmap", (1, BASE + PAGE_SIZE, 1)),
    "mprotect-migrate": Op("mprotect", (1, BASE + PAGE_SIZE, 1, 0)),
}


def program(name: str) -> Program:
    """The program ``name`` (a key of :data:`MUTATORS`)."""
    return Program(2, SETUP, (TaskProgram(0, (WALKER,)), TaskProgram(1, (MUTATORS[name],))))


PROGRAMS = {name: program(name) for name in MUTATORS}
