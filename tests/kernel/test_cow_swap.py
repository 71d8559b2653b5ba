"""COW write faults (do_wp_page), swap-out and swap-in (shrink_page_list, try_to_unmap_one,
do_swap_page), mprotect's change_protection, the KSM-style pin, and the variants B2
(newest-anon-vma) and B6 (migrate-no-pin).

Sequential tests run one task after the setup on one CPU (tests/kernel/_helpers.py); their
expected values come from the v3.7 code cited in each docstring.  The race tests replay a
fixed schedule ``(task, steps)`` (0 = until it blocks or finishes) and check both that the
buggy variant reports its finding and that mainline runs the *same* decisions clean.

Page frames are numbered in allocation order; anon_vmas and swap slots by slot number.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.kernel.objects import SWAP_HAS_CACHE, Present, Swap, SwapSlot
from rmapfuzz.kernel.variants import Mainline, MigrateNoPin, NewestAnonVma
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute
from tests.kernel._helpers import (
    anon_vma,
    clean,
    op,
    page,
    pte,
    results,
    run,
)

A = 0x10000
VM_FAULT_WRITE = 8
EAGAIN = -11

#: pid1 maps two pages at 0x10000 and faults the first: page 1, page->mapping = av#1
ONE = [op("mmap", 1, A, 2, 0), op("fault", 1, A)]
#: ... and forks pid2: page 1 mapped twice, both ptes read-only (copy_one_pte), av#2 = pid2's
FORKED = ONE + [op("fork", 1)]
#: ... then reclaim clears the young bits (page_referenced) and swapout unmaps page 1 into
#: swap entries of slot 1 in both processes
SWAPPED = FORKED + [op("reclaim", 1), op("swapout", 1)]


def slot(out: Outcome, n: int) -> SwapSlot:
    s: SwapSlot = out.kernel.swap_slots[n - 1]
    return s


def swap_state(out: Outcome, n: int) -> tuple[int, Any]:
    """(swap_map count without SWAP_HAS_CACHE, swap cache page or None) of slot n."""
    s = slot(out, n)
    cache = s.page if s.count & SWAP_HAS_CACHE else None
    return s.count & ~SWAP_HAS_CACHE, cache


# --------------------------------------------------------------------------------- COW


def test_cow_reuse_moves_the_page_to_the_faulting_vmas_anon_vma() -> None:
    """do_wp_page(): pid1 exits after the fork, so pid2's read-only pte is page 1's only
    mapping (page_mapcount 1, not in the swap cache: reuse_swap_page() says yes).  Under the
    page lock, page_move_anon_rmap() sets page->mapping = pid2's vma->anon_vma (av#2: "so the
    rmap code will not search our parent or siblings"); the pte becomes writable, young; no
    page is allocated; VM_FAULT_WRITE is returned."""
    out = clean(FORKED + [op("exit", 1)], [op("fault", 2, A)])
    assert results(out) == [VM_FAULT_WRITE]
    p1 = page(out, 1)
    assert len(out.kernel.pages) == 1
    assert pte(out, 2, A) == Present(p1, write=True, young=True)
    assert p1.mapping is anon_vma(out, 2) and p1.mapcount == 0 and p1.index == 0x10
    assert not p1.lock.locked


def test_cow_copy_in_the_child() -> None:
    """do_wp_page() copy path in pid2: page_mapcount(page 1) == 2, so copy: page 2 gets
    page_add_new_anon_rmap(): mapping = pid2's own av#2 (exclusive), index 0x10, mapcount 0;
    the pte switches to it (writable, young) and only then page_remove_rmap(page 1) -> 0.
    pid1's pte is untouched (still write-protected by fork, young)."""
    out = clean(FORKED, [op("fault", 2, A)])
    assert results(out) == [VM_FAULT_WRITE]
    p1, p2 = page(out, 1), page(out, 2)
    assert pte(out, 2, A) == Present(p2, write=True, young=True)
    assert pte(out, 1, A) == Present(p1, write=False, young=True)
    assert (p2.mapping, p2.index, p2.mapcount) == (anon_vma(out, 2), 0x10, 0)
    assert (p1.mapping, p1.mapcount) == (anon_vma(out, 1), 0)


