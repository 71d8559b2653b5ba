"""Program generation, written once against a source of choices.

The same generator serves the seeded random explorer (choices from a ``random.Random``) and,
through :class:`Choices`, any other source.  Programs are biased the way rmap-spec 6.3 asks:
processes that share a root (a fork in the setup), pages faulted in before the race, a walker
(migration, NUMA migration, reclaim) on one CPU and an operation that rewrites the chain or the
vma geometry (fork, exit, munmap, mprotect, stack growth, a fault next door) on another.

The setup is tracked with a small shadow of what it creates (pids, regions, faulted pages) so
that the concurrent operations mostly get arguments that mean something; an argument that no
longer fits when the operation runs simply makes it fail like the system call would.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

import attrs

from rmapfuzz.kernel.objects import PAGE_SIZE, TASK_LO
from rmapfuzz.program import Op, Program, TaskProgram

T = TypeVar("T")

WALKERS = ("migrate", "move_pages", "reclaim")
MUTATORS = ("fork", "exit", "munmap", "mprotect", "fault", "fault_below", "move_pages")


class Choices(Protocol):
    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""

    def choice(self, options: Sequence[T]) -> T:
        """One of the options."""

    def boolean(self, p: float) -> bool:
        """True with probability about p."""

    def packed(self, sizes: Sequence[int]) -> list[int]:
        """Several uniform indices (the i-th in [0, sizes[i])) as ONE choice: what a whole
        operation's arguments cost, so that choices grow with operations, not arguments."""

    def group(self) -> AbstractContextManager[None]:
        """The choices made inside belong together (one operation, one decision): a shrinker
        may delete them as a unit."""


def unpack(value: int, sizes: Sequence[int]) -> list[int]:
    """Mixed-radix decoding of :meth:`Choices.packed`; 0 decodes to all zeros (the simplest)."""
    out = []
    for size in sizes:
        value, digit = divmod(value, size)
        out.append(digit)
    return out


def packed_range(sizes: Sequence[int]) -> int:
    n = 1
    for size in sizes:
        n *= size
    return n


@attrs.frozen
class GenSettings:
    cpus: int = 2
    max_tasks: int = 3
    max_ops_per_task: int = 2


@attrs.define
class _Shadow:
    """What the setup created, as far as the generator can tell."""

    regions: dict[int, list[tuple[int, int, bool]]] = attrs.field(
        factory=dict
    )  # pid -> (start, npages, gd)
    faulted: dict[int, set[int]] = attrs.field(factory=dict)  # pid -> addrs with a pte
    pages: int = 0
    next_pid: int = 2

    def addrs(self, pid: int) -> list[int]:
        out = []
        for start, n, _ in self.regions.get(pid, []):
            out.extend(start + i * PAGE_SIZE for i in range(n))
        return out


def generate(c: Choices, s: GenSettings) -> Program:
    """A random program: a setup that builds shared state, then concurrent tasks."""
    sh = _Shadow()
    setup: list[Op] = []

    def fault(pid: int, addr: int) -> None:
        setup.append(Op("fault", (pid, addr)))
        if addr not in sh.faulted.setdefault(pid, set()):
            sh.faulted[pid].add(addr)
            sh.pages += 1

    # pid 1: one or two regions; the second may be a stack (VM_GROWSDOWN) with room to grow
    n = c.integer(2, 6)
    start = TASK_LO + c.integer(0, 2) * 4 * PAGE_SIZE
    gd = c.boolean(0.3)
    if gd:
        start += 8 * PAGE_SIZE
    setup.append(Op("mmap", (1, start, n, int(gd))))
    sh.regions[1] = [(start, n, gd)]
    if c.boolean(0.3):
        s2 = start + (n + c.integer(0, 2)) * PAGE_SIZE
        n2 = c.integer(1, 3)
        if s2 + n2 * PAGE_SIZE <= TASK_LO + 0x20000:
            setup.append(Op("mmap", (1, s2, n2, 0)))
            sh.regions[1].append((s2, n2, False))
    for addr in sorted({c.choice(sh.addrs(1)) for _ in range(c.integer(1, 3))}):
        fault(1, addr)
    pids = [1]
    # forks build shared roots; faults in children give pages of child anon_vmas
    for _ in range(2):
        with c.group():  # a fork (and a fault in the child), its flag included
            if not c.boolean(0.6):
                break
            parent = c.choice(pids)
            setup.append(Op("fork", (parent,)))
            child = sh.next_pid
            sh.next_pid += 1
            sh.regions[child] = list(sh.regions[parent])
            sh.faulted[child] = set(sh.faulted.get(parent, set()))
            pids.append(child)
            if c.boolean(0.6):
                free = [a for a in sh.addrs(child) if a not in sh.faulted[child]]
                if free:
                    fault(child, c.choice(free))
    if c.boolean(0.2):
        pid = c.choice(pids)
        start, n, _ = sh.regions[pid][0]
        if n > 1:
            setup.append(Op("mprotect", (pid, start, c.integer(1, n - 1), 0)))

    tasks: list[TaskProgram] = []
    while len(tasks) < 2 or (len(tasks) < s.max_tasks and c.boolean(0.5)):
        with c.group():  # a task, deletable as a whole (its "one more task?" flag included)
            i = len(tasks)
            cpu = c.integer(0, s.cpus - 1) if i >= s.cpus else i
            kinds = WALKERS if i == 0 else MUTATORS + WALKERS[:1]
            ops: list[Op] = []
            while not ops or (len(ops) < s.max_ops_per_task and c.boolean(0.5)):
                with c.group():  # an operation, its flag included
                    ops.append(_op(c, kinds, pids, sh))
            tasks.append(TaskProgram(cpu, tuple(ops)))
    return Program(s.cpus, tuple(setup), tuple(tasks))


def _op(c: Choices, kinds: Sequence[str], pids: list[int], sh: _Shadow) -> Op:
    """One operation of a task, kind and arguments drawn as one packed choice."""
    k, p, a, n, w = c.packed((len(kinds), len(pids), 16, 3, 2))
    kind, pid = kinds[k], pids[p]
    addrs = sh.addrs(pid) or [TASK_LO]
    if kind == "migrate" or kind == "reclaim":
        return Op(kind, (1 + a % max(sh.pages, 1),))
    if kind == "move_pages":
        faulted = sorted(sh.faulted.get(pid, ())) or addrs
        return Op(kind, (pid, faulted[a % len(faulted)]))
    if kind == "fork" or kind == "exit":
        return Op(kind, (pid,))
    if kind == "munmap":
        return Op(kind, (pid, addrs[a % len(addrs)], n + 1))
    if kind == "mprotect":
        return Op(kind, (pid, addrs[a % len(addrs)], n + 1, w))
    if kind == "fault_below":
        regions = sh.regions.get(pid, [(TASK_LO + PAGE_SIZE, 1, False)])
        start = regions[a % len(regions)][0]
        return Op("fault", (pid, start - (w + 1) * PAGE_SIZE))
    return Op("fault", (pid, addrs[a % len(addrs)]))
