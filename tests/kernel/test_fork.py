"""kernel/fork.c dup_mmap() / mm/rmap.c anon_vma_fork(), and kernel/exit.c exit_mm() ->
mm/mmap.c exit_mmap() -> unlink_anon_vmas(), run alone.

pids: pid 1 exists at boot, forks hand out 2, 3, ... in order.  anon_vmas and avcs get ids in
allocation order (a freed anon_vma slot is reused first, SLAB_DESTROY_BY_RCU + LIFO freelist).
"""

from __future__ import annotations

from rmapfuzz.kernel.objects import Present

from ._helpers import (
    all_ptes,
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

# pid 1: [0x10000, 0x14000) with pages 1 (0x10000) and 2 (0x11000), anon_vma 1;
#        [0x18000, 0x1c000) never faulted (no anon_vma).
PARENT = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),
    op("fault", 1, 0x11000),
    op("mmap", 1, 0x18000, 4, 0),
]


def test_fork_clones_chain_and_write_protects_ptes() -> None:
    """dup_mmap(): for each parent vma, *tmp = *mpnt, anon_vma_fork(tmp, mpnt),
    copy_page_range().

    anon_vma_fork(): anon_vma_clone() walks the parent's chain in reverse and list_add()s an avc
    per anon_vma at the head of the child's chain, then a new anon_vma (refcount 1) with
    root = pvma->anon_vma->root gets get_anon_vma(root) and is linked last, i.e. first in the
    list: child chain = [own, parent's].  Root refcount = 1 + one per child anon_vma.
    copy_one_pte(): private mappings are COW (is_cow_mapping), so ptep_set_wrprotect() in the
    parent and a read-only copy in the child; page_dup_rmap() increments _mapcount.
    Young bit (mm/memory.c copy_one_pte(): pte = pte_mkold(pte) before set_pte_at(dst_mm)):
    the child's copy is old, while ptep_set_wrprotect() only clears _PAGE_RW of the parent's
    pte, which stays young as do_anonymous_page() made it (x86 vm_page_prot has
    _PAGE_ACCESSED).  copy_page_range() returns early for a vma without anon_vma: the child's
    copy has no anon_vma, no chain, no ptes."""
    out = clean(PARENT, [op("fork", 1)])
    assert results(out) == [2]
    pv, pv2 = vmas(out, 1)
    cv, cv2 = vmas(out, 2)
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    assert geometry(cv) == geometry(pv) == (0x10000, 0x14000, 0x10)
    assert cv.vm_flags == pv.vm_flags
    assert chain(pv) == [av1]
    assert cv.anon_vma is av2 and chain(cv) == [av2, av1]
    assert av2.root is av1 and av1.root is av1
    assert av1.refcount == 2 and av2.refcount == 1
    assert tree(av1) == [(pv, (0x10, 0x13)), (cv, (0x10, 0x13))]
    assert tree(av2) == [(cv, (0x10, 0x13))]
    p1, p2 = page(out, 1), page(out, 2)
    for pid, young in ((1, True), (2, False)):
        assert pte(out, pid, 0x10000) == Present(p1, write=False, young=young)
        assert pte(out, pid, 0x11000) == Present(p2, write=False, young=young)
    assert (p1.mapping, p1.index, p1.mapcount) == (av1, 0x10, 1)
    assert (p2.mapping, p2.index, p2.mapcount) == (av1, 0x11, 1)
    assert geometry(cv2) == (0x18000, 0x1C000, 0x18)
    assert cv2.anon_vma is None and cv2.anon_vma_chain == ()
    assert not any(pte(out, 2, a) for a in range(0x18000, 0x1C000, 0x1000))
    assert len(out.kernel.avcs) == 3  # parent's, the child's clone of it, the child's own


