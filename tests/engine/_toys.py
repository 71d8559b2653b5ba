"""Small heap objects, operations and helpers shared by the engine tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rmapfuzz.engine import Engine, OpCall, ReplayScheduler, RunResult
from rmapfuzz.engine import events as ev
from rmapfuzz.engine.heap import HeapObject


class Cell(HeapObject):
    """A heap object with two integer fields.

    ``oid`` and ``freed`` are declared here too, so this works whether or not HeapObject
    itself provides those slots.
    """

    __slots__ = ("oid", "freed", "x", "y")
    prefix = "cell"

    def __init__(self, oid: int, x: int = 0, y: int = 0) -> None:
        self.oid = oid
        self.freed = False
        self.x = x
        self.y = y


class TypesafeCell(Cell):
    """A cell from a SLAB_TYPESAFE_BY_RCU slab: stale reads are legal, stale writes are not."""

    __slots__ = ()
    typesafe = True
    prefix = "tcell"


def op(label: str, fn: Callable[..., Any], *args: Any) -> OpCall:
    """An OpCall whose generator is ``fn(*args)``."""
    return OpCall(label, lambda: fn(*args))


def run(
    tasks: Sequence[tuple[int, str, Sequence[OpCall]]],
    decisions: Sequence[tuple[int, int]] = (),
    *,
    ncpus: int = 2,
    setup: Sequence[OpCall] = (),
) -> RunResult:
    return Engine(ncpus=ncpus).run(tasks, ReplayScheduler(decisions), setup=setup)


def project(trace: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A trace with events and results rendered, comparable across runs."""
    return [(tid, cpu, opi, fn, repr(e), repr(r)) for tid, cpu, opi, fn, e, r in trace]


def events_of(trace: Sequence[tuple[Any, ...]]) -> list[tuple[int, str]]:
    """``(tid, repr(event))`` per step: the interleaving, without results."""
    return [(t[0], repr(t[4])) for t in trace]


def holders_over_time(trace: Sequence[tuple[Any, ...]], lock: Any) -> list[dict[int, str]]:
    """After each step, the tasks holding ``lock`` and in which mode, rebuilt from the trace."""
    held: dict[int, str] = {}
    out = []
    for tid, _cpu, _opi, _fn, e, result in trace:
        if getattr(e, "lock", None) is lock:
            if type(e) is ev.Acquire or (type(e) is ev.TryAcquire and result is True):
                held[tid] = e.mode
            elif type(e) is ev.Release:
                held.pop(tid, None)
        out.append(dict(held))
    return out


# ------------------------------------------------------------------ operations


def incr(c: Cell, field: str = "x"):
    """``c->field++`` as two steps: a plain load and a plain store."""
    v = yield ev.Load(c, field)
    yield ev.Store(c, field, v + 1)


def locked_incr(c: Cell, lock: Any, field: str = "x"):
    yield ev.Acquire(lock)
    yield from incr(c, field)
    yield ev.Release(lock)


def peek_then_locked_incr(c: Cell, lock: Any):
    """A racy READ_ONCE() fast-path peek, then the increment under ``lock``."""
    yield ev.Load(c, "x")
    yield from locked_incr(c, lock)


def nested_locks(first: Any, second: Any):
    yield ev.Acquire(first)
    yield ev.Acquire(second)
    yield ev.Release(second)
    yield ev.Release(first)


def read_side(lock: Any, c: Cell):
    """down_read(); read; up_read()."""
    yield ev.Acquire(lock, "r")
    yield ev.Load(c, "x")
    yield ev.Release(lock, "r")


def write_side(lock: Any, c: Cell):
    """down_write(); c->x++; up_write()."""
    yield ev.Acquire(lock, "w")
    yield from incr(c)
    yield ev.Release(lock, "w")


def rcu_reader(c: Cell):
    yield ev.RCU_READ_LOCK
    v = yield ev.Load(c, "x")
    yield ev.RCU_READ_UNLOCK
    return v


def free(c: Cell):
    yield ev.Free(c)


# ------------------------------------------------------------ exhaustive search


class _Probe:
    """Replays ``prefix``, then notes the runnable set and lets the default finish the run."""

    def __init__(self, prefix: Sequence[tuple[int, int]]) -> None:
        self.prefix = list(prefix)
        self.pos = 0
        self.frontier: tuple[int, ...] | None = None

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int] | None:
        if self.pos < len(self.prefix):
            d = self.prefix[self.pos]
            self.pos += 1
            return d
        self.frontier = runnable
        return None


def explore_all(
    build: Callable[[], tuple[list[tuple[int, str, list[OpCall]]], Any]],
    *,
    ncpus: int = 2,
    limit: int = 5000,
) -> list[tuple[RunResult, Any]]:
    """Every step-by-step interleaving the engine admits: ``(result, state)`` per explored run.

    ``build()`` returns fresh ``(tasks, state)``.  Each run replays a prefix of single-step
    decisions (so every decision names a runnable task), then lets the default finish.
    """
    out: list[tuple[RunResult, Any]] = []
    stack: list[list[tuple[int, int]]] = [[]]
    while stack:
        prefix = stack.pop()
        tasks, state = build()
        probe = _Probe(prefix)
        result = Engine(ncpus=ncpus).run(tasks, probe)
        out.append((result, state))
        assert len(out) <= limit, "interleaving space larger than expected"
        if probe.frontier is not None:
            stack.extend(prefix + [(tid, 1)] for tid in probe.frontier)
    return out
