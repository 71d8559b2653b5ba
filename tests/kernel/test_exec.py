"""fs/exec.c setup_arg_pages() -> shift_arg_pages() run alone, and the migration skip of
exec's temporary stack (mm/rmap.c is_vma_temporary_stack() in try_to_unmap_anon()).

``mmap(pid, addr, n, growsdown=2)`` makes the stack as __bprm_mm_init() does: VM_GROWSDOWN |
VM_STACK_INCOMPLETE_SETUP; ``exec_shift(pid, addr, n)`` moves it n pages down.  shift_arg_pages()
keeps vm_pgoff, so page->index stays valid and vma_address() gives the new address.
"""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import (
    VM_GROWSDOWN,
    VM_STACK_INCOMPLETE_SETUP,
    VM_WRITE,
    Present,
    Vma,
)
from rmapfuzz.kernel.variants import Mainline, TempStackMigration
from rmapfuzz.program import Program, TaskProgram
from rmapfuzz.runner import execute

from ._helpers import (
    EAGAIN,
    EFAULT,
    EINVAL,
    ESRCH,
    all_ptes,
    anon_vma,
    clean,
    geometry,
    op,
    page,
    pte,
    results,
    tree,
    vmas,
)

TMP_STACK = VM_WRITE | VM_GROWSDOWN | VM_STACK_INCOMPLETE_SETUP

# the temporary stack [0x2d000, 0x30000) pgoff 0x2d, pages 1 and 2 at 0x2d000 and 0x2f000
STACK = [op("mmap", 1, 0x2D000, 3, 2), op("fault", 1, 0x2D000), op("fault", 1, 0x2F000)]


class Recording(Mainline):
    """Mainline that remembers vma_adjust() and move_ptes() calls, and whether an anon_vma
    rwsem was held while ptes moved."""

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.adjusts: list[tuple[int, int, int]] = []
        self.moves: list[tuple[int, int, int, bool]] = []
        self.rwsem_in_move = False

    def vma_adjust(self, vma: Vma, start: int, end: int, pgoff: int, insert: Vma | None) -> Gen:
        self.adjusts.append((start, end, pgoff))
        return (yield from super().vma_adjust(vma, start, end, pgoff, insert))

    def move_ptes(
        self, vma: Vma, old_addr: int, old_end: int, new_vma: Vma, new_addr: int, need: bool
    ) -> Gen:
        self.moves.append((old_addr, old_end, new_addr, need))
        task = yield ev.CURRENT
        if any(lock.lclass == "anon_vma->rwsem" for lock, _ in task.held):
            self.rwsem_in_move = True
        return (yield from super().move_ptes(vma, old_addr, old_end, new_vma, new_addr, need))


def test_shift_arg_pages_moves_stack_and_ptes_down() -> None:
    """shift 2 pages: vma_adjust(vma, 0x2b000, 0x30000, 0x2d) to cover both ranges, then
    move_page_tables(vma, 0x2d000, vma, 0x2b000, 3 pages, need_rmap_locks=false) in extents cut
    at the pte-page boundaries of both sides (0x2c000 is a boundary of the new side: one page,
    then two within the 0x2c000 table, old and new ptl the same), then vma_adjust() to
    [0x2b000, 0x2e000) with pgoff still 0x2d, and the flag cleared.  The pages keep index
    0x2d and 0x2f: vma_address() = 0x2b000 + (index - 0x2d) pages = where the ptes went."""
    out = execute(
        Recording,
        Program(
            cpus=1, setup=tuple(STACK), tasks=(TaskProgram(0, (op("exec_shift", 1, 0x2D000, 2),)),)
        ),
    )
    assert out.finding is None, out.finding
    assert results(out) == [0]
    k: Recording = out.kernel  # type: ignore[assignment]
    assert k.adjusts == [(0x2B000, 0x30000, 0x2D), (0x2B000, 0x2E000, 0x2D)]
    assert k.moves == [(0x2D000, 0x2E000, 0x2B000, False), (0x2E000, 0x30000, 0x2C000, False)]
    assert not k.rwsem_in_move
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x2B000, 0x2E000, 0x2D)
    assert v.vm_flags == VM_WRITE | VM_GROWSDOWN
    p1, p2 = page(out, 1), page(out, 2)
    assert {a: p.page for (_, a), p in all_ptes(out).items()} == {0x2B000: p1, 0x2D000: p2}
    assert (p1.index, p2.index) == (0x2D, 0x2F)
    assert tree(anon_vma(out, 1)) == [(v, (0x2D, 0x2F))]


def test_shift_further_than_the_stack_is_long() -> None:
    """shift 4 pages > 3: old and new ranges do not overlap ([0x29000, 0x2c000))."""
    out = clean(STACK, [op("exec_shift", 1, 0x2D000, 4), op("reclaim", 1), op("reclaim", 2)])
    # page_referenced() finds both pages at their new addresses, still young
    assert results(out) == [0, 1, 1]
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x29000, 0x2C000, 0x2D)
    assert pte(out, 1, 0x29000) == Present(page(out, 1), True, False)
    assert pte(out, 1, 0x2B000) == Present(page(out, 2), True, False)
    assert pte(out, 1, 0x2D000) is None and pte(out, 1, 0x2F000) is None


