"""A schedule-aware shrink pass that runs after Hypothesis's shrinker.

Hypothesis shrinks choice sequences; a program's choices are interdependent (deleting a fork
renumbers the pids after it), so its shrinker can stop in a local minimum that a direct edit
of the program and the schedule still improves.  This pass tries, greedily and in the order of
the shrink priorities (fewest operations, then fewest preemptions, then fewest steps): deleting
a task, a task's operation, a setup operation, a decision; giving an operation an older process
(so that the fork that made its process can go next); running a decision to completion; halving
a decision's run.  A candidate is kept when its replay makes a finding of the same kind and is
smaller; every kept candidate is a plain (program, schedule) that replays.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rmapfuzz.errors import InvalidProgram, ModelError, ReplayDivergence
from rmapfuzz.kernel.syscalls import OPS
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

Decisions = list[tuple[int, int]]


def size(o: Outcome) -> tuple[int, int, int, int]:
    """Operations, preemptions, steps, then the sum of the pid arguments (older processes are
    simpler: they need fewer forks)."""
    p = o.program
    pids = sum(
        op.args[0]
        for op in (*p.setup, *(x for t in p.tasks for x in t.ops))
        if OPS[op.name].args[0] == "pid"
    )
    return (p.n_ops, o.result.preemptions, o.result.steps, pids)


def _candidates(p: Program, d: Decisions) -> Iterator[tuple[Program, Decisions]]:
    tasks = list(p.tasks)
    for i in range(len(tasks)):  # a whole task
        rest = tuple(t for j, t in enumerate(tasks) if j != i)
        yield Program(p.cpus, p.setup, rest), [(t - (t > i), n) for t, n in d if t != i]
    for i, t in enumerate(tasks):  # one operation of a task
        for k in range(len(t.ops)) if len(t.ops) > 1 else ():
            ops = t.ops[:k] + t.ops[k + 1 :]
            yield (
                Program(
                    p.cpus,
                    p.setup,
                    tuple(TaskProgram(t.cpu, ops) if j == i else u for j, u in enumerate(tasks)),
                ),
                d,
            )
    for k in range(len(p.setup)):  # one setup operation
        yield Program(p.cpus, p.setup[:k] + p.setup[k + 1 :], p.tasks), d
    for k in range(len(d)):  # one decision
        yield p, d[:k] + d[k + 1 :]
    for i, t in enumerate(tasks):  # an older process for an operation (unblocks fork removal)
        for k, op in enumerate(t.ops):
            names = OPS[op.name].args
            if names[0] == "pid":
                for pid in range(1, op.args[0]):
                    ops = t.ops[:k] + (Op(op.name, (pid, *op.args[1:])),) + t.ops[k + 1 :]
                    yield (
                        Program(
                            p.cpus,
                            p.setup,
                            tuple(
                                TaskProgram(t.cpu, ops) if j == i else u
                                for j, u in enumerate(tasks)
                            ),
                        ),
                        d,
                    )
    for k, (t, n) in enumerate(d):  # fewer steps
        for m in (0, n // 2, n - 1) if n else ():
            yield p, d[:k] + [(t, m)] + d[k + 1 :]


def minimize(
    variant: type[Mainline],
    outcome: Outcome,
    *,
    knobs: dict[str, Any] | None = None,
    time_limit: float = 10.0,
) -> Outcome:
    """The smallest outcome with a finding of ``outcome``'s kind reachable by greedy edits."""
    assert outcome.finding is not None
    kind = outcome.finding.kind
    best = outcome
    deadline = time.perf_counter() + time_limit
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        for program, decisions in _candidates(best.program, list(best.decisions)):
            if time.perf_counter() >= deadline:
                break
            try:
                o = execute(variant, program, decisions, knobs=knobs)
            except (ReplayDivergence, InvalidProgram, ModelError):
                continue
            if o.finding is not None and o.finding.kind == kind and size(o) < size(best):
                best = o
                improved = True
                break
    return best
