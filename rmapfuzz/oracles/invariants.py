"""Invariants of rmap-spec section 3, checked where rmap-spec 6.4 says.

* after a step: I8 (an anon_vma refcount below zero), I5 (a migration entry written for a page
  that is not locked);
* at the end of each migration (``migration-end``, before unlock_page): I5, no migration entry
  for the page is left anywhere;
* at a walk's start (``walk-begin``): the walked anon_vma is neither freed nor a new incarnation
  of page->mapping's slot (rmap_walk_anon(): "Users without mmap_sem are required to take a
  reference count to prevent the anon_vma disappearing");
* at quiescent points (after the setup, after the last task): I1/I3 (for swap ptes too: the
  page they will fault back in must find the vma), I4, I7, I8, I9, I10, I11, I13, the swap map
  (each slot's count is the number of swap ptes naming it, SWAP_HAS_CACHE iff a page is in the
  swap cache for it), and leaks (swap slots included) once every process has exited; and
  ``lru`` (not in rmap-spec): a page that is mapped or in the swap cache is on the LRU --
  nothing is in flight, so every isolation has been put back (kernel/vmscan.py).

I2 is the torn-chain oracle (torn.py); I6 and I14 are the engine's (use-after-free, deadlock,
unlock by a non-owner, sleeping in atomic context).  I12 (the 6.1+ reuse counters equal what
they count) is checked for a model that has them (``anon_vma_counters``, kernel/modern.py): at
every store that drives one below zero (the kernel's unsigned counters underflow there), and at
quiescent points.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import FindingError
from rmapfuzz.kernel.objects import (
    MM,
    PAGE_SHIFT,
    SWAP_HAS_CACHE,
    AnonVma,
    Migration,
    Page,
    Swap,
    SwapSlot,
    Vma,
)

_COUNTERS = ("num_children", "num_active_vmas")


def _fail(inv: str, message: str) -> FindingError:
    return FindingError(f"invariant-{inv}", message)


class InvariantOracle:
    #: the only events on_step looks at
    step_events = frozenset({ev.Rmw, ev.Store})

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    # ------------------------------------------------------------- per step

    def on_step(self, eng: Any, index: int, t: Any, e: Any, result: Any) -> None:
        cls = type(e)
        if cls is ev.Rmw:
            obj = e.obj
            if type(obj) is AnonVma and obj.refcount < 0:
                raise _fail(
                    "I8", f"{t.pending_fn}() drove {obj.short()}->refcount to {obj.refcount}"
                )
        elif cls is ev.Store and e.field in _COUNTERS and e.value < 0:
            raise _fail(
                "I12",
                f"{t.pending_fn}() drove {e.obj.short()}->{e.field} to {e.value}: the unsigned "
                f"counter underflows (the VM_WARN_ON/BUG_ON in unlink_anon_vmas())",
            )
        elif cls is ev.Store and type(e.value) is Migration:
            page = e.value.page
            if not page.lock.locked:
                raise FindingError(
                    "migration-entry-leak",
                    f"{t.pending_fn}() wrote a migration entry for {page.short()} at "
                    f"{e.key:#x} of {e.obj.mm.short()}, but {page.short()} is not locked: its "
                    f"migration is over, the entry will BUG in migration_entry_to_page()",
                )

    def on_mark(self, eng: Any, t: Any, mark: ev.Mark) -> None:
        if mark.kind == "walk-begin":
            walk = mark.data
            av, wpage = walk.anon_vma, walk.page
            if av.freed or (av is wpage.mapping and av.gen != wpage.mapping_gen):
                state = "freed" if av.freed else f"freed and reused as {av.short()}"
                raise FindingError(
                    "use-after-free",
                    f"{walk.fn}() of {wpage.short()} walks {av.short()}, which was {state}: "
                    f"nothing pinned page->mapping's anon_vma while {wpage.short()} was "
                    f"unmapped",
                    task=t.tid,
                )
        elif mark.kind == "migration-end":
            page: Page = mark.data
            for mm, addr, pte in self._ptes():
                if type(pte) is Migration and pte.page is page:
                    vma = self._vma_at(mm, addr)
                    where = vma.describe() if vma else "no vma"
                    raise FindingError(
                        "migration-entry-leak",
                        f"migration of {page.short()} is ending but a migration entry is left at "
                        f"{addr:#x} in mm#{mm.oid} ({where}): remove_migration_ptes() missed it; "
                        f"the next fault there hits BUG_ON(!PageLocked) in "
                        f"migration_entry_to_page()",
                    )

    # ------------------------------------------------------------ quiescent

    def on_quiescent(self, eng: Any) -> None:
        k = self.kernel
        mapcounts: dict[Page, int] = {}
        swaps: dict[SwapSlot, int] = {}
        for mm, addr, pte in self._ptes():
            if type(pte) is Swap:
                swaps[pte.slot] = swaps.get(pte.slot, 0) + 1
                if pte.slot.page is not None:
                    self._check_i1(mm, addr, pte.slot.page, pte)
                continue
            page = pte.page
            if type(pte) is Migration:
                raise _fail(
                    "I5",
                    f"a migration entry for {page.short()} outlived its migration "
                    f"at {addr:#x} in mm#{mm.oid}",
                )
            mapcounts[page] = mapcounts.get(page, 0) + 1
            self._check_i1(mm, addr, page)
        for page in k.pages:
            n = mapcounts.get(page, 0)
            if page.mapcount + 1 != n:
                raise _fail(
                    "I13", f"{page.short()}->_mapcount is {page.mapcount} but {n} ptes map it"
                )
            if (page.mapcount >= 0 or page.private is not None) and not page.lru:
                raise _fail(
                    "lru",
                    f"{page.short()} is {'mapped' if page.mapcount >= 0 else 'in the swap cache'}"
                    f" but not on the LRU: isolated and never put back",
                )
            if page.mapcount >= 0:
                av = page.mapping
                if av is None or av.freed or av.gen != page.mapping_gen:
                    raise _fail(
                        "I9",
                        f"{page.short()} is mapped but its anon_vma "
                        f"{av.short() if av else None} was freed or reused",
                    )
        self._check_swap_map(swaps)
        for vma in k.live_vmas():
            self._check_i10(vma)
        for mm in k.mms:
            if not mm.freed:
                self._check_i4(mm)
        for av in k.anon_vmas:
            self._check_anon_vma(av)
        if getattr(k, "anon_vma_counters", False):
            self._check_i12()
        if all(p.mm is None for p in k.procs.values()):
            self._check_leaks()

    # ---------------------------------------------------------------- checks

    def _check_i1(self, mm: MM, addr: int, page: Page, swap: Swap | None = None) -> None:
        how = f"swapped out ({swap!r}, in the swap cache)" if swap else "mapped"
        vma = self._vma_at(mm, addr)
        if vma is None:
            raise _fail(
                "I1",
                f"{page.short()} is {how} at {addr:#x} in mm#{mm.oid} outside any "
                f"vma (munmap or exit left the pte behind)",
            )
        av = page.mapping
        chain = [a.anon_vma for a in vma.anon_vma_chain]
        if av is None or av not in chain:
            raise _fail(
                "I1",
                f"{page.short()} is {how} at {addr:#x} by {vma.describe()} but "
                f"its anon_vma {av.short() if av else None} is not in that vma's chain: "
                f"rmap cannot find this mapping"
                + (" once it is faulted back in (page_add_anon_rmap() keeps it)" if swap else ""),
            )
        avc = next(a for a in vma.anon_vma_chain if a.anon_vma is av)
        if avc not in av.rb_root.nodes:
            raise _fail(
                "I1",
                f"{vma.describe()} maps {page.short()} but {avc.short()} is not in "
                f"{av.short()}'s tree",
            )
        expect = vma.vm_start + ((page.index - vma.vm_pgoff) << PAGE_SHIFT)
        if expect != addr:
            raise _fail(
                "I1",
                f"vma_address({page.short()}, {vma.describe()}) = {expect:#x} but "
                f"the page is mapped at {addr:#x}",
            )

    def _check_i4(self, mm: MM) -> None:
        by_av: dict[AnonVma, tuple[Vma, frozenset[AnonVma]]] = {}
        for vma in mm.mmap:
            if vma.anon_vma is None:
                continue
            chain = frozenset(a.anon_vma for a in vma.anon_vma_chain)
            other = by_av.setdefault(vma.anon_vma, (vma, chain))
            if other[1] != chain:
                raise _fail(
                    "I4",
                    f"{other[0].short()} and {vma.short()} share "
                    f"{vma.anon_vma.short()} but have different anon_vma chains",
                )

    def _check_i10(self, vma: Vma) -> None:
        chain = vma.anon_vma_chain
        if vma.anon_vma is not None and vma.anon_vma not in [a.anon_vma for a in chain]:
            raise _fail(
                "I10", f"{vma.describe()}->anon_vma {vma.anon_vma.short()} is not in its own chain"
            )
        roots = set()
        for avc in chain:
            if avc.freed or avc.vma is not vma:
                raise _fail("I10", f"{vma.short()}'s chain holds a freed or foreign {avc.short()}")
            if avc not in avc.anon_vma.rb_root.nodes:
                raise _fail(
                    "I10", f"{avc.short()} of {vma.short()} is not in {avc.anon_vma.short()}'s tree"
                )
            roots.add(avc.anon_vma.root)
        if len(roots) > 1:
            raise _fail("I10", f"{vma.short()}'s chain spans several roots")
        if chain and chain[-1].anon_vma.root is not chain[-1].anon_vma:
            raise _fail("I10", f"{vma.short()}'s chain does not end at its root")

    def _check_anon_vma(self, av: AnonVma) -> None:
        k = self.kernel
        nodes = av.rb_root.nodes
        if av.freed:
            if nodes or av.refcount:
                raise _fail(
                    "I8",
                    f"{av.short()} was freed with refcount {av.refcount} and "
                    f"{len(nodes)} avcs in its tree",
                )
            return
        if av.root is None or av.root.freed or av.root.root is not av.root:
            raise _fail(
                "I7",
                f"{av.short()}'s root {av.root.short() if av.root else None} is not a live root",
            )
        children = sum(1 for o in k.live_anon_vmas() if o is not av and o.root is av)
        expect = (1 if nodes else 0) + children
        if av.refcount != expect:
            raise _fail(
                "I8",
                f"{av.short()}->refcount is {av.refcount}, expected {expect} "
                f"({'1 for its tree + ' if nodes else ''}{children} children pinning it)",
            )
        if av.rb_root.busy is not None:
            raise _fail("I11", f"{av.short()}'s tree is left mid-update")
        for n in nodes:
            vma = n.vma
            if n.freed or vma is None or vma.freed:
                raise _fail("I11", f"{av.short()}'s tree holds freed {n.short()}")
            key = (vma.vm_pgoff, vma.vm_pgoff + ((vma.vm_end - vma.vm_start) >> PAGE_SHIFT) - 1)
            if n.key != key:
                raise _fail(
                    "I11",
                    f"{n.short()} in {av.short()}'s tree has key "
                    f"{n.key[0]:#x}-{n.key[1]:#x} but {vma.describe()} needs "
                    f"{key[0]:#x}-{key[1]:#x}: geometry changed without pre/post update",
                )

    def _check_swap_map(self, swaps: dict[SwapSlot, int]) -> None:
        for slot in self.kernel.swap_slots:
            n = swaps.get(slot, 0)
            if slot.count & ~SWAP_HAS_CACHE != n:
                raise FindingError(
                    "swap-map",
                    f"swap_map of {slot.short()} counts {slot.count & ~SWAP_HAS_CACHE} "
                    f"references but {n} swap ptes name it",
                )
            page = slot.page
            if bool(slot.count & SWAP_HAS_CACHE) != (page is not None) or (
                page is not None and page.private is not slot
            ):
                raise FindingError(
                    "swap-map",
                    f"{slot.short()}: SWAP_HAS_CACHE is "
                    f"{'set' if slot.count & SWAP_HAS_CACHE else 'clear'} but the swap cache "
                    f"holds {page.short() if page else 'no page'}"
                    + (f" whose page_private is {page.private!r}" if page else ""),
                )

    def _check_i12(self) -> None:
        """rmap-spec I12 (6.1+): num_children(A) counts the anon_vmas in use whose ->parent
        is A (a root is its own parent), num_active_vmas(A) the vmas whose ->anon_vma is A.
        "In use" is a non-empty tree: unlink_anon_vmas() drops the parent's count when it
        empties a child, which may outlive that in a pin."""
        k = self.kernel
        live = k.live_anon_vmas()
        children: dict[AnonVma, int] = dict.fromkeys(live, 0)
        for b in live:
            if b.rb_root.nodes and b.parent in children:
                children[b.parent] += 1
        active: dict[AnonVma, int] = dict.fromkeys(live, 0)
        for vma in k.live_vmas():
            if vma.anon_vma in active:
                active[vma.anon_vma] += 1
        for a in live:
            for field, want, what in (
                ("num_children", children[a], "anon_vmas in use with ->parent"),
                ("num_active_vmas", active[a], "vmas with ->anon_vma"),
            ):
                have = getattr(a, field)
                if have != want:
                    raise _fail(
                        "I12",
                        f"{a.short()}->{field} is {have} but {want} {what} == {a.short()}",
                    )

    def _check_leaks(self) -> None:
        k = self.kernel
        used = [s for s in k.swap_slots if s.count & ~SWAP_HAS_CACHE]
        if used:
            raise FindingError(
                "leak",
                f"every process has exited but swap slot(s) "
                f"{', '.join(s.short() for s in used)} are still referenced",
            )
        for what, objs in (
            ("vma", k.vmas),
            ("anon_vma_chain", k.avcs),
            ("anon_vma", k.anon_vmas),
            ("mm", k.mms),
        ):
            live = [o for o in objs if not o.freed]
            if live:
                raise FindingError(
                    "leak",
                    f"every process has exited but {len(live)} {what}(s) "
                    f"are still allocated: {', '.join(o.short() for o in live[:4])}",
                )

    # --------------------------------------------------------------- helpers

    def _ptes(self) -> Iterator[tuple[MM, int, Any]]:
        for mm in self.kernel.mms:
            if mm.freed:
                continue
            for pt in mm.tables.values():
                for addr, pte in pt.ptes.items():
                    if pte is not None:
                        yield mm, addr, pte

    @staticmethod
    def _vma_at(mm: MM, addr: int) -> Vma | None:
        for vma in mm.mmap:
            if vma.vm_start <= addr < vma.vm_end:
                return vma
        return None
