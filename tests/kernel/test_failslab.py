"""Allocation-failure injection (the fail_nth operation, /proc/self/task/<tid>/fail-nth) and
the -ENOMEM paths of v3.7 it reaches, run alone on the mainline model.

Allocation order, from the kernel code: a first anonymous fault's anon_vma_prepare() takes an
avc, then (no mergeable neighbour) an anon_vma; __split_vma() a vm_area_struct, then
anon_vma_clone() one avc per anon_vma of the chain, each first with GFP_NOWAIT under the root
lock and, if that fails, with GFP_KERNEL after dropping it; dup_mm() the mm_struct, then
dup_mmap() per parent vma a vm_area_struct and anon_vma_fork(): the clone's avcs, an anon_vma
and its avc.  fail_nth(n, times) makes the n-th of these fail, and the times-1 after it.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.objects import Present
from rmapfuzz.kernel.variants import AdjustEnomemUaf, Mainline

from ._helpers import (
    EFAULT,
    EINVAL,
    anon_vma,
    chain,
    clean,
    geometry,
    op,
    page,
    pte,
    results,
    run,
    snapshot,
    tree,
    vmas,
)

ENOMEM = -12
VM_FAULT_OOM = -12

# pid 1: [0x10000, 0x14000) with pages 1 (0x10000) and 2 (0x11000), anon_vma 1;
#        [0x18000, 0x1c000) never faulted (no anon_vma).
PARENT = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),
    op("fault", 1, 0x11000),
    op("mmap", 1, 0x18000, 4, 0),
]


def live(out) -> dict:  # type: ignore[no-untyped-def]
    """What is allocated and how it is linked, ignoring freed slots."""
    snap = snapshot(out)
    return {
        "ptes": snap["ptes"],
        "pages": snap["pages"],
        "anon_vmas": [a for a in snap["anon_vmas"] if not a[1]],
        "avcs": [c for c in snap["avcs"] if not c[1]],
        "vmas": [v for v in snap["vmas"] if not v[1]],
    }


# ------------------------------------------------------------------------ fail_nth itself


def test_fail_nth_counts_this_tasks_allocations_and_fails_once() -> None:
    """lib/fault-inject.c: each should_fail() of the task decrements current->fail_nth; the
    call that brings it to zero fails, and the injection is spent.  fail_nth(3, 1): the first
    fault of 0x18000 allocates avc (1) and anon_vma (2); mmap's vm_area_struct is call 3 and
    fails; the same mmap again works."""
    out = clean(
        PARENT,
        [op("fail_nth", 3, 1), op("fault", 1, 0x18000), op("mmap", 1, 0x20000, 2, 0),
         op("mmap", 1, 0x20000, 2, 0)],
    )  # fmt: skip
    assert results(out) == [0, 0, ENOMEM, 0x20000]
    assert out.kernel.fail_nth == {}


def test_fail_nth_times_fails_consecutive_allocations() -> None:
    """times=2: the avc of the first fault fails (call 1) and prepare returns; the next
    allocation of the task, the second fault's avc, fails too; the third fault works."""
    out = clean(
        PARENT,
        [op("fail_nth", 1, 2), op("fault", 1, 0x18000), op("fault", 1, 0x18000),
         op("fault", 1, 0x18000)],
    )  # fmt: skip
    assert results(out) == [0, VM_FAULT_OOM, VM_FAULT_OOM, 0]


def test_fail_nth_zero_disarms_and_bad_arguments_are_einval() -> None:
    """proc_fail_nth_write(): writing 0 clears current->fail_nth."""
    out = clean(
        PARENT,
        [op("fail_nth", 1, 1), op("fail_nth", 0, 1), op("fault", 1, 0x18000),
         op("fail_nth", -1, 1), op("fail_nth", 1, 0)],
    )  # fmt: skip
    assert results(out) == [0, 0, 0, EINVAL, EINVAL]


