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

Depth ``d`` is drawn per example from 2..:data:`MAX_DEPTH`.  Example ``i`` of seed ``s`` draws
its program and its schedule from ``random.Random(s * 1_000_003 + i)`` as the random explorer
does (so the program is the random explorer's example ``i``); the decisions taken are recorded
and replay byte for byte with :func:`rmapfuzz.runner.execute`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rmapfuzz.engine import Engine
from rmapfuzz.engine import events as ev
from rmapfuzz.explore.generate import GenSettings, generate
from rmapfuzz.explore.random import (
    Exploration,
    RngChoices,
    example_rng,
    explore_random,
    with_focus,
)
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles import advisories, default_oracles
from rmapfuzz.program import Program
from rmapfuzz.runner import Outcome, _call

MAX_DEPTH = 4
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


class PctScheduler:
    """PCT priorities and change points for one run of ``program`` on ``engine`` (see the
    module docstring)."""

    def __init__(
        self,
        rng: random.Random,
        program: Program,
        engine: Engine,
        depth: int | None = None,
    ) -> None:
        n = len(program.tasks)
        self.engine = engine
        self.depth = depth if depth is not None else rng.randint(2, MAX_DEPTH)
        prio = list(range(n))
        rng.shuffle(prio)
        # initial priorities above every change point's
        self.prio = [self.depth + p for p in prio]
        lows = list(range(1, self.depth))
        rng.shuffle(lows)
        #: per task: pending change points [class index, j, new priority]
        self.changes: list[list[list[int]]] = [[] for _ in range(n)]
        for low in lows:
            t = rng.randrange(n)
            est = [0, 0, 0, 0]
            for op in program.tasks[t].ops:
                for k, m in enumerate(OP_EVENTS.get(op.name, DEFAULT_OP_EVENTS)):
                    est[k] += m
            k = rng.choice([k for k in range(len(CLASSES)) if est[k]])
            self.changes[t].append([k, rng.randint(1, est[k]), low])
        #: per task: how many steps, releases, writes, RCU steps it has taken
        self.seen = [[0, 0, 0, 0] for _ in range(n)]
        self._mark: int | None = None

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
            pending.remove(ch)

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int]:
        if last is not None and self._mark is not None:
            self._account(last)
        self._mark = len(self.engine.trace)
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
    max_steps: int = 200_000,
) -> Outcome:
    """:func:`rmapfuzz.runner.execute` under a :class:`PctScheduler` drawn from ``rng``."""
    kernel = variant(**(knobs or {}))
    kernel.boot()
    oracles = default_oracles(kernel)
    engine = Engine(ncpus=program.cpus, observers=oracles, max_steps=max_steps)
    scheduler = PctScheduler(rng, program, engine, depth)
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
) -> Outcome:
    """Example ``index`` of ``seed``: the random explorer's program, a PCT schedule."""
    rng = example_rng(seed, index)
    program = generate(RngChoices(rng), with_focus(settings, variant))
    return execute_pct(variant, program, rng, knobs=knobs)


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
) -> Exploration:
    """Run examples 0, 1, ... until a finding, ``max_examples``, ``time_limit`` seconds or
    ``should_stop()`` (the loop of :func:`rmapfuzz.explore.random.explore_random`)."""
    return explore_random(
        variant, seed=seed, settings=settings, knobs=knobs, max_examples=max_examples,
        time_limit=time_limit, progress=progress, should_stop=should_stop, run=run_example_pct,
    )  # fmt: skip
