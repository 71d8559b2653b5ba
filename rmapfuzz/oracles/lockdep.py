"""A lockdep-style lock-order checker (rmap-spec 1.6, invariant I14).

Every lock has a class (``Lock.lclass``: all mmap_sems are one class).  Per run the checker
records the dependencies "held A while acquiring B" between classes, the way lockdep
(kernel/locking/lockdep.c ``check_prevs_add()``, Documentation/locking/lockdep-design.rst)
does, and reports a ``lock-order`` finding as soon as one of them

* inverts the documented order of the header of mm/rmap.c (:data:`LOCK_ORDER`), or
* closes a cycle in the graph accumulated during the run (an ABBA between two tasks, or
  between two operations of one task, that this run happened not to deadlock on), or
* takes a second lock of a class already held without a nesting annotation (lockdep's
  "possible recursive locking detected").

Lockdep semantics kept:

* a trylock adds no dependency to the lock it takes ("trylock can be done in any order"), and
  is not checked for recursion; but it is on the held stack, so a later blocking acquisition
  adds dependencies from each trylocked entry on top of the stack down to, and including, the
  first blocking one (older entries are connected through that one already);
* nesting annotations give a second instance of a class its own subclass: the modelled
  kernel's are in :data:`NESTED` (``down_write_nested(&mm->mmap_sem, SINGLE_DEPTH_NESTING)``
  in dup_mmap(), ``spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING)`` in copy_pte_range());
* read acquisitions of an rwsem count like write ones (3.7 lockdep: only recursive reads,
  ``read == 2``, which rwsems never do, are exempt).

What lockdep does and this does not: irq-safety states, lock chains across contexts,
``mm_take_all_locks()`` nesting (not modelled: the anon_vma rwsems are never nested here, every
path takes only the root's, one at a time).

Wait-for-page-unlock (``wait_on_page_locked``) is not an acquisition and adds nothing.
The documented order is kernel knowledge, so it lives here, not in the engine.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import FindingError

#: the lock order of the header comment of mm/rmap.c (v3.7), as ranks: a class may be taken
#: while holding a class of lower or equal rank, never while holding one of higher rank.
#: "anon_vma->mutex" became the rwsem in 3.8.  Classes not listed (task->alloc_lock) are
#: unranked: they take part only in the cycle check.
LOCK_ORDER: tuple[tuple[str, ...], ...] = (
    ("mm->mmap_sem",),
    ("PG_locked",),
    ("mapping->i_mmap_mutex",),
    ("anon_vma->rwsem",),
    ("mm->page_table_lock", "pte_lock"),
    ("zone->lru_lock",),  # "(in mark_page_accessed, isolate_lru_page)"
)
RANK: dict[str, int] = {c: i for i, group in enumerate(LOCK_ORDER) for c in group}

SINGLE_DEPTH_NESTING = 1

#: the nesting annotations of the modelled kernel: (kernel function, lock class) -> subclass of
#: an acquisition there while another lock of that class is held.
NESTED: dict[tuple[str, str], int] = {
    ("dup_mmap", "mm->mmap_sem"): SINGLE_DEPTH_NESTING,  # kernel/fork.c: the child's mm
    ("copy_pte_range", "pte_lock"): SINGLE_DEPTH_NESTING,  # mm/memory.c: the source ptl
    ("move_ptes", "pte_lock"): SINGLE_DEPTH_NESTING,  # mm/mremap.c: the new ptl
}

Key = tuple[str, int]  # (class, subclass)


def _name(key: Key) -> str:
    cls, sub = key
    return cls if not sub else f"{cls}/{sub}"


class _Held:
    __slots__ = ("lock", "mode", "key", "trylock")

    def __init__(self, lock: Any, mode: str, key: Key, trylock: bool) -> None:
        self.lock = lock
        self.mode = mode
        self.key = key
        self.trylock = trylock


class LockdepOracle:
    """Observer: the class dependency graph of one run.

    ``edges[(a, b)]`` remembers where the dependency a -> b was first seen (step, task,
    kernel function, operation), so that a report names both sides of an inversion."""

    #: the only events on_step looks at
    step_events = frozenset({ev.Acquire, ev.TryAcquire, ev.Release})

    def __init__(self, kernel: Any = None) -> None:
        self.kernel = kernel
        self.held: dict[int, list[_Held]] = {}
        self.edges: dict[tuple[Key, Key], tuple[int, int, str, str]] = {}
        self.succ: dict[Key, list[Key]] = {}

    # ------------------------------------------------------------------ steps

    def on_step(self, eng: Any, index: int, t: Any, e: Any, result: Any) -> None:
        cls = type(e)
        if cls is ev.Acquire:
            self._acquire(index, t, e.lock, e.mode, False)
        elif cls is ev.TryAcquire:
            if result:
                self._acquire(index, t, e.lock, e.mode, True)
        elif cls is ev.Release:
            stack = self.held.get(t.tid)
            if stack:
                lock = e.lock
                for i in range(len(stack) - 1, -1, -1):
                    if stack[i].lock is lock:
                        del stack[i]
                        break

    def _acquire(self, index: int, t: Any, lock: Any, mode: str, trylock: bool) -> None:
        stack = self.held.setdefault(t.tid, [])
        lclass = lock.lclass
        fn = t.pending_fn
        sub = 0
        if any(h.key[0] == lclass for h in stack):
            sub = NESTED.get((fn, lclass), 0)
        key = (lclass, sub)
        if not trylock:
            for h in stack:
                if h.key == key:
                    raise FindingError(
                        "lock-order",
                        f"possible recursive locking detected: {fn}() takes {lock.name} "
                        f"({_name(key)}) while holding {h.lock.name} of the same class, without "
                        f"a nesting annotation ({t.op_label})",
                        task=t.tid,
                    )
            where = (index, t.tid, fn, t.op_label)
            for h in reversed(stack):
                self._add_edge(h, key, lock, where)
                if not h.trylock:
                    break
        stack.append(_Held(lock, mode, key, trylock))

    def _add_edge(self, h: _Held, key: Key, lock: Any, where: tuple[int, int, str, str]) -> None:
        a = h.key
        if (a, key) in self.edges:
            return
        index, tid, fn, op = where
        ra, rb = RANK.get(a[0]), RANK.get(key[0])
        if ra is not None and rb is not None and ra > rb:
            raise FindingError(
                "lock-order",
                f"lock order inversion: {fn}() takes {lock.name} ({_name(key)}) while holding "
                f"{h.lock.name} ({_name(a)}), against the order of mm/rmap.c "
                f"({_name(key)} before {_name(a)}) ({op})",
                task=tid,
            )
        path = self._path(key, a)
        if path is not None:
            hops = []
            for x, y in zip(path, path[1:], strict=False):
                s, tt, f, o = self.edges[(x, y)]
                hops.append(f"{_name(x)} -> {_name(y)} (task {tt}, {f}() at step {s}, {o})")
            raise FindingError(
                "lock-order",
                f"possible circular locking dependency: {fn}() takes {lock.name} "
                f"({_name(key)}) while holding {h.lock.name} ({_name(a)}) ({op}), but earlier in "
                f"this run " + "; ".join(hops),
                task=tid,
            )
        self.edges[(a, key)] = where
        self.succ.setdefault(a, []).append(key)

    def _path(self, src: Key, dst: Key) -> list[Key] | None:
        """A path src -> ... -> dst in the dependency graph (depth-first, insertion order)."""
        if src == dst:
            return None
        stack: list[tuple[Key, list[Key]]] = [(src, [src])]
        seen = {src}
        while stack:
            node, path = stack.pop()
            for nxt in self.succ.get(node, ()):
                if nxt == dst:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    # --------------------------------------------------------------- reports

    def dependencies(self) -> list[str]:
        """The class dependencies of the run, ``"A -> B"``, in the order first seen."""
        return [f"{_name(a)} -> {_name(b)}" for a, b in self.edges]
