"""anon_vma reuse at fork (4.0+, 7a3ef208e662) with the 6.1+ counters ``num_children`` and
``num_active_vmas`` (2555283eb40d), over the 3.7 structure: the modern profile's mm/rmap.c.

The functions are those of a 6.x mm/rmap.c (read from torvalds/linux: anon_vma_alloc,
__anon_vma_prepare, anon_vma_clone, anon_vma_fork, unlink_anon_vmas) with both fixes of the
reuse that came after it: b800c91a0517 (vma_adjust() sets ->anon_vma before anon_vma_clone())
and 3fe89b3e2a7b (anon_vma_clone()'s enomem_failure drops dst->anon_vma).  Everything else is
the 3.7 model with the 3.8 rwsem: no folios, no per-VMA locks, no maple tree, 3.7's
__put_anon_vma() order, 3.7's vma_adjust().

``ModernRmap`` is a mixin: ``variants.Modern`` puts it in front of ``Mainline``.  The counters
are plain fields written under the root anon_vma rwsem held for write, so an update is a load
and a store (two steps), as the C ``++``/``--`` is.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import AnonVma, Vma
from rmapfuzz.kernel.rmap import ENOMEM
from rmapfuzz.kernel.syscalls import Syscalls


class ModernRmap(Syscalls):
    #: the invariant oracle checks I12 (the counters equal what they count) for this model
    anon_vma_counters = True

    def anon_vma_counter_add(self, anon_vma: AnonVma, field: str, delta: int) -> Gen:
        """``anon_vma->num_children++`` and friends: a plain read-modify-write, root lock held
        for write (or the anon_vma not yet published)."""
        value = yield ev.Load(anon_vma, field)
        yield ev.Store(anon_vma, field, value + delta)

    def anon_vma_alloc(self) -> Gen:
        """mm/rmap.c anon_vma_alloc() (6.1+): also num_children = num_active_vmas = 0 and
        parent = self.  The counters and parent are read only under the root lock, never by
        an RCU reader of a recycled slot, so they are set privately."""
        anon_vma = yield from super().anon_vma_alloc()
        if anon_vma is not None:
            anon_vma.num_children = 0
            anon_vma.num_active_vmas = 0
            anon_vma.parent = anon_vma
        return anon_vma

    def anon_vma_prepare(self, vma: Vma) -> Gen:
        """mm/rmap.c __anon_vma_prepare() (6.1+): as 3.7, plus ``num_children++`` for the
        self-parent link of a new root and ``num_active_vmas++`` when vma takes the
        anon_vma.  0 or -ENOMEM."""
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is not None:
            return 0
        mm = vma.vm_mm
        avc = yield from self.anon_vma_chain_alloc()
        if avc is None:
            return ENOMEM  # out_enomem
        anon_vma = yield from self.find_mergeable_anon_vma(vma)
        allocated = None
        if anon_vma is None:
            anon_vma = yield from self.anon_vma_alloc()
            if anon_vma is None:
                yield from self.anon_vma_chain_free(avc)  # out_enomem_free_avc
                return ENOMEM
            anon_vma.num_children += 1  # self-parent link for new root (not yet published)
            allocated = anon_vma
        yield from self.anon_vma_lock_write(anon_vma)
        yield ev.Acquire(mm.page_table_lock)
        if (yield ev.Load(vma, "anon_vma")) is None:
            yield ev.Store(vma, "anon_vma", anon_vma)
            yield from self.anon_vma_chain_link(vma, avc, anon_vma)
            yield from self.anon_vma_counter_add(anon_vma, "num_active_vmas", 1)
            allocated = None
            avc = None
        yield ev.Release(mm.page_table_lock)
        yield from self.anon_vma_unlock_write(anon_vma)
        if allocated is not None:
            yield from self.put_anon_vma(allocated)
        if avc is not None:
            yield from self.anon_vma_chain_free(avc)
        return 0

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Gen:
        """mm/rmap.c anon_vma_clone() (6.1+): as 3.7, and when called from anon_vma_fork()
        (``!dst->anon_vma && src->anon_vma``) adopt the first ancestor, walking from the
        root, that has no vma and fewer than two children; then ``num_active_vmas++`` of
        dst->anon_vma.  "Root anon_vma is never reused: it has self-parent reference and at
        least one child."  0 or -ENOMEM."""
        root = None
        for pavc in reversed(src.anon_vma_chain):
            avc = yield from self.anon_vma_chain_alloc("GFP_NOWAIT")
            if avc is None:
                yield from self.unlock_anon_vma_root(root)
                root = None
                avc = yield from self.anon_vma_chain_alloc()
                if avc is None:
                    return (yield from self.anon_vma_clone_enomem_failure(dst))
            anon_vma = pavc.anon_vma
            root = yield from self.lock_anon_vma_root(root, anon_vma)
            yield from self.anon_vma_chain_link(dst, avc, anon_vma)
            if (
                (yield ev.Load(dst, "anon_vma")) is None
                and (yield ev.Load(src, "anon_vma")) is not None
                and (yield ev.Load(anon_vma, "num_children")) < 2
                and (yield ev.Load(anon_vma, "num_active_vmas")) == 0
            ):
                yield ev.Store(dst, "anon_vma", anon_vma)
        dst_anon_vma = yield ev.Load(dst, "anon_vma")
        if dst_anon_vma is not None:
            yield from self.anon_vma_counter_add(dst_anon_vma, "num_active_vmas", 1)
        yield from self.unlock_anon_vma_root(root)
        return 0

    def anon_vma_clone_enomem_failure(self, dst: Vma) -> Gen:
        """anon_vma_clone()'s ``enomem_failure:`` with Leon Yu's 3fe89b3e2a7b: "dst->anon_vma
        is dropped here otherwise its num_active_vmas can be incorrectly decremented in
        unlink_anon_vmas()" -- the increment at the end of the clone never happened."""
        yield ev.Store(dst, "anon_vma", None)
        yield from self.unlink_anon_vmas(dst)
        return ENOMEM

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Gen:
        """mm/rmap.c anon_vma_fork() (6.1+): drop the inherited ->anon_vma, clone (which may
        reuse an ancestor: then done), else a new anon_vma whose parent is pvma's, linked
        under the root lock, ``parent->num_children++``.  0 or -ENOMEM."""
        if pvma.anon_vma is None:
            return 0
        yield ev.Store(vma, "anon_vma", None)  # "Drop inherited anon_vma"
        if (yield from self.anon_vma_clone(vma, pvma)):
            return ENOMEM
        if (yield ev.Load(vma, "anon_vma")) is not None:
            return 0  # "An existing anon_vma has been reused, all done then."
        anon_vma = yield from self.anon_vma_alloc()
        if anon_vma is None:
            yield from self.unlink_anon_vmas(vma)  # out_error
            return ENOMEM
        anon_vma.num_active_vmas += 1  # not yet published
        avc = yield from self.anon_vma_chain_alloc()
        if avc is None:
            yield from self.put_anon_vma(anon_vma)  # out_error_free_anon_vma
            yield from self.unlink_anon_vmas(vma)
            return ENOMEM
        pav = pvma.anon_vma
        root = yield ev.Load(pav, "root")
        yield ev.Store(anon_vma, "root", root)
        yield ev.Store(anon_vma, "parent", pav)
        yield from self.get_anon_vma(root)
        yield ev.Store(vma, "anon_vma", anon_vma)
        yield from self.anon_vma_lock_write(anon_vma)
        yield from self.anon_vma_chain_link(vma, avc, anon_vma)
        yield from self.anon_vma_counter_add(pav, "num_children", 1)
        yield from self.anon_vma_unlock_write(anon_vma)
        return 0

    def unlink_anon_vmas(self, vma: Vma) -> Gen:
        """mm/rmap.c unlink_anon_vmas() (6.1+): pass 1 also does ``parent->num_children--``
        for each anon_vma it empties and, still under the root lock,
        ``vma->anon_vma->num_active_vmas--`` and ``vma->anon_vma = NULL``; pass 2
        VM_WARN_ONs an emptied anon_vma whose counters are not zero (a mark here)."""
        root = None
        for avc in vma.anon_vma_chain:
            anon_vma = avc.anon_vma
            root = yield from self.lock_anon_vma_root(root, anon_vma)
            yield from self.anon_vma_interval_tree_remove(avc, anon_vma.rb_root)
            if not (yield ev.Load(anon_vma.rb_root, "nodes")):
                parent = yield ev.Load(anon_vma, "parent")
                yield from self.anon_vma_counter_add(parent, "num_children", -1)
                continue  # leave empty anon_vmas on the list: freed outside the lock
            yield ev.Store(
                vma, "anon_vma_chain", tuple(a for a in vma.anon_vma_chain if a is not avc)
            )
            yield from self.anon_vma_chain_free(avc)
        anon_vma = yield ev.Load(vma, "anon_vma")
        if anon_vma is not None:
            yield from self.anon_vma_counter_add(anon_vma, "num_active_vmas", -1)
            yield ev.Store(vma, "anon_vma", None)
        yield from self.unlock_anon_vma_root(root)
        for avc in vma.anon_vma_chain:
            anon_vma = avc.anon_vma
            if anon_vma.num_children or anon_vma.num_active_vmas:
                yield ev.Mark(
                    "warn",
                    f"VM_WARN_ON(anon_vma->num_children || anon_vma->num_active_vmas) in "
                    f"unlink_anon_vmas({vma.short()}): {anon_vma.short()} has "
                    f"{anon_vma.num_children}/{anon_vma.num_active_vmas}",
                )
            yield from self.put_anon_vma(anon_vma)
            yield ev.Store(
                vma, "anon_vma_chain", tuple(a for a in vma.anon_vma_chain if a is not avc)
            )
            yield from self.anon_vma_chain_free(avc)

    def vma_adjust_import(self, importer: Vma, exporter: Vma) -> Gen:
        """vma_adjust()'s import with b800c91a0517 ("mm: fix corner case in anon_vma endless
        growing prevention"): ->anon_vma is assigned *before* anon_vma_clone(), so the clone
        counts the importer in num_active_vmas of the anon_vma it will really use (and, dst
        having an anon_vma, does not look for one to reuse).  0 or -ENOMEM."""
        yield ev.Store(importer, "anon_vma", exporter.anon_vma)
        if (yield from self.anon_vma_clone(importer, exporter)):
            return ENOMEM
        return 0
