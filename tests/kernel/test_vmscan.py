"""mm/vmscan.c isolation: migration and reclaim work only on pages they took off the LRU.

isolate_lru_page() (mm/vmscan.c, move_pages), isolate_migratepages_range() (mm/compaction.c,
compaction) and isolate_lru_pages() (mm/vmscan.c, reclaim) test and clear PageLRU under
zone->lru_lock; a page that is not on the LRU -- isolated by someone else, or a new page no one
has added yet -- gives -EBUSY and the caller leaves it alone.  putback_lru_page() and
putback_inactive_pages() set PageLRU again; lru_cache_add_lru() in page_add_new_anon_rmap()
sets it for a new page.

Without isolation the model let two migrations work on one page: compaction of a frame that
another migration had just allocated as its new page locked it, and that migration's
move_to_new_page() found its new page locked ("BUG: trylock_page(...) failed").  The class
:class:`NoIsolation` below is the model as it was, so the tests show the race both ways.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.explore.exhaustive import check_program
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import Page, Present
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.kernel.vmscan import EBUSY
from rmapfuzz.program import Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

from ._helpers import EAGAIN, clean, op, page, pte, results


class NoIsolation(Mainline):
    """The model before isolation: every page counts as isolated by whoever asks, and stays
    on the LRU (a migration's new page is added to it, unchecked)."""

    name = "no-isolation"

    def isolate_migratepages_range(self, page: Page) -> Gen:
        return 0
        yield

    def isolate_lru_page(self, page: Page) -> Gen:
        return 0
        yield

    def isolate_lru_pages(self, page: Page) -> Gen:
        return 0
        yield

    def putback_lru_page(self, page: Page) -> Gen:
        yield ev.Store(page, "lru", True)

    def putback_lru_pages(self, page: Page) -> Gen:
        return
        yield

    def putback_inactive_pages(self, page: Page) -> Gen:
        return
        yield


ONE_PAGE = [op("mmap", 1, 0x10000, 2, 0), op("fault", 1, 0x10000)]


def two_tasks(setup: list[Any], a: Any, b: Any) -> Program:
    return Program(cpus=2, setup=tuple(setup), tasks=(TaskProgram(0, (a,)), TaskProgram(1, (b,))))


def fns(out: Outcome, tid: int) -> list[str]:
    return [t[3] for t in out.result.trace if t[0] == tid]


def events(out: Outcome, tid: int) -> list[str]:
    return [repr(t[4]) for t in out.result.trace if t[0] == tid]


# ---------------------------------------------------------------- sequential: who is on the LRU


def test_a_faulted_page_is_on_the_lru() -> None:
    """page_add_new_anon_rmap() ends with lru_cache_add_lru(page, LRU_ACTIVE_ANON)."""
    out = clean(ONE_PAGE)
    assert page(out, 1).lru
    sets = [t for t in out.result.trace if repr(t[4]) == "SetPageLRU(page#1.lru)"]
    assert [t[3] for t in sets] == ["lru_cache_add_lru"]


def test_migration_puts_the_new_page_on_the_lru_and_frees_the_old() -> None:
    """unmap_and_move(): putback_lru_page(newpage) after a successful migration; the old page
    "has all references removed and will be freed": not on the LRU any more."""
    out = clean(ONE_PAGE, [op("migrate", 1)])
    assert results(out) == [0]
    old, new = page(out, 1), page(out, 2)
    assert (old.lru, new.lru) == (False, True)
    assert pte(out, 1, 0x10000) == Present(new, True, False)
    assert fns(out, 0)[:4] == ["isolate_migratepages_range"] * 2 + ["_isolate_lru_page"] + [
        "isolate_migratepages_range"
    ]
    assert events(out, 0)[:4] == [
        "R page#1.lru",
        "spin_lock(zone.lru_lock)",
        "TestClearPageLRU(page#1.lru)",
        "spin_unlock(zone.lru_lock)",
    ]


def test_a_failed_migration_puts_the_page_back() -> None:
    """The page of an exited process is not mapped: -EAGAIN, and compact_zone()'s
    putback_lru_pages() ("Release LRU pages not migrated") returns it to the LRU; the unused
    new page is freed (not on the LRU)."""
    setup = [*ONE_PAGE, op("exit", 1)]
    out = clean(setup, [op("migrate", 1), op("migrate", 1)])
    assert results(out) == [EAGAIN, EAGAIN]  # isolated again the second time
    assert page(out, 1).lru
    assert not page(out, 2).lru and not page(out, 3).lru


def test_a_migrated_page_cannot_be_migrated_again() -> None:
    """The old page is gone from the LRU: a second compaction of its frame skips it."""
    out = clean(ONE_PAGE, [op("migrate", 1), op("migrate", 1), op("migrate", 2)])
    assert results(out) == [0, EBUSY, 0]
    assert pte(out, 1, 0x10000) == Present(page(out, 3), True, False)


def test_reclaim_and_swapout_put_the_page_back() -> None:
    """shrink_inactive_list(): isolate_lru_pages(), shrink_page_list(),
    putback_inactive_pages() -- the model never frees a page, so it always comes back."""
    out = clean(ONE_PAGE, [op("reclaim", 1), op("swapout", 1), op("swapout", 1)])
    # reclaim finds the pte young and clears it, so swap-out unmaps the page; the second
    # swap-out finds it unmapped in the swap cache
    assert results(out) == [1, 1, 1]
    assert page(out, 1).lru
    locks = [e for e in events(out, 0) if "lru_lock" in e]
    assert locks == ["spin_lock(zone.lru_lock)", "spin_unlock(zone.lru_lock)"] * 6


def test_move_pages_isolates_under_mmap_sem() -> None:
    """do_move_page_to_node_array(): follow_page(), then isolate_lru_page(), then
    migrate_pages(); the new page ends on the LRU."""
    out = clean(ONE_PAGE, [op("move_pages", 1, 0x10000)])
    assert results(out) == [0]
    assert "isolate_lru_page" in fns(out, 0)
    assert page(out, 2).lru and not page(out, 1).lru


# --------------------------------------------------------- concurrent: one page, two migrations

#: compaction of page 1 has isolated it and allocated its new page (page 2): 5 steps
ISOLATED = 5


def test_a_second_migration_of_an_isolated_page_gives_up() -> None:
    """Two compactions of page 1: the second finds PageLRU clear and skips the page without
    taking its lock (mm/compaction.c: "if (!PageLRU(page)) continue;")."""
    prog = two_tasks(ONE_PAGE, op("migrate", 1), op("migrate", 1))
    out = execute(Mainline, prog, [(0, ISOLATED), (1, 0), (0, 0)])
    assert out.finding is None, out.finding
    assert [t.results for t in out.result.tasks] == [[0], [EBUSY]]
    assert events(out, 1) == ["R page#1.lru"]


#: compaction of page 1 on CPU 0; on CPU 1 a read (11 steps, so that what follows starts after
#: page 2 exists), then the compaction of page 2, the first compaction's new page
TWO_MIGRATIONS = Program(
    cpus=2,
    setup=tuple(ONE_PAGE),
    tasks=(
        TaskProgram(0, (op("migrate", 1),)),
        TaskProgram(1, (op("read", 1, 0x11000), op("migrate", 2))),
    ),
)


def test_migrating_another_migrations_new_page_gives_up() -> None:
    """Compaction of page 2 -- the new page of the migration of page 1, not on any LRU yet
    (alloc_pages() hands out a page that nobody has added to the LRU) -- is skipped.  This is
    the model-level "trylock_page failed in move_to_new_page" that the random explorer found
    with temp-stack-migration: without isolation the second compaction locked page 2, and
    the first one's move_to_new_page() found its new page locked.  (Task 1 reads a page
    first, 11 steps, so that its migrate(2) starts after page 2 exists.)"""
    prog = TWO_MIGRATIONS
    # task 1 without isolation: its new page 3 is allocated, page 2 locked (11 + 2 steps)
    schedule = [(0, ISOLATED), (1, 13), (0, 0)]
    out = execute(Mainline, prog, schedule)
    assert out.finding is None, out.finding
    assert [t.results for t in out.result.tasks] == [[0], [0, EBUSY]]

    before = execute(NoIsolation, prog, schedule)
    f = before.finding
    assert f is not None and f.kind == "kernel-bug"
    assert f.message == "BUG: trylock_page(page#2) failed in move_to_new_page()"


def test_reclaim_leaves_a_page_under_migration_alone() -> None:
    """reclaim and swap-out of page 1 while compaction holds it isolated: isolate_lru_pages()
    fails, no trylock_page(), no walk."""
    for name in ("reclaim", "swapout"):
        prog = two_tasks(ONE_PAGE, op("migrate", 1), op(name, 1))
        out = execute(Mainline, prog, [(0, ISOLATED), (1, 0), (0, 0)])
        assert out.finding is None, out.finding
        assert [t.results for t in out.result.tasks] == [[0], [0]]
        assert events(out, 1) == [
            "spin_lock(zone.lru_lock)",
            "TestClearPageLRU(page#1.lru)",
            "spin_unlock(zone.lru_lock)",
        ]


def test_every_schedule_of_two_migrations_is_clean() -> None:
    """Exhaustively, up to 2 preemptions: mainline never lets the two migrations collide; the
    model without isolation does, at 1 preemption."""
    prog = TWO_MIGRATIONS
    r = check_program(Mainline, prog, max_preemptions=2)
    assert r.found is None and r.proved == 2
    r = check_program(NoIsolation, prog, max_preemptions=2)
    assert r.found is not None and r.found.preemptions == 1
    assert "trylock_page(page#2) failed in move_to_new_page()" in r.found.finding.message


# ----------------------------------------------------------------------- the lru invariant


class ForgetsPutback(Mainline):
    """A model bug the quiescent ``lru`` invariant exists for: a failed migration's page is
    never put back."""

    name = "forgets-putback"

    def putback_lru_pages(self, page: Page) -> Gen:
        return
        yield


def test_a_mapped_page_left_isolated_is_an_invariant_finding() -> None:
    """Migration of a page of exec's temporary stack fails (try_to_unmap_anon() skips the
    VM_STACK_INCOMPLETE_SETUP vma, the page stays mapped: -EAGAIN).  Mainline puts it back;
    a model that forgets to is caught at the next quiescent point."""
    setup = [op("mmap", 1, 0x2D000, 2, 2), op("fault", 1, 0x2E000)]
    out = clean(setup, [op("migrate", 1)])
    assert results(out) == [EAGAIN]
    assert page(out, 1).lru and page(out, 1).mapcount == 0

    prog = Program(cpus=1, setup=tuple(setup), tasks=(TaskProgram(0, (op("migrate", 1),)),))
    f = execute(ForgetsPutback, prog).finding
    assert f is not None and f.kind == "invariant-lru"
    assert f.message == "page#1 is mapped but not on the LRU: isolated and never put back"
