"""Hand-written interleavings: the races of rmap-spec section 4 (B4, B11), replayed step by step.

Every scenario is a module-level PROGRAM and SCHEDULE.  A schedule is a list of decisions
``(task, run)``: ``run == n > 0`` lets the task take exactly ``n`` atomic steps, ``run == 0``
lets it run until it blocks or finishes; when the decisions run out the last task keeps going,
else the lowest runnable one (rmapfuzz/engine/run.py).  Step counts are deterministic, so each
number below names one precise point of the kernel code, given in the comment beside it.

For each scenario the buggy variant must report exactly the expected finding, and mainline
(walkers take the root anon_vma rwsem for read, 3.8) must survive the *same* decisions.  None
of these schedules diverges under mainline (a decision whose task blocks early just ends
there), so mainline must run each of them clean; the tests also check *why*: one of the two
tasks slept on the root anon_vma rwsem the other held -- the serialisation the buggy variants
give up.

Task 0 is always the walker (compaction's migrate, or move_pages under mmap_sem read), task 1
the writer of the anon_vma tree or of the vma geometry. The walker's first run includes the 4
steps that isolate the page from the LRU (isolate_migratepages_range() or isolate_lru_page():
peek, lru_lock, test-and-clear PageLRU, unlock), which the comments do not repeat. Page frames
are numbered in fault order: pfn 1 is the first page faulted in the setup.
"""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.variants import (
    LocklessWalk,
    Mainline,
    PageAnonVmaLock,
    StackGrowthUnderRead,
)
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute


class LocklessWalk37(StackGrowthUnderRead, LocklessWalk):
    """The RFC on the kernel it was written for: 3.7, whose stack grows under mmap_sem read."""


# ------------------------------------------------------------------------------------ helpers


def run(variant: type[Mainline], program: Program, schedule: list[tuple[int, int]]) -> Outcome:
    """Run and check that the engine followed every decision (no silent re-scheduling)."""
    out = execute(variant, program, schedule)
    assert out.decisions == schedule
    return out


def run_mainline(
    program: Program, schedule: list[tuple[int, int]], variant: type[Mainline] = Mainline
) -> Outcome:
    """Mainline under the same decisions.  A schedule the locks make impossible would raise
    ReplayDivergence; none of this file's does (each decision either runs its full budget or
    stops early because its task went to sleep on a lock), so mainline must run them clean.
    The stack-growth scenarios use 3.7's stack growth (mmap_sem read), which the RFC faced."""
    out = execute(variant, program, schedule)
    assert out.decisions == schedule
    assert out.finding is None, out.finding
    return out


def blocked(out: Outcome) -> list[tuple[int, str]]:
    """``(task, lock operation)`` for each decision whose task stopped before its budget because
    it went to sleep on a lock (the next step it takes is that lock's acquisition)."""
    trace = out.result.trace
    slots: list[list[int]] = []  # [tid, first step, last step] of each uninterrupted run
    for i in range(out.result.setup_steps, len(trace)):
        tid = trace[i][0]
        if slots and slots[-1][0] == tid:
            slots[-1][2] = i
        else:
            slots.append([tid, i, i])
    waits = []
    decided = slots[: len(out.decisions)]  # later slots are the engine's default
    for (tid, budget), (stid, first, last) in zip(out.decisions, decided, strict=True):
        assert stid == tid
        if budget and last - first + 1 == budget:
            continue
        nxt = next((e for e in trace[last + 1 :] if e[0] == tid), None)
        if nxt is not None and type(nxt[4]) is ev.Acquire:
            waits.append((tid, repr(nxt[4])))
    return waits


def anon_vma_locks(out: Outcome, tid: int) -> list[tuple[str, str]]:
    """The anon_vma rwsems task ``tid`` held when the run stopped, with their mode."""
    return [(lk.name, mode) for lk, mode in out.result.tasks[tid].held if lk.name.startswith("av#")]


def event_at(out: Outcome, step: int) -> tuple[int, str, str]:
    tid, _cpu, _op, fn, event, _result = out.result.trace[step]
    return tid, fn, repr(event)


