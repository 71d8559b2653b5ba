"""The historical bugs of rmap-spec section 4 as variants, each replayed on one schedule.

Every scenario is a PROGRAM and a SCHEDULE (decisions ``(task, run)``, see test_races.py): the
buggy variant must report the finding of the bug, and mainline must run the *same* decisions
clean (none of them diverges under mainline: a decision whose task blocks just ends there).
The schedules were found by rmapfuzz's random scheduler on these programs; the comments say
what each decision reaches.
"""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz.kernel.variants import (
    AdjustNoImportClone,
    Mainline,
    PerAnonVmaLockAdjust,
    PlaNoRecheck,
    PlaRefcountCheck,
    PrepareNolock,
    PutInsideRcu,
    ReuseNonsingular,
    RfcUnbalancedUnlock,
)
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute


def run(variant: type[Mainline], program: Program, schedule: list[tuple[int, int]]) -> Outcome:
    out = execute(variant, program, schedule)
    assert out.decisions == schedule  # the engine followed every decision
    return out


def assert_finding(out: Outcome, kind: str, *parts: str) -> Any:
    f = out.finding
    assert f is not None, "expected a finding, the run was clean"
    assert f.kind == kind, f"{f.kind}: {f.message}"
    for p in parts:
        assert p in f.message, f.message
    return f


# ------------------------------------------------------------------ B1: prepare-nolock

#: the first fault of pid1: anon_vma_prepare() allocates av#1 and links vma#1 to it
PROGRAM_B1 = Program(
    cpus=1,
    setup=(Op("mmap", (1, 0x10000, 2, 0)),),
    tasks=(TaskProgram(0, (Op("fault", (1, 0x10000)),)),),
)


def test_b1_prepare_nolock_publishes_a_new_anon_vma_without_its_lock():
    """B1 (d9d332e0874f): vma->anon_vma and the tree of a new anon_vma are written without the
    anon_vma lock; the variant asks for the lockset check (I15) to make that a finding, since
    in the 3.7 model the RCU reader of the recycled slot backs off before it reads the tree."""
    out = run(PrepareNolock, PROGRAM_B1, [])
    assert_finding(
        out, "lockset", "vma#1.anon_vma written by anon_vma_prepare() without", "av#1.rwsem"
    )


def test_b1_advisory_without_lockset_findings():
    """The same variant with the lockset check advisory: the run completes, and the report
    names each unlocked write of the new anon_vma's tree."""

    class Advisory(PrepareNolock):
        lockset_findings = False

    out = run(Advisory, PROGRAM_B1, [])
    assert out.finding is None
    assert any(
        a.startswith("lockset: av#1.rb_root.nodes written without av#1.rwsem (write)")
        and "(anon_vma_interval_tree_insert, task 0 fault(1, 0x10000))" in a
        for a in out.advisories
    ), out.advisories


def test_b1_mainline_clean():
    out = run(Mainline, PROGRAM_B1, [])
    assert out.finding is None and out.advisories == []


# ----------------------------------------------------------------- B3: reuse-nonsingular

#: pid1: vma#1 [0x10000, 0x12000) and vma#2 [0x12000, 0x14000), pgoff-linear; a page in vma#2
#: (av#1), then fork: pid2's copy of vma#2 has chain {av#2, av#1}.  pid2 faults in its copy of
#: vma#1, whose neighbour's anon_vma av#2 is not singular.
PROGRAM_B3 = Program(
    cpus=1,
    setup=(
        Op("mmap", (1, 0x10000, 2, 0)),
        Op("mmap", (1, 0x12000, 2, 0)),
        Op("fault", (1, 0x12000)),
        Op("fork", (1,)),
    ),
    tasks=(TaskProgram(0, (Op("fault", (2, 0x10000)),)),),
)