def test_fail_nth_is_per_task() -> None:
    """fail-nth is a field of the task_struct that wrote it: the setup's allocations, done by
    another task, do not consume the task's countdown, nor does its write affect the setup."""
    setup = [PARENT[0], op("fail_nth", 1, 1), *PARENT[1:]]  # the setup task's next alloc fails
    out = run(setup, [op("fault", 1, 0x18000)])
    assert out.finding is None
    # the setup's first allocation was fault(0x10000)'s avc: that fault failed, 0x11000 worked
    assert pte(out, 1, 0x10000) is None
    assert type(pte(out, 1, 0x11000)) is Present
    assert results(out) == [0]


def test_failed_allocation_is_marked_not_a_step() -> None:
    """A failed kmem_cache_alloc() touches nothing shared: no trace event, the same number of
    steps as the run's own early return, and a failslab mark for the observers."""
    marks: list[ev.Mark] = []

    class Watch:
        def on_mark(self, eng, t, mark):  # type: ignore[no-untyped-def]
            if mark.kind == "failslab":
                marks.append(mark)

    from rmapfuzz.engine import Engine, OpCall
    from rmapfuzz.program import Program, TaskProgram
    from rmapfuzz.runner import _call

    prog = Program(
        1, tuple(PARENT), (TaskProgram(0, (op("fail_nth", 1, 1), op("fault", 1, 0x18000))),)
    )
    k = Mainline()
    k.boot()
    eng = Engine(ncpus=1, observers=[Watch()])
    calls: list[OpCall] = [_call(k, o) for o in prog.tasks[0].ops]
    eng.run([(0, "t", calls)], scheduler=_NoScheduler(), setup=[_call(k, o) for o in prog.setup])
    assert [m.data for m in marks] == [
        "kmem_cache_alloc(anon_vma_chain_cachep, GFP_KERNEL) fails (fail-nth)"
    ]


class _NoScheduler:
    def pick(self, runnable, last):  # type: ignore[no-untyped-def]
        return None


# --------------------------------------------------------------- mm/rmap.c ENOMEM paths


def test_anon_vma_prepare_enomem_paths() -> None:
    """anon_vma_prepare(): avc allocation fails -> out_enomem; anon_vma allocation fails ->
    out_enomem_free_avc (the avc is freed).  do_anonymous_page() -> VM_FAULT_OOM; the vma
    keeps no anon_vma, and a later fault works."""
    for n in (1, 2):
        out = clean(PARENT, [op("fail_nth", n, 1), op("fault", 1, 0x18000), op("exit", 1)])
        assert results(out)[:2] == [0, VM_FAULT_OOM]
    before = live(clean(PARENT))
    out = clean(PARENT, [op("fail_nth", 2, 1), op("fault", 1, 0x18000)])
    after = live(out)
    assert after["vmas"] == before["vmas"] and after["anon_vmas"] == before["anon_vmas"]
    assert after["avcs"] == before["avcs"]  # the avc taken first was freed again
    assert vmas(out, 1)[1].anon_vma is None


def test_anon_vma_clone_nowait_failure_drops_the_root_lock_and_retries() -> None:
    """anon_vma_clone(): a failed GFP_NOWAIT avc is retried with GFP_KERNEL after
    unlock_anon_vma_root(); the retry succeeds (fail-nth fails one call), so the split
    completes as without injection."""
    plain = clean(PARENT, [op("munmap", 1, 0x11000, 1)])
    out = clean(PARENT, [op("fail_nth", 2, 1), op("munmap", 1, 0x11000, 1)])
    assert results(out) == [0, 0]
    assert [geometry(v) for v in vmas(out, 1)] == [geometry(v) for v in vmas(plain, 1)]
    # the clone took av#1's rwsem for its first avc only after the GFP_KERNEL retry: the
    # trace has no up_write between two down_writes, but the NOWAIT attempt ran unlocked
    fns = [(fn, repr(e)) for tid, _, _, fn, e, _ in out.result.trace if tid == 0]
    assert ("anon_vma_chain_alloc", "alloc avc#3") in [(f, r) for f, r in fns]


