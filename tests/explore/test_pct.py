"""The PCT explorer: priorities and change points, deterministic, replayable."""

from __future__ import annotations

import random

import pytest

from rmapfuzz.engine import Engine
from rmapfuzz.engine import events as ev
from rmapfuzz.explore import pct
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.pct import (
    DEEPEN_ROUND,
    PctScheduler,
    depth_of,
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


def test_deepening_visits_depths_in_rounds_then_starts_over():
    """Rounds of DEEPEN_ROUND examples at d = 2, 3, ... up to the maximum, then over again."""
    n = DEEPEN_ROUND
    assert [depth_of(i) for i in range(4 * n)] == [2] * n + [3] * n + [4] * n + [2] * n
    assert [depth_of(i, 3, per_depth=2) for i in range(6)] == [2, 2, 3, 3, 2, 2]
    assert {depth_of(i, 2) for i in range(3 * n)} == {2}
    assert {depth_of(i, 1) for i in range(3 * n)} == {1}
    with pytest.raises(ValueError):
        depth_of(0, 0)


def test_examples_run_at_their_scheduled_depth_deterministically(monkeypatch):
    """explore_pct runs example i at depth_of(i, max_depth) with the given k, and the same seed
    gives the same depths, programs and decisions."""
    calls: list[tuple[int | None, int | None]] = []
    real = pct.execute_pct

    def spy(variant, program, rng, **kw):
        calls.append((kw["depth"], kw["steps"]))
        return real(variant, program, rng, **kw)

    monkeypatch.setattr(pct, "execute_pct", spy)
    monkeypatch.setattr(pct, "DEEPEN_ROUND", 3)
    runs = []
    for _ in range(2):
        calls.clear()
        outs = [
            run_example_pct(Mainline, 7, i, GenSettings(), max_depth=3, steps=9) for i in range(8)
        ]
        runs.append([(o.program, o.decisions) for o in outs])
        assert calls == [(depth_of(i, 3), 9) for i in range(8)]
    assert runs[0] == runs[1]
    assert {d for d, _ in calls} == {2, 3}


def test_plan_depth_and_step_bound():
    """A plan of depth d has d - 1 change points; with steps=K every j is in 1..K, while the
    per-operation estimates give larger j."""
    big = []
    for seed in range(100):
        plan = draw_plan(RngChoices(random.Random(seed)), PROGRAM_B78, 4, steps=3)
        assert plan.depth == 4
        assert all(1 <= j <= 3 for _, _, j, _ in plan.changes)
        free = draw_plan(RngChoices(random.Random(seed)), PROGRAM_B78, 4)
        big += [j for _, _, j, _ in free.changes if j > 3]
    assert big


def test_step_bound_runs_replay():
    for seed in range(10):
        out = execute_pct(PlaNoRecheck, PROGRAM_B78, random.Random(seed), depth=3, steps=4)
        again = execute(PlaNoRecheck, PROGRAM_B78, out.decisions)
        assert [repr(e) for e in again.result.trace] == [repr(e) for e in out.result.trace]


def test_explore_pct_rejects_impossible_options():
    with pytest.raises(ValueError):
        explore_pct(Mainline, seed=0, settings=GenSettings(), max_examples=1, max_depth=0)
    with pytest.raises(ValueError):
        explore_pct(Mainline, seed=0, settings=GenSettings(), max_examples=1, steps=0)
