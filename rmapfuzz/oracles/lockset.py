"""The lockset check (rmap-spec 1.8 "protection summary", invariant I15).

For each (object type, field) of the protection summary, :data:`RULES` says which locks the
writing task must hold; every ``Store`` and ``Rmw`` is checked against it.  Atomics
(``refcount``, ``_mapcount``, ``mm_users``) need no lock and are not in the table.

The check is *advisory*: a write without its locks is recorded as a
:class:`LocksetViolation` (``rmapfuzz fuzz`` and ``replay`` print them as ``lockset: ...``
lines) and the run goes on, so that a behavioural bug is still observed to its consequence.
A variant that sets ``lockset_findings = True`` turns the first violation into a finding of
kind ``lockset``.

Exempt, as in the kernel: an object that the writing task allocated during the current
operation and has not yet published -- made reachable by storing a pointer to it (or to an
object that points to it) into memory others can see.  That is the "newly allocated" case of
rmap-spec 1.8 (``page->mapping`` of a new page set under the PTL only, ``anon_vma->root`` set
before publication, a vma built by fork or split before it is linked).  Also exempt: the vmas
and vma list of an mm whose ``mm_users`` dropped to zero (exit_mmap() runs without mmap_sem:
nobody else can reach the mm).  The anon_vma's interval tree is never exempt: its slot is
SLAB_DESTROY_BY_RCU, so an RCU reader may look at a "new" anon_vma's tree (B1, d9d332e0874f).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import FindingError
from rmapfuzz.engine.heap import HeapObject
from rmapfuzz.kernel.objects import (
    MM,
    AnonVma,
    IntervalTree,
    Page,
    PageTable,
    TaskStruct,
    Vma,
)

#: a rule: (task, object, value written) -> None when the task holds what it must, else a
#: description of the missing lock(s)
Rule = Callable[[Any, Any, Any], "str | None"]


def _holds(t: Any, lock: Any, mode: str = "w") -> bool:
    if mode == "any":
        return (lock, "w") in t.held or (lock, "r") in t.held
    return (lock, mode) in t.held


def _root_lock(av: Any) -> Any:
    root = av.root if av.root is not None else av
    return root.rwsem


def _dead(mm: Any) -> bool:
    """exit_mmap(): the last mm_users reference is gone, nobody else can reach the mm."""
    return mm is None or mm.mm_users <= 0 or mm.freed


# ------------------------------------------------------------------------------ the rules


def _tree(t: Any, tree: IntervalTree, value: Any) -> str | None:
    """avc tree of av: root(av) lock, write."""
    lock = _root_lock(tree.owner)
    return None if _holds(t, lock) else f"{lock.name} (write)"


def _vma_chain(t: Any, vma: Vma, value: Any, av: Any = None) -> str | None:
    """vma->anon_vma_chain (and vma->anon_vma): mmap_sem write, or mmap_sem read +
    page_table_lock + the root anon_vma lock (anon_vma_prepare)."""
    mm = vma.vm_mm
    if _dead(mm) or _holds(t, mm.mmap_sem):
        return None
    av = av if av is not None else vma.anon_vma
    if (
        av is not None
        and _holds(t, mm.mmap_sem, "any")
        and _holds(t, mm.page_table_lock)
        and _holds(t, _root_lock(av))
    ):
        return None
    alt = f"; or mmap_sem + {mm.page_table_lock.name} + {_root_lock(av).name}" if av else ""
    return f"{mm.mmap_sem.name} (write{alt})"


def _vma_anon_vma(t: Any, vma: Vma, value: Any) -> str | None:
    """vma->anon_vma NULL -> X: mmap_sem read + root lock + page_table_lock
    (anon_vma_prepare), or mmap_sem write (vma_adjust's importer, unlink in 6.x)."""
    return _vma_chain(t, vma, value, value)


def _vma_geometry(t: Any, vma: Vma, value: Any) -> str | None:
    """vm_start/vm_end/vm_pgoff: mmap_sem write; of a vma linked into a tree also the root
    anon_vma lock (write), with mmap_sem read being enough for stack expansion (<= 6.4)."""
    mm = vma.vm_mm
    if _dead(mm):
        return None
    av = vma.anon_vma
    if av is None:
        return None if _holds(t, mm.mmap_sem) else f"{mm.mmap_sem.name} (write)"
    lock = _root_lock(av)
    if _holds(t, lock) and _holds(t, mm.mmap_sem, "any"):
        return None
    return f"{lock.name} (write) and {mm.mmap_sem.name}"


def _vma_flags(t: Any, vma: Vma, value: Any) -> str | None:
    mm = vma.vm_mm
    if _dead(mm) or _holds(t, mm.mmap_sem):
        return None
    return f"{mm.mmap_sem.name} (write)"


def _mm_list(t: Any, mm: MM, value: Any) -> str | None:
    """The vma list of an mm: mmap_sem write."""
    if _dead(mm) or _holds(t, mm.mmap_sem):
        return None
    return f"{mm.mmap_sem.name} (write)"


def _page_rmap(t: Any, page: Page, value: Any) -> str | None:
    """page->mapping/index: the page lock (a new page, first mapped under the PTL, is exempt
    as unpublished)."""
    return None if _holds(t, page.lock) else page.lock.name


def _pte(t: Any, pt: PageTable, value: Any) -> str | None:
    """A pte: its PTL."""
    return None if _holds(t, pt.ptl) else pt.ptl.name


def _task_mm(t: Any, task: TaskStruct, value: Any) -> str | None:
    """task->mm: task_lock()."""
    return None if _holds(t, task.alloc_lock) else task.alloc_lock.name


def _before_publication(t: Any, obj: Any, value: Any) -> str | None:
    """anon_vma->root (and ->parent): written only before the anon_vma is published."""
    return "(only before publication: the anon_vma is reachable already)"


def _av_counter(t: Any, av: AnonVma, value: Any) -> str | None:
    """4.0+/6.1+ reuse counters (degree, num_children, num_active_vmas): root lock, write."""
    lock = _root_lock(av)
    return None if _holds(t, lock) else f"{lock.name} (write)"


RULES: dict[tuple[type, str], Rule] = {
    (IntervalTree, "nodes"): _tree,
    (IntervalTree, "busy"): _tree,
    (Vma, "anon_vma_chain"): _vma_chain,
    (Vma, "anon_vma"): _vma_anon_vma,
    (Vma, "vm_start"): _vma_geometry,
    (Vma, "vm_end"): _vma_geometry,
    (Vma, "vm_pgoff"): _vma_geometry,
    (Vma, "vm_flags"): _vma_flags,
    (MM, "mmap"): _mm_list,
    (Page, "mapping"): _page_rmap,
    (Page, "index"): _page_rmap,
    (PageTable, "ptes"): _pte,
    (TaskStruct, "mm"): _task_mm,
    (AnonVma, "root"): _before_publication,
    (AnonVma, "parent"): _before_publication,
    (AnonVma, "degree"): _av_counter,
    (AnonVma, "num_children"): _av_counter,
    (AnonVma, "num_active_vmas"): _av_counter,
}


@attrs.frozen
class LocksetViolation:
    """One write without the locks the protection summary asks for."""

    step: int
    task: int
    fn: str
    op: str
    what: str
    missing: str

    def line(self) -> str:
        who = f"task {self.task}" if self.task >= 0 else "setup"
        return (
            f"lockset: {self.what} written without {self.missing} at step {self.step} "
            f"({self.fn}, {who} {self.op})"
        )


def _refs(value: Any) -> Iterator[Any]:
    """The heap objects a stored value points to."""
    if isinstance(value, HeapObject):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _refs(v)
    elif hasattr(type(value), "__attrs_attrs__") and not isinstance(value, IntervalTree):
        for a in type(value).__attrs_attrs__:  # a pte value: Present(page), Migration(page)
            v = getattr(value, a.name)
            if isinstance(v, HeapObject):
                yield v


def _fields(obj: Any) -> Iterator[Any]:
    """The heap objects ``obj`` points to (for transitive publication)."""
    for a in type(obj).__attrs_attrs__:
        v = getattr(obj, a.name)
        if isinstance(v, dict):
            for x in v.values():
                yield from _refs(x)
        else:
            yield from _refs(v)


class LocksetOracle:
    """Observer: check each write against :data:`RULES`; collect :attr:`violations`."""

    #: the only events on_step looks at
    step_events = frozenset({ev.Store, ev.Rmw, ev.Alloc, ev.Free})

    #: at most this many violations are kept (the count goes on)
    LIMIT = 50

    def __init__(self, kernel: Any = None) -> None:
        self.findings = bool(getattr(kernel, "lockset_findings", False))
        self.private: dict[Any, int] = {}
        self.violations: list[LocksetViolation] = []
        self.count = 0
        self._seen: set[tuple[str, str, str]] = set()

    def on_step(self, eng: Any, index: int, t: Any, e: Any, result: Any) -> None:
        cls = type(e)
        if cls is ev.Store or cls is ev.Rmw:
            obj = e.obj
            owner = self.private.get(obj) if self.private else None
            if owner is not None and owner == t.tid:
                return  # newly allocated, not yet published
            rule = RULES.get((type(obj), e.field))
            if rule is not None:
                value = e.value if cls is ev.Store else None
                missing = rule(t, obj, value)
                if missing is not None:
                    self._violation(index, t, obj, e.field, missing)
            if self.private and cls is ev.Store:
                for x in _refs(e.value):
                    if x in self.private:
                        self._publish(x)
        elif cls is ev.Alloc:
            self.private[e.obj] = t.tid
        elif cls is ev.Free:
            self.private.pop(e.obj, None)

    def on_op_end(self, eng: Any, t: Any) -> None:
        """Whatever the operation allocated is reachable (or leaked) once it returns."""
        if self.private:
            for obj in [o for o, tid in self.private.items() if tid == t.tid]:
                del self.private[obj]

    def _publish(self, obj: Any) -> None:
        todo = [obj]
        while todo:
            x = todo.pop()
            if self.private.pop(x, None) is None:
                continue
            todo.extend(y for y in _fields(x) if y in self.private)

    def _violation(self, index: int, t: Any, obj: Any, field: str, missing: str) -> None:
        what = f"{obj.short()}.{field}"
        v = LocksetViolation(index, t.tid, t.pending_fn, t.op_label, what, missing)
        if self.findings:
            raise FindingError(
                "lockset",
                f"{what} written by {t.pending_fn}() without {missing} ({t.op_label})",
                task=t.tid,
            )
        self.count += 1
        key = (what, t.pending_fn, missing)
        if key in self._seen or len(self.violations) >= self.LIMIT:
            return
        self._seen.add(key)
        self.violations.append(v)

    def advisories(self) -> list[str]:
        """The violations as ``lockset: ...`` lines (the first per object field, function and
        missing lock)."""
        lines = [v.line() for v in self.violations]
        if self.count > len(lines):
            lines.append(f"lockset: {self.count - len(lines)} more writes of the same kinds")
        return lines
