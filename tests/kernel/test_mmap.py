"""mm/mmap.c and mm/mprotect.c run alone: partial munmap (__split_vma + vma_adjust), mprotect
split and merge (vma_merge cases 6, 7, 8), stack growth (expand_downwards, check_stack_guard_page).

Geometry is (vm_start, vm_end, vm_pgoff); a private anonymous vma at addr has
vm_pgoff = addr >> PAGE_SHIFT.  Vma ids are allocation order: the mmap'ed vma is 1, each
__split_vma() allocates the next id for its copy ``new``.
"""

from __future__ import annotations

import pytest

from rmapfuzz.kernel.objects import VM_GROWSDOWN, VM_WRITE, Present
from rmapfuzz.kernel.variants import StackGrowthUnderRead
from rmapfuzz.program import Op
from rmapfuzz.runner import Outcome

from ._helpers import (
    EFAULT,
    VM_FAULT_SIGBUS,
    anon_vma,
    chain,
    clean,
    geometry,
    op,
    page,
    pte,
    results,
    run,
    tree,
    vmas,
)

ENOMEM = -12

# [0x10000, 0x18000), pgoff 0x10; pages 1..4 at 0x10000, 0x11000, 0x12000, 0x17000
EIGHT = [
    op("mmap", 1, 0x10000, 8, 0),
    op("fault", 1, 0x10000),
    op("fault", 1, 0x11000),
    op("fault", 1, 0x12000),
    op("fault", 1, 0x17000),
]
PAGE_AT = {1: 0x10000, 2: 0x11000, 3: 0x12000, 4: 0x17000}


def _check_pages(out: Outcome, gone: set[int]) -> None:
    """After the :func:`_reclaims` probes: pages in ``gone`` were zapped (no pte, _mapcount -1);
    the others are still mapped by pid 1 at their address, writable, with _mapcount 0, and old:
    page_referenced_one()'s ptep_clear_flush_young_notify() cleared the young bit it counted."""
    for pfn, addr in PAGE_AT.items():
        p = page(out, pfn)
        if pfn in gone:
            assert pte(out, 1, addr) is None and p.mapcount == -1
        else:
            assert pte(out, 1, addr) == Present(p, write=True, young=False)
            assert p.mapcount == 0


def _reclaims(gone: set[int]) -> tuple[list[Op], list[int]]:
    """reclaim ops for every page, and the page_referenced() each must return: 1 for a page
    still mapped once by a young pte (do_anonymous_page() maps it young), 0 for a zapped one."""
    ops = [op("reclaim", pfn) for pfn in PAGE_AT]
    return ops, [0 if pfn in gone else 1 for pfn in PAGE_AT]


# --------------------------------------------------------------------------- munmap


def test_munmap_head_of_vma() -> None:
    """do_munmap(0x10000, 2 pages): start == vm_start, no first split; find_vma(end) is the vma
    and end > vm_start, so __split_vma(vma, 0x12000, new_below=1): new = [0x10000, 0x12000)
    pgoff 0x10 (anon_vma_clone: same chain), then vma_adjust(vma, 0x12000, 0x18000,
    0x10 + 2, new) re-keys vma's avc to (0x12, 0x17).  new is detached, zapped and
    unlink_anon_vmas()ed (the tree is not empty: its avc is just freed); the original vma
    survives as the tail.  Pages 3 and 4 stay reachable through the anon_vma."""
    ops, expect = _reclaims({1, 2})
    out = clean(EIGHT, [op("munmap", 1, 0x10000, 2), *ops])
    assert results(out) == [0, *expect]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert v.oid == 1 and geometry(v) == (0x12000, 0x18000, 0x12)
    assert chain(v) == [av] and v.anon_vma is av
    assert tree(av) == [(v, (0x12, 0x17))]
    assert av.refcount == 1
    assert out.kernel.vmas[1].freed and out.kernel.avcs[1].freed
    _check_pages(out, {1, 2})