def test_b3_reuse_nonsingular_breaks_the_chain():
    """B3 (d0e9fe1758f2): without the list_is_singular() test anon_vma_prepare() gives pid2's
    vma#3 the anon_vma av#2 with a chain of av#2 alone: not its root av#1, so the same anon_vma
    now goes with two different chains (I4/I10), which anon_vma_merge() relies on."""
    out = run(ReuseNonsingular, PROGRAM_B3, [])
    assert_finding(out, "invariant-I10", "vma#3's chain does not end at its root")
    vma3 = out.kernel.vmas[2]
    assert vma3.anon_vma is out.kernel.anon_vmas[1]
    assert [a.anon_vma for a in vma3.anon_vma_chain] == [out.kernel.anon_vmas[1]]


def test_b3_mainline_allocates_its_own():
    out = run(Mainline, PROGRAM_B3, [])
    assert out.finding is None
    vma3 = out.kernel.vmas[2]
    assert vma3.anon_vma is not out.kernel.anon_vmas[1]


# ------------------------------------------------------------ B3: adjust-no-import-clone

#: pid1's vma [0x10000, 0x14000) is cut by mprotect into vma#1 [0x10000, 0x12000) read-only and
#: vma#2 [0x12000, 0x14000) read-write, which alone gets a page (av#1).  pid1 then makes vma#1
#: writable again: vma_merge() case 8, vma#1 expands over all of vma#2 and imports its pages.
PROGRAM_B3_IMPORT = Program(
    cpus=1,
    setup=(
        Op("mmap", (1, 0x10000, 4, 0)),
        Op("mprotect", (1, 0x10000, 2, 0)),
        Op("fault", (1, 0x12000)),
    ),
    tasks=(TaskProgram(0, (Op("mprotect", (1, 0x10000, 2, 1)),)),),
)


def test_b3_adjust_without_the_exporter_drops_the_imported_chain():
    """B3, second half (287d97ac0321): vma_adjust() clones the importer's own chain -- vma#1's,
    empty -- instead of the exporter's, gives vma#1 av#1 anyway, and anon_vma_merge() unlinks
    vma#2: page#1, now mapped through vma#1, is in no vma of av#1's tree (I1)."""
    out = run(AdjustNoImportClone, PROGRAM_B3_IMPORT, [])
    assert_finding(
        out,
        "invariant-I1",
        "page#1 is mapped at 0x12000 by vma#1[0x10000-0x14000",
        "its anon_vma av#1 is not in that vma's chain",
    )
    vma1 = out.kernel.vmas[0]
    assert vma1.anon_vma is out.kernel.anon_vmas[0]
    assert vma1.anon_vma_chain == ()


def test_b3_mainline_imports_the_exporters_chain():
    out = run(Mainline, PROGRAM_B3_IMPORT, [])
    assert out.finding is None
    vma1 = out.kernel.vmas[0]
    assert [a.anon_vma for a in vma1.anon_vma_chain] == [out.kernel.anon_vmas[0]]


#: mprotect case 6: [0x10000, 0x11000) rw and [0x12000, 0x14000) rw with a page (av#1) around a
#: read-only [0x11000, 0x12000); making the middle rw merges all three into the first vma
PROGRAM_B3_IMPORT_CASE6 = Program(
    cpus=1,
    setup=(
        Op("mmap", (1, 0x10000, 4, 0)),
        Op("mprotect", (1, 0x11000, 1, 0)),
        Op("fault", (1, 0x12000)),
    ),
    tasks=(TaskProgram(0, (Op("mprotect", (1, 0x11000, 1, 1)),)),),
)


def test_b3_adjust_without_the_exporter_case_6():
    out = run(AdjustNoImportClone, PROGRAM_B3_IMPORT_CASE6, [])
    assert_finding(out, "invariant-I1", "page#1 is mapped at 0x12000 by vma#2[0x10000-0x14000")
    assert run(Mainline, PROGRAM_B3_IMPORT_CASE6, []).finding is None


# ---------------------------------------------------------- B4: per-anon-vma-lock-adjust

