"""Exhaustive exploration: every schedule of one fixed program up to K preemptions.

Stateless model checking, as CHESS and loom do it: model state is plain Python objects whose
running operations (generators) cannot be cloned, so every explored schedule is a fresh run
(for the kernel: from a copy of the machine the setup left), driven one atomic step at a time
(``Engine.decide(task, 1)``), and the search is a depth-first walk over the tree of scheduling
choices.  Two things keep the tree small:

* **Preemption bounding** (Musuvathi & Qadeer 2007).  A preemption is a switch away from a task
  that could still run (the engine's own count).  The search is iterated over K = 0, 1, ...
  so the first bound that has a finding gives the fewest preemptions; at that bound the whole
  space is explored and the finding kept is the smallest by (preemptions, steps).
* **Dynamic partial-order reduction** (Flanagan & Godefroid, POPL 2005), made sound under the
  bound the way *Bounded Partial-Order Reduction* (Coons, Musuvathi & McKinley, OOPSLA 2013)
  does it: whenever a backtrack point is added at state i, a *conservative* backtrack point for
  the same task is also added at the start of the block of steps that ends just before i (the
  last context switch), where running that task costs no more preemptions than the recorded
  execution did.  Sleep sets are used only without a bound (there, conservative points are
  explored even when their task sleeps, and a sleeping task is only inherited by a sibling
  whose own choice costs at least as many preemptions as the sleeper did): under a bound, the
  run a sleeping task stands for may need more preemptions than allowed.

Dependence is computed from what each step did (its *footprint*), within one execution (objects
are compared by identity, so nothing must be stable across re-executions):

* ``Load``/``Store``/``Rmw`` of ``obj.field[key]``: a read or write of that location (``Rmw``
  always counts as a write), plus a read of ``obj``'s liveness;
* ``Alloc``/``Free`` of ``obj``: a write of ``obj``'s liveness (so they conflict with every access);
* any lock event (``Acquire``, ``TryAcquire``, ``Release``, ``WaitUnlocked``) and a ``Load`` of a
  lock's state: one location per lock, and every lock event writes it;
* a step after which the task emitted a ``Mark``: oracles look at the model at marks, so such a
  step also reads what the subject's ``mark_keys`` says the oracles read there, or
  *everything* (it conflicts with every write) when it says nothing; mark steps also write one
  common location, so marks of different tasks keep their order;
* a step that raised a finding: the run ends there, so it disables every other task and is
  dependent with each one's next step (a backtrack point for each of them at that step);
* tasks pinned to the same CPU: all their steps conflict (the CPU is shared state);
* whatever a caller adds with ``extra`` (the kernel entry point adds what its oracles read).

Why this is enough (the argument the tests check against plain enumeration): two steps whose
footprints do not conflict commute -- either order leaves the same model and oracle state,
and neither enables or disables the other -- so the dependence relation is a valid
independence relation for DPOR; with it, FG-DPOR explores a persistent set at every state and,
with BPOR's conservative points, every state (so every finding and every final state)
reachable within K preemptions.  The footprints a mark adds are known only after the step ran,
so the step's races are looked for again then, as when it was pending.

The module knows engines, events and tasks only; :func:`check_program` is the one entry point
that knows the kernel model, and :func:`explore` takes any engine-level task list.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import Finding, FindingError
from rmapfuzz.engine.locks import Lock
from rmapfuzz.engine.run import Engine, OpCall
from rmapfuzz.errors import ModelError, ReplayDivergence

Key = tuple[Any, ...]
Extra = Callable[[Any], Iterable[tuple[Key, bool]]]

#: re-executions allowed per bound before the search gives up (a state-space sanity cap)
DEFAULT_MAX_SCHEDULES = 200_000

_LOCK_EVENTS = (ev.Acquire, ev.TryAcquire, ev.Release, ev.WaitUnlocked)
_MARKS = ("M",)


class Subject(Protocol):
    """What is explored: a way to get a fresh engine, set up and with its tasks spawned."""

    def start(self, observer: Any) -> Engine:
        """A fresh engine (``observer`` first among its observers), setup run, tasks spawned.
        May raise :class:`FindingError` when the setup itself fails."""

    def extra(self, event: Any) -> Iterable[tuple[Key, bool]]:
        """Locations an event touches beyond the generic ones (what oracles read)."""


# ------------------------------------------------------------------ footprints


class Footprint:
    """What one step touched: ``keys`` maps a location to True when written; ``gread`` means the
    step read everything (a mark followed it)."""

    __slots__ = ("keys", "write", "gread")

    def __init__(self, keys: dict[Key, bool], gread: bool = False) -> None:
        if gread:
            keys[_MARKS] = True
        self.keys = keys
        self.write = any(keys.values())
        self.gread = gread

    def conflicts(self, other: Footprint) -> bool:
        a, b = self.keys, other.keys
        if len(a) > len(b):
            a, b = b, a
        for k, w in a.items():
            wb = b.get(k)
            if wb is not None and (w or wb):
                return True
        return (self.gread and other.write) or (other.gread and self.write)


def footprint(
    event: Any, cpu_key: Key | None, extra: Extra | None, gread: bool = False
) -> Footprint:
    """The footprint of ``event`` (see the module docstring)."""
    keys: dict[Key, bool] = {}
    cls = type(event)
    if cls is ev.Load or cls is ev.Store or cls is ev.Rmw:
        obj = event.obj
        if isinstance(obj, Lock):
            keys[("L", id(obj))] = cls is not ev.Load
        else:
            keys[("V", id(obj), event.field, getattr(event, "key", None))] = cls is not ev.Load
            keys[("O", id(obj))] = False
    elif cls in _LOCK_EVENTS:
        keys[("L", id(event.lock))] = True
    elif cls is ev.Alloc or cls is ev.Free:
        keys[("O", id(event.obj))] = True
    if extra is not None:
        for k, w in extra(event):
            keys[k] = keys.get(k, False) or w
    if cpu_key is not None:
        keys[cpu_key] = True
    return Footprint(keys, gread)


def _join(a: list[int], b: list[int]) -> None:
    for i, x in enumerate(b):
        if x > a[i]:
            a[i] = x


# ------------------------------------------------------------------ results


@attrs.define
class Found:
    """A finding and the schedule that gives it."""

    finding: Finding
    decisions: list[tuple[int, int]]
    preemptions: int
    steps: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.preemptions, self.steps)


@attrs.define
class BoundStats:
    bound: int | None  # None: no preemption bound
    schedules: int = 0  # runs explored to their end (a finding, or every task done)
    blocked: int = 0  # runs abandoned: every task that could run was asleep (covered elsewhere)
    bound_cut: int = 0  # backtrack choices dropped because they would exceed the bound
    capped: bool = False
    elapsed_s: float = 0.0

    @property
    def pruned(self) -> int:
        return self.blocked + self.bound_cut

    def to_json(self) -> dict[str, Any]:
        return {
            "bound": self.bound,
            "schedules": self.schedules,
            "blocked": self.blocked,
            "bound_cut": self.bound_cut,
            "pruned": self.pruned,
            "capped": self.capped,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@attrs.define
class ExploreResult:
    """``found`` is the smallest finding by (preemptions, steps), or None; ``proved`` is the
    largest bound explored completely without a finding (-1: none)."""

    found: Found | None
    bounds: list[BoundStats]
    reduction: bool
    elapsed_s: float
    setup_finding: bool = False

    @property
    def schedules(self) -> int:
        return sum(b.schedules for b in self.bounds)

    @property
    def pruned(self) -> int:
        return sum(b.pruned for b in self.bounds)

    @property
    def blocked(self) -> int:
        return sum(b.blocked for b in self.bounds)

    @property
    def capped(self) -> bool:
        return any(b.capped for b in self.bounds)

    @property
    def proved(self) -> int | None:
        """The largest bound searched completely without a finding (-1: none; None: every
        schedule, no bound)."""
        k: int | None = -1
        for b in self.bounds:
            if b.capped or (self.found is not None and b is self.bounds[-1]):
                break
            k = b.bound
        return k


# ------------------------------------------------------------------ the search


class _Node:
    """A state of the current execution: before step ``index``."""

    __slots__ = ("runnable", "last", "pre", "chosen", "cons", "todo", "done", "sleep", "taken")

    def __init__(
        self, runnable: tuple[int, ...], last: int | None, pre: int, sleep: dict[int, bool]
    ) -> None:
        self.runnable = runnable
        self.last = last
        self.pre = pre  # preemptions before this state
        self.chosen = -1
        self.cons = False  # the current choice came from a conservative backtrack point
        self.todo: dict[int, bool] = {}  # task -> conservative
        self.done: set[int] = set()
        self.sleep = sleep  # task -> its step reads everything
        self.taken: dict[int, tuple[bool, int]] = {}  # task -> (reads everything, cost)

    def cost(self, tid: int) -> int:
        last = self.last
        return 1 if last is not None and tid != last and last in self.runnable else 0


class _Marks:
    """The explorer's own observer: logs marks, so a step knows which followed it."""

    def __init__(self) -> None:
        self.log: list[tuple[int, Any]] = []

    @property
    def n(self) -> int:
        return len(self.log)

    def on_mark(self, eng: Any, task: Any, mark: Any) -> None:
        self.log.append((task.tid, mark))


