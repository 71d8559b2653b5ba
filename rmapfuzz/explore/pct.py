"""The ``pct`` explorer: the random explorer's programs under PCT priority scheduling.

PCT (Burckhardt, Kothari, Musuvathi, Nagarakatte, "A randomized scheduler with probabilistic
guarantees of finding bugs", ASPLOS 2010) gives the tasks random distinct priorities, always
runs the highest-priority runnable task, and lowers the running task's priority at ``d - 1``
random change points.  Its guarantee: a bug that needs ``d`` ordering constraints is hit by one
run with probability at least ``1 / (n * k ** (d - 1))`` for ``n`` tasks and ``k`` steps,
whereas a scheduler that preempts at random gets exponentially worse with the length of the
runs between the preemptions.  rmap races need 1-3 preemptions, each in a window of a few
atomic steps of one task (after page_mapped() in page_lock_anon_vma_read(), between two stores
of expand_downwards(), ...).

Three departures from the paper, each keeping a bound of the same form:

* a change point belongs to one task's own run: ``(task, class, j)`` fires right after the
  task's ``j``-th step, lock release, store (or read-modify-write), or step inside an RCU
  read-side section, ``j`` uniform up to the task's estimate (:data:`OP_EVENTS` per
  operation).  The windows the rmap races need sit right after such events (after the
  ``up_write()`` that ends vma_adjust() before move_page_tables(), between two stores of
  expand_downwards(), after the page_mapped() check inside page_lock_anon_vma_read()'s RCU
  section), so a class narrows ``k`` from the task's steps to its events of that class; the
  bound uses one task's count, not the run's length, and needs no step count before the run.
  A task with a pending event-class change point runs one step at a time until it fires;
* the class is uniform among those the task has events of (the bound is divided by up to 4);
* the low priorities the change points hand out are a random permutation of ``1 .. d - 1``
  (the paper gives the i-th change point priority i): races where a preempted task must run
  again before a task that has not started (B8: reclaim between exit and the fault that
  reuses the slot) need the other order.  The bound is divided by ``(d - 1)!``.

The explorer deepens iteratively: example ``i`` runs at depth :func:`depth_of` ``(i)``, rounds
of :data:`DEEPEN_ROUND` examples at ``d = 2``, then ``d = 3``, ... up to the maximum depth
(:data:`MAX_DEPTH` unless given), then over again, so cheap shallow bugs come first and a run
never stays at one depth.  ``k``, the bound on ``j``, is the task's estimate unless given.
Example ``i`` of seed ``s`` draws its program and its schedule from
``random.Random(s * 1_000_003 + i)`` as the random explorer does (so the program is the random
explorer's example ``i``): a pure function of ``(s, i)`` and the options; the decisions taken
are recorded and replay byte for byte with :func:`rmapfuzz.runner.execute`.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from rmapfuzz.engine import Engine
from rmapfuzz.engine import events as ev
from rmapfuzz.explore.generate import Choices, GenSettings, for_variant, generate
from rmapfuzz.explore.random import (
    Exploration,
    RngChoices,
    example_rng,
    explore_random,
)
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles import advisories, default_oracles
from rmapfuzz.program import Program
from rmapfuzz.runner import Outcome, _call

MAX_DEPTH = 4
#: examples per depth in one pass of the iterative deepening (:func:`depth_of`)
DEEPEN_ROUND = 50
#: per operation, roughly 1.3 x the median over generated programs run alone on mainline of:
#: atomic steps, lock releases, stores (and read-modify-writes), steps inside an RCU read-side
#: section.  Only where change points fall: a wrong estimate lowers the odds, it never makes a
#: schedule impossible.
OP_EVENTS: dict[str, tuple[int, int, int, int]] = {
    "exec_shift": (70, 8, 31, 0),
    "exit": (61, 7, 18, 0),
    "fault": (33, 4, 8, 0),
    "fork": (90, 12, 29, 0),
    "migrate": (94, 8, 13, 17),
    "move_pages": (110, 12, 16, 17),
    "mprotect": (40, 4, 6, 0),
    "mremap": (74, 9, 18, 0),
    "munmap": (73, 8, 27, 0),
    "pin": (20, 2, 2, 7),
    "read": (18, 4, 3, 0),
    "reclaim": (36, 4, 2, 9),
    "swapout": (46, 4, 5, 9),
    "fail_nth": (1, 0, 1, 0),
}
DEFAULT_OP_EVENTS = (50, 6, 12, 0)
#: the kinds of change point: after the j-th step, lock release, store, step inside RCU
CLASSES = ("step", "release", "write", "rcu")
_WRITES = (ev.Store, ev.Rmw)


def _permutation(choices: Choices, n: int) -> list[int]:
    """A permutation of ``range(n)`` from one choice (its Lehmer code); 0 is the identity, so
    a shrinker moves toward it."""
    if n < 2:
        return list(range(n))
    code = choices.integer(0, math.factorial(n) - 1)
    rest, out = list(range(n)), []
    for k in range(n - 1, -1, -1):
        i, code = divmod(code, math.factorial(k))
        out.append(rest.pop(i))
    return out


def event_estimates(program: Program) -> list[list[int]]:
    """Per task, its estimated count of each class of event (:data:`CLASSES`)."""
    est = []
    for tp in program.tasks:
        e = [0, 0, 0, 0]
        for op in tp.ops:
            for k, m in enumerate(OP_EVENTS.get(op.name, DEFAULT_OP_EVENTS)):
                e[k] += m
        est.append(e)
    return est


@attrs.frozen
class PctPlan:
    """A whole PCT schedule, drawn before the run: ``prio[t]`` is task ``t``'s initial
    priority (the highest runs), ``changes`` the change points ``(task, class, j, low)``: after
    the task's ``j``-th event of ``CLASSES[class]`` its priority drops to ``low``, below every
    initial priority."""

    prio: tuple[int, ...]
    changes: tuple[tuple[int, int, int, int], ...]

    @property
    def depth(self) -> int:
        return len(self.changes) + 1


#: the chance of one more change point when the count is not given (the state machine)
MORE = 0.8


def depth_of(index: int, max_depth: int = MAX_DEPTH, per_depth: int | None = None) -> int:
    """The depth of example ``index`` under iterative deepening: ``per_depth`` (default
    :data:`DEEPEN_ROUND`) examples at ``d = 2``, then at ``d = 3``, ... up to ``max_depth``,
    then over again (``max_depth`` 1: always 1, no change point)."""
    if per_depth is None:
        per_depth = DEEPEN_ROUND
    if max_depth < 1 or per_depth < 1:
        raise ValueError(f"max_depth and per_depth must be >= 1, got {max_depth}, {per_depth}")
    lo = min(2, max_depth)
    return lo + (index // per_depth) % (max_depth - lo + 1)


def draw_point(
    choices: Choices, est: list[list[int]], steps: int | None = None
) -> tuple[int, int, int]:
    """One change point ``(task, class, j)``: the task, the class among those the task has
    events of (``est``: :func:`event_estimates`), ``j`` uniform up to the task's estimate of
    that class (up to ``steps`` when given)."""
    t = choices.integer(0, len(est) - 1)
    k = choices.choice([k for k in range(len(CLASSES)) if est[t][k]])
    return t, k, choices.integer(1, est[t][k] if steps is None else steps)


def draw_plan(
    choices: Choices, program: Program, depth: int | None = None, *, steps: int | None = None
) -> PctPlan:
    """Priorities and change points for ``program`` drawn from ``choices``.

    ``depth`` gives ``depth - 1`` change points; without it each change point is drawn after a
    "one more?" flag, in a group of its own (up to ``MAX_DEPTH - 1``), so that a shrinker
    deletes one to remove a preemption.  Per change point: the task, the class (among those the
    task has events of), ``j`` uniform up to the task's estimate (up to ``steps`` when given:
    PCT's ``k``).  Then the order of the low
    priorities (one choice; identity first), then the order of the initial priorities (one
    choice; identity, task 0 highest, first).  Everything is drawn from ``choices`` and
    ``program`` alone, never from a run."""
    n = len(program.tasks)
    est = event_estimates(program)
    points: list[tuple[int, int, int]] = []
    for _ in range(MAX_DEPTH - 1 if depth is None else depth - 1):
        with choices.group():
            if depth is None and not choices.boolean(MORE):
                break
            points.append(draw_point(choices, est, steps))
    lows = _permutation(choices, len(points))
    order = _permutation(choices, n)
    top = len(points) + n
    prio = [0] * n
    for rank, t in enumerate(order):
        prio[t] = top - rank
    return PctPlan(tuple(prio), tuple((t, k, j, lows[i] + 1) for i, (t, k, j) in enumerate(points)))


class PctScheduler:
    """The scheduler that follows a :class:`PctPlan` on ``engine`` (see the module
    docstring)."""

    def __init__(
        self, plan: PctPlan, engine: Engine, tie_break: random.Random | None = None
    ) -> None:
        n = len(plan.prio)
        self.engine = engine
        #: with it, runnable tasks of equal priority take turns at random, one step at a time
        #: (a random walk among them: :mod:`rmapfuzz.explore.walk`); without it priorities
        #: are distinct
        self.tie_break = tie_break
        self.prio = list(plan.prio)
        #: per task: pending change points [class index, j, new priority]
        self.changes: list[list[list[int]]] = [[] for _ in range(n)]
        for t, k, j, low in plan.changes:
            self.changes[t].append([k, j, low])
        #: per task: how many steps, releases, writes, RCU steps it has taken
        self.seen = [[0, 0, 0, 0] for _ in range(n)]
        self._mark: int | None = None
        #: some priorities differ (else every runnable task ties: a walk before its holds)
        self._ranked = len(set(self.prio)) > 1

    def _account(self, tid: int) -> None:
        """Count what task ``tid`` did since the last pick and fire its change points."""
        trace = self.engine.trace
        seen = self.seen[tid]
        task = self.engine.tasks[tid]
        assert self._mark is not None
        ran = len(trace) - self._mark
        seen[0] += ran
        if ran == 1:  # single-stepped: the step can be classified
            e = trace[-1][4]
            if type(e) is ev.Release:
                seen[1] += 1
            elif type(e) in _WRITES:
                seen[2] += 1
            if task.rcu:
                seen[3] += 1
        pending = self.changes[tid]
        for ch in [c for c in pending if seen[c[0]] >= c[1]]:
            self.prio[tid] = ch[2]
            self._ranked = True
            pending.remove(ch)

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int]:
        if last is not None and self._mark is not None and self.changes[last]:
            self._account(last)  # counts are read only for pending change points
        self._mark = len(self.engine.trace)
        if self.tie_break is not None:
            ties = runnable
            if self._ranked and len(runnable) > 1:
                top = max(self.prio[t] for t in runnable)
                ties = tuple(t for t in runnable if self.prio[t] == top)
            return ties[self.tie_break.randrange(len(ties))], 1
        tid = max(runnable, key=lambda t: self.prio[t])
        pending = self.changes[tid]
        if not pending:
            return tid, 0
        if any(c[0] for c in pending):  # counting events: one step at a time
            return tid, 1
        return tid, min(c[1] for c in pending) - self.seen[tid][0]


def execute_pct(
    variant: type[Mainline],
    program: Program,
    rng: random.Random,
    *,
    knobs: dict[str, Any] | None = None,
    depth: int | None = None,
    steps: int | None = None,
    max_steps: int = 200_000,
) -> Outcome:
    """:func:`rmapfuzz.runner.execute` under a :class:`PctScheduler` drawn from ``rng``
    (``depth`` None: drawn from 2..:data:`MAX_DEPTH`; ``steps``: see :func:`draw_plan`)."""
    kernel = variant(**(knobs or {}))
    kernel.boot()
    oracles = default_oracles(kernel)
    engine = Engine(ncpus=program.cpus, observers=oracles, max_steps=max_steps)
    if depth is None:
        depth = rng.randint(2, MAX_DEPTH)
    scheduler = PctScheduler(draw_plan(RngChoices(rng), program, depth, steps=steps), engine)
    tasks = [
        (t.cpu, f"task{i}", [_call(kernel, op) for op in t.ops])
        for i, t in enumerate(program.tasks)
    ]
    result = engine.run(
        tasks,
        scheduler,
        setup=[_call(kernel, op) for op in program.setup],  # type: ignore[arg-type]
    )
    return Outcome(program, result, kernel, advisories(oracles))


def run_example_pct(
    variant: type[Mainline],
    seed: int,
    index: int,
    settings: GenSettings,
    knobs: dict[str, Any] | None = None,
    *,
    max_depth: int = MAX_DEPTH,
    steps: int | None = None,
) -> Outcome:
    """Example ``index`` of ``seed``: the random explorer's program, a PCT schedule of depth
    :func:`depth_of` ``(index, max_depth)``."""
    rng = example_rng(seed, index)
    program = generate(RngChoices(rng), for_variant(settings, variant))
    return execute_pct(
        variant, program, rng, knobs=knobs, depth=depth_of(index, max_depth), steps=steps
    )


def explore_pct(
    variant: type[Mainline],
    *,
    seed: int,
    settings: GenSettings,
    knobs: dict[str, Any] | None = None,
    max_examples: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[Exploration], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_depth: int = MAX_DEPTH,
    steps: int | None = None,
) -> Exploration:
    """Run examples 0, 1, ... until a finding, ``max_examples``, ``time_limit`` seconds or
    ``should_stop()`` (the loop of :func:`rmapfuzz.explore.random.explore_random`), deepening
    up to ``max_depth``, ``j`` bounded by ``steps`` when given."""
    depth_of(0, max_depth)  # a bad max_depth fails before anything runs
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    run = functools.partial(run_example_pct, max_depth=max_depth, steps=steps)
    return explore_random(
        variant, seed=seed, settings=settings, knobs=knobs, max_examples=max_examples,
        time_limit=time_limit, progress=progress, should_stop=should_stop, run=run,
    )  # fmt: skip