#: pid1 faults pfn 1 (av#1) and forks pid2 (vma#2: av#2 -> av#1).  Compaction migrates pfn 1
#: while pid2 write-protects its first page: split_vma() + vma_adjust() of vma#2.
PROGRAM_B4 = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x10000, 4, 0)), Op("fault", (1, 0x10000)), Op("fork", (1,))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("mprotect", (2, 0x10000, 1, 0)),)),
    ),
)
SCHEDULE_B4 = [
    # pid2's mprotect: split_vma() clones vma#3 into av#1's and av#2's trees (under the root
    # av#1), vma_adjust() of vma#2 takes av#2's own rwsem (2.6.34's anon_vma_lock) and is inside
    # anon_vma_interval_tree_remove() of vma#2's avc from av#1's tree
    (1, 32),
    # compaction: try_to_unmap_anon() takes av#1 (page->mapping, the root) -- free -- and
    # reads its tree mid-rebalance
    (0, 0),
]


def test_b4_vma_adjust_under_the_wrong_lock_tears_the_walk():
    """B4 (012f18004da3): vma_adjust() holds vma->anon_vma's own lock while it rebalances the
    parent's tree, which the walker locks; Mel Gorman's "vma_adjust() is updating anon VMA
    information without locks being taken"."""
    out = run(PerAnonVmaLockAdjust, PROGRAM_B4, SCHEDULE_B4)
    assert_finding(
        out,
        "torn-chain",
        "try_to_unmap_anon() read av#1.rb_root while task 1 (mprotect(2, 0x10000, 1, 0)) was in "
        "anon_vma_interval_tree_remove()",
    )
    assert [(lk.name, m) for lk, m in out.result.tasks[1].held if lk.name.startswith("av#")] == [
        ("av#2.rwsem", "w")
    ]
    assert any(
        a.startswith("lockset: av#1.rb_root.busy written without av#1.rwsem (write)")
        and "task 1 mprotect" in a
        for a in out.advisories
    ), out.advisories


def test_b4_mainline_walker_waits_for_vma_adjust():
    out = run(Mainline, PROGRAM_B4, SCHEDULE_B4)
    assert out.finding is None and out.advisories == []


# ------------------------------------------------------------ B7 / B8: page_lock_anon_vma

#: pid1 has vma#1 [0x10000, 0x12000) with a page (av#1) and vma#2 [0x14000, 0x16000) with
#: none; pid2 (fork) faults pfn 2 in its copy of vma#1: page->mapping = av#2 (root av#1).
#: Reclaim probes pfn 2 while pid2 exits and pid1 faults in vma#2, whose anon_vma_prepare()
#: reuses the slot av#2 (SLAB_DESTROY_BY_RCU, LIFO).
PROGRAM_B78 = Program(
    cpus=3,
    setup=(
        Op("mmap", (1, 0x10000, 2, 0)),
        Op("mmap", (1, 0x14000, 2, 0)),
        Op("fault", (1, 0x10000)),
        Op("fork", (1,)),
        Op("fault", (2, 0x11000)),
    ),
    tasks=(
        TaskProgram(0, (Op("reclaim", (2,)),)),
        TaskProgram(1, (Op("exit", (2,)),)),
        TaskProgram(2, (Op("fault", (1, 0x14000)),)),
    ),
)
SCHEDULE_B7 = [
    # reclaim: isolate_lru_pages() (3 steps), trylock_page(pfn 2), page_referenced():
    # rcu_read_lock, page->mapping = av#2, page_mapped(): yes
    (0, 9),
    # pid2 exits: pfn 2 unmapped, av#2's tree empties, av#2 freed (nobody holds av#1)
    (1, 0),
    # pid1's fault: anon_vma_prepare() takes av#2's slot again
    (2, 6),
    # reclaim: down_read_trylock() of av#2->root, and -- no page_mapped() recheck -- success
    (0, 3),
    (2, 4),
    # reclaim walks av#2, now pid1's new anon_vma
    (0, 15),
]
SCHEDULE_B8 = [
    # reclaim up to page_mapped() in page_lock_anon_vma_read(), as above
    (0, 9),
    # pid2 exits, av#2 freed
    (1, 0),
    # reclaim reads av#2->root (still av#1, the freed slot's) and trylocks it
    (0, 3),
    # pid1's fault reallocates av#2: refcount = 1, root = av#2, locks it, links vma#2
    (2, 42),
    # reclaim: atomic_read(&anon_vma->refcount) is 1: "valid"; it walks, then
    # page_unlock_anon_vma_read() re-reads ->root and releases av#2's rwsem, not av#1's
    (0, 0),
]


