"""A schedule-aware shrink pass that runs after Hypothesis's shrinker.

Hypothesis shrinks choice sequences; a program's choices are interdependent (deleting a fork
renumbers the pids after it), so its shrinker can stop in a local minimum that a direct edit
of the program and the schedule still improves.  This pass tries, greedily and in the order of
the shrink priorities (fewest operations, then fewest preemptions, then fewest steps): deleting
a task, a task's operation, a setup operation (after deleting an operation, also with a
preemption moved a few steps, since the deletion shifts the steps before it); a run of
decisions (halving: a random walk has hundreds) or one decision; giving an operation an older
process (so that the fork that made its process can go next); running a decision to
completion; halving a decision's run; lower addresses and cleared flags.  A candidate is kept
when its replay makes a finding of the same kind and is smaller; every kept candidate is a
plain (program, schedule) that replays.  Then :func:`shortest` searches schedules
exhaustively instead of editing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rmapfuzz.errors import InvalidProgram, ModelError, ReplayDivergence
from rmapfuzz.kernel.syscalls import OPS
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

Decisions = list[tuple[int, int]]


def _ops(p: Program) -> list[Op]:
    return [*p.setup, *(x for t in p.tasks for x in t.ops)]


def size(o: Outcome) -> tuple[int, int, int, int, int]:
    """Operations, preemptions, steps, the sum of the pid arguments (older processes are
    simpler: they need fewer forks), then the sum of all arguments."""
    p = o.program
    ops = _ops(p)
    pids = sum(op.args[0] for op in ops if OPS[op.name].args[0] == "pid")
    return (p.n_ops, o.result.preemptions, o.result.steps, pids, sum(sum(op.args) for op in ops))


_ADDRS = ("addr", "new_addr")
_FLAGS = ("growsdown", "write")


def _map_args(p: Program, fn: Any) -> Program:
    """``p`` with ``fn(kind, value)`` applied to every argument."""

    def op(o: Op) -> Op:
        return Op(o.name, tuple(fn(k, v) for k, v in zip(OPS[o.name].args, o.args, strict=True)))

    return Program(
        p.cpus,
        tuple(op(o) for o in p.setup),
        tuple(TaskProgram(t.cpu, tuple(op(o) for o in t.ops)) for t in p.tasks),
    )


def _simpler_args(p: Program) -> Iterator[Program]:
    """``p`` with one address replaced everywhere by a lower one it uses (the vmas move
    together with the faults into them; also with every flag cleared), or with one flag
    argument cleared."""
    addrs = sorted(
        {v for o in _ops(p) for k, v in zip(OPS[o.name].args, o.args, strict=True) if k in _ADDRS}
    )
    for i, a in enumerate(addrs):
        for b in addrs[:i]:
            q = _map_args(p, lambda k, v, a=a, b=b: b if k in _ADDRS and v == a else v)
            yield q
            yield _map_args(q, lambda k, v: 0 if k in _FLAGS else v)  # and a plain vma
    for n, o in enumerate(_ops(p)):
        for j, k in enumerate(OPS[o.name].args):
            if k in _FLAGS and o.args[j]:
                yield _replace_op(p, n, Op(o.name, o.args[:j] + (0,) + o.args[j + 1 :]))


def _replace_op(p: Program, n: int, new: Op) -> Program:
    """``p`` with its ``n``-th operation (setup first, then the tasks') replaced by ``new``."""
    if n < len(p.setup):
        return Program(p.cpus, p.setup[:n] + (new,) + p.setup[n + 1 :], p.tasks)
    n -= len(p.setup)
    for i, t in enumerate(p.tasks):
        if n < len(t.ops):
            return _with_task(p, i, t.ops[:n] + (new,) + t.ops[n + 1 :])
        n -= len(t.ops)
    raise IndexError(n)


#: how far a preemption is moved, in steps of its task, to follow an operation's deletion
RETIME = 40
#: replays one minimize() may spend (a few seconds)
MAX_RUNS = 3000
#: schedules the exhaustive search of one program may run in :func:`shortest`
MAX_SCHEDULES = 400
#: schedules with more preemptions than this are not retimed
MAX_RETIMED = 3


def _retimed(d: Decisions) -> Iterator[Decisions]:
    """``d``, then ``d`` with one preemption moved by 1, 2, ... :data:`RETIME` steps of its
    task, nearer first: deleting an operation changes how many steps the tasks take before
    the window the preemption was aimed at.  Only once the schedule has few preemptions left
    (a random walk's are deleted first, below)."""
    yield d
    runs = [k for k, (_, n) in enumerate(d) if n]
    if len(runs) > MAX_RETIMED:
        return
    for delta in range(1, RETIME + 1):
        for k in runs:
            t, n = d[k]
            for m in (n - delta, n + delta):
                if m > 0:
                    yield d[:k] + [(t, m)] + d[k + 1 :]


def _with_task(p: Program, i: int, ops: tuple[Op, ...]) -> Program:
    return Program(
        p.cpus,
        p.setup,
        tuple(TaskProgram(t.cpu, ops) if j == i else t for j, t in enumerate(p.tasks)),
    )


def _candidates(p: Program, d: Decisions) -> Iterator[tuple[Program, Decisions]]:
    tasks = list(p.tasks)
    for i in range(len(tasks)):  # a whole task
        rest = tuple(t for j, t in enumerate(tasks) if j != i)
        yield Program(p.cpus, p.setup, rest), [(t - (t > i), n) for t, n in d if t != i]
    for q in _op_deletions(p):  # one operation of a task or of the setup
        for e in _retimed(d):
            yield q, e
    size = len(d) // 2
    while size > 1:  # runs of decisions, halving (a random walk has hundreds)
        for k in range(0, len(d) - size + 1, size):
            yield p, d[:k] + d[k + size :]
        size //= 2
    for k in range(len(d)):  # one decision
        yield p, d[:k] + d[k + 1 :]
    for i, t in enumerate(tasks):  # an older process for an operation (unblocks fork removal)
        for k, op in enumerate(t.ops):
            names = OPS[op.name].args
            if names[0] == "pid":
                for pid in range(1, op.args[0]):
                    ops = t.ops[:k] + (Op(op.name, (pid, *op.args[1:])),) + t.ops[k + 1 :]
                    yield _with_task(p, i, ops), d
    for k, (t, n) in enumerate(d):  # fewer steps
        for m in (0, n // 2, n - 1) if n else ():
            yield p, d[:k] + [(t, m)] + d[k + 1 :]
    for q in _simpler_args(p):  # smaller arguments
        for e in _retimed(d):
            yield q, e


def minimize(
    variant: type[Mainline],
    outcome: Outcome,
    *,
    knobs: dict[str, Any] | None = None,
    max_runs: int = MAX_RUNS,
    max_schedules: int = MAX_SCHEDULES,
) -> Outcome:
    """The smallest outcome with a finding of ``outcome``'s kind reachable by greedy edits,
    within ``max_runs`` replays (a count, not a time, so that the result is the same on any
    machine), then by :func:`shortest` (skipped when ``max_schedules`` is 0)."""
    assert outcome.finding is not None
    kind = outcome.finding.kind
    best = outcome
    runs = 0
    improved = True
    while improved and runs < max_runs:
        improved = False
        for program, decisions in _candidates(best.program, list(best.decisions)):
            if runs >= max_runs:
                break
            runs += 1
            try:
                o = execute(variant, program, decisions, knobs=knobs)
            except (ReplayDivergence, InvalidProgram, ModelError):
                continue
            if o.finding is not None and o.finding.kind == kind and size(o) < size(best):
                best = o
                improved = True
                break
    if max_schedules:
        best = shortest(variant, best, knobs=knobs, max_schedules=max_schedules)
    return best


def _op_deletions(p: Program) -> Iterator[Program]:
    """``p`` without one of its task operations or setup operations; the later setup
    operations first: an earlier one is what later ones build on, and deleting it first can
    leave them a detour (a fault below a stack vma grows the stack instead of faulting in the
    vma that is gone) that no single deletion undoes."""
    for i, t in enumerate(p.tasks):
        for k in range(len(t.ops)) if len(t.ops) > 1 else ():
            yield _with_task(p, i, t.ops[:k] + t.ops[k + 1 :])
    for k in reversed(range(len(p.setup))):
        yield Program(p.cpus, p.setup[:k] + p.setup[k + 1 :], p.tasks)


def _deletions(p: Program) -> Iterator[Program]:
    """``p`` without one of its tasks, then as :func:`_op_deletions`."""
    for i in range(len(p.tasks)):
        yield Program(p.cpus, p.setup, p.tasks[:i] + p.tasks[i + 1 :])
    yield from _op_deletions(p)


def shortest(
    variant: type[Mainline],
    outcome: Outcome,
    *,
    knobs: dict[str, Any] | None = None,
    max_schedules: int = MAX_SCHEDULES,
) -> Outcome:
    """The exhaustive end of the shrink: with the explorer of :mod:`rmapfuzz.explore.exhaustive`
    (``max_schedules`` each), delete every operation that some schedule with no more
    preemptions can do without, then replace the schedule by the program's shortest
    counterexample of the same kind (fewest preemptions, then fewest steps).  Greedy edits
    keep a schedule's step counts, which stop fitting once an operation before the window is
    gone; this pass searches the schedules instead."""
    from rmapfuzz.explore.exhaustive import check_program

    assert outcome.finding is not None
    kind = outcome.finding.kind
    best = outcome

    def search(program: Program, k: int) -> Outcome | None:
        try:
            r = check_program(
                variant, program, knobs=knobs, max_preemptions=k, max_schedules=max_schedules,
                kind=kind,
            )  # fmt: skip
        except (InvalidProgram, ModelError):
            return None
        if r.found is None or not r.found.decisions:  # none of this kind, or the setup's
            return None
        o = execute(variant, program, r.found.decisions, knobs=knobs)
        return o if o.finding is not None and o.finding.kind == kind else None

    improved = True
    while improved:
        improved = False
        for program in _deletions(best.program):
            o = search(program, best.result.preemptions)
            if o is not None and size(o) < size(best):
                best, improved = o, True
                break
    o = search(best.program, best.result.preemptions)
    return o if o is not None and size(o) < size(best) else best
