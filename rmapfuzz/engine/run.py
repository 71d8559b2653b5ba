"""The step loop: tasks on simulated CPUs, one atomic step at a time.

A run is fully determined by its operations and its schedule.  The schedule is a sequence of
*decisions* ``(task, run)``: let ``task`` run next; ``run == 0`` means until it blocks or
finishes, ``run == n > 0`` means preempt it after ``n`` steps.  The scheduler (an explorer, or a
replay of recorded decisions) only picks among the runnable task ids; the engine records every
decision it was given, so any run can be replayed.  When a scheduler has nothing more to say the
default applies: keep running the last task if it can run, else the lowest runnable task.

CPU model: each task is pinned to a CPU.  A CPU runs one task at a time; another task of the
same CPU may take it only when the current one sleeps, finishes, or is preemptible (holds no
spinlock and is not in an RCU read section).  A task waiting in front of a contended spinlock
without holding one counts as preempted just before spin_lock(): it has done nothing
observable yet.  ``max_steps`` bounds the whole run, setup included.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Protocol

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import Finding, FindingError, SleepInAtomic
from rmapfuzz.engine.locks import SPIN
from rmapfuzz.errors import ModelError, ReplayDivergence

Op = Generator[Any, Any, Any]

SETUP_TID = -1


@attrs.frozen
class OpCall:
    """One operation of a task: a label for traces and a zero-argument generator factory."""

    label: str
    start: Callable[[], Op]


class Scheduler(Protocol):
    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int] | None:
        """Return ``(task, run)``, or None to let the default decide from here on."""


class Observer(Protocol):
    """Oracles implement any of (all optional): on_step(engine, index, task, event, result),
    on_mark(engine, task, mark), on_op_end(engine, task), on_quiescent(engine) -- the last
    after each setup operation and after the last task.  An oracle whose on_step looks at
    some event classes only names them in ``step_events``; the engine then calls it for
    steps of those classes alone (a step costs ~15 us, and each call of an oracle that
    returns at once ~0.4 us of it)."""


class Task:
    __slots__ = (
        "tid",
        "cpu",
        "name",
        "ops",
        "op_index",
        "gen",
        "pending",
        "pending_fn",
        "done",
        "held",
        "atomic",
        "rcu",
        "results",
        "proc",
    )

    def __init__(self, tid: int, cpu: int, name: str, ops: Sequence[OpCall]) -> None:
        self.tid = tid
        self.cpu = cpu
        self.name = name
        self.ops = list(ops)
        self.op_index = -1
        self.gen: Op | None = None
        self.pending: Any = None
        self.pending_fn = ""
        self.done = False
        self.held: list[tuple[Any, str]] = []
        self.atomic = 0  # spinlocks held + RCU read-side depth: preemption is off
        self.rcu = 0
        self.results: list[Any] = []
        self.proc: Any = None  # free for the model: e.g. the pid the current op acts on

    @property
    def op_label(self) -> str:
        if 0 <= self.op_index < len(self.ops):
            return self.ops[self.op_index].label
        return ""

    def __repr__(self) -> str:
        return f"task {self.tid}" if self.tid >= 0 else "setup"


@attrs.define
class RunResult:
    finding: Finding | None
    trace: list[tuple[int, int, int, str, Any, Any]]
    decisions: list[tuple[int, int]]
    steps: int
    preemptions: int
    setup_steps: int
    tasks: list[Task]


def _innermost_name(gen: Any) -> str:
    g = gen
    while True:
        y = g.gi_yieldfrom
        if y is None or not hasattr(y, "gi_yieldfrom"):
            return str(g.gi_code.co_name)
        g = y


class Engine:
    """Runs tasks under a scheduler, recording one trace event per atomic step.

    Trace events are tuples ``(tid, cpu, op_index, kernel_function, event, result)``.
    """

    def __init__(
        self,
        *,
        ncpus: int,
        observers: Iterable[Observer] = (),
        max_steps: int = 200_000,
    ) -> None:
        self.ncpus = ncpus
        self.observers = list(observers)
        self.max_steps = max_steps
        self.trace: list[tuple[int, int, int, str, Any, Any]] = []
        self.tasks: list[Task] = []
        self.cpu_current: list[Task | None] = [None] * ncpus
        #: per event class, the on_step methods that want its steps
        self._step_obs = {
            cls: [
                o.on_step
                for o in self.observers
                if hasattr(o, "on_step") and cls in getattr(o, "step_events", (cls,))
            ]
            for cls in _HANDLERS
        }
        self._mark_obs = [o.on_mark for o in self.observers if hasattr(o, "on_mark")]
        self._opend_obs = [o.on_op_end for o in self.observers if hasattr(o, "on_op_end")]
        self._quiescent_obs = [o.on_quiescent for o in self.observers if hasattr(o, "on_quiescent")]
        self._setup: Task | None = None
        self.setup_steps = 0
        self.decisions: list[tuple[int, int]] = []
        self.preemptions = 0
        self.last: int | None = None

    # ------------------------------------------------------------------ public

    def run(
        self,
        tasks: Sequence[tuple[int, str, Sequence[OpCall]]],
        scheduler: Scheduler,
        *,
        setup: Sequence[OpCall] = (),
    ) -> RunResult:
        """Run ``setup`` alone on CPU 0, then ``tasks`` (cpu, name, ops) under ``scheduler``."""
        try:
            for call in setup:
                self.setup_op(call)
            for cpu, name, ops in tasks:
                self.spawn(cpu, name, ops)
            while True:
                runnable = self.runnable()
                if not runnable:
                    break
                choice = scheduler.pick(runnable, self.last)
                if choice is None:
                    break
                self.decide(*choice, runnable=runnable)
            self.finish()
        except FindingError as e:
            return self.result(e)
        return self.result()

    # The same run, one piece at a time (the Hypothesis machine drives the engine this way):
    # setup_op()*, spawn()*, decide()*, finish(); then result().

    def setup_op(self, call: OpCall) -> None:
        """Run one more setup operation to completion, alone on CPU 0."""
        if self.tasks:
            raise ModelError("setup operations must come before the first task is spawned")
        st = self._setup
        if st is None:
            st = self._setup = Task(SETUP_TID, 0, "setup", [])
        st.ops.append(call)
        st.done = False
        st.op_index = len(st.ops) - 2  # _start_next_op() moves to the new operation
        self._start_next_op(st)
        while not st.done:
            if not self._runnable(st):
                self._deadlock([st])
            self._step(st)
            if len(self.trace) > self.max_steps:
                raise ModelError(f"setup exceeded {self.max_steps} steps")
        self.setup_steps = len(self.trace)
        self.cpu_current[0] = None
        for obs in self._quiescent_obs:  # between two setup operations nothing is in flight
            obs(self)

    def spawn(self, cpu: int, name: str, ops: Sequence[OpCall]) -> Task:
        """Add a task; all tasks are spawned before the first decision."""
        if self.decisions:
            raise ModelError("tasks must be spawned before the first decision")
        t = Task(len(self.tasks), cpu, name, ops)
        self.tasks.append(t)
        self._start_next_op(t)
        return t

    def runnable(self) -> tuple[int, ...]:
        """The ids of the tasks that can take a step now (raises on deadlock)."""
        runnable = tuple([t.tid for t in self.tasks if not t.done and self._runnable(t)])
        if not runnable:
            live = [t for t in self.tasks if not t.done]
            if live:
                self._deadlock(live)
        return runnable

    def decide(self, tid: int, budget: int, *, runnable: tuple[int, ...] | None = None) -> None:
        """Let task ``tid`` run ``budget`` steps (0: until it blocks or finishes).  A caller
        that has just asked :meth:`runnable` passes its answer, which saves asking again (a
        random walk decides at every step)."""
        if runnable is None:
            runnable = self.runnable()
        if tid not in runnable:
            raise ReplayDivergence(len(self.trace), tid, runnable)
        d = self.decisions
        if d and d[-1][0] == tid and d[-1][1] and self.last == tid:
            # (t, a) then (t, b) with nothing in between is (t, a + b); (t, a), (t, 0) is (t, 0)
            d[-1] = (tid, d[-1][1] + budget if budget else 0)
        else:
            d.append((tid, budget))
        self._run_task(tid, budget, runnable)

    def finish(self) -> None:
        """Run to the end with the default policy, then the quiescent checks."""
        while True:
            runnable = self.runnable()
            if not runnable:
                break
            last = self.last
            self._run_task(last if last in runnable else runnable[0], 0, runnable)
        for obs in self._quiescent_obs:
            obs(self)

    def result(self, error: FindingError | None = None) -> RunResult:
        return RunResult(
            finding=self._finding(error) if error is not None else None,
            trace=self.trace,
            decisions=self.decisions,
            steps=len(self.trace) - self.setup_steps,
            preemptions=self.preemptions,
            setup_steps=self.setup_steps,
            tasks=self.tasks,
        )

    def _run_task(self, tid: int, budget: int, runnable: tuple[int, ...]) -> None:
        last = self.last
        if last is not None and tid != last and last in runnable:
            self.preemptions += 1
        self.last = tid
        t = self.tasks[tid]
        n = 0
        limit = self.max_steps
        while True:
            self._step(t)
            n += 1
            if len(self.trace) > limit:
                raise ModelError(f"run exceeded {limit} steps in {t.op_label}")
            if t.done or (budget and n >= budget) or not self._runnable(t):
                break

    # ------------------------------------------------------------ the step

    def _runnable(self, t: Task) -> bool:
        p = t.pending
        cls = type(p)
        if cls is ev.Acquire:
            if not p.lock.can_acquire(p.mode):
                return False
        elif cls is ev.WaitUnlocked:
            if p.lock.is_locked():
                return False
        cur = self.cpu_current[t.cpu]
        # A task waiting in front of a contended spin_lock() is treated as preempted just
        # before it: it has done nothing observable yet, so that covers the spinning case too.
        return cur is None or cur is t or cur.done or not cur.atomic

    def _step(self, t: Task) -> None:
        e = t.pending
        self.cpu_current[t.cpu] = t
        handler = _HANDLERS.get(type(e))
        if handler is None:
            raise ModelError(f"{t.op_label}: {t.pending_fn} yielded {e!r}, not an engine event")
        index = len(self.trace)
        self._current = t
        try:
            result = handler(self, t, e)
        except FindingError:
            self.trace.append((t.tid, t.cpu, t.op_index, t.pending_fn, e, "!"))
            raise
        self.trace.append((t.tid, t.cpu, t.op_index, t.pending_fn, e, result))
        for obs in self._step_obs[type(e)]:
            obs(self, index, t, e, result)
        self._advance(t, result)

    def _advance(self, t: Task, value: Any) -> None:
        """Run ``t``'s code up to its next engine event (instant events are answered inline)."""
        gen = t.gen
        while True:
            try:
                e = gen.send(value)  # type: ignore[union-attr]
            except StopIteration as stop:
                t.results.append(stop.value)
                self._op_end(t)
                self._start_next_op(t)
                return
            cls = type(e)
            if cls is ev.Mark:
                for obs in self._mark_obs:
                    obs(self, t, e)
                value = None
                continue
            if cls is ev.Current:
                value = t
                continue
            t.pending = e
            t.pending_fn = _innermost_name(gen)
            if cls is ev.Acquire or cls is ev.WaitUnlocked:
                self._check_blocking_call(t, e)
            return

    def _check_blocking_call(self, t: Task, e: Any) -> None:
        """What might_sleep() and lockdep say when a blocking call is made, contended or not."""
        lock = e.lock
        if lock.sleeping and t.atomic:
            raise SleepInAtomic(t, t.pending_fn, repr(e))
        if lock.owner is t or t in lock.readers:
            raise FindingError(
                "deadlock",
                f"{t.pending_fn}() calls {e!r} on a lock this task already holds "
                f"({t.op_label}): recursive locking",
                task=t.tid,
            )

    def _start_next_op(self, t: Task) -> bool:
        t.op_index += 1
        if t.op_index >= len(t.ops):
            t.done = True
            t.gen = None
            t.pending = None
            if self.cpu_current[t.cpu] is t:
                self.cpu_current[t.cpu] = None
            return False
        t.gen = t.ops[t.op_index].start()
        self._current = t
        self._advance(t, None)
        return not t.done

    def _op_end(self, t: Task) -> None:
        if t.held:
            locks = ", ".join(f"{lk.name}" for lk, _ in t.held)
            raise FindingError("lock-leak", f"{t.op_label} returned with {locks} held", task=t.tid)
        if t.rcu:
            raise FindingError(
                "rcu-leak", f"{t.op_label} returned inside an RCU read-side section", task=t.tid
            )
        for obs in self._opend_obs:
            obs(self, t)

    # ------------------------------------------------------------ findings

    def _finding(self, e: FindingError) -> Finding:
        step = len(self.trace) - 1
        t = getattr(self, "_current", None)
        extra = e.extra
        return Finding(
            kind=e.kind,
            message=e.message,
            step=int(extra.get("step", step)),
            task=extra.get("task", t.tid if t is not None else None),
            observed=tuple(extra.get("observed", ())),
            real=tuple(extra.get("real", ())),
        )

    def _deadlock(self, live: list[Task]) -> None:
        """No task can run: name the wait cycle (or the holder that is gone)."""
        by_tid = {t.tid: t for t in live}

        def waits_for(t: Task) -> tuple[str, list[Task]]:
            p = t.pending
            if type(p) is ev.Acquire and not p.lock.can_acquire(p.mode):
                return p.lock.name, p.lock.holders()
            if type(p) is ev.WaitUnlocked and p.lock.is_locked():
                return p.lock.name, p.lock.holders()
            cur = self.cpu_current[t.cpu]
            return f"cpu{t.cpu}", [cur] if cur is not None and cur is not t else []

        def label(t: Task) -> str:
            return f"task {t.tid} ({t.op_label})" if t.tid >= 0 else f"setup ({t.op_label})"

        start = live[0]
        path: list[Task] = []
        seen: dict[int, int] = {}
        cur: Task | None = start
        while cur is not None and cur.tid not in seen:
            seen[cur.tid] = len(path)
            path.append(cur)
            _, holders = waits_for(cur)
            nxt = next((h for h in holders if h.tid in by_tid or h.tid == SETUP_TID), None)
            if nxt is None:
                what, hs = waits_for(cur)
                gone = ", ".join(label(h) for h in hs) or "nobody"
                raise FindingError(
                    "deadlock",
                    f"{label(cur)} waits for {what} held by {gone}, which can never release it",
                )
            cur = nxt
        assert cur is not None
        cycle = path[seen[cur.tid] :]
        parts = [f"{label(t)} waits for {waits_for(t)[0]}" for t in cycle]
        raise FindingError(
            "deadlock", "; ".join(parts) + f"; held by {label(cycle[0])}", task=cycle[0].tid
        )


