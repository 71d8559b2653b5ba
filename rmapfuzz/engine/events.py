"""The only things an operation may yield to the engine.

An operation is a generator; the code between two yields is one atomic step, and each step
performs at most one shared-memory access or one lock operation: the event it yields.  The
engine executes the event, records it in the trace and sends the result back.  Anything else
yielded is rejected with an error naming the operation and the value.

Two events are *instant*: :class:`Mark` (an annotation for observers, e.g. "a walk begins")
and :class:`Current` (which task am I).  They neither end a step nor create a scheduling point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def _name(obj: Any) -> str:
    return obj.short() if hasattr(obj, "short") else repr(obj)


@attrs.frozen(slots=True, repr=False)
class Load:
    """Read ``obj.field`` (or ``obj.field[key]``)."""

    obj: Any
    field: str
    key: Any = None

    def __repr__(self) -> str:
        k = "" if self.key is None else f"[{_fmt(self.key)}]"
        return f"R {_name(self.obj)}.{self.field}{k}"


@attrs.frozen(slots=True, repr=False)
class Store:
    """Write ``value`` to ``obj.field`` (or ``obj.field[key]``)."""

    obj: Any
    field: str
    value: Any
    key: Any = None

    def __repr__(self) -> str:
        k = "" if self.key is None else f"[{_fmt(self.key)}]"
        return f"W {_name(self.obj)}.{self.field}{k} = {_fmt(self.value)}"


@attrs.frozen(slots=True, repr=False)
class Rmw:
    """An atomic read-modify-write: ``fn(old) -> (new, result)``; ``name`` is the kernel's."""

    obj: Any
    field: str
    fn: Callable[[Any], tuple[Any, Any]]
    name: str

    def __repr__(self) -> str:
        return f"{self.name}({_name(self.obj)}.{self.field})"


@attrs.frozen(slots=True, repr=False)
class Acquire:
    """Take ``lock`` in ``mode`` ('w' exclusive, 'r' shared); the task waits while it cannot."""

    lock: Any
    mode: str = "w"

    def __repr__(self) -> str:
        return f"{self.lock.op_name('lock', self.mode)}({self.lock.name})"


@attrs.frozen(slots=True, repr=False)
class TryAcquire:
    """Try to take ``lock``; the result is True when it was taken."""

    lock: Any
    mode: str = "w"

    def __repr__(self) -> str:
        return f"{self.lock.op_name('trylock', self.mode)}({self.lock.name})"


@attrs.frozen(slots=True, repr=False)
class Release:
    """Release ``lock`` held in ``mode``."""

    lock: Any
    mode: str = "w"

    def __repr__(self) -> str:
        return f"{self.lock.op_name('unlock', self.mode)}({self.lock.name})"


@attrs.frozen(slots=True, repr=False)
class WaitUnlocked:
    """Sleep until ``lock`` is free, without taking it (``wait_on_page_locked``)."""

    lock: Any

    def __repr__(self) -> str:
        return f"wait_on({self.lock.name})"


@attrs.frozen(slots=True, repr=False)
class RcuReadLock:
    def __repr__(self) -> str:
        return "rcu_read_lock()"


@attrs.frozen(slots=True, repr=False)
class RcuReadUnlock:
    def __repr__(self) -> str:
        return "rcu_read_unlock()"


@attrs.frozen(slots=True, repr=False)
class Alloc:
    """Hand out the heap object ``obj`` (already taken from its slab by the caller)."""

    obj: Any

    def __repr__(self) -> str:
        return f"alloc {_name(self.obj)}"


@attrs.frozen(slots=True, repr=False)
class Free:
    """Return ``obj`` to its slab: poisoned, or type-stable if its slab is TYPESAFE_BY_RCU."""

    obj: Any

    def __repr__(self) -> str:
        return f"free {_name(self.obj)}"


@attrs.frozen(slots=True, repr=False)
class Mark:
    """Instant annotation for observers (walk begin/visit/end, migration done, ...)."""

    kind: str
    data: Any = None

    def __repr__(self) -> str:
        return f"mark {self.kind}"


@attrs.frozen(slots=True, repr=False)
class Current:
    """Instant: the result is the running :class:`~rmapfuzz.engine.run.Task`."""

    def __repr__(self) -> str:
        return "current"


CURRENT = Current()
RCU_READ_LOCK = RcuReadLock()
RCU_READ_UNLOCK = RcuReadUnlock()


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return hex(v) if v >= 0x1000 else str(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return _name(v)


def describe(value: Any) -> str:
    """Short kernel-style rendering of an event result."""
    return _fmt(value)
