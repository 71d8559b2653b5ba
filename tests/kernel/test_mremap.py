"""mm/mremap.c and copy_vma() (mm/mmap.c) run alone: mremap(MREMAP_MAYMOVE|MREMAP_FIXED).

Geometry is (vm_start, vm_end, vm_pgoff); a private anonymous vma at addr has
vm_pgoff = addr >> PAGE_SHIFT, and mremap keeps the pgoff of what it moves ("new_pgoff =
vma->vm_pgoff + ((old_addr - vma->vm_start) >> PAGE_SHIFT)"), so page->index never changes and
vma_address() of the moved vma is the new address.  Vma ids are allocation order.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from rmapfuzz.engine import events as ev
from rmapfuzz.explore.random import RandomScheduler
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import Present, Vma
from rmapfuzz.kernel.variants import Mainline, MremapNoRmapLocks
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

from ._helpers import (
    EFAULT,
    EINVAL,
    ESRCH,
    all_ptes,
    anon_vma,
    chain,
    clean,
    geometry,
    op,
    page,
    pte,
    results,
    tree,
    vmas,
)

ENOMEM = -12


class Recording(Mainline):
    """Mainline that remembers each move_page_tables() call's need_rmap_locks and whether its
    move_ptes() took the root anon_vma rwsem."""

    calls: list[tuple[int, int, bool]]
    rmap_locked: list[bool]

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.calls = []
        self.rmap_locked = []

    def move_page_tables(
        self, vma: Vma, old_addr: int, new_vma: Vma, new_addr: int, length: int, need: bool
    ) -> Gen:
        self.calls.append((old_addr, new_addr, need))
        return (yield from super().move_page_tables(vma, old_addr, new_vma, new_addr, length, need))

    def move_ptes(
        self, vma: Vma, old_addr: int, old_end: int, new_vma: Vma, new_addr: int, need: bool
    ) -> Gen:  # noqa: E501
        gen = super().move_ptes(vma, old_addr, old_end, new_vma, new_addr, need)
        locked = False
        value = None
        while True:
            try:
                e = gen.send(value)
            except StopIteration as stop:
                self.rmap_locked.append(locked)
                return stop.value
            if type(e) is ev.Acquire and e.lock.lclass == "anon_vma->rwsem":
                locked = True
            value = yield e


def run_rec(setup: list[Op], ops: list[Op]) -> Outcome:
    out = execute(
        Recording, Program(cpus=1, setup=tuple(setup), tasks=(TaskProgram(0, tuple(ops)),))
    )
    assert out.finding is None, out.finding
    return out


# [0x10000, 0x14000) pgoff 0x10, pages 1 and 2 at 0x10000 and 0x11000
FOUR = [op("mmap", 1, 0x10000, 4, 0), op("fault", 1, 0x10000), op("fault", 1, 0x11000)]


def test_move_to_a_hole_copies_the_vma() -> None:
    """mremap(0x10000, 2 pages -> 0x20000): do_munmap(0x20000) finds nothing; copy_vma(): the
    vma has an anon_vma so pgoff stays 0x10; find_vma_links() gives prev = vma#1, which does not
    end at 0x20000, and there is no next: vma_merge() fails, so new_vma (vma#2) =
    [0x20000, 0x22000) pgoff 0x10, anon_vma_clone()d onto av#1 and need_rmap_locks = false.
    The two ptes move; do_munmap(0x10000, 2 pages) splits vma#1 (__split_vma new_below: the
    copy vma#3 = [0x10000, 0x12000) is unmapped and freed) leaving [0x12000, 0x14000) pgoff
    0x12.  The pages keep index 0x10, 0x11 and av#1; av#1's tree walks vma#2 (key 0x10-0x11)
    before vma#1 (0x12-0x13)."""
    out = run_rec(FOUR, [op("mremap", 1, 0x10000, 2, 0x20000), op("reclaim", 1), op("reclaim", 2)])
    # page_referenced() finds each page through the moved vma: its pte is still young
    assert results(out) == [0x20000, 1, 1]
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.calls == [(0x10000, 0x20000, False)]
    assert k.rmap_locked == [False]
    v1, v2 = vmas(out, 1)
    assert (v1.oid, geometry(v1)) == (1, (0x12000, 0x14000, 0x12))
    assert (v2.oid, geometry(v2)) == (2, (0x20000, 0x22000, 0x10))
    av = anon_vma(out, 1)
    assert chain(v1) == chain(v2) == [av] and v2.anon_vma is av
    assert tree(av) == [(v2, (0x10, 0x11)), (v1, (0x12, 0x13))]
    assert k.vmas[2].freed  # the __split_vma copy of the unmapped part
    p1, p2 = page(out, 1), page(out, 2)
    assert pte(out, 1, 0x10000) is None and pte(out, 1, 0x11000) is None
    assert pte(out, 1, 0x20000) == Present(p1, True, False)
    assert pte(out, 1, 0x21000) == Present(p2, True, False)
    assert [(p.index, p.mapping, p.mapcount) for p in (p1, p2)] == [(0x10, av, 0), (0x11, av, 0)]


def test_moved_page_migrates_through_the_new_vma() -> None:
    """After a move, compaction's rmap walks (try_to_unmap, remove_migration_ptes) compute
    vma_address(page, vma#2) = 0x20000 + (0x10 - 0x10) pages: the new page 3 lands there."""
    out = clean(FOUR, [op("mremap", 1, 0x10000, 1, 0x20000), op("migrate", 1)])
    assert results(out) == [0x20000, 0]
    assert pte(out, 1, 0x20000) == Present(page(out, 3), True, False)
    assert page(out, 3).index == 0x10 and page(out, 1).mapcount == -1


def test_partial_move_from_the_middle_keeps_pgoff_linear() -> None:
    """Moving the second page of [0x10000, 0x14000): new_pgoff = 0x10 + 1; do_munmap() of the
    old page splits vma#1 twice (0x11000 and 0x12000).  Every pte is where vma_address() of
    its page says."""
    setup = [*FOUR, op("fault", 1, 0x12000)]
    out = clean(setup, [op("mremap", 1, 0x11000, 1, 0x24000)])
    assert results(out) == [0x24000]
    geo = sorted(geometry(v) for v in vmas(out, 1))
    assert geo == [(0x10000, 0x11000, 0x10), (0x12000, 0x14000, 0x12), (0x24000, 0x25000, 0x11)]
    for (_, addr), p in all_ptes(out).items():
        v = next(v for v in vmas(out, 1) if v.vm_start <= addr < v.vm_end)
        assert v.vm_start + ((p.page.index - v.vm_pgoff) << 12) == addr


def test_merge_into_prev_walked_first_needs_rmap_locks() -> None:
    """Move page 2 (pgoff 0x13) away to 0x20000 and back: the second copy_vma() finds prev =
    vma#1 [0x10000, 0x13000) pgoff 0x10 ending at 0x13000 with 0x10 + 3 == 0x13 and the same
    anon_vma, so vma_merge() case 2 extends vma#1 over the destination.  vma#1 (pgoff 0x10)
    comes before the source (pgoff 0x13) in av#1's tree: need_rmap_locks = (0x10 <= 0x13), and
    move_ptes() takes the root anon_vma lock.  The first move (a fresh copy) did not."""
    setup = [op("mmap", 1, 0x10000, 4, 0), op("fault", 1, 0x10000), op("fault", 1, 0x13000)]
    out = run_rec(
        setup, [op("mremap", 1, 0x13000, 1, 0x20000), op("mremap", 1, 0x20000, 1, 0x13000)]
    )
    assert results(out) == [0x20000, 0x13000]
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.calls == [(0x13000, 0x20000, False), (0x20000, 0x13000, True)]
    assert k.rmap_locked == [False, True]
    (v,) = vmas(out, 1)
    assert (v.oid, geometry(v)) == (1, (0x10000, 0x14000, 0x10))
    assert tree(anon_vma(out, 1)) == [(v, (0x10, 0x13))]
    assert pte(out, 1, 0x13000) == Present(page(out, 2), True, True)


def test_merge_into_next_walked_after_needs_no_rmap_locks() -> None:
    """[0x10000, 0x18000) faulted at 0x14000 and 0x15000; move [0x14000, 0x16000) (pgoff 0x14)
    to 0x20000: vma#N = [0x20000, 0x22000) pgoff 0x14, the rest [0x10000, 0x14000) 0x10 and
    [0x16000, 0x18000) 0x16.  Moving 0x21000 (new_pgoff 0x15) to 0x15000: prev ends at 0x14000,
    next starts at 0x16000 = end with pgoff 0x16 = 0x15 + 1: case 3, vma_adjust(next, 0x15000,
    0x18000, 0x15).  need_rmap_locks = (0x15 <= 0x14) = false: the extended vma is walked
    after the source."""
    setup = [
        op("mmap", 1, 0x10000, 8, 0),
        op("fault", 1, 0x14000),
        op("fault", 1, 0x15000),
        op("mremap", 1, 0x14000, 2, 0x20000),
    ]
    out = run_rec(setup, [op("mremap", 1, 0x21000, 1, 0x15000)])
    assert results(out) == [0x15000]
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.calls[-1] == (0x21000, 0x15000, False) and k.rmap_locked[-1] is False
    geo = sorted(geometry(v) for v in vmas(out, 1))
    assert geo == [(0x10000, 0x14000, 0x10), (0x15000, 0x18000, 0x15), (0x20000, 0x21000, 0x14)]
    assert pte(out, 1, 0x15000) == Present(page(out, 2), True, True)
    assert page(out, 2).index == 0x15


def test_merge_into_next_with_equal_pgoff_takes_rmap_locks() -> None:
    """[0x10000, 0x18000) faulted at 0x14000; munmap [0x12000, 0x14000); move 0x14000 (pgoff
    0x14) to 0x20000 and back: next = [0x15000, 0x18000) pgoff 0x15 = 0x14 + 1, case 3 makes
    it [0x14000, 0x18000) pgoff 0x14; need_rmap_locks = (0x14 <= 0x14) is true (the kernel's
    test is <=: equal keys are ordered by insertion, which the vma_adjust() reinsert changed)."""
    setup = [
        op("mmap", 1, 0x10000, 8, 0),
        op("fault", 1, 0x14000),
        op("munmap", 1, 0x12000, 2),
        op("mremap", 1, 0x14000, 1, 0x20000),
    ]
    out = run_rec(setup, [op("mremap", 1, 0x20000, 1, 0x14000)])
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.calls[-1] == (0x20000, 0x14000, True) and k.rmap_locked[-1] is True
    assert sorted(geometry(v) for v in vmas(out, 1)) == [
        (0x10000, 0x12000, 0x10),
        (0x14000, 0x18000, 0x14),
    ]


def test_unfaulted_vma_gets_the_new_pgoff_and_can_merge_with_itself() -> None:
    """copy_vma() of a vma without anon_vma resets pgoff to addr >> PAGE_SHIFT; moving the
    first page of [0x10000, 0x12000) to 0x12000 then merges with the source itself (case 2,
    is_mergeable_anon_vma(NULL, NULL) holds), the one self-merge the kernel allows
    (VM_BUG_ON(faulted_in_anon_vma)); *vmap becomes the merged vma, need_rmap_locks is true but
    there is no anon_vma to lock; do_munmap(0x10000) trims it: [0x11000, 0x13000) pgoff 0x11."""
    out = run_rec([op("mmap", 1, 0x10000, 2, 0)], [op("mremap", 1, 0x10000, 1, 0x12000)])
    assert results(out) == [0x12000]
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.calls == [(0x10000, 0x12000, True)] and k.rmap_locked == [False]
    (v,) = vmas(out, 1)
    assert (v.oid, geometry(v), v.anon_vma) == (1, (0x11000, 0x13000, 0x11), None)


def test_move_onto_a_mapping_unmaps_it_first() -> None:
    """mremap_to() does do_munmap(new_addr, new_len) first: the pages of the region at the
    destination are zapped (_mapcount -1), the moved page takes their place."""
    setup = [
        op("mmap", 1, 0x10000, 1, 0),
        op("mmap", 1, 0x20000, 2, 0),
        op("fault", 1, 0x10000),
        op("fault", 1, 0x20000),
    ]
    out = clean(setup, [op("mremap", 1, 0x10000, 1, 0x20000)])
    assert results(out) == [0x20000]
    assert pte(out, 1, 0x20000) == Present(page(out, 1), True, True)
    assert page(out, 2).mapcount == -1
    assert sorted(geometry(v) for v in vmas(out, 1)) == [
        (0x20000, 0x21000, 0x10),
        (0x21000, 0x22000, 0x21),
    ]


def test_child_moves_its_copy_with_both_anon_vmas() -> None:
    """After fork, the child's vma is on the parent's av#1 and its own av#2 (newest first);
    anon_vma_clone() gives the moved copy the same chain, in the same order.  Migrating the
    shared page finds the child's pte at its new place (else the page would stay mapped and
    the migration fail with -EAGAIN)."""
    out = clean(
        [*FOUR, op("fork", 1)],
        [op("mremap", 2, 0x10000, 1, 0x20000), op("migrate", 1)],
    )
    assert results(out) == [0x20000, 0]
    child_new = next(v for v in vmas(out, 2) if v.vm_start == 0x20000)
    assert chain(child_new) == [anon_vma(out, 2), anon_vma(out, 1)]
    new = out.kernel.pages[-1]
    assert pte(out, 2, 0x20000) == Present(new, False, False)
    assert pte(out, 1, 0x10000) == Present(new, False, False)
    assert new.mapcount == 1 and page(out, 1).mapcount == -1


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ((1, 0x10800, 1, 0x20000), EINVAL),  # addr & ~PAGE_MASK
        ((1, 0x10000, 1, 0x20800), EINVAL),  # new_addr & ~PAGE_MASK
        ((1, 0x10000, 2, 0x11000), EINVAL),  # destination overlaps the source
        ((1, 0x11000, 2, 0x10000), EINVAL),  # source overlaps the destination
        ((1, 0x10000, 1, 0x2F000 + 0x1000), EINVAL),  # beyond the modelled TASK_SIZE
        ((1, 0x18000, 1, 0x20000), EFAULT),  # vma_to_resize(): nothing mapped at addr
        ((1, 0x13000, 2, 0x20000), EFAULT),  # "We can't remap across vm area boundaries"
        ((2, 0x10000, 1, 0x20000), ESRCH),
        ((1, 0x10000, 0, 0x20000), EINVAL),
    ],
)
def test_mremap_errors(args: tuple[int, ...], expect: int) -> None:
    """mremap_to()/vma_to_resize() checks, in the kernel's order; nothing changes."""
    out = clean(FOUR, [op("mremap", *args)])
    assert results(out) == [expect]
    assert [geometry(v) for v in vmas(out, 1)] == [(0x10000, 0x14000, 0x10)]