def test_munmap_tail_of_vma() -> None:
    """do_munmap(0x16000, 2 pages): start > vm_start, so __split_vma(vma, 0x16000,
    new_below=0): new = [0x16000, 0x18000) with pgoff 0x10 + 6, vma_adjust(vma, 0x10000,
    0x16000, 0x10, new); new is the one unmapped.  The vma keeps its start and pgoff; its key
    becomes (0x10, 0x15)."""
    ops, expect = _reclaims({4})
    out = clean(EIGHT, [op("munmap", 1, 0x16000, 2), *ops])
    assert results(out) == [0, *expect]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert v.oid == 1 and geometry(v) == (0x10000, 0x16000, 0x10)
    assert tree(av) == [(v, (0x10, 0x15))] and chain(v) == [av]
    assert out.kernel.vmas[1].freed
    _check_pages(out, {4})


def test_munmap_middle_of_vma() -> None:
    """do_munmap(0x12000, 2 pages): __split_vma(vma, 0x12000, 0) makes new1 = [0x12000,
    0x18000) pgoff 0x12 and shrinks vma to [0x10000, 0x12000); then find_vma(0x14000) = new1
    and __split_vma(new1, 0x14000, 1) makes new2 = [0x12000, 0x14000) pgoff 0x12 and moves
    new1 to [0x14000, 0x18000) pgoff 0x14.  new2 is unmapped.  Both survivors share the
    anon_vma and its tree holds one avc per survivor with its own key."""
    ops, expect = _reclaims({3})
    out = clean(EIGHT, [op("munmap", 1, 0x12000, 2), *ops])
    assert results(out) == [0, *expect]
    v1, v2 = vmas(out, 1)
    av = anon_vma(out, 1)
    assert (v1.oid, v2.oid) == (1, 2)
    assert geometry(v1) == (0x10000, 0x12000, 0x10)
    assert geometry(v2) == (0x14000, 0x18000, 0x14)
    assert v1.anon_vma is av and v2.anon_vma is av
    assert chain(v1) == [av] and chain(v2) == [av]
    assert tree(av) == [(v1, (0x10, 0x11)), (v2, (0x14, 0x17))]
    assert av.refcount == 1
    k = out.kernel
    assert k.vmas[2].freed and [c.freed for c in k.avcs] == [False, False, True]
    assert pte(out, 1, 0x13000) is None
    _check_pages(out, {3})


def test_munmap_middle_in_forked_child_clones_the_whole_chain() -> None:
    """The same middle munmap in a child, whose vma chain is [av2, av1]: anon_vma_clone() gives
    each piece of the split an avc in both trees, so the surviving pieces both have chain
    [av2, av1] and anon_vma av2 (I4: same anon_vma, same chain), and av1's tree holds the
    parent's vma and both pieces with their keys (equal start keys in insertion order).
    Refcounts do not change (clone takes no reference).  The child's ptes for page 3 are
    zapped; the parent still maps it.  Young bit: fork left the parent's ptes young and gave
    the child old copies (copy_one_pte(): pte_mkold()), so page_referenced() counts only the
    parent's pte -- 1 for page 1 (mapped by both), 1 for page 3 (the parent's alone) -- and
    clears it: the parent's pte for page 3 ends old."""
    setup = [*EIGHT, op("fork", 1)]
    out = clean(setup, [op("munmap", 2, 0x12000, 2), op("reclaim", 1), op("reclaim", 3)])
    assert results(out) == [0, 1, 1]
    (pv,) = vmas(out, 1)
    c1, c2 = vmas(out, 2)
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    assert geometry(c1) == (0x10000, 0x12000, 0x10)
    assert geometry(c2) == (0x14000, 0x18000, 0x14)
    for c in (c1, c2):
        assert c.anon_vma is av2 and chain(c) == [av2, av1]
    assert tree(av1) == [(pv, (0x10, 0x17)), (c1, (0x10, 0x11)), (c2, (0x14, 0x17))]
    assert tree(av2) == [(c1, (0x10, 0x11)), (c2, (0x14, 0x17))]
    assert (av1.refcount, av2.refcount) == (2, 1)
    assert pte(out, 2, 0x12000) is None
    assert pte(out, 1, 0x12000) == Present(page(out, 3), write=False, young=False)
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=False, young=False)
    assert pte(out, 2, 0x10000) == Present(page(out, 1), write=False, young=False)
    assert pte(out, 1, 0x11000) == Present(page(out, 2), write=False, young=True)
    assert page(out, 3).mapcount == 0 and page(out, 1).mapcount == 1