def test_anon_vma_clone_enomem_failure_unlinks_dst() -> None:
    """anon_vma_clone() enomem_failure: both attempts fail -> unlink_anon_vmas(dst); the
    split fails (-ENOMEM from munmap) and everything is as before the munmap."""
    before = live(clean(PARENT))
    out = clean(PARENT, [op("fail_nth", 2, 2), op("munmap", 1, 0x11000, 1)])
    assert results(out) == [0, ENOMEM]
    assert live(out) == before


def test_anon_vma_fork_enomem_paths() -> None:
    """dup_mm() -> dup_mmap() -> anon_vma_fork() with the allocation of call n failing:
    1 mm_struct (allocate_mm), 2 vm_area_struct, 3+4 the clone's avc (NOWAIT, then KERNEL),
    4 anon_vma (out_error), 5 its avc (out_error_free_anon_vma: put_anon_vma frees the new
    anon_vma), 6 the second vma's vm_area_struct (fail_nomem after the first vma was copied
    with its ptes: dup_mm()'s mmput() tears the partial child down).  Every failure returns
    -ENOMEM, frees the child's mm, and leaves av#1 with refcount 1 and only the parent's avc;
    the page mapcounts are back to one pte each."""
    cases = {1: (1, 1), 2: (2, 1), 3: (3, 2), 4: (4, 1), 5: (5, 1), 6: (6, 1)}
    for name, (n, times) in cases.items():
        out = clean(PARENT, [op("fail_nth", n, times), op("fork", 1), op("exit", 1)])
        assert results(out)[1] == ENOMEM, name
    for n, times in cases.values():
        out = clean(PARENT, [op("fail_nth", n, times), op("fork", 1)])
        k = out.kernel
        av1 = anon_vma(out, 1)
        assert av1.refcount == 1 and [v for v, _ in tree(av1)] == [vmas(out, 1)[0]], n
        assert [p.mapcount for p in k.pages] == [0, 0], n
        assert all(mm.freed for mm in k.mms[1:]), n
        assert all(v.freed for v in k.vmas if v.vm_mm is not k.procs[1].mm), n
        assert 2 not in k.procs, n
        # copy_one_pte() write-protected the parent's ptes before a later failure (n=6)
        assert type(pte(out, 1, 0x10000)) is Present
        assert pte(out, 1, 0x10000).write is (n != 6)


def test_fork_succeeds_when_only_the_nowait_attempt_fails() -> None:
    """Call 3 is the clone's GFP_NOWAIT avc: its GFP_KERNEL retry works, so fork does."""
    out = clean(PARENT, [op("fail_nth", 3, 1), op("fork", 1)])
    assert results(out) == [0, 2]
    assert chain(vmas(out, 2)[0]) == [anon_vma(out, 2), anon_vma(out, 1)]


# --------------------------------------------------------------- mm/mmap.c ENOMEM paths


def test_split_vma_enomem_paths() -> None:
    """__split_vma(): the vm_area_struct allocation fails (out_err), or the clone does
    (out_free_vma): do_munmap() and mprotect_fixup() return the error, nothing changed."""
    before = live(clean(PARENT))
    for n, times in ((1, 1), (2, 2)):
        for oper in (op("munmap", 1, 0x11000, 1), op("mprotect", 1, 0x11000, 1, 0)):
            out = clean(PARENT, [op("fail_nth", n, times), oper])
            assert results(out) == [0, ENOMEM], (n, oper)
            assert live(out) == before, (n, oper)


def test_mmap_region_enomem() -> None:
    """mmap_region(): kmem_cache_zalloc(vm_area_cachep) fails -> -ENOMEM, no vma."""
    out = clean(PARENT, [op("fail_nth", 1, 1), op("mmap", 1, 0x20000, 2, 0)])
    assert results(out) == [0, ENOMEM]
    assert len(vmas(out, 1)) == 2


