"""The modern profile (kernel/modern.py): anon_vma reuse at fork (7a3ef208e662) with the 6.1+
counters num_children / num_active_vmas (2555283eb40d), invariant I12, and the two B13
variants that revert the later fixes (3fe89b3e2a7b, b800c91a0517).

Expected counter values are read off a 6.x mm/rmap.c: a new root gets num_children = 1 (the
self-parent link, __anon_vma_prepare) and num_active_vmas = 1 when the vma takes it; a fork
child's anon_vma gets num_active_vmas = 1 and its parent num_children++ (anon_vma_fork);
anon_vma_clone() adopts, root first, the first ancestor with num_children < 2 and
num_active_vmas == 0 and counts dst in it; unlink_anon_vmas() does parent->num_children-- for
each anon_vma it empties and vma->anon_vma->num_active_vmas--.
"""

from __future__ import annotations

from rmapfuzz.kernel.variants import (
    Mainline,
    Modern,
    ReuseAdjustOverride,
    ReuseCloneFailKeepAnon,
)
from rmapfuzz.program import Program, TaskProgram
from rmapfuzz.runner import execute

from ._helpers import anon_vma, chain, clean, op, results, run, tree, vmas

ENOMEM = -12
VM_FAULT_OOM = -12

# pid 1: [0x10000, 0x14000) with page 1 at 0x10000 (anon_vma 1); [0x18000, 0x1c000) unfaulted
PARENT = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),
    op("mmap", 1, 0x18000, 4, 0),
]
# pid 1 -> pid 2 -> pid 3, then the middle one exits: av#2 has no vma and one child (av#3)
THREE_LEVELS = [*PARENT, op("fork", 1), op("fork", 2), op("exit", 2)]


def counters(av):  # type: ignore[no-untyped-def]
    return (av.num_children, av.num_active_vmas)


def test_prepare_counts_self_parent_and_the_vma() -> None:
    """__anon_vma_prepare(): a new root is its own parent with num_children 1, and the vma
    that takes it makes num_active_vmas 1; a second vma reusing it through
    find_mergeable_anon_vma() (mprotect split, then a fault in the other half) adds one."""
    out = clean(PARENT, [], Modern)
    av1 = anon_vma(out, 1)
    assert av1.parent is av1 and counters(av1) == (1, 1)
    out = clean(
        [op("mmap", 1, 0x10000, 4, 0), op("mprotect", 1, 0x10000, 2, 0),
         op("fault", 1, 0x12000), op("mprotect", 1, 0x10000, 2, 1)],
        [], Modern,
    )  # fmt: skip
    # mprotect back to rw merged the halves again: one vma, one anon_vma
    (v,) = vmas(out, 1)
    assert v.anon_vma is anon_vma(out, 1) and counters(anon_vma(out, 1)) == (1, 1)


def test_fork_without_reuse_counts_child() -> None:
    """anon_vma_fork(): the root is in use (num_active_vmas 1), so no reuse: a new anon_vma
    whose parent is the root, num_active_vmas 1; root num_children 2; root refcount 2."""
    out = clean(PARENT, [op("fork", 1)], Modern)
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    assert av2.parent is av1 and av2.root is av1
    assert counters(av1) == (2, 1) and counters(av2) == (0, 1)
    assert av1.refcount == 2
    cv, cv2 = vmas(out, 2)
    assert cv.anon_vma is av2 and chain(cv) == [av2, av1]
    assert cv2.anon_vma is None  # the parent's unfaulted vma: anon_vma_fork() returns early