def test_mprotect_write_protects_then_write_fault_reuses() -> None:
    """mprotect_fixup() -> change_protection(): a private anonymous vma's vm_page_prot has no
    write bit even with VM_WRITE (COW), so after mprotect(PROT_READ|PROT_WRITE) the pte is
    read-only (young kept by pte_modify).  The next write fault is do_wp_page()'s reuse
    path: the only mapper, so the pte becomes writable again, same page."""
    out = clean(ONE + [op("mprotect", 1, A, 2, 0), op("mprotect", 1, A, 2, 1)])
    assert pte(out, 1, A) == Present(page(out, 1), write=False, young=True)
    out = clean(ONE + [op("mprotect", 1, A, 2, 0), op("mprotect", 1, A, 2, 1)], [op("fault", 1, A)])
    assert results(out) == [VM_FAULT_WRITE]
    assert pte(out, 1, A) == Present(page(out, 1), write=True, young=True)
    assert len(out.kernel.pages) == 1


# ---------------------------------------------------------------------------- swap-out


def test_swapout_writes_swap_entries_into_every_pte() -> None:
    """shrink_page_list(): add_to_swap() takes slot 1 (swap_map = SWAP_HAS_CACHE, page 1 in the
    swap cache, page_private = slot 1); try_to_unmap(TTU_UNMAP): both ptes are old (reclaim's
    page_referenced() cleared pid1's young bit, fork's copy is pte_mkold), so each
    try_to_unmap_one() swap_duplicate()s the slot and writes swp_entry(slot 1): swap_map = 2 |
    SWAP_HAS_CACHE; page_remove_rmap() twice: mapcount -1; page->mapping stays av#1."""
    out = clean(FORKED + [op("reclaim", 1)], [op("swapout", 1)])
    assert results(out) == [1]
    p1, s1 = page(out, 1), slot(out, 1)
    assert pte(out, 1, A) == Swap(s1) and pte(out, 2, A) == Swap(s1)
    assert swap_state(out, 1) == (2, p1) and p1.private is s1
    assert p1.mapcount == -1 and p1.mapping is anon_vma(out, 1)


def test_swapout_of_a_young_pte_fails_and_keeps_the_page_in_the_swap_cache() -> None:
    """try_to_unmap_one() without TTU_IGNORE_ACCESS: ptep_clear_flush_young_notify() finds
    pid1's pte young -> made old, SWAP_FAIL (shrink_page_list: activate_locked).  The page was
    already added to the swap cache; nothing is unmapped."""
    out = clean(ONE, [op("swapout", 1)])
    assert results(out) == [0]
    p1 = page(out, 1)
    assert pte(out, 1, A) == Present(p1, write=True, young=False)
    assert swap_state(out, 1) == (0, p1) and p1.mapcount == 0


def test_fork_duplicates_swap_entries() -> None:
    """copy_one_pte(): a swap pte is swap_duplicate()d and copied: swap_map 1 -> 2."""
    out = clean(ONE + [op("reclaim", 1), op("swapout", 1)], [op("fork", 1)])
    s1 = slot(out, 1)
    assert pte(out, 1, A) == Swap(s1) and pte(out, 2, A) == Swap(s1)
    assert swap_state(out, 1) == (2, page(out, 1))


# ----------------------------------------------------------------------------- swap-in


def test_read_swapin_keeps_page_mapping() -> None:
    """do_swap_page() read fault by pid2: lookup_swap_cache(slot 1) = page 1, lock_page,
    PageSwapCache and page_private match, pte_same under the PTL; no FAULT_FLAG_WRITE so not
    exclusive: a read-only pte, do_page_add_anon_rmap(exclusive=0): first mapping (mapcount
    -1 -> 0) but __page_set_anon_rmap() returns at once because PageAnon(page) -- the swap
    cache page kept page->mapping = av#1 (the oldest).  swap_free: swap_map 2 -> 1.  Then
    pid1's read fault: mapcount 1, swap_map 0 | SWAP_HAS_CACHE."""
    out = clean(SWAPPED, [op("read", 2, A), op("read", 1, A)])
    assert results(out) == [0, 0]
    p1 = page(out, 1)
    assert pte(out, 2, A) == Present(p1, write=False, young=True)
    assert pte(out, 1, A) == Present(p1, write=False, young=True)
    assert p1.mapping is anon_vma(out, 1) and p1.mapcount == 1
    assert swap_state(out, 1) == (0, p1)