def test_b7_no_recheck_walks_a_reused_anon_vma():
    """B7 (f18194275c39): page_lock_anon_vma_read() without the page_mapped() recheck accepts
    an anon_vma that was freed and reused meanwhile, and walks someone else's tree."""
    out = run(PlaNoRecheck, PROGRAM_B78, SCHEDULE_B7)
    assert_finding(
        out, "use-after-free", "page_referenced_anon() of page#2 walks av#2", "was freed"
    )


def test_b8_refcount_check_unlocks_another_root():
    """B8 (eee0f252c653): the refcount check passes on the reallocated anon_vma (refcount 1),
    and page_unlock_anon_vma_read() releases the new ->root's lock -- the one of av#1 that the
    trylock took stays locked: the hang of 2011."""
    out = run(PlaRefcountCheck, PROGRAM_B78, SCHEDULE_B8)
    assert_finding(
        out,
        "bad-unlock",
        "anon_vma_unlock_read() releases av#2.rwsem, which this task does not hold",
        "(reclaim(2))",
    )
    held = [(lk.name, m) for lk, m in out.result.tasks[0].held if lk.name.startswith("av#")]
    assert held == [("av#1.rwsem", "r")]


@pytest.mark.parametrize("schedule", [SCHEDULE_B7, SCHEDULE_B8], ids=["b7", "b8"])
def test_b78_mainline_rechecks_page_mapped(schedule):
    out = run(Mainline, PROGRAM_B78, schedule)
    assert out.finding is None


# ------------------------------------------------------ B11: the RFC's unbalanced unlock

PROGRAM_B11 = Program(
    cpus=1,
    setup=(Op("mmap", (1, 0x10000, 2, 0)), Op("fault", (1, 0x10000))),
    tasks=(TaskProgram(0, (Op("migrate", (1,)),)),),
)


def test_b11_rfc_try_to_unmap_unlocks_what_it_never_locked():
    """B11: with the RFC's page_lock_anon_vma(page, TTU_MIGRATION) returning the anon_vma
    unlocked, try_to_unmap_anon()'s page_unlock_anon_vma() is an up_read() of a rwsem this
    task does not hold -- any migration of a mapped page shows it."""
    out = run(RfcUnbalancedUnlock, PROGRAM_B11, [])
    f = assert_finding(
        out, "bad-unlock", "releases av#1.rwsem, which this task does not hold (held by nobody)"
    )
    assert out.result.trace[f.step][3] == "anon_vma_unlock_read"


def test_b11_mainline_clean():
    assert run(Mainline, PROGRAM_B11, []).finding is None


# -------------------------------------------------------------- B18: put inside RCU

#: pfn 2 is pid2's page (av#2, root av#1); compaction migrates it while pid2 exits and reclaim
#: probes pid1's pfn 1 (holding av#1 for read during its walk).
PROGRAM_B18 = Program(
    cpus=3,
    setup=(
        Op("mmap", (1, 0x10000, 2, 0)),
        Op("fault", (1, 0x10000)),
        Op("fork", (1,)),
        Op("fault", (2, 0x11000)),
    ),
    tasks=(
        TaskProgram(0, (Op("migrate", (2,)),)),
        TaskProgram(1, (Op("exit", (2,)),)),
        TaskProgram(2, (Op("reclaim", (1,)),)),
    ),
)
SCHEDULE_B18 = [
    # compaction: isolate_migratepages_range() (4 steps), lock_page(pfn 2),
    # page_get_anon_vma(): rcu_read_lock, mapping av#2, mapped, atomic_inc_not_zero(&av#2->refcount)
    (0, 10),
    # pid2 exits: pfn 2 unmapped, av#2's tree empties, its existence reference dropped: ours
    # is the last
    (1, 0),
    # reclaim of pfn 1 (isolated in 3 steps) takes av#1 (av#2's root) for read
    (2, 9),
    # page_get_anon_vma(): !page_mapped(), put_anon_vma(av#2) still inside RCU: the last put,
    # __put_anon_vma() -> anon_vma_free() sees the root rwsem locked and does the lock dance
    (0, 3),
    (2, 4),
    (0, 15),
]