def test_fork_reuses_an_abandoned_ancestor() -> None:
    """After pid 2 exits, av#2 has num_active_vmas 0 and one child (av#3): when pid 3 forks,
    anon_vma_clone() walks [av#1, av#2, av#3]: av#1 has two children (itself, av#2), av#2
    qualifies, so pid 4's vma takes av#2 -- no new anon_vma, no new root reference."""
    out = clean(THREE_LEVELS, [op("fork", 3)], Modern)
    assert results(out) == [4]
    av1, av2, av3 = (anon_vma(out, i) for i in (1, 2, 3))
    assert len(out.kernel.anon_vmas) == 3 and not any(a.freed for a in (av1, av2, av3))
    (v4,) = [v for v in vmas(out, 4) if v.anon_vma is not None]
    (v3,) = [v for v in vmas(out, 3) if v.anon_vma is not None]
    assert v4.anon_vma is av2 and chain(v4) == [av3, av2, av1]
    assert counters(av1) == (2, 1) and counters(av2) == (1, 1) and counters(av3) == (0, 1)
    assert av1.refcount == 3  # 1 + av#2 + av#3, unchanged by the reuse
    assert [v for v, _ in tree(av2)] == [v3, v4]


def test_mainline_never_reuses() -> None:
    """The 3.7 model (mainline) allocates a new anon_vma at every fork."""
    out = clean(THREE_LEVELS, [op("fork", 3)], Mainline)
    (v4,) = [v for v in vmas(out, 4) if v.anon_vma is not None]
    assert v4.anon_vma is anon_vma(out, 4) and len(chain(v4)) == 4


def test_unlink_decrements_and_everything_is_freed() -> None:
    """unlink_anon_vmas() at exit: the counters go back down and, every process gone, no
    anon_vma is left (I12 and the leak check run at the end of every test here)."""
    out = clean(THREE_LEVELS, [op("fork", 3), op("exit", 3), op("exit", 4), op("exit", 1)], Modern)
    assert all(a.freed for a in out.kernel.anon_vmas)


def test_split_counts_the_new_vma() -> None:
    """__split_vma(): *new = *vma keeps ->anon_vma, so anon_vma_clone() reuses nothing and
    counts new in num_active_vmas; munmap of the tail then uncounts it."""
    out = clean(PARENT, [op("mprotect", 1, 0x12000, 2, 0)], Modern)
    assert counters(anon_vma(out, 1)) == (1, 2)
    out = clean(PARENT, [op("munmap", 1, 0x12000, 2)], Modern)
    assert counters(anon_vma(out, 1)) == (1, 1)


# ---------------------------------------------------------------------- ENOMEM, modern


def test_modern_enomem_paths_keep_counters_exact() -> None:
    """Each failable operation with each injection point: I12 holds at the end (the run is
    clean), the failed operation reports -ENOMEM or VM_FAULT_OOM, and after exit nothing
    is left.  Covers __anon_vma_prepare's out_enomem(_free_avc), anon_vma_clone's
    enomem_failure (dst->anon_vma dropped first), anon_vma_fork's out_error paths (incl. a
    clone that had reused an ancestor before failing), __split_vma's and dup_mmap's."""
    seen = set()
    for n in range(1, 9):
        for times in (1, 2):
            for oper in (
                op("fork", 3),
                op("munmap", 3, 0x11000, 1),
                op("mprotect", 3, 0x11000, 1, 0),
                op("fault", 1, 0x18000),
            ):
                out = clean(THREE_LEVELS, [op("fail_nth", n, times), oper], Modern)
                seen.add(results(out)[1])
                clean(THREE_LEVELS, [op("fail_nth", n, times), oper, op("exit", 1),
                                     op("exit", 3), op("exit", 4)], Modern)  # fmt: skip
    assert ENOMEM in seen and 0 in seen and 4 in seen


def test_clone_failure_after_reuse_drops_dst_anon_vma() -> None:
    """anon_vma_fork() from pid 3: the clone's calls are 3 (av#1's avc), 4 (av#2's: reused
    once linked), 5 (av#3's).  Failing 5 and its retry 6 leaves dst->anon_vma = av#2 set but
    uncounted: 3fe89b3e2a7b clears it before unlink_anon_vmas(), the fork fails cleanly."""
    ops = [op("fail_nth", 5, 2), op("fork", 3)]
    out = clean(THREE_LEVELS, ops, Modern)
    assert results(out) == [0, ENOMEM]
    assert counters(anon_vma(out, 2)) == (1, 0)
    bad = run(THREE_LEVELS, ops, ReuseCloneFailKeepAnon)
    assert bad.finding is not None and bad.finding.kind == "invariant-I12"
    assert "av#2->num_active_vmas to -1" in bad.finding.message


