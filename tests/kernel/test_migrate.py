"""mm/migrate.c run alone: migration of one anonymous page by compaction (migrate, no
mmap_sem) and by sys_move_pages (mmap_sem read), through try_to_unmap(TTU_MIGRATION) and
remove_migration_ptes().

The new page of a migration is the next page frame allocated: with pages 1 and 2 faulted,
migrate(1) moves page 1 to page 3.

Young bit: mm/migrate.c remove_migration_pte() builds the new pte as
pte_mkold(mk_pte(new, vma->vm_page_prot)) (then pte_mkwrite() for a write migration entry),
so every pte of a migrated page is old.  Ptes the migration does not touch keep theirs: young
from do_anonymous_page(), old in a child after fork (copy_one_pte()'s pte_mkold()).
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.objects import Migration, Present
from rmapfuzz.runner import Outcome

from ._helpers import (
    EAGAIN,
    EINVAL,
    all_ptes,
    anon_vma,
    clean,
    mm_of,
    op,
    page,
    pte,
    results,
    snapshot,
)

# pid 1 maps pages 1 (0x10000) and 2 (0x11000) in [0x10000, 0x14000); pid 2 is its child.
FORKED = [
    op("mmap", 1, 0x10000, 4, 0),
    op("fault", 1, 0x10000),
    op("fault", 1, 0x11000),
    op("fork", 1),
]


def _no_migration_entries(out: Outcome) -> None:
    assert not [p for p in all_ptes(out).values() if type(p) is Migration]


def test_migrate_shared_page_moves_every_mapping() -> None:
    """__unmap_and_move(page 1): lock_page(); page_get_anon_vma() pins av1 (page mapped);
    try_to_unmap(TTU_MIGRATION) walks av1's tree for index 0x10: the parent's and the child's
    vma; each try_to_unmap_one() replaces the pte by a migration entry keeping pte_write()
    (both read-only after fork) and page_remove_rmap()s (mapcount 1 -> -1).  The page is no
    longer mapped: move_to_new_page(): newpage->index = 0x10, newpage->mapping = av1,
    remove_migration_ptes(page, newpage) = rmap_walk(newpage): each remove_migration_pte()
    installs Present(new) with the entry's write bit, old (pte_mkold()), and
    page_add_anon_rmap(new) (-1 -> 0 -> 1; the first one finds PageAnon(new) already set and
    keeps its mapping); then page->mapping = NULL.  put_anon_vma() drops the pin,
    unlock_page().  Page 2 is not migrated: young in the parent, old in the child (fork)."""
    out = clean(FORKED, [op("migrate", 1)])
    assert results(out) == [0]
    old, other, new = page(out, 1), page(out, 2), page(out, 3)
    av1 = anon_vma(out, 1)
    for pid, young in ((1, True), (2, False)):
        assert pte(out, pid, 0x10000) == Present(new, write=False, young=False)
        assert pte(out, pid, 0x11000) == Present(other, write=False, young=young)
    assert (new.mapping, new.index, new.mapcount) == (av1, 0x10, 1)
    assert (old.mapping, old.mapcount) == (None, -1)
    assert (other.mapping, other.index, other.mapcount) == (av1, 0x11, 1)
    assert av1.refcount == 2  # the migration's pin is gone again
    assert not old.lock.locked and not new.lock.locked
    _no_migration_entries(out)


def test_migrate_exclusive_writable_page_keeps_write_bit() -> None:
    """make_migration_entry(page, pte_write(pteval)) for a writable pte, and
    remove_migration_pte(): is_write_migration_entry() -> pte_mkwrite(): still writable, and
    old (pte_mkold(mk_pte(new, ...)))."""
    out = clean(FORKED[:2], [op("migrate", 1)])
    assert results(out) == [0]
    new = page(out, 2)
    assert pte(out, 1, 0x10000) == Present(new, write=True, young=False)
    assert (new.mapping, new.index, new.mapcount) == (anon_vma(out, 1), 0x10, 0)
    assert (page(out, 1).mapping, page(out, 1).mapcount) == (None, -1)
    _no_migration_entries(out)


def test_migrate_child_page_walks_the_childs_anon_vma() -> None:
    """A page faulted by the child after fork gets page->mapping = the child's own anon_vma
    (page_add_new_anon_rmap: exclusive, vma->anon_vma).  Its migration walks av2's tree, which
    holds only the child's vma.  The new pte is writable (write migration entry) and old
    (remove_migration_pte()'s pte_mkold())."""
    out = clean(FORKED + [op("fault", 2, 0x12000)], [op("migrate", 3)])
    assert results(out) == [0]
    av2 = anon_vma(out, 2)
    new = page(out, 4)
    assert pte(out, 2, 0x12000) == Present(new, write=True, young=False)
    assert pte(out, 1, 0x12000) is None
    assert (new.mapping, new.index, new.mapcount) == (av2, 0x12, 0)
    assert av2.refcount == 1
    _no_migration_entries(out)


def test_migration_steps_follow_kernel_order() -> None:
    """For each mapping: ptep_clear_flush() (pte none), then the migration entry, then -- only
    after every mapping is unmapped and newpage->index/->mapping are set -- the new present
    pte, old (pte_mkold()); page->mapping = NULL comes after the last
    remove_migration_pte()."""
    out = clean(FORKED, [op("migrate", 1)])
    old, new = page(out, 1), page(out, 3)
    steps = [(t[3], t[4]) for t in out.result.trace if t[0] == 0]
    stores = [(fn, e) for fn, e in steps if type(e) is ev.Store]
    pte_stores = [
        (fn, e.obj.mm.oid, e.value) for fn, e in stores if e.field == "ptes" and e.key == 0x10000
    ]
    assert pte_stores == [
        ("try_to_unmap_one", 1, None),
        ("try_to_unmap_one", 1, Migration(old, False)),
        ("try_to_unmap_one", 2, None),
        ("try_to_unmap_one", 2, Migration(old, False)),
        ("remove_migration_pte", 1, Present(new, write=False, young=False)),
        ("remove_migration_pte", 2, Present(new, write=False, young=False)),
    ]
    page_stores = [(fn, e.obj, e.field) for fn, e in stores if e.obj in (old, new)]
    assert page_stores == [
        ("move_to_new_page", new, "index"),
        ("move_to_new_page", new, "mapping"),
        ("move_to_new_page", old, "mapping"),
    ]
    order = [
        e for _, e in stores if (e.field == "ptes" and e.key == 0x10000) or e.obj in (old, new)
    ]
    i_index = order.index(ev.Store(new, "index", 0x10))
    new_pte = Present(new, write=False, young=False)
    i_first_present = next(i for i, e in enumerate(order) if e.value == new_pte)
    i_last_present = max(i for i, e in enumerate(order) if e.value == new_pte)
    i_clear_old = order.index(ev.Store(old, "mapping", None))
    last_entry = max(i for i, e in enumerate(order) if type(e.value) is Migration)
    assert last_entry < i_index < i_first_present and i_last_present < i_clear_old


def test_move_pages_migrates_under_mmap_sem() -> None:
    """sys_move_pages() -> do_move_page_to_node_array(): down_read(mmap_sem), find_vma(),
    follow_page() finds page 1 at 0x10000, migrate_pages() as for compaction, up_read().
    (Page 1 is mapped twice: the kernel moves it only with MPOL_MF_MOVE_ALL, else -EACCES in
    its status; the model's move_pages is the MOVE_ALL case.)  The new ptes are old, as
    remove_migration_pte() makes them."""
    out = clean(FORKED, [op("move_pages", 1, 0x10000)])
    assert results(out) == [0]
    new = page(out, 3)
    for pid in (1, 2):
        assert pte(out, pid, 0x10000) == Present(new, write=False, young=False)
    assert (new.mapping, new.index, new.mapcount) == (anon_vma(out, 1), 0x10, 1)
    assert (page(out, 1).mapping, page(out, 1).mapcount) == (None, -1)
    mm = mm_of(out, 1)
    assert not mm.mmap_sem.locked
    _no_migration_entries(out)


def test_move_pages_of_exclusive_page() -> None:
    """move_pages of a page mapped once (no MPOL_MF_MOVE_ALL needed): writable pte kept, made
    old by remove_migration_pte(); page 1's pte is not touched and stays young."""
    out = clean(FORKED[:3], [op("move_pages", 1, 0x11000)])
    assert results(out) == [0]
    new = page(out, 3)
    assert pte(out, 1, 0x11000) == Present(new, write=True, young=False)
    assert (new.mapping, new.index, new.mapcount) == (anon_vma(out, 1), 0x11, 0)
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=True, young=True)