def test_migration_skips_the_temporary_stack_until_exec_is_done() -> None:
    """try_to_unmap_anon(TTU_MIGRATION) skips a vma with is_vma_temporary_stack(): the page
    stays mapped and __unmap_and_move() gives up (-EAGAIN) with the pte untouched.  After
    setup_arg_pages() cleared the flag, the same page migrates, at its shifted address."""
    out = clean(STACK, [op("migrate", 1), op("exec_shift", 1, 0x2D000, 1), op("migrate", 1)])
    assert results(out) == [EAGAIN, 0, 0]
    new = out.kernel.pages[-1]
    assert pte(out, 1, 0x2C000) == Present(new, True, False)
    assert new.index == 0x2D and page(out, 1).mapcount == -1


def test_forked_child_of_a_temporary_stack_keeps_the_flag() -> None:
    """dup_mmap() copies vm_flags: the child's stack is temporary too, so migration skips both
    mappings; once the parent's exec_shift is done, only the child's stays skipped and the
    page, still mapped by the child, cannot migrate: the parent's pte went to a migration entry
    and came back (remove_migration_pte()'s pte_mkold())."""
    out = clean(
        [*STACK, op("fork", 1)],
        [op("exec_shift", 1, 0x2D000, 1), op("migrate", 1)],
    )
    assert results(out) == [0, EAGAIN]
    (child,) = vmas(out, 2)
    assert child.vm_flags == TMP_STACK
    assert pte(out, 1, 0x2C000) == Present(page(out, 1), False, False)
    assert pte(out, 2, 0x2D000) == Present(page(out, 1), False, False)


@pytest.mark.parametrize(
    ("setup", "args", "expect"),
    [
        ([op("mmap", 1, 0x2D000, 3, 1)], (1, 0x2D000, 1), EINVAL),  # not a temporary stack
        # a vma above the stack: not how exec sees it (the stack is the only vma)
        ([op("mmap", 1, 0x20000, 2, 2), op("mmap", 1, 0x28000, 1, 0)], (1, 0x20000, 1), EINVAL),
        ([op("mmap", 1, 0x10000, 2, 2)], (1, 0x10000, 1), EINVAL),  # below TASK_LO
        ([op("mmap", 1, 0x2D000, 3, 2)], (1, 0x2D000, 0), EINVAL),
        ([op("mmap", 1, 0x2D000, 3, 2)], (1, 0x20000, 1), EINVAL),  # nothing at addr
        ([op("mmap", 1, 0x2D000, 3, 2)], (2, 0x2D000, 1), ESRCH),
    ],
)
def test_exec_shift_refusals(setup: list[Any], args: tuple[int, ...], expect: int) -> None:
    """The operation's own checks: nothing changes."""
    out = clean(setup, [op("exec_shift", *args)])
    assert results(out) == [expect]
    assert [geometry(v) for v in vmas(out, 1)] == [
        (o.args[1], o.args[1] + (o.args[2] << 12), o.args[1] >> 12) for o in setup
    ]


def test_vma_in_the_way_is_efault_and_the_flag_stays() -> None:
    """shift_arg_pages(): "ensure there are no vmas between where we want to go and where we
    are": find_vma(new_start) is the vma at 0x2a000, not the stack -> -EFAULT, and
    setup_arg_pages() returns before clearing VM_STACK_INCOMPLETE_SETUP."""
    setup = [op("mmap", 1, 0x2A000, 1, 0), op("mmap", 1, 0x2C000, 4, 2)]
    out = clean(setup, [op("exec_shift", 1, 0x2C000, 3)])
    assert results(out) == [EFAULT]
    assert [(geometry(v), v.vm_flags) for v in vmas(out, 1)] == [
        ((0x2A000, 0x2B000, 0x2A), VM_WRITE),
        ((0x2C000, 0x30000, 0x2C), TMP_STACK),
    ]


# ---------------------------------------------------------------------------- the race

RACE = Program(
    cpus=2,
    setup=(op("mmap", 1, 0x2D000, 2, 2), op("fault", 1, 0x2E000)),
    tasks=(TaskProgram(0, (op("migrate", 1),)), TaskProgram(1, (op("exec_shift", 1, 0x2D000, 1),))),
)
#: compaction isolates the page and runs try_to_unmap() (39 steps); exec runs its first
#: vma_adjust() but not move_page_tables() (23 steps); remove_migration_ptes() then looks at
#: 0x2d000, where vma_address() now points, while the migration entry is still at 0x2e000
RACE_SCHEDULE = [(0, 39), (1, 23), (0, 0), (1, 0)]


def test_temp_stack_migration_race_without_the_skip() -> None:
    """Variant temp-stack-migration (a8bef8ff6ea1 reverted): the migration entry written into
    the stack before shift_arg_pages() is missed by remove_migration_ptes() and left at the old
    address when the migration ends."""
    out = execute(TempStackMigration, RACE, RACE_SCHEDULE)
    assert out.finding is not None
    assert out.finding.kind == "migration-entry-leak"
    assert "left at 0x2e000" in out.finding.message


def test_temp_stack_race_schedule_is_harmless_in_mainline() -> None:
    """The same schedule in mainline: try_to_unmap() skipped the stack, so there is no
    migration entry to lose; the migration fails (-EAGAIN) and the shift completes."""
    out = execute(Mainline, RACE, RACE_SCHEDULE)
    assert out.finding is None, out.finding
    assert [t.results for t in out.result.tasks] == [[EAGAIN], [0]]
    assert pte(out, 1, 0x2D000) == Present(page(out, 1), True, True)