def assert_finding(out: Outcome, kind: str, *parts: str) -> Any:
    f = out.finding
    assert f is not None, "expected a finding, the run was clean"
    assert f.kind == kind, f"{f.kind}: {f.message}"
    for p in parts:
        assert p in f.message, f.message
    assert f.task == 0  # always seen by (or at the end of) the walker's migration
    return f


# ------------------------------------------------------- 1. B11(a): sibling fork, torn tree

#: pid1 faults a page (pfn 1, page->mapping = root av#1) and forks pid2, which shares it.
#: Then compaction migrates pfn 1 while pid2 forks pid3 (Rik van Riel's objection to the RFC:
#: "Holding the mmap_sem for one process does not protect against manipulations of the
#: anon_vma chain by sibling, child, or parent processes" -- and compaction holds none).
PROGRAM_SIBLING_FORK = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x10000, 4, 0)), Op("fault", (1, 0x10000)), Op("fork", (1,))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("fork", (2,)),)),
    ),
)

SCHEDULE_SIBLING_FORK = [
    # compaction: lock_page(pfn 1), page_get_anon_vma() pins av#1, the RFC's lockless
    # try_to_unmap() puts migration entries in pid1 and pid2, move_to_new_page() enters
    # remove_migration_ptes() -> rmap_walk_anon(): it has read page->index and is about to
    # call anon_vma_interval_tree_iter_first() -- without anon_vma_lock_read()
    (0, 61),
    # pid2 forks: dup_mmap() -> anon_vma_fork() -> anon_vma_clone() takes av#1's rwsem for
    # write and stops inside anon_vma_interval_tree_insert() of pid3's avc into av#1's tree,
    # just after marking it busy (rotations in progress)
    (1, 17),
    # the walker reads av#1's rb_root while it is being rebalanced
    (0, 0),
]

SCHEDULE_SIBLING_FORK_UNMAP = [
    # compaction: lock_page, pin av#1, then the RFC's try_to_unmap_anon() (page_lock_anon_vma
    # returns the anon_vma unlocked for TTU_MIGRATION) has read page->index: next is
    # anon_vma_interval_tree_iter_first()
    (0, 18),
    # pid2 forks, as above, up to the busy mark of anon_vma_interval_tree_insert()
    (1, 17),
    # try_to_unmap_anon() reads the tree mid-rebalance
    (0, 0),
]


def test_lockless_walk_sibling_fork_tears_remove_migration_ptes():
    """B11(a): with Ingo Molnar's RFC "mm/migration: Don't lock anon vmas in rmap_walk_anon()"
    (Nov 2012) remove_migration_ptes() iterates av#1's tree while a sibling's fork inserts into
    it under the root rwsem; a locked walker can never see a tree under rebalancing."""
    out = run(LocklessWalk, PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK)
    f = assert_finding(
        out,
        "torn-chain",
        "rmap_walk_anon() read av#1.rb_root while task 1 (fork(2)) was in "
        "anon_vma_interval_tree_insert()",
        "mm#3",  # the avc being inserted belongs to the grandchild
        "no walker holding the root anon_vma lock can see",
    )
    assert event_at(out, f.step) == (0, "anon_vma_interval_tree_iter_first", "R av#1.rb_root.nodes")
    assert anon_vma_locks(out, 0) == []
    assert anon_vma_locks(out, 1) == [("av#1.rwsem", "w")]
    assert len(f.real) == 2 and f.observed == ()


def test_lockless_walk_sibling_fork_tears_try_to_unmap():
    """B11(a), first phase: the RFC's follow-up "mm/migration: Remove anon vma locking from
    try_to_unmap() use" lets try_to_unmap_anon() read the tree that pid2's fork is
    rebalancing."""
    out = run(LocklessWalk, PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK_UNMAP)
    f = assert_finding(
        out,
        "torn-chain",
        "try_to_unmap_anon() read av#1.rb_root while task 1 (fork(2)) was in "
        "anon_vma_interval_tree_insert()",
    )
    assert event_at(out, f.step) == (0, "anon_vma_interval_tree_iter_first", "R av#1.rb_root.nodes")
    assert anon_vma_locks(out, 0) == []