def test_fork_of_a_child_chains_to_the_same_root() -> None:
    """A grandchild: anon_vma_clone() of the child's chain [av2, av1] (reverse: av1 then av2,
    each list_add()ed at the head) gives [av2, av1]; its own av3 goes in front: [av3, av2, av1],
    newest first, root last.  av3->root = av2->root = av1, whose refcount is now 1 + 2; av2 is
    not a root, so it keeps refcount 1.  Page 1 is mapped three times: _mapcount 2.  Young
    bit: copy_one_pte()'s pte_mkold() makes the grandchild's copy old; the child's pte was old
    already (its own fork copy), and wrprotecting it again changes nothing."""
    out = clean(PARENT + [op("fork", 1)], [op("fork", 2)])
    assert results(out) == [3]
    av1, av2, av3 = (anon_vma(out, i) for i in (1, 2, 3))
    gv = vmas(out, 3)[0]
    assert gv.anon_vma is av3 and chain(gv) == [av3, av2, av1]
    assert av3.root is av1 and av2.root is av1
    assert (av1.refcount, av2.refcount, av3.refcount) == (3, 1, 1)
    assert [v for v, _ in tree(av1)] == [vmas(out, 1)[0], vmas(out, 2)[0], gv]
    assert [v for v, _ in tree(av2)] == [vmas(out, 2)[0], gv]
    assert tree(av3) == [(gv, (0x10, 0x13))]
    assert page(out, 1).mapcount == 2 and page(out, 2).mapcount == 2
    assert pte(out, 3, 0x10000) == Present(page(out, 1), write=False, young=False)
    assert pte(out, 2, 0x10000) == Present(page(out, 1), write=False, young=False)
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=False, young=True)


def test_fork_of_unfaulted_process_copies_nothing() -> None:
    """anon_vma_fork() returns 0 at once when !pvma->anon_vma; copy_page_range() too."""
    out = clean([op("mmap", 1, 0x10000, 4, 0)], [op("fork", 1)])
    assert results(out) == [2]
    (cv,) = vmas(out, 2)
    assert geometry(cv) == (0x10000, 0x14000, 0x10)
    assert cv.anon_vma is None and cv.anon_vma_chain == ()
    assert out.kernel.anon_vmas == [] and out.kernel.avcs == [] and all_ptes(out) == {}


def test_write_fault_after_fork_copies_the_page() -> None:
    """mm/memory.c do_wp_page() after fork: page 1 is mapped twice (reuse_swap_page() needs
    page_mapcount() == 1), so the parent's write fault copies it: anon_vma_prepare() (no-op),
    a new page 3, page_add_new_anon_rmap(new, vma) -> mapping = the parent's vma->anon_vma,
    Present(new, writable), page_remove_rmap(old).  Young bit: the new pte is
    maybe_mkwrite(pte_mkdirty(mk_pte(new_page, vma->vm_page_prot))), young (_PAGE_ACCESSED in
    x86 vm_page_prot); the child's pte is still the old one copy_one_pte() gave it."""
    out = run(PARENT + [op("fork", 1)], [op("fault", 1, 0x10000)])
    assert out.finding is None
    assert len(out.kernel.pages) == 3
    p1, p3 = page(out, 1), page(out, 3)
    assert pte(out, 1, 0x10000) == Present(p3, write=True, young=True)
    assert pte(out, 2, 0x10000) == Present(p1, write=False, young=False)
    assert (p3.mapping, p3.index, p3.mapcount) == (anon_vma(out, 1), 0x10, 0)
    assert p1.mapcount == 0


# ------------------------------------------------------------------------------ exit


def test_exit_of_only_process_frees_everything() -> None:
    """exit_mm(): task->mm = NULL, mmput() drops the last mm_users -> exit_mmap():
    unmap_vmas() zaps every pte (page_remove_rmap: _mapcount back to -1), free_pgtables() ->
    unlink_anon_vmas(): the avc is removed from the tree, which becomes empty, so pass 2
    put_anon_vma()s it to 0 -> __put_anon_vma() -> anon_vma_free(); remove_vma() frees the
    vmas; the mm is freed.  The leak oracle then finds nothing allocated."""
    out = clean(PARENT, [op("exit", 1)])
    assert results(out) == [0]
    k = out.kernel
    assert k.procs[1].mm is None and k.mms[0].freed
    assert all(p.mapcount == -1 for p in k.pages)
    av1 = anon_vma(out, 1)
    assert av1.freed and av1.refcount == 0 and av1.rb_root.nodes == ()
    assert all(c.freed for c in k.avcs) and all(v.freed for v in k.vmas)
    assert all_ptes(out) == {}


