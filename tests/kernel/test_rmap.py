"""mm/rmap.c run alone: anon_vma_prepare()'s reuse of a neighbour's anon_vma
(find_mergeable_anon_vma, mm/mmap.c) and page_referenced() (the reclaim probe).

Two adjacent private anonymous vmas with equal flags are merged by mmap_region()'s
vma_merge() in the kernel, so to get a faulted vma next to an unfaulted pgoff-linear one, the
faulted vma is made read-only first: anon_vma_compatible() ignores VM_READ|VM_WRITE|VM_EXEC,
vma_merge() does not.
"""

from __future__ import annotations

from rmapfuzz.kernel.objects import Present

from ._helpers import (
    EINVAL,
    anon_vma,
    chain,
    clean,
    op,
    page,
    pte,
    results,
    run,
    snapshot,
    tree,
    vmas,
)

# A = [0x10000, 0x14000) faulted at 0x10000 (page 1, anon_vma 1), then read-only;
# B = [0x14000, 0x18000) writable, no anon_vma; pgoff-linear with A (0x14 == 0x10 + 4).
A_THEN_B = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),
    op("mprotect", 1, 0x10000, 4, 0),
    op("mmap", 1, 0x14000, 4, 0),
]


def test_fault_reuses_prev_neighbours_anon_vma() -> None:
    """find_mergeable_anon_vma(B): vm_next is NULL; vm_prev = A: anon_vma_compatible(A, B)
    (A->vm_end == B->vm_start, flags equal but for VM_WRITE, B->vm_pgoff == A->vm_pgoff + 4) and
    reusable_anon_vma() returns A->anon_vma since A's chain is singular.  anon_vma_prepare()
    links B into it with a new avc; the refcount is not touched (only anon_vma_alloc() and
    anon_vma_fork() take references)."""
    out = clean(A_THEN_B, [op("fault", 1, 0x15000)])
    assert results(out) == [0]
    a, b = vmas(out, 1)
    av = anon_vma(out, 1)
    assert len(out.kernel.anon_vmas) == 1
    assert a.anon_vma is av and b.anon_vma is av
    assert chain(a) == [av] and chain(b) == [av]
    assert av.refcount == 1 and av.root is av
    assert tree(av) == [(a, (0x10, 0x13)), (b, (0x14, 0x17))]
    p = page(out, 2)
    assert (p.mapping, p.index, p.mapcount) == (av, 0x15, 0)


def test_fault_reuses_next_neighbours_anon_vma() -> None:
    """find_mergeable_anon_vma() tries vm_next first: B = [0x10000, 0x14000) below a faulted,
    read-only A = [0x14000, 0x18000): anon_vma_compatible(B, A) holds, A's chain is singular,
    so B gets A's anon_vma; B's avc sorts first in the tree (start pgoff 0x10 < 0x14)."""
    setup = [
        op("mmap", 1, 0x14000, 4, 0),
        op("fault", 1, 0x14000),
        op("mprotect", 1, 0x14000, 4, 0),
        op("mmap", 1, 0x10000, 4, 0),
    ]
    out = clean(setup, [op("fault", 1, 0x10000)])
    b, a = vmas(out, 1)
    av = anon_vma(out, 1)
    assert len(out.kernel.anon_vmas) == 1
    assert b.anon_vma is av and chain(b) == [av]
    assert tree(av) == [(b, (0x10, 0x13)), (a, (0x14, 0x17))]
    assert page(out, 2).mapping is av and page(out, 2).index == 0x10


def test_no_reuse_when_flags_differ_beyond_rwx() -> None:
    """anon_vma_compatible() requires !((a->vm_flags ^ b->vm_flags) & ~(VM_READ|VM_WRITE|
    VM_EXEC)): a VM_GROWSDOWN neighbour is not compatible, so a new anon_vma is allocated.
    (A is at TASK_LO = mmap_min_addr, and the fault is above its vm_start: no stack growth.)"""
    setup = [op("mmap", 1, 0x10000, 4, 1), op("fault", 1, 0x11000), op("mmap", 1, 0x14000, 4, 0)]
    out = clean(setup, [op("fault", 1, 0x14000)])
    a, b = vmas(out, 1)
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    assert a.anon_vma is av1 and b.anon_vma is av2
    assert av2.root is av2 and av2.refcount == 1
    assert tree(av1) == [(a, (0x10, 0x13))] and tree(av2) == [(b, (0x14, 0x17))]