def test_mainline_sibling_fork_remove_migration_ptes_waits_for_fork():
    """Mainline (4fc3f1d66b1e, walkers read-lock the root rwsem): rmap_walk_anon() sleeps in
    anon_vma_lock_read() until anon_vma_clone() has finished and released av#1."""
    out = run_mainline(PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


def test_mainline_sibling_fork_waits_for_try_to_unmap():
    """Mainline: try_to_unmap_anon() holds av#1 for read (page_lock_anon_vma_read), so the
    sibling's anon_vma_clone() sleeps on down_write until the walk is over."""
    out = run_mainline(PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK_UNMAP)
    assert (1, "down_write(av#1.rwsem)") in blocked(out)


# -------------------------------------------------- 2. B11(b): sibling exit, use-after-free

#: The same family; this time pid2 exits while compaction walks av#1's tree.
PROGRAM_SIBLING_EXIT = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x10000, 4, 0)), Op("fault", (1, 0x10000)), Op("fork", (1,))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("exit", (2,)),)),
    ),
)

SCHEDULE_SIBLING_EXIT = [
    # compaction: migration entries in pid1 and pid2; remove_migration_ptes()'s lockless walk
    # restored pid1's pte and anon_vma_interval_tree_iter_next() returned avc#2 (pid2's vma):
    # the walker holds a bare pointer to avc#2, no lock, no reference
    (0, 80),
    # pid2 exits, nothing stops it: exit_mmap() zaps its migration entry, unlink_anon_vmas()
    # takes avc#2 out of av#1's tree and frees it (av#1 is not empty), frees av#2, vma#2, mm#2
    (1, 0),
    # the walker follows avc#2->vma
    (0, 0),
]


def test_lockless_walk_sibling_exit_use_after_free():
    """B11(b): under the RFC the walker keeps avc#2 while unlink_anon_vmas() of the exiting
    sibling frees it -- "the vma lock protects the chain that is created by fork and exit"
    (Linus, 1 Dec 2012)."""
    out = run(LocklessWalk, PROGRAM_SIBLING_EXIT, SCHEDULE_SIBLING_EXIT)
    f = assert_finding(
        out,
        "use-after-free",
        "anon_vma_interval_tree_foreach() read vma of avc#2 after it was freed",
    )
    assert out.result.trace[f.step][4] == ev.Load(out.result.trace[f.step][4].obj, "vma")
    assert out.result.tasks[1].done  # the exit completed while the walker held avc#2


def test_mainline_sibling_exit_waits_for_walk():
    """Mainline: the walker holds av#1 for read across the walk, so unlink_anon_vmas() sleeps
    in lock_anon_vma_root() before it can remove (and free) avc#2."""
    out = run_mainline(PROGRAM_SIBLING_EXIT, SCHEDULE_SIBLING_EXIT)
    assert (1, "down_write(av#1.rwsem)") in blocked(out)


# ------------------------------------- 3. B11(c) / CE2: stack growth in the walker's own mm

#: pid1 has a VM_GROWSDOWN stack [0x12000, 0x14000) (pgoff 0x12) with a page at 0x13000.
#: Thread T0 migrates it with move_pages() (mmap_sem held for read, the NUMA-fault context of
#: the RFC), thread T1 faults at 0x11000, below the stack: expand_stack() -> expand_downwards()
#: runs with mmap_sem held for read too, and only the root anon_vma lock serialises it.
PROGRAM_STACK_GROWTH = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x12000, 2, 1)), Op("fault", (1, 0x13000))),
    tasks=(
        TaskProgram(0, (Op("move_pages", (1, 0x13000)),)),
        TaskProgram(1, (Op("fault", (1, 0x11000)),)),
    ),
)

SCHEDULE_STACK_GROWTH_MISS = [
    # move_pages: down_read(mmap_sem), follow_page, lock_page, pin av#1, lockless
    # try_to_unmap() installs the migration entry at 0x13000; move_to_new_page() enters
    # rmap_walk_anon() and is about to call anon_vma_interval_tree_iter_first()
    (0, 55),
    # T1: down_read(mmap_sem) (shared with T0), expand_downwards() takes av#1's rwsem for
    # write, anon_vma_interval_tree_pre_update_vma() has taken the stack's avc out of the tree;
    # vm_start and vm_pgoff are not written yet
    (1, 16),
    # the walker finds av#1's tree empty, the walk ends, the migration entry stays
    (0, 0),
]