# ------------------------------------------------------------------------- mprotect


def test_mprotect_splits_then_merges_back() -> None:
    """mprotect(0x14000, 4 pages, PROT_READ) on [0x10000, 0x18000): sys_mprotect() sets
    prev = vma (start > vm_start); vma_merge() finds nothing (prev->vm_end != addr, no next);
    mprotect_fixup() then split_vma(vma, 0x14000, new_below=1): new = [0x10000, 0x14000)
    keeps VM_WRITE, the original vma becomes [0x14000, 0x18000) pgoff 0x14, read-only.

    mprotect back to PROT_READ|PROT_WRITE: prev = new; vma_merge(prev, 0x14000, 0x18000):
    can_vma_merge_after(prev) (same flags, same anon_vma, pgoff 0x10 + 4 == 0x14), no next:
    case 7, vma_adjust(prev, 0x10000, 0x18000, 0x10): end >= next->vm_end so remove_next = 1;
    prev's avc is re-keyed to (0x10, 0x17) under the root lock, next is unlinked,
    anon_vma_merge() unlink_anon_vmas() its avc, the vma is freed.  One vma again."""
    split = clean(EIGHT, [op("mprotect", 1, 0x14000, 4, 0)])
    assert results(split) == [0]
    lo, hi = vmas(split, 1)
    av = anon_vma(split, 1)
    assert (lo.oid, hi.oid) == (2, 1)
    assert geometry(lo) == (0x10000, 0x14000, 0x10) and lo.vm_flags == VM_WRITE
    assert geometry(hi) == (0x14000, 0x18000, 0x14) and hi.vm_flags == 0
    assert lo.anon_vma is av and hi.anon_vma is av
    assert chain(lo) == [av] and chain(hi) == [av]
    assert tree(av) == [(lo, (0x10, 0x13)), (hi, (0x14, 0x17))]

    out = clean(EIGHT, [op("mprotect", 1, 0x14000, 4, 0), op("mprotect", 1, 0x14000, 4, 1)])
    assert results(out) == [0, 0]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert v.oid == 2 and geometry(v) == (0x10000, 0x18000, 0x10) and v.vm_flags == VM_WRITE
    assert chain(v) == [av] and tree(av) == [(v, (0x10, 0x17))]
    assert av.refcount == 1
    k = out.kernel
    assert k.vmas[0].freed and [c.freed for c in k.avcs] == [True, False]
    ops, expect = _reclaims(set())
    assert (
        results(
            clean([*EIGHT, op("mprotect", 1, 0x14000, 4, 0), op("mprotect", 1, 0x14000, 4, 1)], ops)
        )
        == expect
    )


def test_mprotect_merge_imports_the_next_vmas_anon_vma() -> None:
    """[0x10000, 0x18000) is split by mprotect(0x10000, 4, PROT_READ) before any fault (the
    original vma is the read-only head, new = [0x14000, 0x18000)); a fault in new gives it an
    anon_vma (its read-only neighbour has none to share).  mprotect(0x10000, 4, RW):
    vma_merge(prev = NULL): area = vma, next = new; can_vma_merge_before(new) holds
    (is_mergeable_anon_vma(NULL, av, new): new's chain is singular), case 8:
    vma_adjust(area, 0x10000, 0x18000, 0x14 - 4).  There remove_next = 1 with exporter = new,
    importer = vma: "Easily overlooked" -- vma has no anon_vma, so anon_vma_clone(vma, new)
    and vma->anon_vma = new->anon_vma before new's avc is dropped by anon_vma_merge().  The
    reclaim probe finds page 1 through the merged vma and counts its young pte (1), clearing
    the young bit: the pte ends old."""
    setup = [
        op("mmap", 1, 0x10000, 8, 0),
        op("mprotect", 1, 0x10000, 4, 0),
        op("fault", 1, 0x14000),
    ]
    mid = clean(setup)
    lo, hi = vmas(mid, 1)
    assert (lo.oid, hi.oid) == (1, 2)
    assert lo.anon_vma is None and hi.anon_vma is anon_vma(mid, 1)

    out = clean(setup, [op("mprotect", 1, 0x10000, 4, 1), op("reclaim", 1)])
    assert results(out) == [0, 1]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert v.oid == 1 and geometry(v) == (0x10000, 0x18000, 0x10) and v.vm_flags == VM_WRITE
    assert v.anon_vma is av and chain(v) == [av]
    assert tree(av) == [(v, (0x10, 0x17))]
    k = out.kernel
    assert k.vmas[1].freed and [c.freed for c in k.avcs] == [True, False]
    assert pte(out, 1, 0x14000) == Present(page(out, 1), write=True, young=False)