@pytest.mark.parametrize(("nth", "times"), [(1, 1), (2, 2)])
def test_copy_vma_allocation_failure(nth: int, times: int) -> None:
    """copy_vma() fails with the vma allocation (fail-nth 1) or with anon_vma_clone()'s avc
    (GFP_NOWAIT and its GFP_KERNEL retry: fail-nth 2, twice; enomem_failure unlinks what was
    linked, out_free_vma frees the copy): move_vma() returns -ENOMEM before any pte moved."""
    out = clean(FOUR, [op("fail_nth", nth, times), op("mremap", 1, 0x10000, 2, 0x20000)])
    assert results(out) == [0, ENOMEM]
    assert [geometry(v) for v in vmas(out, 1)] == [(0x10000, 0x14000, 0x10)]
    assert pte(out, 1, 0x10000) == Present(page(out, 1), True, True)
    assert all(v.freed for v in out.kernel.vmas[1:])
    assert tree(anon_vma(out, 1)) == [(vmas(out, 1)[0], (0x10, 0x13))]


def test_mremap_against_migration_stays_clean_in_mainline() -> None:
    """A migration of page 1 (compaction: no mmap_sem) against a move of its vma, both the
    fresh-copy move (no rmap lock: traversal order) and the move back that merges into a vma
    walked first (rmap lock), under 300 seeded random interleavings: no finding."""
    setup = [op("mmap", 1, 0x10000, 4, 0), op("fault", 1, 0x10000), op("fault", 1, 0x13000)]
    for moves in (
        [op("mremap", 1, 0x10000, 2, 0x20000)],
        [op("mremap", 1, 0x13000, 1, 0x20000), op("mremap", 1, 0x20000, 1, 0x13000)],
    ):
        program = Program(
            cpus=2,
            setup=tuple(setup),
            tasks=(TaskProgram(0, (op("migrate", 2),)), TaskProgram(1, tuple(moves))),
        )
        for seed in range(150):
            out = execute(Mainline, program, RandomScheduler(random.Random(seed), max_run=8))
            assert out.finding is None, (seed, out.finding)