SCHEDULE_STACK_GROWTH_TORN = [
    # move_pages as above, but remove_migration_ptes()'s walk got vma#1 and vma_address()
    # has read vm_start = 0x12000
    (0, 59),
    # T1: expand_downwards(): pre_update, vm_start = 0x11000, vm_pgoff = 0x11
    (1, 18),
    # vma_address() reads the new vm_pgoff with the old vm_start
    (0, 0),
]


def test_lockless_walk_stack_growth_leaves_migration_entry():
    """B11(c) / rmap-spec CE2: mmap_sem held for read does not exclude expand_downwards()
    (012f18004da3 lists expand_stack among the operations that must exclude rmap_walk); the
    lockless walk misses the stack vma and its migration entry outlives the migration."""
    out = run(LocklessWalk37, PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_MISS)
    f = assert_finding(
        out,
        "migration-entry-leak",
        "migration of page#1 is ending but a migration entry is left at 0x13000 in mm#1",
        "remove_migration_ptes() missed it",
    )
    assert anon_vma_locks(out, 1) == [("av#1.rwsem", "w")]  # expand_downwards still in flight
    assert any(
        e[0] == 0 and e[3] == "anon_vma_interval_tree_iter_first" and e[5] == ()
        for e in out.result.trace[out.result.setup_steps : f.step]
    )


def test_lockless_walk_stack_growth_tears_vma_address():
    """B11(c): vma_address() reads vm_start before and vm_pgoff after expand_downwards()
    moved both: a geometry that never existed, i.e. the wrong address (Mel Gorman, 6 May 2010:
    "vma_address() can return -EFAULT for an address that will soon be valid")."""
    out = run(LocklessWalk37, PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_TORN)
    f = assert_finding(
        out,
        "torn-chain",
        "rmap_walk_anon() read vma#1 as vm_start=0x12000 vm_end=0x14000 vm_pgoff=0x11, "
        "a combination that never existed",
        "vma_address() of page#2 is wrong",
    )
    assert f.observed == (
        "avc#1 -> vma#1[0x11000-0x14000 pgoff=0x11 rw/gd] mm#1 read as (0x12000, 0x14000, 0x11)",
    )


def test_mainline_stack_growth_miss_schedule_walker_waits():
    """Mainline: rmap_walk_anon() sleeps in anon_vma_lock_read() while expand_downwards()
    holds av#1 ("We need the anon_vma lock to serialize against concurrent expand_stacks")."""
    out = run_mainline(PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_MISS, StackGrowthUnderRead)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


def test_mainline_stack_growth_torn_schedule_walker_waits():
    """Mainline, same decisions as the torn vma_address(): the walker has not taken av#1 yet
    at the preemption point, and then sleeps on it until the stack growth is complete."""
    out = run_mainline(PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_TORN, StackGrowthUnderRead)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


# ------------------------------------------------- 4. B4: munmap's split during the walk

#: pid1 maps [0x10000, 0x14000) (pgoff 0x10) and faults 0x12000 (index 0x12); compaction
#: migrates it while pid1 munmaps the first page: __split_vma() + vma_adjust() move vma#1's
#: vm_start and vm_pgoff under the root anon_vma rwsem (mmap_sem write, which compaction
#: does not take).
PROGRAM_MUNMAP_SPLIT = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x10000, 4, 0)), Op("fault", (1, 0x12000))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("munmap", (1, 0x10000, 1)),)),
    ),
)

SCHEDULE_MUNMAP_SPLIT_TORN = [
    # compaction: migration entry at 0x12000, remove_migration_ptes()'s lockless walk got
    # vma#1 and vma_address() has read vm_start = 0x10000
    (0, 48),
    # munmap: __split_vma() clones vma#2 = [0x10000, 0x11000) into av#1's tree, vma_adjust()
    # takes av#1's rwsem, pre_update, writes vm_start = 0x11000, vm_end, vm_pgoff = 0x11
    (1, 27),
    # vma_address() reads the new vm_pgoff with the old vm_start
    (0, 0),
]