def test_write_swapin_of_the_only_user_is_exclusive() -> None:
    """do_swap_page() write fault, one mapper: reuse_swap_page(): page_mapcount 0 +
    page_swapcount 1 == 1 -> delete_from_swap_cache() (slot 1 keeps only the pte's count),
    exclusive: the pte is writable, do_page_add_anon_rmap(exclusive=1) (PageAnon: mapping
    unchanged), swap_free() -> slot 1 free.  VM_FAULT_WRITE."""
    out = clean(ONE + [op("reclaim", 1), op("swapout", 1)], [op("fault", 1, A)])
    assert results(out) == [VM_FAULT_WRITE]
    p1 = page(out, 1)
    assert pte(out, 1, A) == Present(p1, write=True, young=True)
    assert slot(out, 1).count == 0 and slot(out, 1).page is None and p1.private is None
    assert p1.mapcount == 0


def test_write_swapin_of_a_shared_page_maps_then_copies() -> None:
    """do_swap_page() write fault by pid2 with pid1's swap pte still there: reuse_swap_page()
    says 0 + 2 > 1, so the page is mapped read-only (mapcount 0), swap_free (2 -> 1), and the
    fault goes on to do_wp_page() with the PTL held: page_mapcount 1 but page_swapcount 1 ->
    copy into page 2 (mapping = av#2), page_remove_rmap(page 1) -> -1.  Page 1 stays in the
    swap cache for pid1's swap pte."""
    out = clean(SWAPPED, [op("fault", 2, A)])
    assert results(out) == [VM_FAULT_WRITE]
    p1, p2, s1 = page(out, 1), page(out, 2), slot(out, 1)
    assert pte(out, 2, A) == Present(p2, write=True, young=True)
    assert pte(out, 1, A) == Swap(s1)
    assert p2.mapping is anon_vma(out, 2) and p2.mapcount == 0
    assert p1.mapcount == -1 and swap_state(out, 1) == (1, p1)


def test_exit_frees_swap_entries_and_the_swap_cache_page() -> None:
    """zap_pte_range() -> free_swap_and_cache(): pid2's exit drops swap_map 2 -> 1; pid1's
    drops it to SWAP_HAS_CACHE only, so the swap cache page is trylocked and, not mapped,
    delete_from_swap_cache()d: the slot is free again and the leak check is clean."""
    out = clean(SWAPPED, [op("exit", 2), op("exit", 1)])
    p1, s1 = page(out, 1), slot(out, 1)
    assert s1.count == 0 and s1.page is None and p1.private is None


def test_migration_of_a_swap_cache_page_moves_the_swap_cache() -> None:
    """__unmap_and_move() of page 1 in the swap cache (swapout failed on the young pte, so
    it is still mapped): try_to_unmap_one() writes a swap entry, not a migration entry,
    because PageSwapCache; migrate_page_move_mapping() moves the swap cache entry to page 2.
    The next fault swaps page 2 in."""
    out = clean(ONE + [op("swapout", 1)], [op("migrate", 1), op("read", 1, A)])
    assert results(out) == [0, 0]
    p1, p2, s1 = page(out, 1), page(out, 2), slot(out, 1)
    assert s1.page is p2 and p2.private is s1 and p1.private is None
    assert pte(out, 1, A) == Present(p2, write=False, young=True)
    assert p2.mapping is anon_vma(out, 1) and p2.mapcount == 0


# --------------------------------------------------------------------------------- pin


def test_pin_walks_the_pinned_anon_vma_and_drops_the_pin() -> None:
    """ksm_pin_page(1): page_get_anon_vma() pins av#1 (refcount 2 -> 3: its tree + pid2's av#2
    + the pin), a page_referenced() walk of av#1's tree under its rwsem counts pid1's young
    pte (pid2's copy is old) and clears it; put_anon_vma(): back to 2."""
    out = clean(FORKED, [op("pin", 1)])
    assert results(out) == [1]
    assert anon_vma(out, 1).refcount == 2
    assert pte(out, 1, A) == Present(page(out, 1), write=False, young=False)