def test_b18_put_anon_vma_inside_rcu_sleeps():
    """B18 (3.7, fixed 2014): the last put_anon_vma() in page_get_anon_vma() runs inside the
    RCU read section; anon_vma_free() would sleep there on the contended root (down_write),
    and its might_sleep() -- added by the fix -- reports it first."""
    out = run(PutInsideRcu, PROGRAM_B18, SCHEDULE_B18)
    assert_finding(
        out,
        "sleep-in-atomic",
        "anon_vma_free() calls might_sleep() in an RCU read-side section",
        "(migrate(2))",
    )
    assert out.result.tasks[2].held  # reclaim holds av#1, the root: down_write() would block


#: the same without the reclaim: nobody holds the root, anon_vma_free() would not block
PROGRAM_B18_UNCONTENDED = Program(
    cpus=2,
    setup=PROGRAM_B18.setup,
    tasks=PROGRAM_B18.tasks[:2],
)
SCHEDULE_B18_UNCONTENDED = [
    # compaction: isolate, lock_page, page_get_anon_vma() up to atomic_inc_not_zero()
    (0, 10),
    # pid2 exits: its put of av#2 leaves ours the last
    (1, 0),
    # !page_mapped(): put_anon_vma() inside RCU frees av#2
    (0, 0),
]


def test_b18_might_sleep_reports_the_uncontended_put():
    """might_sleep() makes the bug visible on every last put inside RCU, not only when the
    root rwsem happens to be held (what the Trinity report of 2014 needed)."""
    out = run(PutInsideRcu, PROGRAM_B18_UNCONTENDED, SCHEDULE_B18_UNCONTENDED)
    assert_finding(
        out, "sleep-in-atomic", "anon_vma_free() calls might_sleep() in an RCU read-side"
    )
    assert run(Mainline, PROGRAM_B18_UNCONTENDED, SCHEDULE_B18_UNCONTENDED).finding is None


def test_b18_mainline_puts_after_rcu_read_unlock():
    out = run(Mainline, PROGRAM_B18, SCHEDULE_B18)
    assert out.finding is None


# ---------------------------------------------------------------- all scenarios

SCENARIOS = {
    "b1": (PrepareNolock, PROGRAM_B1, []),
    "b3": (ReuseNonsingular, PROGRAM_B3, []),
    "b3-import": (AdjustNoImportClone, PROGRAM_B3_IMPORT, []),
    "b4": (PerAnonVmaLockAdjust, PROGRAM_B4, SCHEDULE_B4),
    "b7": (PlaNoRecheck, PROGRAM_B78, SCHEDULE_B7),
    "b8": (PlaRefcountCheck, PROGRAM_B78, SCHEDULE_B8),
    "b11": (RfcUnbalancedUnlock, PROGRAM_B11, []),
    "b18": (PutInsideRcu, PROGRAM_B18, SCHEDULE_B18),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_is_deterministic(name):
    variant, program, schedule = SCENARIOS[name]
    a, b = execute(variant, program, schedule), execute(variant, program, schedule)
    assert [(t[0], t[3], repr(t[4]), repr(t[5])) for t in a.result.trace] == [
        (t[0], t[3], repr(t[4]), repr(t[5])) for t in b.result.trace
    ]
    assert a.finding == b.finding and a.finding is not None
    assert a.advisories == b.advisories