SCHEDULE_MUNMAP_SPLIT_MISS = [
    # compaction up to rmap_walk_anon(), about to call anon_vma_interval_tree_iter_first()
    (0, 44),
    # munmap: vma#2 cloned into the tree, vma_adjust()'s pre_update has taken vma#1's avc out:
    # the tree holds only avc#2, which covers index 0x10 only
    (1, 24),
    # no avc covers index 0x12: the walk ends, the migration entry at 0x12000 stays
    (0, 0),
]


def test_lockless_walk_munmap_split_tears_vma_address():
    """B4: vma_adjust() rewrites vm_start/vm_pgoff under the root lock only; a walker without
    it combines the old vm_start with the new vm_pgoff (012f18004da3 "mm: always lock the root
    (oldest) anon_vma" added "the proper locking to vma_adjust" for that)."""
    out = run(LocklessWalk, PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_TORN)
    f = assert_finding(
        out,
        "torn-chain",
        "rmap_walk_anon() read vma#1 as vm_start=0x10000 vm_end=0x14000 vm_pgoff=0x11, "
        "a combination that never existed",
    )
    assert "(0x10000, 0x14000, 0x10)" in f.message and "(0x11000, 0x14000, 0x11)" in f.message
    assert anon_vma_locks(out, 1) == [("av#1.rwsem", "w")]


def test_lockless_walk_munmap_split_leaves_migration_entry():
    """B4, the consequence Mel Gorman described: the walk misses the vma being adjusted and
    "potentially leaves a dangling migration PTE behind which can later cause a BUG_ON"."""
    out = run(LocklessWalk, PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_MISS)
    assert_finding(
        out,
        "migration-entry-leak",
        "a migration entry is left at 0x12000 in mm#1 (vma#1[0x10000-0x14000 pgoff=0x10 rw])",
    )


def test_mainline_munmap_split_torn_schedule_walker_waits():
    """Mainline: the walker sleeps on av#1 until vma_adjust() has finished."""
    out = run_mainline(PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_TORN)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


def test_mainline_munmap_split_miss_schedule_walker_waits():
    """Mainline: the walker sleeps on av#1 until post_update has put vma#1 back."""
    out = run_mainline(PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_MISS)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


# ----------------------------- 5. B4: walker locks the page's own anon_vma, not the root's

_SETUP_CHILD_PAGE = (
    Op("mmap", (1, 0x10000, 4, 0)),
    Op("fault", (1, 0x10000)),  # pfn 1 in pid1: av#1 is the root
    Op("fork", (1,)),  # pid2: vma#2 chained to av#2 (its own) and av#1 (root)
    Op("fault", (2, 0x11000)),  # pfn 2, first faulted in pid2: page->mapping = av#2
)

#: Compaction migrates pfn 2, whose anon_vma is pid2's own av#2, while pid2 forks.
PROGRAM_CHILD_PAGE_FORK = Program(
    cpus=2,
    setup=_SETUP_CHILD_PAGE,
    tasks=(
        TaskProgram(0, (Op("migrate", (2,)),)),
        TaskProgram(1, (Op("fork", (2,)),)),
    ),
)

SCHEDULE_CHILD_PAGE_FORK = [
    # compaction of pfn 2: try_to_unmap under av#2's rwsem (the 2.6.34 rule: lock
    # page_anon_vma(page) itself), move_to_new_page(), rmap_walk_anon() has taken av#2's rwsem
    # for read and is about to call anon_vma_interval_tree_iter_first() on av#2's tree
    (0, 48),
    # pid2 forks: anon_vma_clone() locks the root av#1 for write (lock_anon_vma_root), inserts
    # pid3's avc into av#1's tree, then stops inside the insert into av#2's tree (busy)
    (1, 26),
    # the walker, holding av#2's rwsem, reads av#2's tree mid-rebalance
    (0, 0),
]

#: Compaction migrates pfn 2 while pid2 write-protects its first page (a split).
PROGRAM_CHILD_PAGE_SPLIT = Program(
    cpus=2,
    setup=_SETUP_CHILD_PAGE,
    tasks=(
        TaskProgram(0, (Op("migrate", (2,)),)),
        TaskProgram(1, (Op("mprotect", (2, 0x10000, 1, 0)),)),
    ),
)

