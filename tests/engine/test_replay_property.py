"""Property: any run the engine completes can be replayed exactly from its recorded decisions."""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rmapfuzz.engine import Engine, ReplayScheduler
from rmapfuzz.engine import events as ev
from rmapfuzz.engine.locks import mutex, spinlock
from rmapfuzz.errors import ReplayDivergence

from ._toys import Cell, incr, locked_incr, nested_locks, op, project

NTASKS = 3


def reader_then_free(c, lock):
    """Read ``c`` under rcu_read_lock(), then free it under ``lock``: racing readers may UAF."""
    yield ev.RCU_READ_LOCK
    v = yield ev.Load(c, "x")
    yield ev.RCU_READ_UNLOCK
    yield ev.Acquire(lock)
    yield ev.Free(c)
    yield ev.Release(lock)
    return v


def rcu_read(c):
    yield ev.RCU_READ_LOCK
    v = yield ev.Load(c, "x")
    yield ev.RCU_READ_UNLOCK
    return v


def toy_program():
    """Three tasks on two CPUs: lost updates, ABBA (deadlock) and a possible use-after-free."""
    counter, victim = Cell(1), Cell(2, x=7)
    a, b = mutex("lockA", "A"), mutex("lockB", "B")
    ptl = spinlock("ptl", "ptl")
    return [
        (0, "t0", [op("inc", locked_incr, counter, ptl), op("ab", nested_locks, a, b)]),
        (0, "t1", [op("racy", incr, counter), op("read", rcu_read, victim)]),
        (1, "t2", [op("ba", nested_locks, b, a), op("kill", reader_then_free, victim, ptl)]),
    ]


def run_toy(scheduler):
    return Engine(ncpus=2).run(toy_program(), scheduler)


def same_run(r1, r2):
    assert project(r2.trace) == project(r1.trace)
    assert r2.finding == r1.finding
    assert r2.decisions == r1.decisions
    assert (r2.steps, r2.preemptions) == (r1.steps, r1.preemptions)
    assert [t.results for t in r2.tasks] == [t.results for t in r1.tasks]


def merged(decisions):
    out = []
    for t, n in decisions:
        if out and out[-1][0] == t and out[-1][1]:
            out[-1] = (t, out[-1][1] + n if n else 0)
        else:
            out.append((t, n))
    return out


decision_lists = st.lists(
    st.tuples(st.integers(0, NTASKS - 1), st.integers(0, 3)), max_size=12
)


@settings(max_examples=100, deadline=None, database=None)
@given(decisions=decision_lists)
def test_recorded_decisions_replay_identically(decisions):
    """Random schedules either diverge or give a run whose recorded decisions replay exactly."""
    try:
        r1 = run_toy(ReplayScheduler(decisions))
    except ReplayDivergence as e:
        # a divergence is itself deterministic and names a task that really was not runnable
        event("diverged")
        assert e.expected not in e.runnable
        try:
            run_toy(ReplayScheduler(decisions))
        except ReplayDivergence as again:
            assert (again.step, again.expected, again.runnable) == (
                e.step, e.expected, e.runnable
            )
        else:
            raise AssertionError("a divergent schedule replayed without diverging")
        return
    event(f"finding={r1.finding.kind if r1.finding else None}")
    # the engine records the decisions it was given and used, consecutive decisions for one
    # task merged: (t, a), (t, b) is (t, a + b) and (t, a), (t, 0) is (t, 0)
    assert merged(r1.decisions) == r1.decisions
    consumed = merged(decisions)
    assert r1.decisions[:-1] == consumed[: len(r1.decisions) - 1]
    r2 = run_toy(ReplayScheduler(r1.decisions))
    same_run(r1, r2)


class DrawScheduler:
    """Picks among the runnable tasks with Hypothesis data: never diverges."""

    def __init__(self, data):
        self.data = data
        self.n = 0

    def pick(self, runnable, last):
        if self.n >= 25:
            return None
        self.n += 1
        tid = self.data.draw(st.sampled_from(runnable), label="task")
        return tid, self.data.draw(st.integers(0, 3), label="run")


@settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(data=st.data())
def test_valid_schedules_replay_identically(data):
    """Schedules drawn from the runnable sets always run, and replay to the identical run."""
    r1 = run_toy(DrawScheduler(data))
    event(f"finding={r1.finding.kind if r1.finding else None}")
    r2 = run_toy(ReplayScheduler(r1.decisions))
    same_run(r1, r2)
    if r1.finding is None:
        # every task finished and no lock is left held
        assert all(t.done and not t.held and t.atomic == 0 for t in r1.tasks)