# ---------------------------------------------------------------- handlers


def _uaf(t: Task, obj: Any, what: str) -> FindingError:
    return FindingError(
        "use-after-free",
        f"{t.pending_fn}() {what} {obj.short()} after it was freed ({t.op_label})",
        task=t.tid,
    )


def _load(eng: Engine, t: Task, e: ev.Load) -> Any:
    obj = e.obj
    if getattr(obj, "freed", False) and not obj.typesafe:
        raise _uaf(t, obj, f"read {e.field} of")
    v = getattr(obj, e.field)
    return v if e.key is None else v.get(e.key)


def _store(eng: Engine, t: Task, e: ev.Store) -> Any:
    obj = e.obj
    if getattr(obj, "freed", False):
        raise _uaf(t, obj, f"wrote {e.field} of")
    if e.key is None:
        setattr(obj, e.field, e.value)
    else:
        getattr(obj, e.field)[e.key] = e.value
    return None


def _rmw(eng: Engine, t: Task, e: ev.Rmw) -> Any:
    obj = e.obj
    freed = getattr(obj, "freed", False)
    if freed and not obj.typesafe:
        raise _uaf(t, obj, f"did {e.name} on")
    old = getattr(obj, e.field)
    new, result = e.fn(old)
    if new != old:
        if freed:
            raise _uaf(t, obj, f"did {e.name} on")
        setattr(obj, e.field, new)
    return result