SCHEDULE_CHILD_PAGE_SPLIT = [
    # compaction of pfn 2: try_to_unmap_anon() holds av#2's rwsem for read and
    # anon_vma_interval_tree_iter_first() has returned avc#3 (vma#2, [0x10000, 0x14000))
    (0, 21),
    # pid2's mprotect: split_vma() clones vma#3 = [0x11000, 0x14000) into av#1's and av#2's
    # trees, vma_adjust() (under the root av#1's rwsem) has shrunk vma#2 to [0x10000, 0x11000)
    (1, 37),
    # the walker computes vma_address(pfn 2, vma#2) = 0x11000, outside the vma
    (0, 0),
]


def test_page_anon_vma_lock_child_fork_tears_walk():
    """B4 (2.6.34): with per-anon_vma locks the walker holds av#2's rwsem while fork's
    anon_vma_clone() modifies av#2's tree under the root's, so the walk is torn; fixed by Rik
    van Riel's 012f18004da3 "mm: always lock the root (oldest) anon_vma"."""
    out = run(PageAnonVmaLock, PROGRAM_CHILD_PAGE_FORK, SCHEDULE_CHILD_PAGE_FORK)
    f = assert_finding(
        out,
        "torn-chain",
        "rmap_walk_anon() read av#2.rb_root while task 1 (fork(2)) was in "
        "anon_vma_interval_tree_insert()",
    )
    assert event_at(out, f.step) == (0, "anon_vma_interval_tree_iter_first", "R av#2.rb_root.nodes")
    # both "hold the anon_vma lock" -- different ones
    assert anon_vma_locks(out, 0) == [("av#2.rwsem", "r")]
    assert anon_vma_locks(out, 1) == [("av#1.rwsem", "w")]


def test_page_anon_vma_lock_child_split_vma_address_bug():
    """B4: the walker (under av#2's rwsem) keeps using vma#2 while vma_adjust() (under av#1's)
    shrinks it, and vma_address() lands outside the vma -- the VM_BUG_ON of v3.7, the -EFAULT
    and dangling migration pte of 2.6.34 (Mel Gorman, May 2010)."""
    out = run(PageAnonVmaLock, PROGRAM_CHILD_PAGE_SPLIT, SCHEDULE_CHILD_PAGE_SPLIT)
    assert_finding(
        out,
        "kernel-bug",
        "VM_BUG_ON(address < vma->vm_start || address >= vma->vm_end) in "
        "vma_address(page#2, vma#2): 0x11000 outside [0x10000, 0x11000)",
    )
    assert anon_vma_locks(out, 0) == [("av#2.rwsem", "r")]
    assert anon_vma_locks(out, 1) == [("av#1.rwsem", "w")]


def test_mainline_child_page_fork_walker_locks_root():
    """Mainline locks page->mapping->root: the walker sleeps on av#1 (not av#2) until fork's
    anon_vma_clone() is done with both trees."""
    out = run_mainline(PROGRAM_CHILD_PAGE_FORK, SCHEDULE_CHILD_PAGE_FORK)
    assert (0, "down_read(av#1.rwsem)") in blocked(out)


def test_mainline_child_page_split_waits_for_walker():
    """Mainline: try_to_unmap_anon() holds the root av#1 for read, so split_vma()'s
    anon_vma_clone() sleeps on it until the walk is over."""
    out = run_mainline(PROGRAM_CHILD_PAGE_SPLIT, SCHEDULE_CHILD_PAGE_SPLIT)
    assert (1, "down_write(av#1.rwsem)") in blocked(out)


# ------------------------------------------------------------------- 6. all scenarios