def test_mprotect_merges_three_vmas_into_one() -> None:
    """mprotect of the middle third read-only splits [0x10000, 0x1c000) twice (below, then
    above: the original vma is the middle).  Making it writable again: vma_merge(prev = head,
    0x14000, 0x18000): area = middle, area->vm_end == end so next = tail; the predecessor and
    the successor both merge: case 6, vma_adjust(head, 0x10000, tail->vm_end, 0x10).
    vma_adjust() finds end > next->vm_end: remove_next = 2 -- it removes the middle, then
    goes "again" for the tail with remove_next = 1.  Both removed vmas' avcs are unlinked."""
    setup = [
        op("mmap", 1, 0x10000, 12, 0),
        op("fault", 1, 0x10000),
        op("fault", 1, 0x14000),
        op("fault", 1, 0x18000),
    ]
    mid = clean(setup, [op("mprotect", 1, 0x14000, 4, 0)])
    head, middle, tail = vmas(mid, 1)
    av = anon_vma(mid, 1)
    assert (head.oid, middle.oid, tail.oid) == (2, 1, 3)
    assert [geometry(v) for v in (head, middle, tail)] == [
        (0x10000, 0x14000, 0x10),
        (0x14000, 0x18000, 0x14),
        (0x18000, 0x1C000, 0x18),
    ]
    assert [v.vm_flags for v in (head, middle, tail)] == [VM_WRITE, 0, VM_WRITE]
    assert tree(av) == [(head, (0x10, 0x13)), (middle, (0x14, 0x17)), (tail, (0x18, 0x1B))]

    ops = [op("mprotect", 1, 0x14000, 4, 0), op("mprotect", 1, 0x14000, 4, 1)]
    ops += [op("reclaim", pfn) for pfn in (1, 2, 3)]
    out = clean(setup, ops)
    assert results(out) == [0, 0, 1, 1, 1]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert v.oid == 2 and geometry(v) == (0x10000, 0x1C000, 0x10)
    assert chain(v) == [av] and tree(av) == [(v, (0x10, 0x1B))]
    k = out.kernel
    assert k.vmas[0].freed and k.vmas[2].freed
    assert [c.freed for c in k.avcs] == [True, False, True]


def test_mprotect_of_unmapped_range_is_enomem() -> None:
    """sys_mprotect(): find_vma() NULL, or vma->vm_start > start, or a hole before end:
    -ENOMEM (the part before the hole has been changed already in the last case)."""
    setup = [op("mmap", 1, 0x10000, 4, 0), op("mmap", 1, 0x18000, 4, 0)]
    ops = [
        op("mprotect", 1, 0x20000, 1, 0),
        op("mprotect", 1, 0x14000, 1, 0),
        op("mprotect", 1, 0x10000, 12, 0),
    ]
    out = clean(setup, ops)
    assert results(out) == [ENOMEM, ENOMEM, ENOMEM]
    a, b = vmas(out, 1)
    assert a.vm_flags == 0 and b.vm_flags == VM_WRITE


def test_mprotect_readonly_write_protects_the_ptes() -> None:
    """mprotect_fixup() ends with change_protection(vma, start, end, vm_page_prot): with
    VM_WRITE gone the present ptes are rewritten without _PAGE_RW; pte_modify() keeps the
    young bit (_PAGE_ACCESSED is in x86 _PAGE_CHG_MASK), so they stay young."""
    out = run(EIGHT, [op("mprotect", 1, 0x10000, 8, 0)])
    assert out.finding is None
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=False, young=True)


