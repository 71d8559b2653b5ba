"""Program generation, written once against a source of choices.

The same generator serves the seeded random explorer (choices from a ``random.Random``) and,
through :class:`Choices`, any other source.  Programs are biased the way rmap-spec 6.3 asks:
processes that share a root (a fork in the setup), pages faulted in before the race, a walker
(migration, NUMA migration, reclaim) on one CPU and an operation that rewrites the chain or the
vma geometry (fork, exit, munmap, mprotect, stack growth, a fault next door) on another.

The setup is tracked with a small shadow of what it creates (pids, regions, faulted pages) so
that the concurrent operations mostly get arguments that mean something; an argument that no
longer fits when the operation runs simply makes it fail like the system call would.

A variant may declare a *focus* (``GenSettings.focus``, from the variant's ``focus`` class
attribute): the operations its patch touches.  Focus only weights: each focused operation
appears :data:`FOCUS_WEIGHT` more times in the menus it belongs to (the first task's menu of
walkers gets the focused non-walkers too), the setup builds what a focused operation needs more
often (a stack for ``fault_below``, exec's temporary stack for ``exec_shift``, a range moved
away for ``mremap``, forks and pages of the children for ``fork``/``exit``), and a focus of
three or more operations asks for a third task more often.  Every program without focus can
still be drawn with focus and vice versa; the number of choices is the same.

The tasks of a program meet on the same objects more often than independent draws would make
them (:func:`_related`): the owner of the page a walker takes, and the pages of the process or
range a mutator changes, go once more into the menus of pids and pages of the operations drawn
after them, and the setup seeds the pages it made special (a child's own pages, a range moved
away, exec's temporary stack).  Lifetime races need exactly that: a walker of a child's page and
the exit of that child (B6, B8, B18), a migration of a page that mremap or exec moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import attrs

from rmapfuzz.kernel.objects import PAGE_SIZE, TASK_HI, TASK_LO
from rmapfuzz.program import Op, Program, TaskProgram

T = TypeVar("T")

WALKERS = ("migrate", "move_pages", "reclaim")
#: operations that allocate anon_vmas, avcs or vmas: fail_nth(n, times) may precede them
FAILABLE = ("fork", "fault", "munmap", "mprotect", "mremap")
#: fault injection: how often, how far ahead (n) and how many failures in a row (times)
P_FAIL_NTH = 0.15
FAIL_NTH_MAX = 6
FAIL_TIMES_MAX = 2
MUTATORS = (
    "fork",
    "exit",
    "munmap",
    "mprotect",
    "fault",
    "fault_below",
    "move_pages",
    "mremap",
    "exec_shift",
    "read",
    "swapout",
    "pin",
)
#: how often the setup swaps a page out (reclaim clears the young bits, swapout unmaps it)
#: and faults it back in from some of the processes that map it
P_SWAP = 0.3

#: where mremap moves ranges to when it moves them out of the way: free of the regions above
#: and below the stack's shifts (an overlap is no error: mremap unmaps its destination first)
FAR = TASK_LO + 0x16000
#: the top of exec's temporary stack (mmap growsdown=2), the topmost vma, as exec_shift needs
STACK_TOP = TASK_HI


class Choices(Protocol):
    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""

    def choice(self, options: Sequence[T]) -> T:
        """One of the options."""

    def boolean(self, p: float) -> bool:
        """True with probability about p."""

    def packed(self, sizes: Sequence[int]) -> list[int]:
        """Several uniform indices (the i-th in [0, sizes[i])) as ONE value: what a whole
        operation's arguments cost, so that choices grow with operations, not arguments
        (a value wider than Hypothesis draws uniformly takes two or three choices, see
        ``ConjectureChoices.integer``)."""

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


#: extra copies of a focused operation in a menu (see the module docstring)
FOCUS_WEIGHT = 3


#: simulated CPUs unless the user or the variant says otherwise
DEFAULT_CPUS = 2


@attrs.frozen
class GenSettings:
    cpus: int = DEFAULT_CPUS
    max_tasks: int = 3
    max_ops_per_task: int = 2
    #: operations the fuzzed variant's patch touches: weighted, never forced; None (the
    #: default) means the variant's own ``focus`` where an explorer knows the variant
    focus: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda f: None if f is None else tuple(f)
    )


def cpus_for(variant: Any, cpus: int | None = None) -> int:
    """The simulated CPUs of a run of ``variant``: ``cpus`` when given (``--cpus``), else the
    variant's declared ``cpus``, else :data:`DEFAULT_CPUS`."""
    return cpus or getattr(variant, "cpus", None) or DEFAULT_CPUS


