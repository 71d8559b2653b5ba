"""Blocking primitives: spinlock, mutex, rwsem, bit lock (PG_locked).

A lock only holds state; the engine decides who may run.  Holding a spinlock disables
preemption on the holder's CPU; waiting for any lock does not by itself keep the CPU.
Reader/writer fairness is not modelled: a reader is admitted whenever no writer holds the rwsem
(the kernel would queue it behind a waiting writer; that only adds waits, never removes them).
"""

from __future__ import annotations

from typing import Any

SPIN = "spinlock"
MUTEX = "mutex"
RWSEM = "rwsem"
BIT = "bitlock"

_OPS = {
    (SPIN, "lock", "w"): "spin_lock",
    (SPIN, "trylock", "w"): "spin_trylock",
    (SPIN, "unlock", "w"): "spin_unlock",
    (MUTEX, "lock", "w"): "mutex_lock",
    (MUTEX, "trylock", "w"): "mutex_trylock",
    (MUTEX, "unlock", "w"): "mutex_unlock",
    (RWSEM, "lock", "w"): "down_write",
    (RWSEM, "lock", "r"): "down_read",
    (RWSEM, "trylock", "w"): "down_write_trylock",
    (RWSEM, "trylock", "r"): "down_read_trylock",
    (RWSEM, "unlock", "w"): "up_write",
    (RWSEM, "unlock", "r"): "up_read",
    (BIT, "lock", "w"): "lock_page",
    (BIT, "trylock", "w"): "trylock_page",
    (BIT, "unlock", "w"): "unlock_page",
}


class Lock:
    """A lock of one of the kinds above.

    ``lclass`` is the lock class (lockdep's notion: all mmap_sems are one class).
    ``owner`` is the writer (or sole holder); ``readers`` the tasks holding it shared.
    """

    __slots__ = ("kind", "name", "lclass", "owner", "readers")

    def __init__(self, kind: str, name: str, lclass: str) -> None:
        self.kind = kind
        self.name = name
        self.lclass = lclass
        self.owner: Any = None
        self.readers: list[Any] = []

    @property
    def sleeping(self) -> bool:
        return self.kind != SPIN

    def op_name(self, op: str, mode: str) -> str:
        return _OPS[(self.kind, op, mode)]

    def is_locked(self) -> bool:
        return self.owner is not None or bool(self.readers)

    @property
    def locked(self) -> bool:
        """What ``mutex_is_locked()``/``rwsem_is_locked()``/``PageLocked()`` read."""
        return self.owner is not None or bool(self.readers)

    freed = False
    typesafe = False

    def can_acquire(self, mode: str) -> bool:
        if self.owner is not None:
            return False
        return mode == "r" or not self.readers

    def holders(self) -> list[Any]:
        return [self.owner] if self.owner is not None else list(self.readers)

    def held_by(self, task: Any, mode: str) -> bool:
        if mode == "r":
            return task in self.readers
        return self.owner is task

    def short(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"


def spinlock(name: str, lclass: str) -> Lock:
    return Lock(SPIN, name, lclass)


def mutex(name: str, lclass: str) -> Lock:
    return Lock(MUTEX, name, lclass)


def rwsem(name: str, lclass: str) -> Lock:
    return Lock(RWSEM, name, lclass)


def bitlock(name: str, lclass: str) -> Lock:
    return Lock(BIT, name, lclass)
