"""Variants: the mainline model and the locking rules proposed against it.

A variant is a subclass of :class:`Mainline` that overrides the modelled kernel functions a
patch touches, and says what it expects (``safe`` or ``buggy``).  A user's variant lives in a
file of their own and is named on the command line as ``path/to/file.py:ClassName`` or
``package.module:ClassName``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.errors import UsageError
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import VM_GROWSDOWN, AnonVma, Migration, Page, Present, Vma
from rmapfuzz.kernel.rmap import SWAP_AGAIN, RmapOne
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
    page's anon_vma tree, read without a lock), take the PTL of the pte, check the conditions
    under it and act on that one pte only.  Knobs (rmap-spec 5.5):

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
        if not k["use_fault_address"]:
            # CE2 (expand_downwards under mmap_sem read tears vma_address()); and finding the
            # vma through the tree without the lock races with a sibling's exit
            return "buggy"
        return "safe"

    def _exclusive_pte(self, page: Page, phase: int, act: Any) -> Gen:
        """The special case: True if it handled the page's one pte without the anon_vma lock."""
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
            ok = (yield ev.Load(av, "root")) is av
        if ok:
            pins = 1 if k["own_pins_counted"] else 0
            ok = (yield ev.Load(av, "refcount")) == 1 + pins
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


BUILTIN: dict[str, type[Mainline]] = {
    cls.name: cls
    for cls in (Mainline, LocklessWalk, PageAnonVmaLock, Linus2012, StackGrowthUnderRead)
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