def _no_mark_keys(tid: int, mark: Any) -> None:
    return None


class _Search:
    def __init__(
        self,
        subject: Subject,
        bound: int | None,
        reduction: bool,
        max_schedules: int,
        deadline: float | None,
        on_run: Callable[[Engine, Finding | None], None] | None = None,
        kind: str | None = None,
    ) -> None:
        self.on_run = on_run
        #: only findings of this kind count (None: any); a run ending in another is a dead end
        self.kind = kind
        self.subject = subject
        self.bound = bound if bound is not None else 1 << 62
        self.reduction = reduction
        # Sleep sets and a preemption bound do not mix: a task asleep here is covered by a
        # sibling that ran it earlier, but the reordered run may need more preemptions than
        # the bound allows there.  So sleep sets are used for unbounded searches only.
        self.sleep_sets = reduction and bound is None
        self.max_schedules = max_schedules
        self.deadline = deadline
        self.path: list[_Node] = []
        self.stats = BoundStats(bound)
        self.best: Found | None = None
        self.extra = subject.extra

    # ---------------------------------------------------------------- driver

    def run(self) -> BoundStats:
        t0 = time.perf_counter()
        branch = 0
        while True:
            self._execute(branch)
            nxt = self._next_branch()
            if nxt is None:
                break
            branch = nxt
            if self.stats.schedules + self.stats.blocked >= self.max_schedules or (
                self.deadline is not None and time.perf_counter() > self.deadline
            ):
                self.stats.capped = True
                break
        self.stats.elapsed_s = time.perf_counter() - t0
        return self.stats

    def _next_branch(self) -> int | None:
        path = self.path
        while path:
            d = len(path) - 1
            node = path[d]
            for t in sorted(node.todo):
                cons = node.todo.pop(t)
                if t in node.done:
                    continue
                if not cons and t in node.sleep:
                    continue
                if node.pre + node.cost(t) > self.bound:
                    self.stats.bound_cut += 1
                    continue
                node.chosen = t
                node.cons = cons
                node.done.add(t)
                return d
            path.pop()
        return None

    # ------------------------------------------------------------ one run

    def _execute(self, branch: int) -> None:
        marks = _Marks()
        try:
            eng = self.subject.start(marks)
        except FindingError as e:
            raise _SetupFinding(e) from None
        tasks = eng.tasks
        n = len(tasks)
        cpus = [t.cpu for t in tasks]
        shared_cpu = {c for c in cpus if cpus.count(c) > 1}
        cpu_key = [("C", c) if c in shared_cpu else None for c in cpus]
        extra = self.extra
        mark_keys = getattr(self.subject, "mark_keys", _no_mark_keys)
        reduction = self.reduction
        path = self.path
        bound = self.bound
        sleep_sets = self.sleep_sets

        # per-execution analysis state
        tids: list[int] = []
        vcs: list[list[int]] = []
        block_start: list[int] = []
        task_vc = [[-1] * n for _ in range(n)]
        hist: dict[Key, list[tuple[int, int, bool]]] = {}
        writes: list[tuple[int, int]] = []
        greads: list[tuple[int, int]] = []
        last_w: dict[Key, list[int]] = {}
        reads_since: dict[Key, list[int]] = {}
        all_w = [-1] * n
        all_g = [-1] * n
        released: list[str | None] = []  # per step: the mode of the lock it released, if any

        def race(p: int, fp: Footprint, event: Any) -> None:
            """FG-DPOR: the latest step that conflicts with ``fp`` (task p's next step, ``event``),
            may be enabled together with it and does not happen before p gets a backtrack point
            for p.  A release is never enabled together with a blocking acquire of its lock (the
            releaser holds it), unless both are shared."""
            vc = task_vc[p]
            best = behind = -1
            cls = type(event)
            blocking = cls is ev.Acquire or cls is ev.WaitUnlocked
            shared = blocking and getattr(event, "mode", "w") == "r"
            for key, w in fp.keys.items():
                h = hist.get(key)
                if not h:
                    continue
                covered = 0
                for i, q, wq in reversed(h):
                    if i <= best:
                        break
                    if q == p or not (w or wq):
                        continue
                    if blocking and key[0] == "L":
                        rel = released[i]
                        if rel is not None and not (shared and rel == "r"):
                            if i > behind:
                                behind = i
                            continue
                    if i > vc[q]:
                        best = i
                        break
                    covered += 1
                    if covered >= n - 1:
                        break
            if fp.write:
                for i, q in reversed(greads):
                    if i <= best:
                        break
                    if q != p and i > vc[q]:
                        best = i
                        break
            if fp.gread:
                for i, q in reversed(writes):
                    if i <= best:
                        break
                    if q != p and i > vc[q]:
                        best = i
                        break
            if best >= 0:
                self._backtrack(best, p, vc, block_start)
            if behind > best and behind > vc[tids[behind]]:
                # the release p waited behind: not a race, but under a preemption bound running
                # p just before it may be the only way within the bound to the same orders
                self._backtrack(behind, p, vc, block_start)

        def record(k: int, p: int, fp: Footprint, event: Any) -> None:
            released.append(event.mode if type(event) is ev.Release else None)
            vc = list(task_vc[p])
            vc[p] = k
            for key, w in fp.keys.items():
                lw = last_w.get(key)
                if lw is not None:
                    _join(vc, lw)
                if w:
                    rs = reads_since.get(key)
                    if rs is not None:
                        _join(vc, rs)
            if fp.write:
                _join(vc, all_g)
            if fp.gread:
                _join(vc, all_w)
            for key, w in fp.keys.items():
                if w:
                    last_w[key] = vc
                    reads_since.pop(key, None)
                else:
                    rs = reads_since.get(key)
                    if rs is None:
                        reads_since[key] = list(vc)
                    else:
                        _join(rs, vc)
                hist.setdefault(key, []).append((k, p, w))
            if fp.write:
                _join(all_w, vc)
                writes.append((k, p))
            if fp.gread:
                _join(all_g, vc)
                greads.append((k, p))
            task_vc[p] = vc
            tids.append(p)
            vcs.append(vc)
            block_start.append(block_start[-1] if k and tids[k - 1] == p else k)

        fp_cache: list[tuple[Any, Footprint] | None] = [None] * n

        def pending_fp(t: int, gread: bool = False) -> Footprint:
            event = tasks[t].pending
            if gread:
                return footprint(event, cpu_key[t], extra, True)
            c = fp_cache[t]
            if c is not None and c[0] is event:  # a task's next step stays put until it runs
                return c[1]
            fp = footprint(event, cpu_key[t], extra)
            fp_cache[t] = (event, fp)
            return fp

        k = 0
        child_sleep: dict[int, bool] = {}
        finding: Finding | None = None
        stopped = False
        tid = -1
        try:
            while True:
                tid = -1
                runnable = eng.runnable()
                if not runnable:
                    break
                if k < len(path):
                    node = path[k]
                    if node.runnable != runnable:
                        raise ModelError(
                            f"exhaustive search: the program is not deterministic (step {k}: "
                            f"runnable {runnable}, recorded {node.runnable})"
                        )
                else:
                    node = _Node(runnable, eng.last, eng.preemptions, child_sleep)
                    cands = [t for t in runnable if t not in child_sleep]
                    if not cands:
                        self.stats.blocked += 1
                        stopped = True
                        break
                    t = node.last if node.last in cands else cands[0]
                    if node.pre + node.cost(t) > bound:
                        self.stats.bound_cut += 1
                        stopped = True
                        if reduction:  # assume the worst: what did not run depends on the last
                            for p in runnable:
                                if k:
                                    self._backtrack(k - 1, p, task_vc[p], block_start)
                        break
                    node.chosen = t
                    node.done.add(t)
                    if not reduction:
                        for u in runnable:
                            if u != t:
                                node.todo.setdefault(u, False)
                    path.append(node)
                analyse = reduction and k >= branch
                if analyse:
                    for p in range(n):
                        if not tasks[p].done:
                            race(p, pending_fp(p), tasks[p].pending)
                tid = node.chosen
                event = tasks[tid].pending
                before = marks.n
                fp = pending_fp(tid) if reduction else None
                try:
                    eng.decide(tid, 1, runnable=runnable)
                finally:
                    if reduction:
                        gread = False
                        if marks.n > before:
                            mkeys = dict(fp.keys)  # type: ignore[union-attr]
                            for mt, mark in marks.log[before:]:
                                got = mark_keys(mt, mark)
                                if got is None:
                                    gread = True
                                else:
                                    for key, w in got:
                                        mkeys[key] = mkeys.get(key, False) or w
                            mkeys[_MARKS] = True
                            fp = Footprint(mkeys, gread)
                            if analyse:
                                race(tid, fp, event)
                        if k >= branch and sleep_sets:
                            cost = node.cost(tid)
                            if not node.cons:
                                # a sleeper is re-evaluated in later runs, where this run's
                                # objects are gone: one followed by marks reads everything
                                node.taken[tid] = (marks.n > before, cost)
                            cand = dict(node.sleep)
                            for u, (g, c) in node.taken.items():
                                if c <= cost:
                                    cand[u] = g
                            child_sleep = {}
                            for u, g in cand.items():
                                if u == tid or tasks[u].done:
                                    continue
                                if not pending_fp(u, g).conflicts(fp):
                                    child_sleep[u] = g
                        record(k, tid, fp, event)  # type: ignore[arg-type]
                    elif k >= branch:
                        child_sleep = {}
                k += 1
            if not stopped:
                eng.finish()
        except FindingError as e:
            finding = eng.result(e).finding
            if reduction:  # the steps that never ran race with what ran before them
                for p in range(n):
                    if p != tid and not tasks[p].done and tasks[p].pending is not None:
                        race(p, pending_fp(p), tasks[p].pending)
                        if tid >= 0 and len(tids) == k + 1 and tids[k] == tid:
                            # A finding ends the run: its step disables every other task, so
                            # it is dependent with each one's next step, whatever they touch.
                            # Without this, what another task would do after its pending
                            # step is never looked at (the other task may finish first and
                            # find something else).
                            self._backtrack(k, p, task_vc[p], block_start)
        if stopped:
            return
        self.stats.schedules += 1
        if self.on_run is not None:
            self.on_run(eng, finding)
        if finding is not None and (self.kind is None or finding.kind == self.kind):
            r = eng.result()
            found = Found(finding, list(r.decisions), r.preemptions, r.steps)
            if reduction and 0 <= finding.step - r.setup_steps < len(vcs):
                found = self._trim(found, finding.step - r.setup_steps, tids, vcs) or found
            if self.best is None or found.size < self.best.size:
                self.best = found

    # ---------------------------------------------------------- backtracking

    def _backtrack(self, i: int, p: int, vc: list[int], block_start: list[int]) -> None:
        path = self.path
        node = path[i]
        if p in node.runnable:
            cands = [p]
        else:
            e = [q for q in node.runnable if vc[q] > i]
            cands = [min(e)] if e else list(node.runnable)
        for c in cands:
            node.todo.setdefault(c, False)
        chosen_cost = node.cost(node.chosen)
        if i > 0 and any(node.cost(c) > chosen_cost for c in cands):
            # BPOR: running c at i preempts the task the execution went on with; where that
            # task's block began, running c instead costs what the execution paid there
            j = block_start[i - 1]
            nj = path[j]
            cc = [c for c in cands if c in nj.runnable] or list(nj.runnable)
            for c in cc:
                nj.todo[c] = True

    # ---------------------------------------------------------- shortening

    def _trim(self, found: Found, kf: int, tids: list[int], vcs: list[list[int]]) -> Found | None:
        """Replay only the steps that happen before the finding step, in their order: the
        same finding with fewer steps, if it reproduces and costs no more preemptions."""
        vf = vcs[kf]
        keep = [tids[i] for i in range(kf + 1) if i <= vf[tids[i]]]
        if len(keep) == kf + 1:
            return None
        try:
            eng = self.subject.start(_Marks())
            for t in keep:
                eng.decide(t, 1)
        except FindingError as e:
            f = eng.result(e).finding
            r = eng.result()
            if f is not None and f.kind == found.finding.kind:
                cand = Found(f, list(r.decisions), r.preemptions, r.steps)
                if cand.size < found.size:
                    return cand
            return None
        except ReplayDivergence:
            return None
        return None