def test_exit_of_child_keeps_parent_and_drops_root_pin() -> None:
    """unlink_anon_vmas(child vma), chain [av2, av1]: pass 1 removes both avcs from their trees;
    av2's tree becomes empty (its avc stays on the list), av1's still holds the parent's avc
    (the avc is freed at once).  Pass 2: put_anon_vma(av2) -> 0 -> __put_anon_vma(): av2 is
    not its own root, so atomic_dec_and_test(&av1->refcount) (2 -> 1, not freed), then
    anon_vma_free(av2).  The parent keeps its vma, chain, tree entry and (read-only) ptes,
    still young (fork's ptep_set_wrprotect() left the young bit alone; only the child's copy
    was made old); the pages' _mapcount drop to 0."""
    out = clean(PARENT + [op("fork", 1)], [op("exit", 2)])
    assert results(out) == [0]
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    pv = vmas(out, 1)[0]
    assert av2.freed and av2.refcount == 0
    assert not av1.freed and av1.refcount == 1 and av1.root is av1
    assert tree(av1) == [(pv, (0x10, 0x13))] and chain(pv) == [av1]
    k = out.kernel
    assert [c.freed for c in k.avcs] == [False, True, True]
    assert k.procs[2].mm is None
    p1, p2 = page(out, 1), page(out, 2)
    assert pte(out, 1, 0x10000) == Present(p1, write=False, young=True)
    assert pte(out, 1, 0x11000) == Present(p2, write=False, young=True)
    assert (p1.mapcount, p2.mapcount) == (0, 0)
    assert p1.mapping is av1


def test_exit_of_parent_first_keeps_root_alive_for_child() -> None:
    """The parent exits first: unlink_anon_vmas(parent vma) removes its avc from av1's tree,
    which still holds the child's avc, so nothing is put: av1 stays (refcount 2: the child's
    av2 pins it, and it is not empty).  The child's mappings stay reachable through av1
    (page->mapping of pages 1 and 2), through ptes that are old (copy_one_pte()'s
    pte_mkold()).  When the child exits too, pass 2 puts av2 (dropping av1 to 1, then freeing
    av2) and then av1 (to 0, freed): nothing is left live."""
    out = clean(PARENT + [op("fork", 1)], [op("exit", 1)])
    av1, av2 = anon_vma(out, 1), anon_vma(out, 2)
    cv = vmas(out, 2)[0]
    assert not av1.freed and av1.refcount == 2
    assert tree(av1) == [(cv, (0x10, 0x13))] and tree(av2) == [(cv, (0x10, 0x13))]
    assert chain(cv) == [av2, av1]
    assert page(out, 1).mapcount == 0 and page(out, 1).mapping is av1
    assert pte(out, 2, 0x10000) == Present(page(out, 1), write=False, young=False)

    out = clean(PARENT + [op("fork", 1)], [op("exit", 1), op("exit", 2)])
    assert results(out) == [0, 0]
    k = out.kernel
    assert all(a.freed and a.refcount == 0 for a in k.anon_vmas)
    assert all(c.freed for c in k.avcs) and all(v.freed for v in k.vmas)
    assert all(m.freed for m in k.mms)
    assert all(p.mapcount == -1 for p in k.pages)


def test_every_process_exits_nothing_is_live() -> None:
    """A parent, a child and a grandchild, exiting in fork order: after the last exit every vma,
    avc, anon_vma and mm is freed (the oracle's leak check runs once every process has exited)
    and every page is unmapped."""
    setup = PARENT + [op("fork", 1), op("fork", 2), op("fault", 3, 0x12000)]
    out = clean(setup, [op("exit", 1), op("exit", 2), op("exit", 3)])
    assert results(out) == [0, 0, 0]
    k = out.kernel
    assert len(k.anon_vmas) == 3
    assert all(a.freed and a.refcount == 0 and a.rb_root.nodes == () for a in k.anon_vmas)
    assert all(c.freed for c in k.avcs) and all(v.freed for v in k.vmas)
    assert all(m.freed for m in k.mms)
    assert all(p.mapcount == -1 for p in k.pages)
    assert page(out, 3).mapping is anon_vma(out, 3)  # page_remove_rmap() leaves ->mapping


def test_freed_anon_vma_slot_is_reused_first() -> None:
    """anon_vma_cachep is SLAB_DESTROY_BY_RCU: a freed anon_vma is the next one handed out
    (same memory, new incarnation).  The child's av2 is freed at its exit; the next fork takes
    the same slot for the new child's anon_vma."""
    out = clean(PARENT + [op("fork", 1), op("exit", 2)], [op("fork", 1)])
    assert results(out) == [3]
    av2 = anon_vma(out, 2)
    assert len(out.kernel.anon_vmas) == 2
    assert not av2.freed and av2.gen == 2 and av2.root is anon_vma(out, 1)
    assert vmas(out, 3)[0].anon_vma is av2
    assert anon_vma(out, 1).refcount == 2