@pytest.mark.xfail(
    strict=True,
    reason="model: mmap_region() never calls vma_merge() (docs/model.md), so an adjacent "
    "compatible mmap makes a second vma",
)
def test_mmap_next_to_compatible_vma_merges() -> None:
    """mmap_region(): vma_merge(mm, prev, addr, end, vm_flags, NULL, NULL, pgoff, NULL) with
    prev = [0x10000, 0x14000): same flags, pgoff 0x10 + 4 == 0x14, anon_vma NULL: case 2,
    vma_adjust(prev, 0x10000, 0x18000, 0x10) -- no new vma."""
    out = run([op("mmap", 1, 0x10000, 4, 0)], [op("mmap", 1, 0x14000, 4, 0)])
    assert out.finding is None
    assert results(out) == [0x14000]
    assert [geometry(v) for v in vmas(out, 1)] == [(0x10000, 0x18000, 0x10)]


# --------------------------------------------------------------------- stack growth

STACK = op("mmap", 1, 0x20000, 4, 1)  # [0x20000, 0x24000) pgoff 0x20, VM_GROWSDOWN


def clean37(setup, ops):  # type: ignore[no-untyped-def]
    """These tests pin 3.7's stack growth (under mmap_sem read, guard page included), which
    mainline replaces with the 6.5 fix: the variant stack-growth-under-read keeps it."""
    return clean(setup, ops, StackGrowthUnderRead)


def test_mainline_grows_the_stack_only_below_it() -> None:
    """Mainline (4.12 guard gap, 6.5 write-locked growth): a fault at vm_start of a stack does
    not grow it; a fault below grows it to the faulting page, under mmap_sem for write."""
    out = clean([STACK], [op("fault", 1, 0x20000)])
    assert geometry(vmas(out, 1)[0])[0] == 0x20000
    out = clean([STACK], [op("fault", 1, 0x1F000)])
    assert geometry(vmas(out, 1)[0])[0] == 0x1F000
    assert any(repr(t[4]) == "down_write(mm#1.mmap_sem)" for t in out.result.trace)


def test_fault_below_stack_expands_it_twice() -> None:
    """__do_page_fault(0x1f000): find_vma() gives the stack vma with vm_start > address and
    VM_GROWSDOWN: expand_stack() -> expand_downwards(): anon_vma_prepare() (a new anon_vma,
    avc key (0x20, 0x23)), then under the root lock pre_update, vm_start = 0x1f000,
    vm_pgoff -= 1, post_update.  handle_mm_fault() -> do_anonymous_page() ->
    check_stack_guard_page(): the address is now vm_start, no vma below, so
    expand_downwards(vma, 0x1e000) grows one more (guard) page: [0x1e000, 0x24000) pgoff
    0x1e.  The page at 0x1f000 gets index 0x1f."""
    out = clean37([STACK], [op("fault", 1, 0x1F000)])
    assert results(out) == [0]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert geometry(v) == (0x1E000, 0x24000, 0x1E)
    assert v.vm_flags == VM_WRITE | VM_GROWSDOWN
    assert v.anon_vma is av and tree(av) == [(v, (0x1E, 0x23))]
    assert len(out.kernel.avcs) == 1
    p = page(out, 1)
    assert (p.mapping, p.index) == (av, 0x1F)
    assert pte(out, 1, 0x1F000) == Present(p, write=True, young=True)
    assert pte(out, 1, 0x1E000) is None


def test_fault_at_stack_start_expands_guard_page() -> None:
    """A fault at vm_start of a VM_GROWSDOWN vma: check_stack_guard_page() sees
    address == vm_start and no vma abutting below, so expand_downwards(vma, address -
    PAGE_SIZE): [0x1f000, 0x24000) pgoff 0x1f; the page at 0x20000 keeps index 0x20."""
    out = clean37([STACK], [op("fault", 1, 0x20000)])
    assert results(out) == [0]
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x1F000, 0x24000, 0x1F)
    assert tree(anon_vma(out, 1)) == [(v, (0x1F, 0x23))]
    assert page(out, 1).index == 0x20
    assert pte(out, 1, 0x20000) == Present(page(out, 1), write=True, young=True)