def _grant(t: Task, lock: Any, mode: str) -> None:
    if mode == "r":
        lock.readers.append(t)
    else:
        lock.owner = t
    t.held.append((lock, mode))
    if lock.kind == SPIN:
        t.atomic += 1


def _acquire(eng: Engine, t: Task, e: ev.Acquire) -> Any:
    _grant(t, e.lock, e.mode)
    return None


def _tryacquire(eng: Engine, t: Task, e: ev.TryAcquire) -> Any:
    lock = e.lock
    if not lock.can_acquire(e.mode):
        return False
    _grant(t, lock, e.mode)
    return True


def _release(eng: Engine, t: Task, e: ev.Release) -> Any:
    lock = e.lock
    if not lock.held_by(t, e.mode):
        holders = ", ".join(repr(h) for h in lock.holders()) or "nobody"
        raise FindingError(
            "bad-unlock",
            f"{t.pending_fn}() releases {lock.name}, which this task does not hold "
            f"(held by {holders}) ({t.op_label})",
            task=t.tid,
        )
    if e.mode == "r":
        lock.readers.remove(t)
    else:
        lock.owner = None
    t.held.remove((lock, e.mode))
    if lock.kind == SPIN:
        t.atomic -= 1
    return None


def _wait_unlocked(eng: Engine, t: Task, e: ev.WaitUnlocked) -> Any:
    return None