def test_pin_of_an_unmapped_page_gets_nothing() -> None:
    """page_get_anon_vma() requires page_mapped(): a swapped-out page has no anon_vma to pin."""
    out = clean(ONE + [op("reclaim", 1), op("swapout", 1)], [op("pin", 1)])
    assert results(out) == [EAGAIN]


#: pid1 alone maps page 1; task 0 pins its anon_vma, task 1 makes pid1 exit meanwhile
PROGRAM_PIN_EXIT = Program(
    cpus=2,
    setup=tuple(ONE),
    tasks=(TaskProgram(0, (Op("pin", (1,)),)), TaskProgram(1, (Op("exit", (1,)),))),
)
SCHEDULE_PIN_EXIT = [
    # page_get_anon_vma(): rcu_read_lock, page->mapping, page_mapped, atomic_inc_not_zero,
    # page_mapped again, rcu_read_unlock: av#1 pinned (refcount 2)
    (0, 6),
    # pid1 exits: zap, unlink_anon_vmas() empties av#1's tree and put_anon_vma() drops the
    # tree's reference (2 -> 1): av#1 survives on the pin alone
    (1, 0),
    # the pinned walk of an empty tree, then put_anon_vma() frees av#1
    (0, 0),
]


def test_pin_holds_the_anon_vma_across_an_exit() -> None:
    out = execute(Mainline, PROGRAM_PIN_EXIT, SCHEDULE_PIN_EXIT)
    assert out.decisions == SCHEDULE_PIN_EXIT
    assert out.finding is None, out.finding
    trace = out.result.trace
    frees = [row[0] for row in trace if repr(row[4]) == "free av#1"]
    assert frees == [0], "av#1 must be freed by the pin's put_anon_vma(), not by the exit"
    assert out.result.tasks[0].results == [0]  # the walk found no young pte: pid1 is gone
    assert anon_vma(out, 1).freed


# ------------------------------------------------------------------ B2: newest-anon-vma

#: LWN 383162 / ea90002b0fa7: page 1 allocated by A (pid1, mapping av#1), A forks B (pid2),
#: page 1 is swapped out and stays in the swap cache; B pages it in first, then A; B exits;
#: reclaim then probes page 1.
PROGRAM_B2 = Program(
    cpus=2,
    setup=tuple(SWAPPED),
    tasks=(
        TaskProgram(0, (Op("read", (2, A)),)),
        TaskProgram(1, (Op("read", (1, A)), Op("exit", (2,)), Op("reclaim", (1,)))),
    ),
)
SCHEDULE_B2 = [(0, 0), (1, 0)]


def test_b2_newest_anon_vma_leaves_page_pointing_to_a_freed_anon_vma() -> None:
    """2.6.34-rc __page_set_anon_rmap(): B's swap-in is the first mapping, page->mapping :=
    B's av#2; A's swap-in is not first (nothing changes); B's exit frees av#2 while A maps
    page 1; reclaim's page_lock_anon_vma_read() + walk reads the freed av#2 ("End result:
    process A has a page that points to anon_vma B, but anon_vma B does not exist any more")."""
    out = execute(NewestAnonVma, PROGRAM_B2, SCHEDULE_B2)
    f = out.finding
    assert f is not None and f.kind == "use-after-free", f
    assert "page_referenced_anon() of page#1 walks av#2, which was freed" in f.message
    assert anon_vma(out, 2).freed and page(out, 1).mapcount == 0


def test_b2_mainline_is_clean_on_the_same_schedule() -> None:
    """v3.7: the swap cache page keeps page->mapping = av#1 (PageAnon early return), which
    both processes' chains contain; B's exit leaves it alone and reclaim finds A's pte."""
    out = execute(Mainline, PROGRAM_B2, SCHEDULE_B2)
    assert out.decisions == SCHEDULE_B2
    assert out.finding is None, out.finding
    assert page(out, 1).mapping is anon_vma(out, 1) and not anon_vma(out, 1).freed
    assert out.result.tasks[1].results == [0, 0, 1]