def test_expand_stack_enomem() -> None:
    """expand_downwards(): anon_vma_prepare() fails -> -ENOMEM; the fault below the stack
    gets -EFAULT (expand_stack() finds no vma covering the address)."""
    setup = [op("mmap", 1, 0x20000, 2, 1)]
    out = clean(setup, [op("fail_nth", 1, 1), op("fault", 1, 0x1F000), op("fault", 1, 0x1F000)])
    assert results(out) == [0, EFAULT, 0]
    assert geometry(vmas(out, 1)[0])[0] == 0x1F000


# X = [0x10000, 0x11000) rw and Y = [0x11000, 0x12000) r- never faulted; Z = [0x12000,
# 0x14000) rw faulted: its chain is just av#1.  mprotect(Y, rw) is vma_merge() case 1:
# vma_adjust(X, 0x10000, 0x14000) removes Y, then Z, importing Z's anon_vma into X.
CASE1 = [op("mmap", 1, 0x10000, 4, 0), op("mprotect", 1, 0x11000, 1, 0), op("fault", 1, 0x12000)]


def test_vma_merge_case1_imports_anon_vma() -> None:
    """Without injection the three vmas become one with av#1, and X is in av#1's tree."""
    out = clean(CASE1, [op("mprotect", 1, 0x11000, 1, 1), op("exit", 1)])
    out = clean(CASE1, [op("mprotect", 1, 0x11000, 1, 1)])
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x10000, 0x14000, 0x10)
    assert v.anon_vma is anon_vma(out, 1) and chain(v) == [anon_vma(out, 1)]


def test_vma_adjust_import_failure_mainline_leaves_vmas_unmerged() -> None:
    """4.9's __vma_adjust() imports Z's anon_vma in the first pass: the clone fails before
    anything moved, vma_merge() returns NULL, and mprotect_fixup() changes Y's flags in
    place: three vmas, Y now rw, X still without anon_vma."""
    out = clean(CASE1, [op("fail_nth", 1, 2), op("mprotect", 1, 0x11000, 1, 1), op("exit", 1)])
    assert results(out)[:2] == [0, 0]
    out = clean(CASE1, [op("fail_nth", 1, 2), op("mprotect", 1, 0x11000, 1, 1)])
    x, y, z = vmas(out, 1)
    assert [geometry(v) for v in (x, y, z)] == [
        (0x10000, 0x11000, 0x10),
        (0x11000, 0x12000, 0x11),
        (0x12000, 0x14000, 0x12),
    ]
    assert x.anon_vma is None and x.anon_vma_chain == () and y.vm_flags == z.vm_flags


def test_vma_adjust_import_failure_in_37_is_a_use_after_free() -> None:
    """3.7's vma_adjust() imports in the second pass, after Y was unlinked and freed; the
    clone fails, vma_merge() returns NULL and mprotect_fixup() writes vm_flags of the freed
    Y (variant AdjustEnomemUaf)."""
    out = run(CASE1, [op("fail_nth", 1, 2), op("mprotect", 1, 0x11000, 1, 1)], AdjustEnomemUaf)
    assert out.finding is not None and out.finding.kind == "use-after-free"
    assert "mprotect_fixup() wrote vm_flags" in out.finding.message
    # the same program without the double failure is clean on the 3.7 order too
    clean(CASE1, [op("fail_nth", 1, 1), op("mprotect", 1, 0x11000, 1, 1)], AdjustEnomemUaf)


def test_every_enomem_leaves_nothing_behind() -> None:
    """For each n and times, any of the failable operations followed by exit: the run is
    clean, and the leak check (every process exited) finds nothing allocated."""
    for n in range(1, 8):
        for times in (1, 2):
            for oper in (
                op("fork", 1),
                op("fault", 1, 0x18000),
                op("munmap", 1, 0x11000, 2),
                op("mprotect", 1, 0x11000, 1, 0),
            ):
                ops = [op("fail_nth", n, times), oper, op("exit", 1), op("exit", 2)]
                out = clean(PARENT, ops)
                assert all(a.freed for a in out.kernel.anon_vmas), (n, times, oper)
                assert page(out, 1).mapcount == -1