def test_no_reuse_of_a_forked_neighbours_anon_vma() -> None:
    """After fork the child's copy of A has the chain [its own anon_vma, the parent's] (two
    entries), so reusable_anon_vma() refuses it (list_is_singular(), d0e9fe1758f2: sharing an
    anon_vma needs identical chains) and the child's fault in B allocates a fresh root
    anon_vma.  The parent's A still has a singular chain, so the parent's fault in B reuses
    A's anon_vma as before."""
    out = clean(A_THEN_B + [op("fork", 1)], [op("fault", 2, 0x14000), op("fault", 1, 0x14000)])
    assert results(out) == [0, 0]
    pa, pb = vmas(out, 1)
    ca, cb = vmas(out, 2)
    av1, av2, av3 = (anon_vma(out, i) for i in (1, 2, 3))
    assert len(out.kernel.anon_vmas) == 3
    assert chain(ca) == [av2, av1]
    assert cb.anon_vma is av3 and chain(cb) == [av3]
    assert av3.root is av3 and av3.refcount == 1
    assert tree(av3) == [(cb, (0x14, 0x17))]
    assert pb.anon_vma is av1 and chain(pb) == [av1]
    assert tree(av1) == [(pa, (0x10, 0x13)), (ca, (0x10, 0x13)), (pb, (0x14, 0x17))]
    assert av1.refcount == 2  # its tree + av2's pin on its root
    assert (page(out, 2).mapping, page(out, 2).index) == (av3, 0x14)
    assert (page(out, 3).mapping, page(out, 3).index) == (av1, 0x14)


# ------------------------------------------------------------------ page_referenced

SHARED = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),  # page 1: shared with the child after fork
    op("fork", 1),
    op("fault", 1, 0x11000),  # page 2: parent only
    op("munmap", 1, 0x11000, 1),  # page 2 unmapped again
    op("fault", 1, 0x12000),  # page 3: parent only
]


def test_reclaim_counts_the_ptes_mapping_the_page() -> None:
    """shrink_page_list() -> page_referenced() -> page_referenced_anon(): under
    page_lock_anon_vma_read() walk the tree of page->mapping for [index, index]; each
    page_referenced_one() that finds the pte (page_check_address) counts it only if
    ptep_clear_flush_young_notify() finds it young.  Young bits here: do_anonymous_page()
    maps young (x86 vm_page_prot has _PAGE_ACCESSED); fork's copy_one_pte() gives the child
    pte_mkold(pte) and only write-protects the parent's, which stays young.
    Page 1 is mapped by parent (young) and child (old): 1; page 3 by the parent only (young):
    1; page 2 is no longer mapped: page_referenced() returns 0 without walking; pfn 9 does
    not exist: -EINVAL."""
    ops = [op("reclaim", 1), op("reclaim", 3), op("reclaim", 2), op("reclaim", 9)]
    out = clean(SHARED, ops)
    assert results(out) == [1, 1, 0, EINVAL]


def test_reclaim_changes_no_rmap_state() -> None:
    """page_referenced() only reads the rmap (and takes/drops locks and no references); the one
    thing it writes is the young bit of the ptes it counts (ptep_clear_flush_young_notify()):
    the parent's ptes of pages 1 and 3 (mm 1 at 0x10000 and 0x12000) become old, the child's
    pte of page 1 was old already (fork), and nothing else changes."""
    before = snapshot(clean(SHARED))
    after = snapshot(clean(SHARED, [op("reclaim", 1), op("reclaim", 3)]))
    # (mm oid, address): (kind, pfn, write, young)
    assert before["ptes"] == {
        (1, 0x10000): ("Present", 1, False, True),
        (1, 0x12000): ("Present", 3, True, True),
        (2, 0x10000): ("Present", 1, False, False),
    }
    assert after["ptes"] == {
        (1, 0x10000): ("Present", 1, False, False),
        (1, 0x12000): ("Present", 3, True, False),
        (2, 0x10000): ("Present", 1, False, False),
    }
    assert {k: v for k, v in after.items() if k != "ptes"} == {
        k: v for k, v in before.items() if k != "ptes"
    }


def test_reclaim_clears_the_young_bits_it_counts() -> None:
    """mm/rmap.c page_referenced_one(): referenced++ only if ptep_clear_flush_young_notify()
    found the pte young, and that call clears the young bit.  Page 1's ptes: the parent's is
    young (do_anonymous_page(); fork's ptep_set_wrprotect() keeps the bit), the child's old
    (copy_one_pte()'s pte_mkold()), so the first probe counts 1.  Nothing touches the page
    between two probes, so the second page_referenced() returns 0; both ptes end old."""
    out = run(SHARED, [op("reclaim", 1), op("reclaim", 1)])
    assert out.finding is None
    assert results(out) == [1, 0]
    for pid in (1, 2):
        assert pte(out, pid, 0x10000) == Present(page(out, 1), write=False, young=False)


def test_reclaim_after_migration_sees_old_ptes() -> None:
    """mm/migrate.c remove_migration_pte(): pte = pte_mkold(mk_pte(new, vma->vm_page_prot)):
    the ptes of a freshly migrated page are old, so page_referenced() on the new page (pfn 4,
    mapped by parent and child) finds them but counts none."""
    out = run(SHARED, [op("migrate", 1), op("reclaim", 4)])
    assert out.finding is None
    assert results(out) == [0, 0]
    for pid in (1, 2):
        assert pte(out, pid, 0x10000) == Present(page(out, 4), write=False, young=False)
