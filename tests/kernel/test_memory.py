"""mm/memory.c: the anonymous fault (do_anonymous_page) run alone, and its trace order.

Address space used throughout: one private anonymous vma [0x10000, 0x14000), so vm_pgoff = 0x10
(do_mmap_pgoff: a private anonymous mapping gets pgoff = addr >> PAGE_SHIFT).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.objects import Present, table_index

from ._helpers import (
    EFAULT,
    anon_vma,
    clean,
    geometry,
    mm_of,
    op,
    page,
    pte,
    results,
    run,
    tree,
    vmas,
)

MMAP = op("mmap", 1, 0x10000, 4, 0)


def test_first_fault_allocates_anon_vma_and_maps_page() -> None:
    """First write fault in a fresh vma (mm/memory.c do_anonymous_page, mm/rmap.c anon_vma_prepare).

    anon_vma_prepare(): vma->anon_vma is NULL and find_mergeable_anon_vma() finds no neighbour,
    so anon_vma_alloc() gives refcount 1 and root = itself; under the root lock and
    mm->page_table_lock vma->anon_vma is set and anon_vma_chain_link() puts one avc on the
    vma's chain and in the tree with key (vm_pgoff, vm_pgoff + vma_pages - 1) = (0x10, 0x13).
    page_add_new_anon_rmap(): _mapcount = 0 (one mapping), __page_set_anon_rmap(exclusive)
    sets page->mapping = vma->anon_vma and index = linear_page_index() = 0x10 + 2.  The pte is
    mk_pte(page, vma->vm_page_prot), pte_mkwrite()d because the vma has VM_WRITE; it is young,
    as x86 vm_page_prot (protection_map[]) includes _PAGE_ACCESSED.
    """
    out = clean([MMAP], [op("fault", 1, 0x12000)])
    assert results(out) == [0]
    (vma,) = vmas(out, 1)
    av = anon_vma(out, 1)
    assert len(out.kernel.anon_vmas) == 1 and len(out.kernel.avcs) == 1
    assert vma.anon_vma is av
    assert av.root is av and av.refcount == 1 and not av.freed
    (avc,) = vma.anon_vma_chain
    assert avc.anon_vma is av and avc.vma is vma and not avc.freed
    assert tree(av) == [(vma, (0x10, 0x13))]
    p = page(out, 1)
    assert (p.mapping, p.index, p.mapcount) == (av, 0x12, 0)
    assert pte(out, 1, 0x12000) == Present(p, write=True, young=True)
    for addr in (0x10000, 0x11000, 0x13000):
        assert pte(out, 1, addr) is None


def test_second_fault_in_same_vma_reuses_its_anon_vma() -> None:
    """anon_vma_prepare() returns at once when vma->anon_vma is set: no new anon_vma or avc, and
    the new page gets the same mapping, its own index (0x10) and _mapcount 0; both ptes are
    writable and young (do_anonymous_page())."""
    out = clean([MMAP, op("fault", 1, 0x12000)], [op("fault", 1, 0x10000)])
    assert results(out) == [0]
    av = anon_vma(out, 1)
    assert len(out.kernel.anon_vmas) == 1 and len(out.kernel.avcs) == 1
    assert av.refcount == 1
    p1, p2 = page(out, 1), page(out, 2)
    assert (p2.mapping, p2.index, p2.mapcount) == (av, 0x10, 0)
    assert (p1.mapping, p1.index, p1.mapcount) == (av, 0x12, 0)
    assert pte(out, 1, 0x10000) == Present(p2, write=True, young=True)
    assert pte(out, 1, 0x12000) == Present(p1, write=True, young=True)


def test_fault_on_present_pte_allocates_nothing() -> None:
    """handle_pte_fault(): a write fault on a present writable pte only marks it young/dirty;
    do_anonymous_page() is not reached, no page is allocated.  The pte was young and writable
    already, so it is unchanged."""
    out = clean([MMAP, op("fault", 1, 0x10000)], [op("fault", 1, 0x10000)])
    assert results(out) == [0]
    assert len(out.kernel.pages) == 1
    assert pte(out, 1, 0x10000) == Present(page(out, 1), write=True, young=True)
    assert page(out, 1).mapcount == 0


def test_fault_address_is_rounded_down_to_its_page() -> None:
    """__do_page_fault() works on the faulting address; the pte and linear_page_index() are per
    page (address & PAGE_MASK)."""
    out = clean([MMAP], [op("fault", 1, 0x12ABC)])
    assert results(out) == [0]
    assert pte(out, 1, 0x12000) == Present(page(out, 1), write=True, young=True)
    assert page(out, 1).index == 0x12


def test_fault_outside_any_vma_is_efault() -> None:
    """__do_page_fault(): find_vma() finds nothing at or above the address (or a vma above it
    that is not VM_GROWSDOWN): bad_area, no fault handled, nothing allocated."""
    out = clean([MMAP], [op("fault", 1, 0x20000), op("fault", 1, 0x14000), op("fault", 1, 0xF000)])
    assert results(out) == [EFAULT, EFAULT, EFAULT]
    assert out.kernel.pages == [] and out.kernel.anon_vmas == []
    (vma,) = vmas(out, 1)
    assert vma.anon_vma is None and geometry(vma) == (0x10000, 0x14000, 0x10)


def test_write_fault_on_readonly_vma_is_an_access_error() -> None:
    """arch/x86/mm/fault.c __do_page_fault() good_area: access_error(error_code, vma) is true
    for a write (PF_WRITE) to a vma without VM_WRITE, so bad_area_access_error() is taken
    before handle_mm_fault(): no anon_vma, no page, no pte.  (The model's fault is always a
    write fault, see mm/memory.c's module docstring.)"""
    out = run([MMAP, op("mprotect", 1, 0x10000, 4, 0)], [op("fault", 1, 0x10000)])
    assert out.finding is None
    assert results(out) == [EFAULT]
    assert out.kernel.pages == []
    assert vmas(out, 1)[0].anon_vma is None
    assert pte(out, 1, 0x10000) is None


Step = tuple[int, int, int, str, Any, Any]


def _index(trace: list[Step], pred: Callable[[Step], bool]) -> int:
    return next(i for i, t in enumerate(trace) if pred(t))


def test_fault_trace_follows_kernel_order() -> None:
    """The step order of a first fault, as in do_anonymous_page() and anon_vma_prepare():

    * anon_vma_prepare() (step 3 of do_anonymous_page) completes before
      pte_offset_map_lock() takes the PTL (step 5);
    * inside anon_vma_prepare(), anon_vma_alloc() initialises refcount and root before the
      root lock is taken, and vma->anon_vma is written with the root rwsem and
      mm->page_table_lock both held, before anon_vma_chain_link() (which inserts in the tree);
    * under the PTL: the pte is re-read (pte_none), then page_add_new_anon_rmap() sets
      _mapcount, page->mapping and page->index, and only then set_pte_at() publishes the pte,
      so an rmap walker that finds the pte finds a page with its mapping set.
    """
    out = clean([MMAP], [op("fault", 1, 0x12000)])
    trace = [t for t in out.result.trace if t[0] == 0]
    vma = vmas(out, 1)[0]
    av = anon_vma(out, 1)
    p = page(out, 1)
    mm = mm_of(out, 1)

    def fn_is(name: str) -> Callable[[Step], bool]:
        return lambda t: t[3] == name

    def event(fn: str | None, cls: type, **fields: Any) -> Callable[[Step], bool]:
        def pred(t: Step) -> bool:
            e = t[4]
            return (
                (fn is None or t[3] == fn)
                and type(e) is cls
                and all(
                    getattr(e, k) is v if k in ("obj", "lock") else getattr(e, k) == v
                    for k, v in fields.items()
                )
            )

        return pred

    pt = mm.tables[table_index(0x12000)]
    ptl = pt.ptl
    i_prepare = _index(trace, fn_is("anon_vma_prepare"))
    i_alloc_rc = _index(trace, event("anon_vma_alloc", ev.Store, obj=av, field="refcount"))
    i_alloc_root = _index(trace, event("anon_vma_alloc", ev.Store, obj=av, field="root"))
    i_root_lock = _index(trace, event(None, ev.Acquire, lock=av.rwsem))
    i_ptlock_mm = _index(trace, event("anon_vma_prepare", ev.Acquire, lock=mm.page_table_lock))
    i_set_av = _index(trace, event("anon_vma_prepare", ev.Store, obj=vma, field="anon_vma"))
    i_link = _index(trace, fn_is("anon_vma_chain_link"))
    i_insert = _index(trace, fn_is("anon_vma_interval_tree_insert"))
    i_ptunlock_mm = _index(trace, event("anon_vma_prepare", ev.Release, lock=mm.page_table_lock))
    i_root_unlock = _index(trace, event(None, ev.Release, lock=av.rwsem))
    i_ptl = _index(trace, event("do_anonymous_page", ev.Acquire, lock=ptl))
    i_recheck = _index(trace, event("do_anonymous_page", ev.Load, obj=pt, field="ptes"))
    i_rmap = _index(trace, fn_is("page_add_new_anon_rmap"))
    i_mapping = _index(trace, event("_page_set_anon_rmap", ev.Store, obj=p, field="mapping"))
    i_pgindex = _index(trace, event("_page_set_anon_rmap", ev.Store, obj=p, field="index"))
    i_set_pte = _index(trace, event("do_anonymous_page", ev.Store, field="ptes"))
    i_ptl_unlock = _index(trace, event("do_anonymous_page", ev.Release, lock=ptl))

    last_prepare = max(i for i, t in enumerate(trace) if t[3] == "anon_vma_prepare")
    assert i_prepare < i_alloc_rc < i_alloc_root < i_root_lock < i_ptlock_mm < i_set_av
    assert i_set_av < i_link < i_insert < i_ptunlock_mm < i_root_unlock
    assert last_prepare < i_root_unlock < i_ptl
    assert i_ptl < i_recheck < i_rmap < i_mapping < i_pgindex < i_set_pte < i_ptl_unlock
    assert trace[i_rmap][4] == ev.Store(p, "mapcount", 0)
    assert trace[i_set_pte][4] == ev.Store(pt, "ptes", Present(p, write=True, young=True), 0x12000)
