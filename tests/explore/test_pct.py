"""The PCT explorer: priorities and change points, deterministic, replayable."""

from __future__ import annotations

import random

from rmapfuzz.engine import Engine
from rmapfuzz.engine import events as ev
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.pct import (
    PctScheduler,
    draw_plan,
    execute_pct,
    explore_pct,
    run_example_pct,
)
from rmapfuzz.explore.random import RngChoices
from rmapfuzz.kernel.variants import Mainline, PlaNoRecheck
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import execute
from tests.kernel.test_historical import PROGRAM_B78

TWO = Program(
    cpus=2,
    setup=(Op("mmap", (1, 0x10000, 4, 0)), Op("fault", (1, 0x10000))),
    tasks=(
        TaskProgram(0, (Op("migrate", (1,)),)),
        TaskProgram(1, (Op("fault", (1, 0x12000)),)),
    ),
)


def _scheduler(seed: int) -> PctScheduler:
    """The scheduler execute_pct(..., random.Random(seed), depth=2) follows on TWO: the plan
    is the first thing drawn from the run's rng."""
    return PctScheduler(draw_plan(RngChoices(random.Random(seed)), TWO, 2), Engine(ncpus=2))


def test_draw_plan_without_depth_shrinks_to_no_change_point():
    """The state machine's plans: all-zero choices give no change point and task 0 first."""

    class Zeros(RngChoices):
        def integer(self, lo: int, hi: int) -> int:
            return lo

        def boolean(self, p: float) -> bool:
            return False

    plan = draw_plan(Zeros(random.Random(0)), TWO)
    assert plan.changes == () and plan.prio[0] > plan.prio[1]


def test_depth_one_runs_by_priority_without_preemption():
    """d = 1: no change point; the highest-priority task runs to its end, then the other."""
    for seed in range(10):
        out = execute_pct(Mainline, TWO, random.Random(seed), depth=1)
        assert out.finding is None
        assert out.result.preemptions == 0
        assert [n for _, n in out.decisions] == [0, 0]


def test_step_change_point_preempts_at_the_task_own_step():
    """A step change point stops its task after exactly that many of its own steps, after
    which the task has the lowest priority."""
    for seed in range(200):
        rng = random.Random(seed)
        out = execute_pct(Mainline, TWO, rng, depth=2)
        sched = _scheduler(seed)
        ((t, (cls, j, low)),) = [(t, c[0]) for t, c in enumerate(sched.changes) if c]
        first = max(range(2), key=lambda x: sched.prio[x])
        if cls != 0 or t != first or out.result.preemptions == 0:
            continue
        assert low == 1
        assert out.decisions[0] == (t, j)
        assert out.decisions[1][0] != t
        return
    raise AssertionError("no run with a step change point in the first task")


def test_event_class_change_point_fires_after_its_event():
    """A release change point preempts its task right after its j-th lock release."""
    for seed in range(300):
        out = execute_pct(Mainline, TWO, random.Random(seed), depth=2)
        sched = _scheduler(seed)
        ((t, (cls, j, _)),) = [(t, c[0]) for t, c in enumerate(sched.changes) if c]
        first = max(range(2), key=lambda x: sched.prio[x])
        if cls != 1 or t != first or out.result.preemptions == 0:
            continue
        steps = out.result.trace[out.result.setup_steps :]
        run = steps[: out.decisions[0][1]]
        assert type(run[-1][4]) is ev.Release
        assert sum(type(e[4]) is ev.Release for e in run) == j
        return
    raise AssertionError("no run with a release change point in the first task")


def test_replays_byte_for_byte():
    """The decisions a PCT run took replay with the ordinary engine to the same trace."""
    for seed in range(30):
        out = execute_pct(PlaNoRecheck, PROGRAM_B78, random.Random(seed))
        again = execute(PlaNoRecheck, PROGRAM_B78, out.decisions)
        assert [repr(e) for e in again.result.trace] == [repr(e) for e in out.result.trace]
        assert (again.finding is None) == (out.finding is None)


def test_example_is_deterministic_per_seed():
    a = run_example_pct(PlaNoRecheck, 1, 5, GenSettings())
    b = run_example_pct(PlaNoRecheck, 1, 5, GenSettings())
    assert a.program == b.program and a.decisions == b.decisions


def test_finds_b7_on_its_program_and_mainline_stays_clean():
    """On B7's program (reclaim, exit, a fault reusing the slot) PCT hits the window; the same
    scheduler on mainline finds nothing."""
    hits = [
        s for s in range(400) if execute_pct(PlaNoRecheck, PROGRAM_B78, random.Random(s)).finding
    ]
    assert hits
    for s in range(200):
        assert execute_pct(Mainline, PROGRAM_B78, random.Random(s)).finding is None


def test_explore_pct_stops_at_max_examples():
    ex = explore_pct(Mainline, seed=2, settings=GenSettings(), max_examples=30)
    assert ex.examples == 30 and ex.outcome is None
