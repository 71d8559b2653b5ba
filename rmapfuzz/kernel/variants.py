"""Variants: the mainline model and the locking rules proposed against it.

A variant is a subclass of :class:`Mainline` that overrides the modelled kernel functions a
patch touches, and says what it expects (``safe`` or ``buggy``).  A user's variant lives in a
file of their own and is named on the command line as ``path/to/file.py:ClassName`` or
``package.module:ClassName``.

A variant may also say which operations its patch touches, as ``focus`` (names of operations,
plus ``fault_below``, a fault under a stack's vm_start): the program generator then weights
those operations in its menus and builds what they need in the setup more often (see
rmapfuzz/explore/generate.py).  Focus only weights what the fuzzer draws, it never forces a
scenario; mainline's is empty, which changes nothing::

    class MyPatch(Mainline):
        focus = ("mremap", "migrate")

A race that needs more things at once than the defaults give (2 CPUs, at most 3 tasks) may say
so with ``cpus`` and ``max_tasks``: the explorers then generate for that many (``--cpus``
still overrides ``cpus``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.errors import UsageError
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.migrate import EAGAIN
from rmapfuzz.kernel.modern import ModernRmap
from rmapfuzz.kernel.objects import VM_GROWSDOWN, AnonVma, Migration, Page, Present, Vma
from rmapfuzz.kernel.rmap import ENOMEM, SWAP_AGAIN, TTU_MIGRATION, RmapOne
from rmapfuzz.kernel.syscalls import Syscalls


class Mainline(Syscalls):
    """v3.7 with the 3.8 rwsem (walkers take the root anon_vma rwsem for read) and the later
    fixes of this area: B18 (in rmap.py) and stack growth under the mmap write lock (here).

    The stack fix is in mainline because rmapfuzz found the race it closes: in 3.7 a page
    fault's linear_page_index() reads vm_start and vm_pgoff while another thread's
    expand_downwards(), under mmap_sem read too, rewrites them, so the new page gets a wrong
    ->index and rmap can no longer find it (variant stack-growth-under-read)."""

    name = "mainline"
    summary = (
        "v3.7 + the 3.8 rwsem (rmap walkers take the root anon_vma rwsem for read) + later fixes"
    )
    expected = "safe"
    #: the upstream commit(s) the variant reverts (or, for a proposal, where it was posted)
    commit = ""
    knobs: dict[str, Any] = {}
    #: the operations the patch touches: weighted by the program generator, never forced
    focus: tuple[str, ...] = ()
    #: the simulated CPUs and the most tasks the generator uses for this variant (None: the
    #: defaults, 2 and 3)
    cpus: int | None = None
    max_tasks: int | None = None
    #: vma_adjust() imports case 6's anon_vma before removing anything, as __vma_adjust()
    #: does since 4.9 (variant adjust-enomem-uaf keeps 3.7's order)
    import_from_next_next = True

    def expand_stack(self, vma: Vma, address: int) -> Gen:
        """mm/mmap.c expand_stack() as fixed in 6.5 ("mm: always expand the stack with the mmap
        write lock held", Linus Torvalds, 2023): drop mmap_sem, take it for write, look the vma
        up again and grow it, then back to read (mmap_write_downgrade, modelled as release and
        re-acquire) and look it up once more.  Returns the vma covering address, or None."""
        mm = vma.vm_mm
        yield ev.Release(mm.mmap_sem, "r")
        yield ev.Acquire(mm.mmap_sem, "w")
        vma = yield from self.find_vma(mm, address)
        if vma is not None and vma.vm_flags & VM_GROWSDOWN and vma.vm_start > address:
            yield from self.expand_downwards(vma, address)
        yield ev.Release(mm.mmap_sem, "w")
        yield ev.Acquire(mm.mmap_sem, "r")
        vma = yield from self.find_vma(mm, address)
        if vma is None or (yield ev.Load(vma, "vm_start")) > address:
            return None
        return vma

    def check_stack_guard_page(self, vma: Vma, address: int) -> Gen:
        """mm/memory.c check_stack_guard_page() is gone since 4.12 (1be7107fbe18, the stack
        guard gap): a fault at vm_start no longer grows the stack under mmap_sem read."""
        return 0
        yield  # a generator, like every model function


class StackGrowthUnderRead(Mainline):
    """3.7's stack growth: expand_stack() and check_stack_guard_page() run expand_downwards()
    with mmap_sem held only for read, concurrently with page faults of other threads."""

    name = "stack-growth-under-read"
    focus = ("fault", "fault_below")
    summary = "3.7 stack growth under mmap_sem read vs a concurrent fault's linear_page_index()"
    expected = "buggy"
    commit = "reverts 8d7071af8907 (6.5, mm: always expand the stack with the mmap write lock held)"

    def expand_stack(self, vma: Vma, address: int) -> Gen:
        return (yield from Syscalls.expand_stack(self, vma, address))

    def check_stack_guard_page(self, vma: Vma, address: int) -> Gen:
        return (yield from Syscalls.check_stack_guard_page(self, vma, address))


class LocklessWalk(Mainline):
    """Ingo Molnar's RFC of 2012-12-01, "mm/migration: Don't lock anon vmas in
    rmap_walk_anon()", with its follow-up for try_to_unmap(): both migration walkers iterate the
    anon_vma tree without the anon_vma lock (the unlock stays balanced)."""

    name = "lockless-walk"
    summary = "the 2012 RFC: rmap_walk_anon()/try_to_unmap_anon() walk without the anon_vma lock"
    expected = "buggy"
    commit = "RFC posted 2012-11-30 (not merged; 3.8 took 5a505085f043 + 4fc3f1d66b1e instead)"

    def rmap_walk_anon(self, page: Page, rmap_one: RmapOne, arg: Any) -> Gen:
        """RFC: "since all callers are holding the mmap_sem no vma can go away from under us"."""
        anon_vma = yield from self.page_anon_vma(page)
        if anon_vma is None:
            return SWAP_AGAIN
        pgoff = yield ev.Load(page, "index")
        return (
            yield from self.anon_vma_interval_tree_foreach(
                "rmap_walk_anon", page, anon_vma, pgoff, rmap_one, arg
            )
        )

    def try_to_unmap_anon(self, page: Page, flags: str) -> Gen:
        """RFC follow-up: page_lock_anon_vma() returns the anon_vma unlocked for TTU_MIGRATION;
        the walk runs under RCU only (no reference, no lock)."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return SWAP_AGAIN
        yield ev.RCU_READ_UNLOCK
        pgoff = yield ev.Load(page, "index")
        return (
            yield from self.anon_vma_interval_tree_foreach(
                "try_to_unmap_anon",
                page,
                anon_vma,
                pgoff,
                self.try_to_unmap_one_check_mapped,
                flags,
            )
        )


class PageAnonVmaLock(Mainline):
    """Walkers lock the page's own anon_vma instead of the root: the locking of 2.6.34, fixed in
    2.6.35 by 012f18004da3 "mm: always lock the root (oldest) anon_vma" (Rik van Riel)."""

    name = "page-anon-vma-lock"
    summary = "walkers lock page->mapping's own anon_vma rwsem, not the root's (pre-012f18004da3)"
    expected = "buggy"
    commit = "reverts 012f18004da3 (2.6.35, mm: always lock the root (oldest) anon_vma)"

    def anon_vma_lock_read(self, anon_vma: AnonVma) -> Gen:
        yield ev.Acquire(anon_vma.rwsem, "r")

    def anon_vma_unlock_read(self, anon_vma: AnonVma) -> Gen:
        yield ev.Release(anon_vma.rwsem, "r")

    def page_lock_anon_vma_read(self, page: Page) -> Gen:
        """page_lock_anon_vma() of 2.6.34: trylock the page's anon_vma itself."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.TryAcquire(anon_vma.rwsem, "r")):
            if (yield ev.Load(page, "mapcount")) < 0:
                yield ev.Release(anon_vma.rwsem, "r")
                anon_vma = None
            yield ev.RCU_READ_UNLOCK
            return anon_vma
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            yield from self.put_anon_vma(anon_vma)
            return None
        yield ev.RCU_READ_UNLOCK
        yield from self.anon_vma_lock_read(anon_vma)
        if (yield self.atomic_dec_and_test(anon_vma, "refcount")):
            yield from self.anon_vma_unlock_read(anon_vma)
            yield from self._put_anon_vma(anon_vma)
            return None
        return anon_vma


class Linus2012(Mainline):
    """Linus Torvalds, 1 Dec 2012: skip the anon_vma lock when "we hold the page table lock, we
    see that vma->anon_vma == vma->anon_vma->root, we see that vma->anon_vma->refcount == 1".

    Both migration walks first try that special case: find the vma (the faulting one if
    ``use_fault_address`` and the migration comes from a fault, else the first vma of the
    page's anon_vma tree, read without a lock -- looked up only if the conditions hold for
    page->mapping), take the PTL of the pte, check the conditions under it and act on that one
    pte only.  Knobs (rmap-spec 5.5):

    * ``require_mmap_sem``: only when the migrator holds mmap_sem of vma->vm_mm;
    * ``recheck_each_phase``: decide in each walk, or once for the whole migration;
    * ``own_pins_counted``: ``refcount == 1 + our page_get_anon_vma() pin`` (else ``== 1``,
      which migration's own pin makes vacuous);
    * ``use_fault_address``: act at the fault address instead of vma_address();
    * ``stack_growth_under_read``: expand_downwards() under mmap_sem read (3.7) or write (6.5+).
    """

    name = "linus-2012"
    summary = (
        "Linus's 2012 special case: no anon_vma lock if PTL held, anon_vma is root, refcount 1"
    )
    commit = "proposed on LKML 2012-12-01 (never implemented)"
    knobs: dict[str, Any] = {
        "require_mmap_sem": False,
        "recheck_each_phase": False,
        "own_pins_counted": True,
        "use_fault_address": False,
        "stack_growth_under_read": True,
    }

    @property
    def expected(self) -> str:  # type: ignore[override]
        k = self.knob
        if not k["own_pins_counted"]:
            return "safe"  # CE0: migration's own pin keeps the fast path from ever firing
        if not k["require_mmap_sem"]:
            return "buggy"  # CE1 (split) and CE3 (fork between the phases)
        if not k["use_fault_address"] and k["stack_growth_under_read"]:
            # CE2: expand_downwards() under mmap_sem read tears the lookup's vma_address().
            # With C2/C3 tested first, the unlocked lookup only ever meets the walker's own
            # mm (refcount 1 + pin: no forked anon_vma holds the root), which mmap_sem guards
            # once the stack grows under the write lock (docs/linus-2012.md)
            return "buggy"
        return "safe"

    def _root_refcount_one(self, av: AnonVma) -> Gen:
        """C2 ``anon_vma == anon_vma->root`` and C3 ``anon_vma->refcount == 1`` (plus the
        migration's own pin if ``own_pins_counted``)."""
        if (yield ev.Load(av, "root")) is not av:
            return False
        pins = 1 if self.knob["own_pins_counted"] else 0
        return (yield ev.Load(av, "refcount")) == 1 + pins

    def _exclusive_pte(self, page: Page, phase: int, act: Any) -> Gen:
        """The special case: True if it handled the page's one pte without the anon_vma lock.

        Without a fault address the vma has to be found in the page's anon_vma tree, without
        the lock; C2 and C3 are tested on page->mapping before that lookup (the rule says
        when the lock may be skipped; a walker for which the conditions fail takes the lock
        and never looks), and again under the PTL on the vma's anon_vma."""
        task = yield ev.CURRENT
        ctx = self.migration_context.get(task.tid)
        if ctx is None:
            return False
        k = self.knob
        if k["require_mmap_sem"] and ctx.mm is None:
            return False
        if not k["recheck_each_phase"] and phase == 2:
            if not ctx.decision:
                return False
            vma, address = ctx.decision
            mm = yield ev.Load(vma, "vm_mm")
            pt = yield from self.pte_lockptr(mm, address)
            yield ev.Acquire(pt.ptl)
            yield from act(pt, vma, address)
            yield ev.Release(pt.ptl)
            return True
        if k["use_fault_address"] and ctx.vma is not None:
            vma, address = ctx.vma, ctx.address
        else:
            anon_vma = yield ev.Load(page, "mapping")
            if anon_vma is None:
                return False
            # C2 and C3 first, on page->mapping (pinned by the migration's
            # page_get_anon_vma()): when they fail the rule is not taken, and the unlocked
            # lookup below must not run either
            if not (yield from self._root_refcount_one(anon_vma)):
                return False
            pgoff = yield ev.Load(page, "index")
            avc = yield from self.anon_vma_interval_tree_iter_first(anon_vma.rb_root, pgoff)
            if avc is None:
                return False
            vma = yield ev.Load(avc, "vma")
            address = yield from self.vma_address(page, vma)
        mm = yield ev.Load(vma, "vm_mm")
        if k["require_mmap_sem"] and ctx.mm is not mm:
            ctx.decision = None
            return False
        pt = yield from self.pte_lockptr(mm, address)
        if pt is None:
            return False
        yield ev.Acquire(pt.ptl)
        av = yield ev.Load(vma, "anon_vma")
        ok = av is not None and (yield ev.Load(page, "mapping")) is av
        if ok:
            ok = yield from self._root_refcount_one(av)
        if ok:
            yield from act(pt, vma, address)
        yield ev.Release(pt.ptl)
        ctx.decision = (vma, address) if ok else None
        return ok

    def try_to_unmap_anon(self, page: Page, flags: str) -> Gen:
        def unmap(pt: Any, vma: Vma, address: int) -> Gen:
            pte = yield ev.Load(pt, "ptes", address)
            if type(pte) is Present and pte.page is page:
                yield ev.Store(pt, "ptes", None, address)
                yield ev.Store(pt, "ptes", Migration(page, pte.write), address)
                yield from self.page_remove_rmap(page)

        if (yield from self._exclusive_pte(page, 1, unmap)):
            return SWAP_AGAIN
        return (yield from super().try_to_unmap_anon(page, flags))

    def rmap_walk_anon(self, page: Page, rmap_one: RmapOne, arg: Any) -> Gen:
        if rmap_one != self.remove_migration_pte:
            return (yield from super().rmap_walk_anon(page, rmap_one, arg))
        old = arg

        def restore(pt: Any, vma: Vma, address: int) -> Gen:
            pte = yield ev.Load(pt, "ptes", address)
            if type(pte) is Migration and pte.page is old:
                yield ev.Store(pt, "ptes", Present(page, pte.write, False), address)
                yield from self.page_add_anon_rmap(page, vma, address)

        if (yield from self._exclusive_pte(page, 2, restore)):
            return SWAP_AGAIN
        return (yield from super().rmap_walk_anon(page, rmap_one, arg))

    def expand_stack(self, vma: Vma, address: int) -> Gen:
        """``stack_growth_under_read``: 3.7's expand_stack(), else mainline's (6.5)."""
        if self.knob["stack_growth_under_read"]:
            return (yield from Syscalls.expand_stack(self, vma, address))
        return (yield from super().expand_stack(vma, address))

    def check_stack_guard_page(self, vma: Vma, address: int) -> Gen:
        if self.knob["stack_growth_under_read"]:
            return (yield from Syscalls.check_stack_guard_page(self, vma, address))
        return (yield from super().check_stack_guard_page(vma, address))


# ----------------------------------------------------------- historical bugs (rmap-spec 4)


class PrepareNolock(Mainline):
    """B1: anon_vma_prepare() before d9d332e0874f (2008) locked only a *reused* anon_vma; a
    newly allocated one was linked (list_add, here the interval-tree insert) without its lock.

    "We protect against the anon_vma being destroyed by having the SLAB marked as
    SLAB_DESTROY_BY_RCU, so the RCU lookup can depend on the allocation not being destroyed -
    but it might still be free'd and re-allocated here to a new vma."  In the 3.7 model an RCU
    reader of the recycled slot backs off before it reads the tree (the page_mapped() recheck
    of f18194275c39 came later), so the consequence is not reachable here: the variant asks for
    the lockset check (I15) to report the unlocked tree write as a finding."""

    name = "prepare-nolock"
    summary = "B1: anon_vma_prepare() links a newly allocated anon_vma without its lock"
    expected = "buggy"
    commit = (
        "reverts d9d332e0874f (2.6.27, anon_vma_prepare: properly lock even newly allocated "
        "entries)"
    )
    lockset_findings = True

    def anon_vma_prepare(self, vma: Vma) -> Gen:
        """mm/rmap.c anon_vma_prepare() of 2.6.26: ``locked`` is NULL for a new anon_vma."""
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is not None:
            return 0
        mm = vma.vm_mm
        avc = yield from self.anon_vma_chain_alloc()
        if avc is None:
            return ENOMEM
        anon_vma = yield from self.find_mergeable_anon_vma(vma)
        allocated = locked = None
        if anon_vma is None:
            anon_vma = yield from self.anon_vma_alloc()
            if anon_vma is None:  # "if (unlikely(!anon_vma)) return -ENOMEM;"
                yield from self.anon_vma_chain_free(avc)
                return ENOMEM
            allocated = anon_vma
        else:
            locked = anon_vma
            yield from self.anon_vma_lock_write(locked)
        yield ev.Acquire(mm.page_table_lock)
        if (yield ev.Load(vma, "anon_vma")) is None:
            yield ev.Store(vma, "anon_vma", anon_vma)
            yield from self.anon_vma_chain_link(vma, avc, anon_vma)
            allocated = None
            avc = None
        yield ev.Release(mm.page_table_lock)
        if locked is not None:
            yield from self.anon_vma_unlock_write(locked)
        if allocated is not None:
            yield from self.put_anon_vma(allocated)
        if avc is not None:
            yield from self.anon_vma_chain_free(avc)
        return 0


class ReuseNonsingular(Mainline):
    """B3: find_mergeable_anon_vma() reuses a neighbour's anon_vma whatever its chain, as before
    d0e9fe1758f2 (2.6.34-rc): a vma of a forked child then shares its anon_vma with a vma that
    is not in its parents' trees, and merging the two drops the inherited chain (I1, I4)."""

    name = "reuse-nonsingular"
    summary = "B3: anon_vma_prepare() reuses a neighbour's anon_vma even if its chain is longer"
    expected = "buggy"
    commit = (
        "reverts d0e9fe1758f2 (2.6.34, Simplify and comment on anon_vma re-use for "
        "anon_vma_prepare())"
    )

    def reusable_anon_vma(self, old: Vma, a: Vma, b: Vma) -> Gen:
        """Without the list_is_singular(&old->anon_vma_chain) test."""
        if (yield from self.anon_vma_compatible(a, b)):
            return (yield ev.Load(old, "anon_vma"))
        return None


class PerAnonVmaLockAdjust(PageAnonVmaLock):
    """B4, the modifier half (2.6.34, before 012f18004da3 "mm: always lock the root (oldest)
    anon_vma"): anon_vma_lock() takes the anon_vma's own lock, so vma_adjust() and
    expand_downwards() (and anon_vma_prepare/fork) lock vma->anon_vma, not the root; the
    walkers lock the page's anon_vma (the half of :class:`PageAnonVmaLock`).  A vma of a child
    is in its parent's trees too, whose lock nobody then takes while they are rebalanced."""

    name = "per-anon-vma-lock-adjust"
    focus = ("mprotect", "munmap")
    summary = "B4: vma_adjust()/expand_downwards() lock vma->anon_vma itself, walkers the page's"
    expected = "buggy"
    commit = "reverts 012f18004da3 (2.6.35, mm: always lock the root (oldest) anon_vma)"

    def anon_vma_lock_write(self, anon_vma: AnonVma) -> Gen:
        """include/linux/rmap.h anon_vma_lock() of 2.6.34: spin_lock(&anon_vma->lock)."""
        yield ev.Acquire(anon_vma.rwsem, "w")

    def anon_vma_unlock_write(self, anon_vma: AnonVma) -> Gen:
        yield ev.Release(anon_vma.rwsem, "w")


class PlaNoRecheck(Mainline):
    """B7: page_lock_anon_vma() before f18194275c39 (2.6.36-rc) succeeded as soon as it had the
    lock, without checking page_mapped() again: the anon_vma may meanwhile have been freed and
    reused by anon_vma_prepare() or anon_vma_fork(), which redirect its ->root, and
    page_unlock_anon_vma() then releases another root's lock ("kbuild tests hang with
    anon_vma_prepare() spinning on a newly allocated anon_vma's lock").  Transposed to the rwsem:
    the trylock fast path returns without the recheck; the sleeping path is 3.7's."""

    name = "pla-no-recheck"
    focus = ("reclaim", "exit", "fork", "fault")
    summary = "B7: page_lock_anon_vma_read() trusts its trylock without rechecking page_mapped()"
    expected = "buggy"
    commit = "reverts f18194275c39 (2.6.36, mm: fix hang on anon_vma->root->lock)"

    def page_lock_anon_vma_read(self, page: Page) -> Gen:
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        root_anon_vma = yield ev.Load(anon_vma, "root")
        if (yield ev.TryAcquire(root_anon_vma.rwsem, "r")):
            yield ev.RCU_READ_UNLOCK
            return anon_vma
        return (yield from self._page_lock_anon_vma_slow(page, anon_vma))

    def _page_lock_anon_vma_slow(self, page: Page, anon_vma: AnonVma) -> Gen:
        """The sleeping half of 3.7's page_lock_anon_vma_read(), entered under RCU."""
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            yield from self.put_anon_vma(anon_vma)
            return None
        yield ev.RCU_READ_UNLOCK
        yield from self.anon_vma_lock_read(anon_vma)
        if (yield self.atomic_dec_and_test(anon_vma, "refcount")):
            yield from self.anon_vma_unlock_read(anon_vma)
            yield from self._put_anon_vma(anon_vma)
            return None
        return anon_vma


class PlaRefcountCheck(PlaNoRecheck):
    """B8: page_lock_anon_vma() of 3.0-rc (the mutex conversion) validated its trylock by
    ``atomic_read(&anon_vma->refcount) != 0`` instead of page_mapped(), and did not save the
    root it locked: "a racing task in anon_vma_alloc() has just reallocated the struct
    anon_vma, set refcount to 1, and is about to reset its anon_vma->root"."""

    name = "pla-refcount-check"
    # three things at once: the walker inside its RCU section, an exit freeing the anon_vma
    # and a fork taking its slot.  On two CPUs one of the other two shares the walker's CPU
    # and cannot run while the RCU section lasts.
    cpus = 4
    max_tasks = 4
    summary = "B8: page_lock_anon_vma_read() validates its trylock by a nonzero refcount"
    expected = "buggy"
    commit = "reverts eee0f252c653 (3.0, mm: fix page_lock_anon_vma leaving mutex locked)"

    def page_lock_anon_vma_read(self, page: Page) -> Gen:
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        root_anon_vma = yield ev.Load(anon_vma, "root")
        if (yield ev.TryAcquire(root_anon_vma.rwsem, "r")):
            # "If we observe a !0 refcount, then holding the lock ensures the anon_vma will
            # not go away, see __put_anon_vma()."
            if not (yield ev.Load(anon_vma, "refcount")):
                yield from self.anon_vma_unlock_read(anon_vma)  # re-reads ->root
                anon_vma = None
            yield ev.RCU_READ_UNLOCK
            return anon_vma
        return (yield from self._page_lock_anon_vma_slow(page, anon_vma))


class RfcUnbalancedUnlock(LocklessWalk):
    """B11, the try_to_unmap() half of Ingo Molnar's RFC as posted: page_lock_anon_vma(page,
    flags) hands the anon_vma back *unlocked* for TTU_MIGRATION, but try_to_unmap_anon() still
    ends with page_unlock_anon_vma(), releasing a lock the task never took (rmap-spec 4, B11;
    the rmap_walk_anon() half is :class:`LocklessWalk`'s)."""

    name = "rfc-unbalanced-unlock"
    summary = "B11: the 2012 RFC's try_to_unmap_anon() unlocks an anon_vma it never locked"
    expected = "buggy"
    commit = (
        "RFC posted 2012-11-30 (mm/migration: Remove anon vma locking from try_to_unmap() "
        "use; not merged)"
    )

    def try_to_unmap_anon(self, page: Page, flags: str) -> Gen:
        """try_to_unmap_anon() with the RFC's page_lock_anon_vma(page, TTU_MIGRATION): the
        anon_vma under RCU only, the walk, then page_unlock_anon_vma() as before."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return SWAP_AGAIN
        yield ev.RCU_READ_UNLOCK
        pgoff = yield ev.Load(page, "index")
        ret = yield from self.anon_vma_interval_tree_foreach(
            "try_to_unmap_anon", page, anon_vma, pgoff, self.try_to_unmap_one_check_mapped, flags
        )
        yield from self.page_unlock_anon_vma_read(anon_vma)
        return ret


class PutInsideRcu(Mainline):
    """B18: 3.7's page_get_anon_vma() and page_lock_anon_vma_read() drop a reference they took
    under RCU with put_anon_vma() *before* rcu_read_unlock(); the last put reaches
    anon_vma_free(), whose lock dance sleeps on the root rwsem when someone holds it ("BUG:
    sleeping function called from invalid context ... __put_anon_vma page_get_anon_vma
    migrate_pages compact_zone", Trinity, 2014)."""

    name = "put-inside-rcu"
    focus = ("migrate", "reclaim", "exit")
    summary = "B18: put_anon_vma() inside the RCU read section of page_get_anon_vma()"
    expected = "buggy"
    commit = "reverts 7f39dda9d86f (3.16, mm: fix sleeping function warning from __put_anon_vma)"

    def page_get_anon_vma(self, page: Page) -> Gen:
        """mm/rmap.c page_get_anon_vma() of v3.7."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.Load(page, "mapcount")) < 0:
            yield from self.put_anon_vma(anon_vma)
            anon_vma = None
        yield ev.RCU_READ_UNLOCK
        return anon_vma

    def page_lock_anon_vma_read(self, page: Page) -> Gen:
        """mm/rmap.c page_lock_anon_vma_read() of v3.8 (3.7's page_lock_anon_vma with the
        rwsem): the put of the !page_mapped() case before rcu_read_unlock()."""
        yield ev.RCU_READ_LOCK
        anon_vma = yield ev.Load(page, "mapping")
        if anon_vma is None or (yield ev.Load(page, "mapcount")) < 0:
            yield ev.RCU_READ_UNLOCK
            return None
        root_anon_vma = yield ev.Load(anon_vma, "root")
        if (yield ev.TryAcquire(root_anon_vma.rwsem, "r")):
            if (yield ev.Load(page, "mapcount")) < 0:
                yield ev.Release(root_anon_vma.rwsem, "r")
                anon_vma = None
            yield ev.RCU_READ_UNLOCK
            return anon_vma
        if not (yield self.atomic_inc_not_zero(anon_vma, "refcount")):
            yield ev.RCU_READ_UNLOCK
            return None
        if (yield ev.Load(page, "mapcount")) < 0:
            yield from self.put_anon_vma(anon_vma)
            yield ev.RCU_READ_UNLOCK
            return None
        yield ev.RCU_READ_UNLOCK
        yield from self.anon_vma_lock_read(anon_vma)
        if (yield self.atomic_dec_and_test(anon_vma, "refcount")):
            yield from self.anon_vma_unlock_read(anon_vma)
            yield from self._put_anon_vma(anon_vma)
            return None
        return anon_vma


class AdjustEnomemUaf(Mainline):
    """3.7's vma_adjust() imports the anon_vma of mprotect case 6 in its second pass, after
    the middle vma was unlinked and freed; if that anon_vma_clone() fails (-ENOMEM),
    vma_merge() returns NULL and mprotect_fixup() carries on with the freed vma (found by
    rmapfuzz with fail_nth; fixed by 4.9's __vma_adjust(), which imports from
    next->vm_next in the first pass).  Not built in: the random explorer needs three
    specific operations in one task to reach it; tests/kernel/test_failslab.py replays it,
    ``--variant rmapfuzz.kernel.variants:AdjustEnomemUaf`` runs it."""

    name = "adjust-enomem-uaf"
    summary = "3.7 vma_adjust(): case-6 import fails after next was freed -> mprotect UAF"
    expected = "buggy"
    commit = (
        "reverts the case-6 import of 4.9's __vma_adjust() (Andrea Arcangeli's 2016 "
        "vma_merge/vma_adjust rework; commit id not verified)"
    )
    import_from_next_next = False


class Modern(ModernRmap, Mainline):
    """The modern profile: mainline (3.7 + 3.8 rwsem + later fixes) with anon_vma reuse at
    fork (7a3ef208e662, 4.0) counted by the 6.1+ num_children/num_active_vmas
    (2555283eb40d), and both later fixes of the reuse: b800c91a0517 and 3fe89b3e2a7b
    (kernel/modern.py).  Invariant I12 is checked for it and its subclasses."""

    name = "modern"
    summary = "mainline + 4.0 anon_vma reuse at fork with the 6.1 counters (and their fixes)"
    expected = "safe"


class ReuseCloneFailKeepAnon(Modern):
    """B13 (Leon Yu, 2015): anon_vma_clone()'s enomem_failure unlinks dst with
    dst->anon_vma still set, so unlink_anon_vmas() decrements num_active_vmas (degree in 4.0)
    of an anon_vma whose count the failed clone never incremented: "kernel BUG at
    mm/rmap.c:399!" once it underflows."""

    name = "reuse-clone-fail-keep-anon"
    summary = "B13: anon_vma_clone() -ENOMEM keeps dst->anon_vma -> num_active_vmas underflow"
    expected = "buggy"
    commit = (
        "reverts 3fe89b3e2a7b (4.0, mm: fix anon_vma->degree underflow in anon_vma endless "
        "growing prevention)"
    )

    def anon_vma_clone_enomem_failure(self, dst: Vma) -> Gen:
        """enomem_failure before 3fe89b3e2a7b: unlink_anon_vmas(dst) only."""
        yield from self.unlink_anon_vmas(dst)
        return ENOMEM


class ReuseAdjustOverride(Modern):
    """B13 (Konstantin Khlebnikov, 2015): vma_adjust() calls anon_vma_clone() for the
    importer first and sets importer->anon_vma afterwards; the clone counted (or reused)
    another anon_vma, or none at all, so the final unlink_anon_vmas() decrements the wrong
    anon_vma's count ("decrements degree for wrong anon_vma")."""

    name = "reuse-adjust-override"
    summary = "B13: vma_adjust() sets ->anon_vma after anon_vma_clone() -> wrong counter"
    expected = "buggy"
    commit = (
        "reverts b800c91a0517 (3.19, mm: fix corner case in anon_vma endless growing prevention)"
    )

    def vma_adjust_import(self, importer: Vma, exporter: Vma) -> Gen:
        """3.7 .. 3.19 order: anon_vma_clone(importer, exporter), then ->anon_vma."""
        if (yield from self.anon_vma_clone(importer, exporter)):
            return ENOMEM
        yield ev.Store(importer, "anon_vma", exporter.anon_vma)
        return 0


class NewestAnonVma(Mainline):
    """B2, the 2.6.34-rc crash (LWN 383162): __page_set_anon_rmap() sets page->mapping to the
    faulting vma's own anon_vma whatever ``exclusive`` says, and on every first mapping (the
    PageAnon() early return came later, 288468c334e9, 2.6.36).  A swap cache page faulted back
    in by a child first then points to the child's anon_vma while the parent maps it too;
    when the child goes, the parent's page points to a freed anon_vma."""

    name = "newest-anon-vma"
    summary = "B2: page->mapping = the faulting vma's newest anon_vma, not the oldest (root)"
    expected = "buggy"
    commit = (
        "reverts ea90002b0fa7 (2.6.34, anonvma: when setting up page->mapping, we need to pick "
        "the _oldest_ anonvma)"
    )

    def _page_set_anon_rmap(self, page: Page, vma: Vma, address: int, exclusive: bool) -> Gen:
        """mm/rmap.c __page_set_anon_rmap() of 2.6.34-rc3."""
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is None:
            raise KernelBug(f"BUG_ON(!anon_vma) in __page_set_anon_rmap({vma.short()})")
        yield ev.Store(page, "mapping", anon_vma)
        page.mapping_gen = anon_vma.gen  # ghost state for invariant I9
        index = yield from self.linear_page_index(vma, address)
        yield ev.Store(page, "index", index)


class MigrateNoPin(Mainline):
    """B6: __unmap_and_move() without the anon_vma pin.  Once try_to_unmap() has replaced
    every pte by a migration entry the page is unmapped, so nothing keeps page->mapping's
    anon_vma alive: an exit of the last mapper frees it, and remove_migration_ptes() walks a
    freed (or already reused) anon_vma.  The pin was rcu_read_lock() from dc386d4d1e98
    (KAMEZAWA Hiroyuki, 2007), a reference count since 2.6.35 (Mel Gorman's compaction
    series; page_get_anon_vma() in v3.7)."""

    name = "migrate-no-pin"
    summary = "B6: migration does not pin page->mapping's anon_vma across the unmap and remap"
    expected = "buggy"
    commit = (
        "reverts 3f6c82728f4e (2.6.35, mm: migration: take a reference to the anon_vma before "
        "migrating) and dc386d4d1e98 (2.6.22, its RCU predecessor)"
    )

    def _unmap_and_move(self, page: Page, newpage: Page) -> Gen:
        """mm/migrate.c __unmap_and_move() with only the PageAnon/page_mapped() test left of
        page_get_anon_vma()."""
        yield ev.Acquire(page.lock)  # lock_page()
        rc = EAGAIN
        mapping = yield ev.Load(page, "mapping")
        if mapping is not None and (yield ev.Load(page, "mapcount")) >= 0:
            yield from self.try_to_unmap(page, TTU_MIGRATION)
            if (yield ev.Load(page, "mapcount")) < 0:
                rc = yield from self.move_to_new_page(newpage, page)
            if rc:
                yield from self.remove_migration_ptes(page, page)
        yield ev.Mark("migration-end", page)
        yield ev.Release(page.lock)  # unlock_page()
        return rc


class MremapNoRmapLocks(Mainline):
    """mremap moves the ptes without the rmap locks even when copy_vma() merged the
    destination into a vma that rmap walks first: the race Pawel Sikora hit in 3.0-3.1
    ("kernel BUG at include/linux/swapops.h" in migration_entry_wait() after mremap).
    remove_migration_ptes() looks at the destination vma before move_ptes() put the
    migration entry there and at the source after it left: the entry is left behind.
    Fixed in 3.3 by Andrea Arcangeli's anon_vma_moveto_tail() (mremap: enforce rmap src/dst
    vma ordering in case of vma_merge() succeeding in copy_vma()), replaced in 3.7 by
    need_rmap_locks (38a76013ad80): this variant keeps need_rmap_locks false."""

    name = "mremap-no-rmap-locks"
    focus = ("mremap", "migrate")
    summary = "mremap moves ptes without rmap locks into a merged vma walked before the source"
    expected = "buggy"
    commit = (
        "reverts need_rmap_locks of 38a76013ad80 (3.7, mm: avoid taking rmap locks in "
        "move_ptes()); fixed first by anon_vma_moveto_tail (3.3, Andrea Arcangeli)"
    )

    def copy_vma(self, vma: Vma, addr: int, length: int, pgoff: int) -> Gen:
        new_vma, vma, _ = yield from super().copy_vma(vma, addr, length, pgoff)
        return new_vma, vma, False


class TempStackMigration(Mainline):
    """Migration does not skip exec's temporary stack: between shift_arg_pages()'s first
    vma_adjust() and move_page_tables() (which takes no rmap lock), vma_address() of a stack
    page already points at the new place while the pte -- or the migration entry
    try_to_unmap() wrote -- is still at the old one, so remove_migration_ptes() misses it."""

    name = "temp-stack-migration"
    focus = ("exec_shift", "migrate")
    summary = "migration does not skip exec's VM_STACK_INCOMPLETE_SETUP stack during its move"
    expected = "buggy"
    commit = (
        "reverts a8bef8ff6ea1 (2.6.35, mm: migration: avoid race between shift_arg_pages() "
        "and rmap_walk() during migration by not migrating temporary stacks)"
    )

    def is_vma_temporary_stack(self, vma: Vma) -> Gen:
        """is_vma_temporary_stack() came with a8bef8ff6ea1: before it, no vma was skipped."""
        return False
        yield  # a generator, like every model function


class AdjustNoImportClone(Mainline):
    """B3, second half: vma_adjust() before 287d97ac0321 (Linus Torvalds, 2.6.34-rc4, "vma_adjust:
    fix the copying of anon_vma chains") had no ``exporter``: the vma that imports pages was
    attached with ``anon_vma_clone(importer, vma)`` and then given ``anon_vma``, next's.  When
    vma itself is the importer (it expands over next: mprotect cases 5, 6 and 8) it clones its
    own chain, which is empty since it had no anon_vma: it gets next's anon_vma with no chain,
    then anon_vma_merge() unlinks next, and the imported pages belong to an anon_vma whose tree
    no longer holds any vma that maps them (I1; freed if the tree empties).  Case 4 (next
    imports from vma) was right.  In 3.7's vma_merge() the list_is_singular() test of
    is_mergeable_anon_vma() (965f55dea0e3) keeps cases 4 and 5 from importing at all; cases 6
    and 8 (mprotect a vma back to match the faulted one after it) still import
    (tests/kernel/test_historical.py)."""

    name = "adjust-no-import-clone"
    focus = ("mprotect",)
    summary = "B3: vma_adjust() clones the expanding vma's own (empty) chain, not next's"
    expected = "buggy"
    commit = "reverts 287d97ac0321 (2.6.34, vma_adjust: fix the copying of anon_vma chains)"

    def vma_adjust_import(self, importer: Vma, exporter: Vma) -> Gen:
        """2.6.34-rc3: ``anon_vma_clone(importer, vma); importer->anon_vma = anon_vma;`` where
        vma is vma_adjust()'s (the lower of the two) and anon_vma the exporter's."""
        vma = importer if importer.vm_start < exporter.vm_start else exporter
        if (yield from self.anon_vma_clone(importer, vma)):
            return ENOMEM
        yield ev.Store(importer, "anon_vma", exporter.anon_vma)
        return 0


BUILTIN: dict[str, type[Mainline]] = {
    cls.name: cls
    for cls in (
        Mainline,
        LocklessWalk,
        PageAnonVmaLock,
        Linus2012,
        StackGrowthUnderRead,
        PrepareNolock,
        ReuseNonsingular,
        PerAnonVmaLockAdjust,
        PlaNoRecheck,
        PlaRefcountCheck,
        RfcUnbalancedUnlock,
        PutInsideRcu,
        Modern,
        ReuseCloneFailKeepAnon,
        ReuseAdjustOverride,
        NewestAnonVma,
        MigrateNoPin,
        MremapNoRmapLocks,
        TempStackMigration,
        AdjustNoImportClone,
    )
}


def parse_knob(text: str) -> tuple[str, Any]:
    """``name=value`` with value yes/no/true/false/1/0 or an integer."""
    if "=" not in text:
        raise UsageError(f"knob {text!r} is not of the form name=value")
    name, value = text.split("=", 1)
    low = value.strip().lower()
    if low in ("yes", "true", "on", "1"):
        return name.strip(), True
    if low in ("no", "false", "off", "0"):
        return name.strip(), False
    try:
        return name.strip(), int(low, 0)
    except ValueError:
        raise UsageError(f"knob {name}: value {value!r} is not yes/no or a number") from None


def load_variant(spec: str) -> type[Mainline]:
    """A built-in variant by name, or ``file.py:Class`` / ``package.module:Class``."""
    if spec in BUILTIN:
        return BUILTIN[spec]
    if ":" not in spec:
        raise UsageError(
            f"unknown variant {spec!r} (built-in: {', '.join(BUILTIN)}; or give file.py:Class)"
        )
    where, _, clsname = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"variant file {where} does not exist")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        modname = f"rmapfuzz_user_{digest}"
        mspec = importlib.util.spec_from_file_location(modname, path)
        if mspec is None or mspec.loader is None:
            raise UsageError(f"variant file {where} cannot be loaded as Python")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[modname] = module
        try:
            mspec.loader.exec_module(module)
        except Exception as e:  # the user's file: report, do not crash
            raise UsageError(
                f"variant file {where} failed to load: {type(e).__name__}: {e}"
            ) from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise UsageError(
                f"variant module {where} failed to import: {type(e).__name__}: {e}"
            ) from None
    cls = getattr(module, clsname, None)
    if cls is None:
        raise UsageError(f"variant {spec}: {where} has no class {clsname}")
    if not (isinstance(cls, type) and issubclass(cls, Mainline)):
        raise UsageError(f"variant {spec}: {clsname} does not derive from rmapfuzz Mainline")
    return cls


def variant_label(cls: type[Mainline], spec: str) -> str:
    return cls.name if spec in BUILTIN else spec