def test_b2_is_caught_before_the_exit_by_the_swap_pte_check() -> None:
    """Run sequentially, the quiescent check sees it one step earlier: after B's swap-in, A's
    swap pte leads to page 1 whose anon_vma av#2 is not in A's chain (I1 for swap ptes)."""
    out = run(SWAPPED, [op("read", 2, A)], variant=NewestAnonVma)
    f = out.finding
    assert f is not None and f.kind == "invariant-I1", f
    assert "swapped out" in f.message and "av#2 is not in that vma's chain" in f.message
    assert run(SWAPPED, [op("read", 2, A)]).finding is None


# ------------------------------------------------------------------- B6: migrate-no-pin

#: pid1 alone maps page 1; compaction migrates it while pid1 exits
PROGRAM_B6 = Program(
    cpus=2,
    setup=(Op("mmap", (1, A, 2, 0)), Op("fault", (1, A))),
    tasks=(TaskProgram(0, (Op("migrate", (1,)),)), TaskProgram(1, (Op("exit", (1,)),))),
)
SCHEDULE_B6 = [
    # migrate-no-pin: isolate_migratepages_range() (4 steps), lock_page, try_to_unmap()
    # replaced the pte by a migration entry (mapcount -1), the page_mapped() test before
    # move_to_new_page() is done
    (0, 37),
    # pid1 exits: zap clears the migration entry (page locked: no BUG), unlink_anon_vmas()
    # empties av#1 and, with no pin, frees it
    (1, 0),
    # move_to_new_page() -> remove_migration_ptes() -> rmap_walk_anon(page_anon_vma = av#1)
    (0, 0),
]


def test_b6_migration_without_pin_walks_a_freed_anon_vma() -> None:
    out = execute(MigrateNoPin, PROGRAM_B6, SCHEDULE_B6)
    assert out.decisions == SCHEDULE_B6
    trace = out.result.trace
    assert trace[out.result.setup_steps + 36][3] == "_unmap_and_move"  # the page_mapped test
    f = out.finding
    assert f is not None and f.kind == "use-after-free" and f.task == 0, f
    assert "rmap_walk_anon() of page#2 walks av#1, which was freed" in f.message


def test_b6_mainline_is_clean_on_the_same_schedule() -> None:
    """Mainline spends 4 more steps on page_get_anon_vma(), so after 37 steps it is still in
    try_to_unmap_anon() holding av#1's rwsem for read: the exit sleeps in unlink_anon_vmas()
    until the walk is over, and frees av#1 after the migration has dropped its pin."""
    out = execute(Mainline, PROGRAM_B6, SCHEDULE_B6)
    assert out.decisions == SCHEDULE_B6
    assert out.finding is None, out.finding
    assert anon_vma(out, 1).freed


def test_b6_mainline_pin_keeps_the_anon_vma_in_the_same_window() -> None:
    """The same window in mainline (37 + the 4 steps of the pin: the page_mapped() test
    before move_to_new_page()): the exit drops av#1's tree reference (2 -> 1) but the pin
    keeps it; the walk finds it alive and the migration's put_anon_vma() frees it."""
    schedule = [(0, 41), (1, 0), (0, 0)]
    out = execute(Mainline, PROGRAM_B6, schedule)
    assert out.decisions == schedule
    trace = out.result.trace
    assert trace[out.result.setup_steps + 40][3] == "_unmap_and_move"
    assert out.finding is None, out.finding
    frees = [row[0] for row in trace if repr(row[4]) == "free av#1"]
    assert frees == [0], "av#1 must be freed by the migration's put_anon_vma()"


def test_replays_are_deterministic() -> None:
    for variant, program, schedule in (
        (NewestAnonVma, PROGRAM_B2, SCHEDULE_B2),
        (MigrateNoPin, PROGRAM_B6, SCHEDULE_B6),
        (Mainline, PROGRAM_PIN_EXIT, SCHEDULE_PIN_EXIT),
    ):
        a, b = execute(variant, program, schedule), execute(variant, program, schedule)
        assert [repr(r) for r in a.result.trace] == [repr(r) for r in b.result.trace]
        assert repr(a.finding) == repr(b.finding)