SCENARIOS = {
    "sibling-fork": (LocklessWalk, PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK),
    "sibling-fork-unmap": (LocklessWalk, PROGRAM_SIBLING_FORK, SCHEDULE_SIBLING_FORK_UNMAP),
    "sibling-exit": (LocklessWalk, PROGRAM_SIBLING_EXIT, SCHEDULE_SIBLING_EXIT),
    "stack-growth-miss": (LocklessWalk37, PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_MISS),
    "stack-growth-torn": (LocklessWalk37, PROGRAM_STACK_GROWTH, SCHEDULE_STACK_GROWTH_TORN),
    "munmap-split-torn": (LocklessWalk, PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_TORN),
    "munmap-split-miss": (LocklessWalk, PROGRAM_MUNMAP_SPLIT, SCHEDULE_MUNMAP_SPLIT_MISS),
    "child-page-fork": (PageAnonVmaLock, PROGRAM_CHILD_PAGE_FORK, SCHEDULE_CHILD_PAGE_FORK),
    "child-page-split": (PageAnonVmaLock, PROGRAM_CHILD_PAGE_SPLIT, SCHEDULE_CHILD_PAGE_SPLIT),
}


def _fingerprint(out: Outcome) -> tuple[Any, ...]:
    trace = [(t[0], t[1], t[2], t[3], repr(t[4]), repr(t[5])) for t in out.result.trace]
    return trace, out.finding, out.decisions, out.result.setup_steps


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize("which", ["buggy", "mainline"])
def test_replay_is_deterministic(name, which):
    """The same program and decisions give the same trace and the same finding, every time:
    a finding is a replayable bug report."""
    variant, program, schedule = SCENARIOS[name]
    if which == "mainline":
        variant = Mainline
    a, b = execute(variant, program, schedule), execute(variant, program, schedule)
    assert _fingerprint(a) == _fingerprint(b)
    assert (a.finding is None) == (which == "mainline")


@pytest.mark.parametrize("name", SCENARIOS)
def test_buggy_variant_needs_the_interleaving(name):
    """Run serially (each task to completion, no preemption) the buggy variants are clean:
    the findings above come from the interleaving, not from the program."""
    variant, program, _ = SCENARIOS[name]
    out = execute(variant, program, [])
    assert out.finding is None, out.finding
    assert out.result.preemptions == 0


# ------------------------------ 6. found by rmapfuzz: 3.7 stack growth vs a concurrent fault

#: pid1's stack [0x18000, 0x1b000) with a page at 0x19000.  Thread T2 faults at vm_start
#: (check_stack_guard_page grows the stack under mmap_sem read) while thread T1 faults at
#: 0x1a000: __page_set_anon_rmap()'s linear_page_index() reads the new vm_start and the old
#: vm_pgoff, so the new page gets index 0x1b instead of 0x1a.
PROGRAM_FAULT_VS_GROWTH = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x18000, 3, 1)), Op("fault", (1, 0x19000))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("fault", (1, 0x1A000)),)),
        TaskProgram(0, (Op("fault", (1, 0x18000)),)),
    ),
)
#: T2 takes its mm reference; compaction migrates page#1 to completion; T2 runs into
#: expand_downwards() and writes vm_start; T1's whole fault runs between T2's two stores.
SCHEDULE_FAULT_VS_GROWTH = [(2, 4), (0, 0), (2, 16), (1, 0)]


def test_stack_growth_under_read_gives_a_page_the_wrong_index():
    """3.7: expand_downwards() under mmap_sem read tears linear_page_index() of a concurrent
    fault in the same vma; the page is mapped where vma_address() does not look (I1).  Fixed by
    6.5's "mm: always expand the stack with the mmap write lock held"."""
    out = execute(StackGrowthUnderRead, PROGRAM_FAULT_VS_GROWTH, SCHEDULE_FAULT_VS_GROWTH)
    f = out.finding
    assert f is not None and f.kind == "invariant-I1"
    assert "vma_address(page#3" in f.message and "mapped at 0x1a000" in f.message


def test_mainline_grows_the_stack_under_the_write_lock():
    """Mainline (the 6.5 fix): the same decisions run clean; T2's expansion waits for
    mmap_sem for write until T1's fault has released it for read."""
    out = execute(Mainline, PROGRAM_FAULT_VS_GROWTH, SCHEDULE_FAULT_VS_GROWTH)
    assert out.finding is None
    assert any(repr(t[4]) == "down_write(mm#1.mmap_sem)" for t in out.result.trace)