def _rcu_lock(eng: Engine, t: Task, e: Any) -> Any:
    t.rcu += 1
    t.atomic += 1
    return None


def _rcu_unlock(eng: Engine, t: Task, e: Any) -> Any:
    if not t.rcu:
        raise FindingError("bad-unlock", f"{t.pending_fn}() rcu_read_unlock() without lock")
    t.rcu -= 1
    t.atomic -= 1
    return None


def _alloc(eng: Engine, t: Task, e: ev.Alloc) -> Any:
    e.obj.freed = False
    return e.obj


def _free(eng: Engine, t: Task, e: ev.Free) -> Any:
    obj = e.obj
    if obj.freed:
        raise FindingError(
            "double-free", f"{t.pending_fn}() frees {obj.short()} twice ({t.op_label})", task=t.tid
        )
    obj.freed = True
    return None


_HANDLERS: dict[type, Callable[[Engine, Task, Any], Any]] = {
    ev.Load: _load,
    ev.Store: _store,
    ev.Rmw: _rmw,
    ev.Acquire: _acquire,
    ev.TryAcquire: _tryacquire,
    ev.Release: _release,
    ev.WaitUnlocked: _wait_unlocked,
    ev.RcuReadLock: _rcu_lock,
    ev.RcuReadUnlock: _rcu_unlock,
    ev.Alloc: _alloc,
    ev.Free: _free,
}