# ---------------------------------------------------------------------------- the race

RACE = Program(
    cpus=2,
    setup=(
        op("mmap", 1, 0x10000, 4, 0),
        op("fault", 1, 0x10000),
        op("fault", 1, 0x13000),
        op("mremap", 1, 0x13000, 1, 0x20000),
    ),
    tasks=(
        TaskProgram(0, (op("migrate", 2),)),
        TaskProgram(1, (op("mremap", 1, 0x20000, 1, 0x13000),)),
    ),
)
#: the move back runs copy_vma() (vma_merge() extends vma#1, walked first) up to
#: move_page_tables() (24 steps); compaction isolates and unmaps page 2 into a migration entry
#: at 0x20000 and starts remove_migration_ptes(), visiting vma#1 at 0x13000 (71 steps);
#: move_ptes() then carries the entry to 0x13000 behind the walker, which finds nothing at 0x20000
RACE_SCHEDULE = [(1, 24), (0, 71), (1, 0), (0, 0)]


def test_mremap_race_without_rmap_locks() -> None:
    """Variant mremap-no-rmap-locks (need_rmap_locks forced false, the 3.0-3.1 behaviour): the
    migration entry moved by move_ptes() is left behind -- "kernel BUG at
    include/linux/swapops.h" in the next fault there."""
    out = execute(MremapNoRmapLocks, RACE, RACE_SCHEDULE)
    assert out.finding is not None
    assert out.finding.kind == "migration-entry-leak"
    assert "left at 0x13000" in out.finding.message


def test_mremap_race_schedule_is_harmless_in_mainline() -> None:
    """Mainline: move_ptes() needs the root anon_vma lock (need_rmap_locks) and waits for the
    walker; the entry is restored at 0x20000 first, then moved as a present pte."""
    out = execute(Mainline, RACE, RACE_SCHEDULE)
    assert out.finding is None, out.finding
    assert [t.results for t in out.result.tasks] == [[0], [0x13000]]
    assert pte(out, 1, 0x13000) == Present(out.kernel.pages[-1], True, False)