def test_fault_inside_stack_does_not_grow_it() -> None:
    """check_stack_guard_page() only acts when address == vm_start."""
    out = clean37([STACK], [op("fault", 1, 0x21000)])
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x20000, 0x24000, 0x20)
    assert tree(anon_vma(out, 1)) == [(v, (0x20, 0x23))]


def test_stack_guard_page_against_a_non_stack_vma_is_sigbus() -> None:
    """check_stack_guard_page(): prev->vm_end == address and prev is not VM_GROWSDOWN:
    -ENOMEM, so do_anonymous_page() returns VM_FAULT_SIGBUS before anon_vma_prepare()."""
    setup = [op("mmap", 1, 0x1C000, 4, 0), STACK]
    out = clean37(setup, [op("fault", 1, 0x20000)])
    assert results(out) == [VM_FAULT_SIGBUS]
    low, stack = vmas(out, 1)
    assert geometry(stack) == (0x20000, 0x24000, 0x20) and stack.anon_vma is None
    assert out.kernel.pages == [] and out.kernel.anon_vmas == []


def test_stack_split_by_mprotect_does_not_grow_into_itself() -> None:
    """A stack [0x1c000, 0x24000) whose lower half was made read-only (split_vma: the original
    vma is the lower half, new = [0x20000, 0x24000)): a fault at the upper half's vm_start
    finds prev->vm_end == address with prev VM_GROWSDOWN: "that's only ok if it's the same
    stack mapping that has gotten split", return 0, no growth, the fault proceeds."""
    setup = [op("mmap", 1, 0x1C000, 8, 1), op("mprotect", 1, 0x1C000, 4, 0)]
    out = clean37(setup, [op("fault", 1, 0x20000)])
    assert results(out) == [0]
    low, high = vmas(out, 1)
    assert geometry(low) == (0x1C000, 0x20000, 0x1C) and low.vm_flags == VM_GROWSDOWN
    assert geometry(high) == (0x20000, 0x24000, 0x20)
    assert high.vm_flags == VM_WRITE | VM_GROWSDOWN
    assert tree(anon_vma(out, 1)) == [(high, (0x20, 0x23))]
    assert low.anon_vma is None


def test_stack_at_mmap_min_addr_does_not_grow_below_it() -> None:
    """A stack vma at 0x10000 (= TASK_LO, the default mmap_min_addr): the fault at vm_start
    calls expand_downwards(vma, 0xf000), which runs anon_vma_prepare() and then fails
    security_mmap_addr(); check_stack_guard_page() ignores that result and the fault maps the
    page (do_anonymous_page()'s anon_vma_prepare() finds the anon_vma already there); the vma
    does not move."""
    out = clean37([op("mmap", 1, 0x10000, 4, 1)], [op("fault", 1, 0x10000)])
    assert results(out) == [0]
    (v,) = vmas(out, 1)
    assert geometry(v) == (0x10000, 0x14000, 0x10)
    assert len(out.kernel.anon_vmas) == 1 and v.anon_vma is anon_vma(out, 1)
    assert tree(anon_vma(out, 1)) == [(v, (0x10, 0x13))]
    assert page(out, 1).mapping is anon_vma(out, 1)
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=True, young=True)


def test_refused_stack_growth_still_prepared_anon_vma() -> None:
    """mm/mmap.c expand_downwards(): "We must make sure the anon_vma is allocated so that the
    anon_vma locking is not a noop": anon_vma_prepare(vma) runs first, then
    security_mmap_addr(0xf000) fails (below mmap_min_addr) and expand_stack() returns an
    error: __do_page_fault() takes bad_area (-EFAULT here), but the vma has its anon_vma."""
    out = run([op("mmap", 1, 0x10000, 4, 1)], [op("fault", 1, 0xF000)])
    assert out.finding is None
    assert results(out) == [EFAULT]
    (v,) = vmas(out, 1)
    av = anon_vma(out, 1) if out.kernel.anon_vmas else None
    assert av is not None and v.anon_vma is av
    assert tree(av) == [(v, (0x10, 0x13))]
    assert geometry(v) == (0x10000, 0x14000, 0x10)