def for_variant(settings: GenSettings, variant: Any) -> GenSettings:
    """``settings`` for a variant class: its ``focus`` unless the settings name one (``()``:
    none), and its ``max_tasks`` where it declares more."""
    more = getattr(variant, "max_tasks", None)
    if more and more > settings.max_tasks:
        settings = attrs.evolve(settings, max_tasks=more)
    if settings.focus is not None:
        return settings
    return attrs.evolve(settings, focus=tuple(getattr(variant, "focus", ())))


def _p(base: float, focused: bool, boosted: float) -> float:
    return boosted if focused else base


def menu(base: Sequence[str], focus: Sequence[str]) -> tuple[str, ...]:
    """``base`` with each focused operation in it repeated FOCUS_WEIGHT more times."""
    extra = tuple(k for k in base if k in focus for _ in range(FOCUS_WEIGHT))
    return tuple(base) + extra


@attrs.define
class _Shadow:
    """What the setup created, as far as the generator can tell."""

    regions: dict[int, list[tuple[int, int, bool]]] = attrs.field(
        factory=dict
    )  # pid -> (start, npages, gd)
    faulted: dict[int, set[int]] = attrs.field(factory=dict)  # pid -> addrs with a pte
    pages: int = 0
    page_addr: list[int] = attrs.field(factory=list)  # pfn - 1 -> the address it was faulted at
    page_pid: list[int] = attrs.field(factory=list)  # pfn - 1 -> the pid that faulted it
    next_pid: int = 2
    #: pid -> (start, npages) of its temporary exec stack (VM_STACK_INCOMPLETE_SETUP)
    stack: dict[int, tuple[int, int]] = attrs.field(factory=dict)
    #: pid -> ranges the setup mremap()ed away: (where now, npages, where from)
    moved: dict[int, list[tuple[int, int, int]]] = attrs.field(factory=dict)

    #: pages and pids the operations drawn so far act on (see :func:`_related`)
    hot_pages: list[int] = attrs.field(factory=list)
    hot_pids: list[int] = attrs.field(factory=list)

    def pages_in(self, pid: int | None, start: int = 0, end: int = 1 << 62) -> list[int]:
        """The pfns faulted at an address in [start, end), by pid (None: by anyone)."""
        return [
            i + 1
            for i, (q, a) in enumerate(zip(self.page_pid, self.page_addr, strict=True))
            if (pid is None or q == pid) and start <= a < end
        ]

    def addrs(self, pid: int) -> list[int]:
        out = []
        for start, n, _ in self.regions.get(pid, []):
            out.extend(start + i * PAGE_SIZE for i in range(n))
        return out

    def move(self, pid: int, src: int, n: int, dst: int) -> None:
        """mremap(src, n pages -> dst) as the shadow sees it."""
        end = src + n * PAGE_SIZE
        out = []
        for start, m, gd in self.regions[pid]:
            stop = start + m * PAGE_SIZE
            if stop <= src or start >= end:
                out.append((start, m, gd))
                continue
            if start < src:
                out.append((start, (src - start) // PAGE_SIZE, gd))
            if stop > end:
                out.append((end, (stop - end) // PAGE_SIZE, gd))
        out.append((dst, n, False))
        self.regions[pid] = out
        self.faulted[pid] = {
            dst + (a - src) if src <= a < end else a for a in self.faulted.get(pid, set())
        }
        self.moved.setdefault(pid, []).append((dst, n, src))


def generate(c: Choices, s: GenSettings) -> Program:
    """A random program: a setup that builds shared state, then concurrent tasks."""
    sh = _Shadow()
    setup: list[Op] = []

    def fault(pid: int, addr: int) -> None:
        setup.append(Op("fault", (pid, addr)))
        if addr not in sh.faulted.setdefault(pid, set()):
            sh.faulted[pid].add(addr)
            sh.pages += 1
            sh.page_addr.append(addr)
            sh.page_pid.append(pid)

    focus = s.focus or ()
    # pid 1: one or two regions; the second may be a stack (VM_GROWSDOWN) with room to grow
    n = c.integer(2, 6)
    start = TASK_LO + c.integer(0, 2) * 4 * PAGE_SIZE
    gd = c.boolean(_p(0.3, "fault_below" in focus, 0.7))
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
    first_fault = len(setup)
    if c.boolean(_p(0.25, "exec_shift" in focus, 0.7)):  # exec's stack: the topmost vma
        sn = c.integer(1, 3)
        ss = STACK_TOP - sn * PAGE_SIZE
        setup.append(Op("mmap", (1, ss, sn, 2)))
        sh.regions[1].append((ss, sn, True))
        sh.stack[1] = (ss, sn)
    for addr in sorted({c.choice(sh.addrs(1)) for _ in range(c.integer(1, 3))}):
        fault(1, addr)
    if 1 in sh.stack:  # copy_strings() writes argv at the top of the stack
        fault(1, STACK_TOP - PAGE_SIZE)
    if c.boolean(_p(0.15, "mremap" in focus, 0.6)):  # a range moved away: a task may move
        # it back, copy_vma() merging it into a neighbour
        rstart, rn, _ = sh.regions[1][0]
        # start at a faulted page if there is one (moving ptes is the point): the first, or the
        # last, whose move back extends the vma below it (walked before the moved one)
        here = sorted(a for a in sh.faulted.get(1, ()) if rstart <= a < rstart + rn * PAGE_SIZE)
        tail = c.boolean(0.5)
        if here:
            k = (here[-1 if tail else 0] - rstart) // PAGE_SIZE
        else:
            k = c.integer(0, rn - 1)
        m = rn - k if tail else c.integer(1, rn - k)
        src = rstart + k * PAGE_SIZE
        setup.append(Op("mremap", (1, src, m, FAR)))
        sh.move(1, src, m, FAR)
    pids = [1]
    # forks build shared roots; faults in children give pages of child anon_vmas
    p_fork = _p(0.6, "fork" in focus or "exit" in focus, 0.8)
    for _ in range(2):
        with c.group():  # a fork (and a fault in the child), its flag included
            if not c.boolean(p_fork):
                break
            parent = c.choice(pids)
            setup.append(Op("fork", (parent,)))
            child = sh.next_pid
            sh.next_pid += 1
            sh.regions[child] = list(sh.regions[parent])
            sh.faulted[child] = set(sh.faulted.get(parent, set()))
            if parent in sh.stack:
                sh.stack[child] = sh.stack[parent]
            sh.moved[child] = list(sh.moved.get(parent, []))
            pids.append(child)
            if c.boolean(p_fork):  # a page of the child's own anon_vma
                free = [a for a in sh.addrs(child) if a not in sh.faulted[child]]
                if free:
                    fault(child, c.choice(free))
    if c.boolean(0.2):
        pid = c.choice(pids)
        start, n, _ = sh.regions[pid][0]
        if n > 1:
            mprotect = Op("mprotect", (pid, start, c.integer(1, n - 1), 0))
            # before the faults, it leaves a read-only vma without anon_vma next to a faulted
            # one: what vma_merge()'s importer path (an mprotect back to rw) needs
            if pid == 1 and c.boolean(0.5):
                setup.insert(first_fault, mprotect)
            else:
                setup.append(mprotect)

    if sh.pages and c.boolean(P_SWAP):
        with c.group():  # swap a page out, fault it back in: do_swap_page()'s anon_vma rule
            pfn = c.integer(1, sh.pages)
            setup.append(Op("reclaim", (pfn,)))
            setup.append(Op("swapout", (pfn,)))
            addr = sh.page_addr[pfn - 1]
            for _ in range(c.integer(0, 2)):
                pid = c.choice(pids)
                setup.append(Op("read" if c.boolean(0.5) else "fault", (pid, addr)))

    # what the setup made special: pages of a child's own anon_vma, pages of a range moved away,
    # pages of exec's temporary stack
    sh.hot_pages = [pfn for pfn, q in enumerate(sh.page_pid, 1) if q != 1]
    for _where, m, orig in sh.moved.get(1, []):
        sh.hot_pages += sh.pages_in(None, orig, orig + m * PAGE_SIZE)
    if 1 in sh.stack:
        sh.hot_pages += sh.pages_in(None, sh.stack[1][0], STACK_TOP)
    tasks: list[TaskProgram] = []
    first = menu(WALKERS + tuple(k for k in MUTATORS if k in focus), focus)
    others = menu(MUTATORS + WALKERS[:1] + tuple(k for k in WALKERS[1:] if k in focus), focus)
    p_more = _p(0.5, len(set(focus)) >= 3, 0.7)
    while len(tasks) < 2 or (len(tasks) < s.max_tasks and c.boolean(p_more)):
        with c.group():  # a task, deletable as a whole (its "one more task?" flag included)
            i = len(tasks)
            cpu = c.integer(0, s.cpus - 1) if i >= s.cpus else i
            kinds = first if i == 0 else others
            ops: list[Op] = []
            while not ops or (len(ops) < s.max_ops_per_task and c.boolean(0.5)):
                with c.group():  # an operation, its flag included
                    op = _op(c, kinds, pids, sh)
                    _related(sh, op)
                    if op.name in FAILABLE and c.boolean(P_FAIL_NTH):
                        n, times = c.packed((FAIL_NTH_MAX, FAIL_TIMES_MAX))
                        ops.append(Op("fail_nth", (n + 1, times + 1)))
                    ops.append(op)
            tasks.append(TaskProgram(cpu, tuple(ops)))
    return Program(s.cpus, tuple(setup), tuple(tasks))


def _related(sh: _Shadow, op: Op) -> None:
    """Remember what ``op`` acts on, for the operations drawn after it: the process that
    faulted the page a walker takes, the pages of the process or range a mutator changes."""
    name, args = op.name, op.args
    if name in ("migrate", "reclaim", "swapout", "pin"):
        if 1 <= args[0] <= sh.pages:
            sh.hot_pids.append(sh.page_pid[args[0] - 1])
        return
    pages: list[int] = []
    if name in ("exit", "fork"):
        pages = sh.pages_in(args[0])
    elif name in ("fault", "read", "move_pages"):
        pages = sh.pages_in(None, args[1], args[1] + PAGE_SIZE)
    elif name in ("munmap", "mprotect", "mremap"):
        pid, start, n = args[0], args[1], args[2]
        end = start + n * PAGE_SIZE
        pages = sh.pages_in(pid, start, end)
        for where, m, orig in sh.moved.get(pid, []):  # a moved range: its pages' old addresses
            lo, hi = max(start, where), min(end, where + m * PAGE_SIZE)
            if lo < hi:
                pages += sh.pages_in(None, orig + lo - where, orig + hi - where)
    elif name == "exec_shift":
        pages = sh.pages_in(None, args[1], STACK_TOP)
    sh.hot_pages += pages


#: how many of the latest related pages and pids are added to the menus of arguments
RELATED_MAX = 4


def _latest(xs: list[int]) -> list[int]:
    return xs[max(0, len(xs) - RELATED_MAX) :]


def _op(c: Choices, kinds: Sequence[str], pids: list[int], sh: _Shadow) -> Op:
    """One operation of a task, kind and arguments drawn as one packed choice.  The menus of
    pids and pages list the ones earlier operations act on (:func:`_related`) once more, so
    that the tasks of a program meet on the same objects more often."""
    pid_menu = pids + [q for q in _latest(sh.hot_pids) if q in pids]
    k, p, a, n, w = c.packed((len(kinds), len(pid_menu), 16, 3, 2))
    kind, pid = kinds[k], pid_menu[p]
    addrs = sh.addrs(pid) or [TASK_LO]
    if kind in ("migrate", "reclaim", "swapout", "pin"):
        pfns = list(range(1, sh.pages + 1)) + _latest(sh.hot_pages)
        return Op(kind, (pfns[a % len(pfns)] if pfns else 1,))
    if kind == "move_pages":
        faulted = sorted(sh.faulted.get(pid, ())) or addrs
        return Op(kind, (pid, faulted[a % len(faulted)]))
    if kind == "fork" or kind == "exit":
        return Op(kind, (pid,))
    if kind == "munmap":
        return Op(kind, (pid, addrs[a % len(addrs)], n + 1))
    if kind == "mprotect":
        return Op(kind, (pid, addrs[a % len(addrs)], n + 1, w))
    if kind == "mremap":
        return _mremap(c, pid, a, n + 1, w, addrs, sh)
    if kind == "exec_shift":
        if pid in sh.stack:
            return Op(kind, (pid, sh.stack[pid][0], n + 1))
        return Op("fault", (pid, addrs[a % len(addrs)]))
    if kind == "read":
        return Op(kind, (pid, addrs[a % len(addrs)]))
    if kind == "fault_below":
        regions = sh.regions.get(pid, [(TASK_LO + PAGE_SIZE, 1, False)])
        start = regions[a % len(regions)][0]
        return Op("fault", (pid, start - (w + 1) * PAGE_SIZE))
    if w and a % 2 == 0:  # a quarter of the faults: at vm_start of a stack, if there is one
        stacks = [r[0] for r in sh.regions.get(pid, ()) if r[2]]
        if stacks:
            return Op("fault", (pid, stacks[a // 2 % len(stacks)]))
    return Op("fault", (pid, addrs[a % len(addrs)]))


def _mremap(
    c: Choices, pid: int, a: int, npages: int, back: int, addrs: list[int], sh: _Shadow
) -> Op:
    """An mremap worth making: move a range the setup moved away back next to where it came
    from (copy_vma() merges it into a neighbour: need_rmap_locks), or move a range out of the
    way, next to its region, just below it, or onto another region (unmapped first)."""
    moved = sh.moved.get(pid)
    if moved and back:
        where, n, orig = moved[a % len(moved)]
        return Op("mremap", (pid, where, n, orig))
    src = addrs[a % len(addrs)]
    regions = sh.regions.get(pid) or [(src, 1, False)]
    rstart, rn, _ = next((r for r in regions if r[0] <= src < r[0] + r[1] * PAGE_SIZE), regions[0])
    dests = (
        FAR + (a % 3) * PAGE_SIZE,
        rstart + rn * PAGE_SIZE,
        rstart - npages * PAGE_SIZE,
        regions[(a + 1) % len(regions)][0],
    )
    return Op("mremap", (pid, src, npages, dests[c.integer(0, len(dests) - 1)]))