# ------------------------------------------------------------------------- B13 variants

# a split of av#1's vma whose clone fails twice (GFP_NOWAIT and the GFP_KERNEL retry)
SPLIT_FAILS = [op("fail_nth", 2, 2), op("munmap", 1, 0x11000, 1), op("exit", 1)]


def test_clone_fail_keep_anon_underflows() -> None:
    """B13 / 3fe89b3e2a7b: __split_vma()'s new vma has ->anon_vma = av#1 from *new = *vma;
    the clone fails, enomem_failure keeps it, unlink_anon_vmas(new) decrements av#1's
    num_active_vmas (1 -> 0: one vma points to it); exit's unlink then takes it to -1."""
    bad = run(PARENT, SPLIT_FAILS, ReuseCloneFailKeepAnon)
    assert bad.finding is not None and bad.finding.kind == "invariant-I12"
    assert "av#1->num_active_vmas to -1" in bad.finding.message
    assert results(bad) == [0, ENOMEM]
    clean(PARENT, SPLIT_FAILS, Modern)
    # without the exit the mismatch is caught at the end of the run (quiescent I12)
    bad = run(PARENT, SPLIT_FAILS[:2], ReuseCloneFailKeepAnon)
    assert bad.finding is not None and bad.finding.kind == "invariant-I12"
    assert "av#1->num_active_vmas is 0 but 1 vmas" in bad.finding.message


# Y = [0x10000, 0x12000) r- never faulted, Z = [0x12000, 0x14000) rw faulted (av#1):
# mprotect(Y, rw) is vma_merge() case 8: vma_adjust(Y, ...) expands Y over Z, importing av#1.
CASE8 = [op("mmap", 1, 0x10000, 4, 0), op("mprotect", 1, 0x10000, 2, 0), op("fault", 1, 0x12000)]


def test_adjust_override_decrements_the_wrong_counter() -> None:
    """B13 / b800c91a0517: anon_vma_clone(Y, Z) runs with Y->anon_vma NULL, so it counts
    nobody; Y->anon_vma = av#1 afterwards; anon_vma_merge(Y, Z) -> unlink_anon_vmas(Z) ->
    av#1->num_active_vmas 1 -> 0 while Y uses it; the exit takes it to -1."""
    ops = [op("mprotect", 1, 0x10000, 2, 1), op("exit", 1)]
    bad = run(CASE8, ops, ReuseAdjustOverride)
    assert bad.finding is not None and bad.finding.kind == "invariant-I12"
    assert "av#1->num_active_vmas to -1" in bad.finding.message
    out = clean(CASE8, ops[:1], Modern)
    (v,) = vmas(out, 1)
    assert v.anon_vma is anon_vma(out, 1) and counters(anon_vma(out, 1)) == (1, 1)
    clean(CASE8, ops, Modern)


def test_b13_races_replay_and_modern_is_clean_on_the_same_schedule() -> None:
    """Two CPUs: reclaim walks page 1 while another task injects and splits (B13 3fe89b3e2a7b)
    or merges (b800c91a0517); the recorded schedule preempts the mutator inside the walk.
    Each variant reports I12; modern, under the very same program and schedule, does not;
    and a replay of the recorded decisions reproduces the trace byte for byte."""
    for variant, setup, mutator in (
        (ReuseCloneFailKeepAnon, PARENT, SPLIT_FAILS),
        (ReuseAdjustOverride, CASE8, [op("mprotect", 1, 0x10000, 2, 1), op("exit", 1)]),
    ):
        program = Program(
            2,
            tuple(setup),
            (TaskProgram(0, (op("reclaim", 1),)), TaskProgram(1, tuple(mutator))),
        )
        schedule = [(1, 3), (0, 6), (1, 0), (0, 0)]
        bad = execute(variant, program, schedule)
        assert bad.finding is not None and bad.finding.kind == "invariant-I12", variant.name
        again = execute(variant, program, bad.decisions)
        assert [repr(e) for e in again.result.trace] == [repr(e) for e in bad.result.trace]
        good = execute(Modern, program, schedule)
        assert good.finding is None, (variant.name, good.finding)