def test_migrate_unmapped_page_is_eagain_and_changes_nothing() -> None:
    """Page 1 was unmapped by munmap (page_remove_rmap left _mapcount -1; page->mapping still
    names av1, which the rest of the vma keeps alive).  __unmap_and_move(): page_get_anon_vma()
    sees !page_mapped() and returns NULL; not PageSwapCache: goto uncharge, rc stays -EAGAIN.
    Nothing is unmapped or moved; the new page (get_new_page, allocated first) is left unused.
    (In the kernel this is the case of a page someone else still holds a reference to; page
    counts are not modelled.)"""
    setup = [
        op("mmap", 1, 0x10000, 4, 0),
        op("fault", 1, 0x10000),
        op("fault", 1, 0x11000),
        op("munmap", 1, 0x10000, 1),
    ]
    before = clean(setup)
    out = clean(setup, [op("migrate", 1)])
    assert results(out) == [EAGAIN]
    assert snapshot(out, npages=2) == snapshot(before)
    new = page(out, 3)
    assert (new.mapping, new.mapcount) == (None, -1)
    assert not page(out, 1).lock.locked and not new.lock.locked


def test_migrate_page_of_exited_process_is_eagain() -> None:
    """After exit every pte is zapped: the page is not mapped, migration gives up (-EAGAIN)."""
    setup = [op("mmap", 1, 0x10000, 4, 0), op("fault", 1, 0x10000), op("exit", 1)]
    out = clean(setup, [op("migrate", 1), op("migrate", 7)])
    assert results(out) == [EAGAIN, EINVAL]
    assert page(out, 1).mapcount == -1