class _SetupFinding(Exception):
    def __init__(self, error: FindingError) -> None:
        super().__init__(str(error))
        self.error = error


# ------------------------------------------------------------------ public API


def explore_subject(
    subject: Subject,
    *,
    max_preemptions: int | None = 2,
    reduction: bool = True,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    time_limit: float | None = None,
    min_preemptions: int = 0,
    progress: Callable[[BoundStats], None] | None = None,
    on_run: Callable[[Engine, Finding | None], None] | None = None,
    kind: str | None = None,
) -> ExploreResult:
    """Iterate the bound from ``min_preemptions`` to ``max_preemptions``; stop at the first bound
    with a finding (its smallest one by preemptions, then steps; of ``kind`` only, when given)
    or when capped."""
    t0 = time.perf_counter()
    deadline = t0 + time_limit if time_limit is not None else None
    bounds: list[BoundStats] = []
    found: Found | None = None
    ks: list[int | None] = (
        [None] if max_preemptions is None else list(range(min_preemptions, max_preemptions + 1))
    )
    for k in ks:
        s = _Search(subject, k, reduction, max_schedules, deadline, on_run, kind)
        try:
            stats = s.run()
        except _SetupFinding as e:
            eng_finding = Finding(kind=e.error.kind, message=e.error.message)
            found = Found(eng_finding, [], 0, 0)
            return ExploreResult(found, bounds, reduction, time.perf_counter() - t0, True)
        bounds.append(stats)
        if progress is not None:
            progress(stats)
        if s.best is not None:
            found = s.best
            break
        if stats.capped:
            break
    return ExploreResult(found, bounds, reduction, time.perf_counter() - t0)


@attrs.define
class TaskSubject:
    """Engine-level tasks: ``build()`` returns fresh ``(tasks, setup, observers)`` where tasks
    are ``(cpu, name, ops)`` as :meth:`Engine.run` takes them."""

    build: Callable[
        [], tuple[Sequence[tuple[int, str, Sequence[OpCall]]], Sequence[OpCall], list[Any]]
    ]
    ncpus: int = 2
    max_steps: int = 200_000
    extra_fn: Extra | None = None

    def start(self, observer: Any) -> Engine:
        tasks, setup, observers = self.build()
        eng = Engine(ncpus=self.ncpus, observers=[observer, *observers], max_steps=self.max_steps)
        for call in setup:
            eng.setup_op(call)
        for cpu, name, ops in tasks:
            eng.spawn(cpu, name, ops)
        return eng

    def extra(self, event: Any) -> Iterable[tuple[Key, bool]]:
        return self.extra_fn(event) if self.extra_fn is not None else ()


def explore(
    build: Callable[[], Any],
    *,
    ncpus: int = 2,
    max_preemptions: int | None = 2,
    reduction: bool = True,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    min_preemptions: int = 0,
    on_run: Callable[[Engine, Finding | None], None] | None = None,
) -> ExploreResult:
    """Explore engine-level tasks.  ``build()`` returns fresh ``tasks`` or
    ``(tasks, setup, observers)``."""

    def norm() -> tuple[Any, Any, Any]:
        out = build()
        if isinstance(out, tuple) and len(out) == 3:
            return out
        return out, (), []

    return explore_subject(
        TaskSubject(norm, ncpus),
        max_preemptions=max_preemptions,
        reduction=reduction,
        max_schedules=max_schedules,
        min_preemptions=min_preemptions,
        on_run=on_run,
    )


# ------------------------------------------------------------------ the kernel


_GEOMETRY = ("vm_start", "vm_end", "vm_pgoff")
_STRUCT = (*_GEOMETRY, "vm_flags")  # what Vma.geometry reads


class _Relay:
    """The first observer of a kernel run: passes marks on to the explorer's observer of the
    current run (a machine copied from the snapshot gets the new run's observer)."""

    def __init__(self) -> None:
        self.target: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"target": None}

    def on_mark(self, eng: Any, task: Any, mark: Any) -> None:
        if self.target is not None:
            self.target.on_mark(eng, task, mark)


@attrs.define
class KernelSubject:
    """A :class:`~rmapfuzz.program.Program` on a fresh machine of ``variant`` with ``knobs``,
    under the default oracles: what :func:`rmapfuzz.runner.execute` runs."""

    variant: Any
    program: Any
    knobs: dict[str, Any] = attrs.field(factory=dict)
    max_steps: int = 200_000
    _walks: dict[int, Any] = attrs.field(factory=dict, init=False, repr=False)
    _kernel: Any = attrs.field(default=None, init=False, repr=False)
    #: the machine right after the setup (pickled without its trace), and that trace
    _snapshot: tuple[bytes, list[Any]] | None = attrs.field(default=None, init=False, repr=False)
    _pickles: bool = attrs.field(default=True, init=False, repr=False)

    def start(self, observer: Any) -> Engine:
        """The setup runs once; later runs start from a copy of the machine it left (the
        setup runs alone, so it is the same every time).  The copy shares the setup's trace
        entries, which name the setup's objects: a run's trace is only counted, never shown
        (``rmapfuzz check`` replays the counterexample with ``execute()`` to show it)."""
        from rmapfuzz.runner import _call

        self._walks = {}
        if self._snapshot is not None:
            data, trace = self._snapshot
            kernel, eng, relay = pickle.loads(data)
            eng.trace = list(trace)
        else:
            kernel, eng, relay = self._boot()
        relay.target = observer
        self._kernel = kernel
        for i, t in enumerate(self.program.tasks):
            eng.spawn(t.cpu, f"task{i}", [_call(kernel, op) for op in t.ops])
        return eng

    def _boot(self) -> tuple[Any, Engine, _Relay]:
        from rmapfuzz.oracles import default_oracles
        from rmapfuzz.runner import _call

        kernel = self.variant(**self.knobs)
        kernel.boot()
        relay = _Relay()
        eng = Engine(
            ncpus=self.program.cpus,
            observers=[relay, *default_oracles(kernel)],
            max_steps=self.max_steps,
        )
        for op in self.program.setup:
            eng.setup_op(_call(kernel, op))
        if self._pickles:
            trace, eng.trace = eng.trace, []
            try:
                data = pickle.dumps((kernel, eng, relay), protocol=pickle.HIGHEST_PROTOCOL)
                self._snapshot = (data, list(trace))
            except Exception:  # something in this variant does not pickle: set up every time
                self._pickles = False
            eng.trace = trace
        return kernel, eng, relay

    def extra(self, event: Any) -> Iterable[tuple[Key, bool]]:
        """What an event touches beyond its own location: the torn-chain oracle looks at a
        tree's ``busy`` on every load of the tree, and at the other geometry fields of a vma
        when one is stored; the invariant oracle looks at the page lock when a migration entry
        is stored, and such a store writes ``("MIG", page)`` (see :meth:`mark_keys`);
        allocators hand out ids from per-type counters; ``Load(vma, "geometry")`` (a struct
        copy) reads the four fields it is made of."""
        from rmapfuzz.kernel.objects import IntervalTree, Migration, Vma

        cls = type(event)
        if cls is ev.Load and type(event.obj) is IntervalTree:
            return ((("V", id(event.obj), "busy", None), False),)
        if cls is ev.Store and type(event.value) is Migration:
            page = event.value.page
            return ((("L", id(page.lock)), False), (("MIG", id(page)), True))
        if cls is ev.Alloc:
            return ((("A", type(event.obj).__name__), True),)
        if (cls is ev.Load or cls is ev.Store) and type(event.obj) is Vma:
            f = event.field
            if cls is ev.Load and f == "geometry":  # a property: the struct copy's fields
                return tuple((("V", id(event.obj), g, None), False) for g in _STRUCT)
            if cls is ev.Store and f in _GEOMETRY:  # the torn-chain oracle notes the geometry
                return tuple((("V", id(event.obj), g, None), False) for g in _GEOMETRY)
        return ()

    def mark_keys(self, tid: int, mark: Any) -> Iterable[tuple[Key, bool]] | None:
        """What the oracles read at ``mark`` (emitted by task ``tid``), or None: everything.

        Called for each mark of a task's step, in order.  The step then reads these locations
        too, so it is dependent with any other step that writes one of them.  They must cover
        whatever the oracles' verdict at the mark depends on: the model's state now, and the
        oracles' own state, which ``on_step`` updates at stores to the model (so a store that
        changes oracle state counts as a write of the model location it stores to).

        * ``walk-begin`` (torn.py, invariants.py): the walked tree's ``nodes`` and ``busy``
          (``always``/``ever`` start from them); every live vma's liveness and
          ``vm_start``/``vm_end``/``vm_pgoff``, and the vma allocator (``geom_hist`` starts
          from the live vmas); the anon_vma's liveness and ``page->mapping`` (freed or a new
          incarnation: ``gen`` changes only while the slot is free, and ``mapping_gen`` only
          in the step that stores ``mapping``).
        * ``walk-visit (avc, vma)``: the walked tree's ``nodes`` and ``busy`` (each store to
          the tree updates ``ever``), ``avc->anon_vma``, ``avc->vma`` and ``avc``'s liveness.
        * ``vma-geometry (vma, ...)``: ``vma``'s three geometry fields (each store to one
          updates ``geom_hist[vma]``) and its liveness (an ``Alloc`` resets that entry).
        * ``walk-end``: the walked tree's ``nodes`` and ``busy`` (``always``).
        * ``migration-end page`` (invariants.py looks for a migration entry of ``page`` in
          every pte of every live mm): every pte slot that exists now, each live mm's
          liveness, and ``("MIG", page)``, which every store of a migration entry for
          ``page`` writes (:meth:`extra`): a slot created later can only matter if it holds
          one.  Slots are never removed, new mms start with empty tables.
        * any other mark (no oracle reads ``warn``/``failslab`` today): everything.

        An avc's ``key`` is not read: it is set only while the avc is out of every tree
        (interval_tree.py), and ``always`` is recomputed from the tree at each store to it.
        Messages may describe more than this (``describe_avc``); only whether and which
        finding is raised is covered.  Every mark step also writes the marks' own location,
        so the marks of two tasks keep their order (the oracles' walk state is shared)."""
        kind = mark.kind
        if kind == "walk-visit":
            tree = self._walks.get(tid)
            if tree is None:
                return None
            avc = mark.data[0]
            return (
                (("V", id(tree), "nodes", None), False),
                (("V", id(tree), "busy", None), False),
                (("V", id(avc), "anon_vma", None), False),
                (("V", id(avc), "vma", None), False),
                (("O", id(avc)), False),
            )
        if kind == "vma-geometry":
            vma = mark.data[0]
            return (
                (("V", id(vma), "vm_start", None), False),
                (("V", id(vma), "vm_end", None), False),
                (("V", id(vma), "vm_pgoff", None), False),
                (("O", id(vma)), False),
            )
        if kind == "walk-end":
            tree = self._walks.pop(tid, None)
            if tree is None:
                return None
            return ((("V", id(tree), "nodes", None), False), (("V", id(tree), "busy", None), False))
        if kind == "migration-end":
            page = mark.data
            keys = [(("MIG", id(page)), False)]
            for mm in self._kernel.mms:
                if mm.freed:
                    continue
                keys.append((("O", id(mm)), False))
                for pt in mm.tables.values():
                    for addr in pt.ptes:
                        keys.append((("V", id(pt), "ptes", addr), False))
            return keys
        if kind == "walk-begin":
            walk = mark.data
            tree = self._walks[tid] = walk.anon_vma.rb_root
            keys: list[tuple[Key, bool]] = [
                (("V", id(tree), "nodes", None), False),
                (("V", id(tree), "busy", None), False),
                (("O", id(walk.anon_vma)), False),
                (("V", id(walk.page), "mapping", None), False),
                (("A", "Vma"), False),
            ]
            for vma in self._kernel.live_vmas():
                keys.append((("O", id(vma)), False))
                for f in _GEOMETRY:
                    keys.append((("V", id(vma), f, None), False))
            return keys
        return None


def check_program(
    variant: Any,
    program: Any,
    *,
    knobs: dict[str, Any] | None = None,
    max_preemptions: int = 2,
    reduction: bool = True,
    max_schedules: int = DEFAULT_MAX_SCHEDULES,
    time_limit: float | None = None,
    min_preemptions: int = 0,
    progress: Callable[[BoundStats], None] | None = None,
    kind: str | None = None,
) -> ExploreResult:
    """Explore every schedule of ``program`` on ``variant`` up to ``max_preemptions`` (for a
    finding of ``kind`` only, when given)."""
    return explore_subject(
        KernelSubject(variant, program, dict(knobs or {})),
        max_preemptions=max_preemptions,
        reduction=reduction,
        max_schedules=max_schedules,
        time_limit=time_limit,
        min_preemptions=min_preemptions,
        progress=progress,
        kind=kind,
    )
