"""Engine semantics: interleavings, locks, CPUs, heap lifetimes and the findings they produce."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rmapfuzz.engine import Engine, OpCall, ReplayScheduler, Task
from rmapfuzz.engine import events as ev
from rmapfuzz.engine.locks import bitlock, mutex, rwsem, spinlock
from rmapfuzz.errors import ModelError, ReplayDivergence

from ._toys import (
    Cell,
    TypesafeCell,
    events_of,
    explore_all,
    free,
    holders_over_time,
    incr,
    locked_incr,
    nested_locks,
    op,
    peek_then_locked_incr,
    project,
    rcu_reader,
    read_side,
    run,
    write_side,
)


def load_x(c):
    yield ev.Load(c, "x")


def load_y(c):
    yield ev.Load(c, "y")


# ---------------------------------------------------------------- 1. lost update


def _racy_incr(c):
    return [(0, "inc0", [op("inc", incr, c)]), (1, "inc1", [op("inc", incr, c)])]


def test_lost_update_serial_schedule():
    """Two unlocked x++ run back to back (no preemption) both land: x == 2."""
    c = Cell(1)
    r = run(_racy_incr(c), [])
    assert r.finding is None
    assert c.x == 2
    assert r.preemptions == 0
    assert r.decisions == []
    assert r.steps == 4
    assert [t.done for t in r.tasks] == [True, True]


def test_an_observer_sees_the_steps_of_the_event_classes_it_names():
    """on_step sees every step, or with ``step_events`` the steps of those classes only."""

    class Every:
        def __init__(self) -> None:
            self.seen: list[tuple[int, type]] = []

        def on_step(self, eng, index, t, e, result) -> None:
            self.seen.append((index, type(e)))

    class Stores(Every):
        step_events = frozenset({ev.Store})

    every, stores = Every(), Stores()
    Engine(ncpus=2, observers=[every, stores]).run(_racy_incr(Cell(1)), ReplayScheduler([]))
    assert [c for _, c in every.seen] == [ev.Load, ev.Store] * 2
    assert stores.seen == [(1, ev.Store), (3, ev.Store)]


def test_lost_update_preempted_between_load_and_store():
    """Preempting an unlocked x++ between its load and store loses the other CPU's update."""
    c = Cell(1)
    r = run(_racy_incr(c), [(0, 1), (1, 0)])
    assert r.finding is None
    assert c.x == 1
    assert r.preemptions == 1
    assert r.decisions == [(0, 1), (1, 0)]
    assert project(r.trace) == [
        (0, 0, 0, "incr", "R cell#1.x", "0"),
        (1, 1, 0, "incr", "R cell#1.x", "0"),
        (1, 1, 0, "incr", "W cell#1.x = 1", "None"),
        (0, 0, 0, "incr", "W cell#1.x = 1", "None"),
    ]


def test_lost_update_exhaustive_outcomes():
    """Over every interleaving, unlocked x++ twice ends at 1 or 2, and both happen."""

    def build():
        c = Cell(1)
        return _racy_incr(c), c

    outcomes = {c.x for r, c in explore_all(build) if r.finding is None}
    assert outcomes == {1, 2}


def _locked(c, m, fn=peek_then_locked_incr):
    return [(0, "inc0", [op("inc", fn, c, m)]), (1, "inc1", [op("inc", fn, c, m)])]


@pytest.mark.parametrize(
    "decisions, preemptions", [([], 0), ([(0, 1), (1, 0)], 1)], ids=["serial", "preempted"]
)
def test_mutex_prevents_lost_update(decisions, preemptions):
    """x++ under a mutex (after a racy READ_ONCE peek) never loses an update."""
    c = Cell(1)
    m = mutex("m", "counter_mutex")
    r = run(_locked(c, m), decisions)
    assert r.finding is None
    assert c.x == 2
    assert r.preemptions == preemptions
    assert m.owner is None and m.readers == []


def test_mutex_lost_update_exhaustive():
    """Over every interleaving the engine admits, x++ under a mutex always ends at 2."""

    def build():
        c = Cell(1)
        return _locked(c, mutex("m", "counter_mutex")), c

    results = explore_all(build)
    assert {c.x for _, c in results} == {2}
    assert all(r.finding is None for r, _ in results)
    assert max(r.preemptions for r, _ in results) >= 1


def test_replay_naming_task_blocked_on_mutex_diverges():
    """A schedule that switches to a task sleeping on a held mutex is a ReplayDivergence."""
    c = Cell(1)
    m = mutex("m", "counter_mutex")
    with pytest.raises(ReplayDivergence) as ei:
        run(_locked(c, m, locked_incr), [(0, 1), (1, 0)])
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (1, 1, (0,))

    c = Cell(1)
    m = mutex("m", "counter_mutex")
    with pytest.raises(ReplayDivergence) as ei:
        # peek0, lock0 | peek1 | load0 | task 1 now sleeps on m
        run(_locked(c, m), [(0, 2), (1, 1), (0, 1), (1, 0)])
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (4, 1, (0,))


def test_default_scheduler_continues_last_then_lowest():
    """Once decisions run out the last task keeps the CPU, then the lowest runnable id runs."""
    c = Cell(1)
    tasks = [(i % 2, f"t{i}", [op("inc", incr, c)]) for i in range(3)]
    r = run(tasks, [(1, 1)])
    assert [t[0] for t in r.trace] == [1, 1, 0, 0, 2, 2]
    assert r.decisions == [(1, 1)]
    assert r.preemptions == 0
    assert c.x == 3


# ---------------------------------------------------------------- 2. rwsem


def test_rwsem_readers_share():
    """down_read() by two tasks: both hold the rwsem at the same time."""
    c = Cell(1)
    sem = rwsem("mmap_lock", "mmap_lock")
    tasks = [(0, "r0", [op("rd", read_side, sem, c)]), (1, "r1", [op("rd", read_side, sem, c)])]
    r = run(tasks, [(0, 1), (1, 1)])
    assert r.finding is None
    held = holders_over_time(r.trace, sem)
    assert held[1] == {0: "r", 1: "r"}
    assert events_of(r.trace)[:2] == [(0, "down_read(mmap_lock)"), (1, "down_read(mmap_lock)")]
    assert not sem.is_locked()


def test_rwsem_writer_excludes_readers_exhaustive():
    """Over every interleaving a down_write() holder never overlaps a down_read() holder."""
    sems = []

    def build():
        c = Cell(1)
        sem = rwsem("mmap_lock", "mmap_lock")
        sems.append(sem)
        return [
            (0, "w", [op("wr", write_side, sem, c)]),
            (1, "r1", [op("rd", read_side, sem, c)]),
            (1, "r2", [op("rd", read_side, sem, c)]),
        ], c

    results = explore_all(build)
    both_readers = False
    for (r, c), sem in zip(results, sems, strict=True):
        assert r.finding is None
        assert c.x == 1
        for held in holders_over_time(r.trace, sem):
            modes = sorted(held.values())
            assert modes in ([], ["w"], ["r"], ["r", "r"])
            both_readers |= modes == ["r", "r"]
    assert both_readers


def test_rwsem_writer_blocks_reader_and_reader_blocks_writer():
    """A reader cannot enter while a writer holds the rwsem, nor a writer while a reader does."""
    for decisions in ([(0, 1), (1, 0)], [(1, 1), (0, 0)]):
        c = Cell(1)
        sem = rwsem("mmap_lock", "mmap_lock")
        tasks = [(0, "w", [op("wr", write_side, sem, c)]), (1, "r", [op("rd", read_side, sem, c)])]
        with pytest.raises(ReplayDivergence) as ei:
            run(tasks, decisions)
        assert ei.value.step == 1
        assert ei.value.runnable == (decisions[0][0],)


# ---------------------------------------------------------------- 3. deadlock


def _abba(make):
    a, b = make("lockA", "A"), make("lockB", "B")
    return [
        (0, "t0", [op("ab", nested_locks, a, b)]),
        (1, "t1", [op("ba", nested_locks, b, a)]),
    ]


@pytest.mark.parametrize("make", [mutex, spinlock], ids=["mutex", "spinlock"])
def test_abba_deadlock(make):
    """ABBA lock order on two CPUs deadlocks, and the report names the wait cycle."""
    r = run(_abba(make), [(0, 1), (1, 1)])
    assert r.finding is not None
    assert r.finding.kind == "deadlock"
    assert r.finding.message == (
        "task 0 (ab) waits for lockB; task 1 (ba) waits for lockA; held by task 0 (ab)"
    )
    assert (r.finding.task, r.finding.step) == (0, 1)
    assert r.steps == 2


@pytest.mark.parametrize("make", [mutex, spinlock], ids=["mutex", "spinlock"])
def test_abba_serial_is_fine(make):
    """The same ABBA program without the bad interleaving completes cleanly."""
    r = run(_abba(make), [])
    assert r.finding is None
    assert r.steps == 8


def test_abba_on_one_cpu():
    """On one CPU spinlock ABBA cannot deadlock (no preemption), mutex ABBA can."""

    def kinds(make):
        def build():
            a, b = make("lockA", "A"), make("lockB", "B")
            return [
                (0, "t0", [op("ab", nested_locks, a, b)]),
                (0, "t1", [op("ba", nested_locks, b, a)]),
            ], None

        return {r.finding.kind if r.finding else None for r, _ in explore_all(build, ncpus=1)}

    assert kinds(spinlock) == {None}
    assert kinds(mutex) == {None, "deadlock"}


def _chain_through_cpu():
    """A bystander on cpu0 waits only for its CPU, which t1 keeps while spinning in ABBA."""
    a, b, m = spinlock("spinA", "A"), spinlock("spinB", "B"), mutex("m", "m")

    def take_m():
        yield ev.Acquire(m)
        yield ev.Release(m)

    tasks = [
        (0, "bystander", [op("bystander", take_m)]),
        (0, "t1", [op("ab", nested_locks, a, b)]),
        (1, "t2", [op("ba", nested_locks, b, a)]),
    ]
    return tasks, [(1, 1), (2, 1)]


def _chain_through_mutex():
    """Task 0 waits (from its first call) for lockC, held by t1, in a mutex ABBA with t2."""
    a, b, c = mutex("lockA", "A"), mutex("lockB", "B"), mutex("lockC", "C")

    def cab():
        yield ev.Acquire(c)
        yield from nested_locks(a, b)
        yield ev.Release(c)

    def take_c():
        yield ev.Acquire(c)
        yield ev.Release(c)

    tasks = [
        (2, "waiter", [op("waiter", take_c)]),
        (0, "t1", [op("ab", cab)]),
        (1, "t2", [op("ba", nested_locks, b, a)]),
    ]
    return tasks, [(1, 2), (2, 1)]


@pytest.mark.parametrize("make", [_chain_through_cpu, _chain_through_mutex],
                         ids=["via_cpu", "via_mutex"])
def test_deadlock_report_follows_wait_chain_to_cycle(make):
    """A task outside the cycle (waiting for a CPU or a lock) leads the report to the cycle."""
    tasks, decisions = make()
    r = run(tasks, decisions, ncpus=3)
    assert r.finding is not None
    assert r.finding.kind == "deadlock"
    lock_a, lock_b = ("spinA", "spinB") if make is _chain_through_cpu else ("lockA", "lockB")
    assert r.finding.message == (
        f"task 1 (ab) waits for {lock_b}; task 2 (ba) waits for {lock_a}; held by task 1 (ab)"
    )
    assert r.finding.task == 1
    assert r.decisions == decisions
    assert r.finding.step == len(r.trace) - 1
    assert len(r.trace) == (2 if make is _chain_through_cpu else 3)


_RECURSIONS = {
    "down_read_twice": (lambda L: (ev.Acquire(L.sem, "r"), ev.Acquire(L.sem, "r")),
                        "down_read(mmap_lock)"),
    "down_read_then_down_write": (lambda L: (ev.Acquire(L.sem, "r"), ev.Acquire(L.sem, "w")),
                                  "down_write(mmap_lock)"),
    "down_write_then_down_read": (lambda L: (ev.Acquire(L.sem, "w"), ev.Acquire(L.sem, "r")),
                                  "down_read(mmap_lock)"),
    "mutex_lock_twice": (lambda L: (ev.Acquire(L.m), ev.Acquire(L.m)), "mutex_lock(m)"),
    "mutex_trylock_then_lock": (lambda L: (ev.TryAcquire(L.m), ev.Acquire(L.m)),
                                "mutex_lock(m)"),
    "spin_lock_twice": (lambda L: (ev.Acquire(L.ptl), ev.Acquire(L.ptl)), "spin_lock(ptl)"),
    "lock_page_twice": (lambda L: (ev.Acquire(L.pg), ev.Acquire(L.pg)), "lock_page(PG_locked)"),
    "wait_on_own_page_lock": (lambda L: (ev.Acquire(L.pg), ev.WaitUnlocked(L.pg)),
                              "wait_on(PG_locked)"),
}


@pytest.mark.parametrize("case", list(_RECURSIONS))
def test_recursive_locking_is_deadlock(case):
    """Taking or waiting on a lock the task already holds is a deadlock as soon as it is called."""
    make, call = _RECURSIONS[case]
    locks = SimpleNamespace(
        m=mutex("m", "m"), sem=rwsem("mmap_lock", "mmap_lock"), ptl=spinlock("ptl", "ptl"),
        pg=bitlock("PG_locked", "page"),
    )
    first, second = make(locks)

    def body():
        yield first
        yield second

    r = run([(0, "t", [op("twice", body)])], ncpus=1)
    assert r.finding is not None
    assert r.finding.kind == "deadlock"
    assert r.finding.message == (
        f"body() calls {call} on a lock this task already holds (twice): recursive locking"
    )
    assert (r.finding.task, r.finding.step) == (0, 0)
    assert project(r.trace) == [
        (0, 0, 0, "body", repr(first), "True" if type(first) is ev.TryAcquire else "None")
    ]


def test_lock_held_by_finished_task_is_a_lock_leak():
    """Returning from an operation with a lock held is a lock-leak, reported before any waiter."""
    a = mutex("lockA", "A")

    def leaker():
        yield ev.Acquire(a)

    def unlocker():
        yield ev.Release(a)

    tasks = [
        (0, "t0", [op("leaker", leaker), op("unlocker", unlocker)]),
        (1, "t1", [op("locker", nested_locks, a, mutex("lockB", "B"))]),
    ]
    r = run(tasks, [])
    assert r.finding is not None
    assert r.finding.kind == "lock-leak"
    assert r.finding.message == "leaker returned with lockA held"
    assert r.finding.task == 0
    assert r.finding.step == 0
    assert r.steps == 1


def test_rcu_leak():
    """Returning from an operation inside rcu_read_lock() is an rcu-leak."""

    def leaky():
        yield ev.RCU_READ_LOCK

    r = run([(0, "t0", [op("leaky_reader", leaky)])])
    assert r.finding is not None
    assert r.finding.kind == "rcu-leak"
    assert r.finding.message == "leaky_reader returned inside an RCU read-side section"
    assert r.finding.task == 0


# ---------------------------------------------------------------- 4. CPUs


def _holder_and_bystander(hold, *, bystander_cpu=0):
    c = Cell(1)
    return [
        (0, "holder", [op("hold", hold, c)]),
        (bystander_cpu, "bystander", [op("by", load_y, c)]),
    ]


def _under(lock):
    def hold(c):
        yield ev.Acquire(lock)
        yield ev.Load(c, "x")
        yield ev.Release(lock)

    return hold


def test_spinlock_holder_cannot_be_preempted_on_its_cpu():
    """spin_lock() disables preemption: another task of the same CPU cannot run meanwhile."""
    tasks = _holder_and_bystander(_under(spinlock("ptl", "ptl")))
    with pytest.raises(ReplayDivergence) as ei:
        run(tasks, [(0, 1), (1, 0)], ncpus=1)
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (1, 1, (0,))


def test_spinlock_holder_does_not_block_other_cpu():
    """A spinlock holder on CPU 0 does not stop a task on CPU 1."""
    tasks = _holder_and_bystander(_under(spinlock("ptl", "ptl")), bystander_cpu=1)
    r = run(tasks, [(0, 1), (1, 0)])
    assert r.finding is None
    assert [t[0] for t in r.trace] == [0, 1, 0, 0]
    assert r.preemptions == 1


def test_mutex_holder_can_be_preempted_on_its_cpu():
    """A mutex holder is preemptible: another task of the same CPU may run while it holds it."""
    tasks = _holder_and_bystander(_under(mutex("m", "m")))
    r = run(tasks, [(0, 1), (1, 0)], ncpus=1)
    assert r.finding is None
    assert r.preemptions == 1
    assert events_of(r.trace) == [
        (0, "mutex_lock(m)"),
        (1, "R cell#1.y"),
        (0, "R cell#1.x"),
        (0, "mutex_unlock(m)"),
    ]


def test_rcu_reader_cannot_be_preempted_on_its_cpu():
    """rcu_read_lock() (non-preemptible RCU) keeps other tasks of the CPU off until unlock."""
    tasks = _holder_and_bystander(rcu_reader)
    with pytest.raises(ReplayDivergence) as ei:
        run(tasks, [(0, 1), (1, 0)], ncpus=1)
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (1, 1, (0,))
    # after rcu_read_unlock() the CPU is free again
    r = run(_holder_and_bystander(rcu_reader), [(0, 3), (1, 0)], ncpus=1)
    assert r.finding is None
    assert r.tasks[0].results == [0]


def _waiter_bystander_holder(lock, waiter):
    c = Cell(1)
    return [
        (0, "waiter", [op("wait", waiter, c)]),
        (0, "bystander", [op("by", load_y, c)]),
        (1, "holder", [op("hold", _under(lock), c)]),
    ]


@pytest.mark.parametrize("make", [spinlock, mutex], ids=["spinlock", "mutex"])
def test_waiting_on_lock_frees_cpu(make):
    """A task waiting for a spinlock or mutex with preemption on lets its CPU run another task."""
    lock = make("L", "L")

    def waiter(c):
        yield ev.Load(c, "x")
        yield ev.Acquire(lock)
        yield ev.Release(lock)

    r = run(_waiter_bystander_holder(lock, waiter), [(2, 1), (0, 0), (1, 0)])
    assert r.finding is None
    lk, unlk = lock.op_name("lock", "w"), lock.op_name("unlock", "w")
    assert events_of(r.trace) == [
        (2, f"{lk}(L)"),
        (0, "R cell#1.x"),
        (1, "R cell#1.y"),
        (2, "R cell#1.x"),
        (2, f"{unlk}(L)"),
        (0, f"{lk}(L)"),
        (0, f"{unlk}(L)"),
    ]
    assert r.preemptions == 1


def _atomic_spinner(atomic):
    """The waiter spins on L with preemption off: it holds spinlock P, or is inside RCU."""
    lock, outer = spinlock("L", "L"), spinlock("P", "P")
    enter, leave = (
        (ev.Acquire(outer), ev.Release(outer))
        if atomic == "spinlock_held"
        else (ev.RCU_READ_LOCK, ev.RCU_READ_UNLOCK)
    )

    def waiter(c):
        yield enter
        yield ev.Load(c, "x")
        yield ev.Acquire(lock)
        yield ev.Release(lock)
        yield leave

    return _waiter_bystander_holder(lock, waiter)


@pytest.mark.parametrize("atomic", ["spinlock_held", "rcu"])
def test_spinning_with_preemption_off_keeps_cpu(atomic):
    """A task spinning on a spinlock while holding another one or inside RCU keeps its CPU."""
    with pytest.raises(ReplayDivergence) as ei:
        run(_atomic_spinner(atomic), [(2, 1), (0, 0), (1, 0)])
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (3, 1, (2,))
    # without the bystander's turn the run completes: the waiter spins until the holder is done
    r = run(_atomic_spinner(atomic), [(2, 1), (0, 0)])
    assert r.finding is None
    assert [t[0] for t in r.trace] == [2, 0, 0, 2, 2, 0, 0, 0, 1]


def test_spin_lock_waiter_needs_its_cpu_back():
    """When its spinlock frees up, a waiter still cannot run while its CPU's task is atomic."""
    lock, other = spinlock("L", "L"), spinlock("P", "P")
    c = Cell(1)

    def waiter():
        yield ev.Acquire(lock)
        yield ev.Release(lock)

    tasks = [
        (0, "waiter", [op("wait", waiter)]),
        (0, "bystander", [op("by", _under(other), c)]),
        (1, "holder", [op("hold", _under(lock), c)]),
    ]
    # holder takes L; bystander takes P; holder finishes, so L is free but cpu0 is not
    with pytest.raises(ReplayDivergence) as ei:
        run(tasks, [(2, 1), (1, 1), (2, 0), (0, 0)])
    assert (ei.value.step, ei.value.expected, ei.value.runnable) == (4, 0, (1,))


class _Flags(Cell):
    __slots__ = ("a", "b", "c")

    def __init__(self) -> None:
        super().__init__(1)
        self.a = self.b = self.c = 0


def _t0(v, lock):
    c = yield ev.Load(v, "c")
    yield ev.Store(v, "a", c)
    yield ev.Acquire(lock)  # preemption point before spin_lock() under CONFIG_PREEMPT
    yield ev.Release(lock)


def _t1(v):
    a = yield ev.Load(v, "a")
    if a:
        yield ev.Store(v, "b", 1)


def _t2(v, lock):
    yield ev.Acquire(lock)
    yield ev.Store(v, "c", 1)
    b = yield ev.Load(v, "b")
    yield ev.Release(lock)
    return b


def _spin_program(cpu_of_t1):
    v, lock = _Flags(), spinlock("S", "S")
    return [
        (0, "t0", [op("t0", _t0, v, lock)]),
        (cpu_of_t1, "t1", [op("t1", _t1, v)]),
        (1, "t2", [op("t2", _t2, v, lock)]),
    ], v


@pytest.mark.parametrize("cpu_of_t1, ncpus", [(2, 3), (0, 2)], ids=["own_cpu", "t0s_cpu"])
def test_spin_program_outcomes(cpu_of_t1, ncpus):
    """Whether t1 has its own CPU or shares t0's, t2 can see b == 0 or b == 1 under S."""
    res = explore_all(lambda: _spin_program(cpu_of_t1), ncpus=ncpus)
    assert all(r.finding is None for r, _ in res)
    assert {r.tasks[2].results[0] for r, _ in res} == {0, 1}


def test_preempted_before_contended_spin_lock_frees_its_cpu():
    """A task preempted before spin_lock() is not spinning: its CPU may run another task."""
    tasks, v = _spin_program(0)
    # t2 takes S and sets c; t0 reads c, sets a, and is preempted before spin_lock(S);
    # t1 runs on cpu0, sees a == 1, sets b; t2 then sees b == 1 inside its critical section.
    r = run(tasks, [(2, 2), (0, 2), (1, 0), (2, 0)])
    assert r.finding is None
    assert r.tasks[2].results == [1]
    assert events_of(r.trace) == [
        (2, "spin_lock(S)"),
        (2, "W cell#1.c = 1"),
        (0, "R cell#1.c"),
        (0, "W cell#1.a = 1"),
        (1, "R cell#1.a"),
        (1, "W cell#1.b = 1"),
        (2, "R cell#1.b"),
        (2, "spin_unlock(S)"),
        (0, "spin_lock(S)"),
        (0, "spin_unlock(S)"),
    ]
    assert r.preemptions == 1


# ---------------------------------------------------------------- 5. heap


def test_read_after_free_is_uaf():
    """A plain load from a freed object is a use-after-free."""
    c = Cell(1)
    tasks = [(0, "freer", [op("free", free, c)]), (1, "reader", [op("read", load_x, c)])]
    r = run(tasks, [])
    assert r.finding is not None
    assert r.finding.kind == "use-after-free"
    assert r.finding.message == "load_x() read x of cell#1 after it was freed (read)"
    assert r.finding.task == 1
    # the faulting load is the last trace entry, marked '!', and the finding points at it
    assert project(r.trace) == [
        (0, 0, 0, "free", "free cell#1", "None"),
        (1, 1, 0, "load_x", "R cell#1.x", "'!'"),
    ]
    assert r.finding.step == 1


def test_read_before_free_is_fine():
    """The same program with the read ordered before the free is clean."""
    c = Cell(1)
    tasks = [(0, "freer", [op("free", free, c)]), (1, "reader", [op("read", load_x, c)])]
    r = run(tasks, [(1, 0)])
    assert r.finding is None
    assert c.freed is True


def test_typesafe_by_rcu_read_is_fine_write_is_uaf():
    """SLAB_TYPESAFE_BY_RCU: a stale read is legal, a stale store is a use-after-free."""
    c = TypesafeCell(7, x=5)

    def stale_read():
        yield ev.Free(c)
        v = yield ev.Load(c, "x")
        return v

    r = run([(0, "t", [op("stale_read", stale_read)])])
    assert r.finding is None
    assert r.tasks[0].results == [5]

    c = TypesafeCell(7, x=5)

    def stale_write():
        yield ev.Free(c)
        yield ev.Store(c, "x", 6)

    r = run([(0, "t", [op("stale_write", stale_write)])])
    assert r.finding is not None
    assert r.finding.kind == "use-after-free"
    assert r.finding.message == "stale_write() wrote x of tcell#7 after it was freed (stale_write)"


def _inc_not_zero(old):
    return (old + 1, True) if old else (old, False)


@pytest.mark.parametrize(
    "cls, start, finding",
    [
        (TypesafeCell, 0, None),  # failed atomic_inc_not_zero on a freed typesafe object: legal
        (TypesafeCell, 1, "use-after-free"),  # it wrote: illegal
        (Cell, 0, "use-after-free"),  # any RMW on a freed ordinary object
    ],
)
def test_rmw_after_free(cls, start, finding):
    """An RMW on freed memory counts as a write only when it changes the value (typesafe slabs)."""
    c = cls(1, x=start)

    def get_ref():
        yield ev.Free(c)
        ok = yield ev.Rmw(c, "x", _inc_not_zero, "atomic_inc_not_zero")
        return ok

    r = run([(0, "t", [op("get_ref", get_ref)])])
    assert (r.finding.kind if r.finding else None) == finding
    if finding is None:
        assert r.tasks[0].results == [False]
        assert c.x == 0
    else:
        assert "did atomic_inc_not_zero on" in r.finding.message


def test_double_free():
    """Freeing an object twice is a double-free."""
    c = Cell(1)
    tasks = [(0, "a", [op("free1", free, c)]), (1, "b", [op("free2", free, c)])]
    r = run(tasks, [])
    assert r.finding is not None
    assert r.finding.kind == "double-free"
    assert r.finding.message == "free() frees cell#1 twice (free2)"
    assert r.finding.task == 1
    assert r.finding.step == 1
    assert project(r.trace)[1] == (1, 1, 0, "free", "free cell#1", "'!'")


def test_alloc_revives_object():
    """Alloc hands a freed object out again; accesses to it are then legal."""
    c = Cell(1)

    def recycle():
        yield ev.Free(c)
        got = yield ev.Alloc(c)
        yield ev.Store(got, "x", 3)

    r = run([(0, "t", [op("recycle", recycle)])])
    assert r.finding is None
    assert (c.freed, c.x) == (False, 3)
    assert project(r.trace)[1][4:] == ("alloc cell#1", "cell#1")


def _faulting_ops():
    """name -> (body yielding one good step then the faulting event, kind, faulting event)."""
    c, t, m = Cell(1), TypesafeCell(2, x=1), mutex("m", "m")
    load, store = ev.Load(c, "x"), ev.Store(t, "x", 9)
    rmw = ev.Rmw(c, "x", _inc_not_zero, "atomic_inc_not_zero")
    return {
        "uaf_load": (ev.Free(c), load, "use-after-free"),
        "uaf_store_typesafe": (ev.Free(t), store, "use-after-free"),
        "uaf_rmw": (ev.Free(c), rmw, "use-after-free"),
        "double_free": (ev.Free(c), ev.Free(c), "double-free"),
        "bad_unlock": (ev.Store(c, "y", 1), ev.Release(m), "bad-unlock"),
        "stray_rcu_unlock": (ev.Store(c, "y", 1), ev.RCU_READ_UNLOCK, "bad-unlock"),
    }


@pytest.mark.parametrize("case", list(_faulting_ops()))
def test_faulting_event_is_last_trace_entry(case):
    """The event whose handler raises a finding is traced last, with result '!', at finding.step."""
    good, bad, kind = _faulting_ops()[case]

    def body():
        yield good
        yield bad
        yield ev.Load(Cell(3), "x")  # never reached

    r = run([(0, "t", [op("fault", body)])])
    assert r.finding is not None
    assert r.finding.kind == kind
    assert (r.finding.task, r.finding.step) == (0, 1)
    assert project(r.trace) == [
        (0, 0, 0, "body", repr(good), "None"),
        (0, 0, 0, "body", repr(bad), "'!'"),
    ]
    assert r.steps == 2
    assert r.tasks[0].results == []


# ---------------------------------------------------------------- 6. sleep in atomic


def _in_rcu(event):
    def body():
        yield ev.RCU_READ_LOCK
        yield event
        yield ev.RCU_READ_UNLOCK

    return body


@pytest.mark.parametrize(
    "event, text",
    [
        (ev.Acquire(mutex("m", "m")), "mutex_lock(m)"),
        (ev.Acquire(rwsem("mmap_lock", "mmap_lock"), "r"), "down_read(mmap_lock)"),
        (ev.Acquire(rwsem("mmap_lock", "mmap_lock"), "w"), "down_write(mmap_lock)"),
        (ev.Acquire(bitlock("PG_locked", "page")), "lock_page(PG_locked)"),
        (ev.WaitUnlocked(bitlock("PG_locked", "page")), "wait_on(PG_locked)"),
    ],
    ids=["mutex", "down_read", "down_write", "lock_page", "wait_on_page_locked"],
)
def test_sleeping_in_rcu_read_section(event, text):
    """A sleeping lock or wait_on_page_locked() called inside rcu_read_lock() is sleep-in-atomic."""
    r = run([(0, "t", [OpCall("walk", _in_rcu(event))])])
    assert r.finding is not None
    assert r.finding.kind == "sleep-in-atomic"
    assert r.finding.message == (
        f"BUG: sleeping function called from invalid context: body() calls {text} in an RCU "
        "read-side section (walk)"
    )
    # reported when the call is made: the last executed step is rcu_read_lock()
    assert (r.finding.task, r.finding.step) == (0, 0)
    assert project(r.trace) == [(0, 0, 0, "body", "rcu_read_lock()", "None")]
    assert not event.lock.is_locked()


def test_mutex_under_spinlock_is_sleep_in_atomic():
    """mutex_lock() called with a spinlock held is sleep-in-atomic, before it takes the mutex."""
    ptl, m = spinlock("ptl", "ptl"), mutex("m", "m")
    r = run([(0, "t", [op("zap", nested_locks, ptl, m)])])
    assert r.finding is not None
    assert r.finding.kind == "sleep-in-atomic"
    assert r.finding.message == (
        "BUG: sleeping function called from invalid context: nested_locks() calls "
        "mutex_lock(m) in atomic context (spinlock held) (zap)"
    )
    assert (r.finding.task, r.finding.step) == (0, 0)
    assert events_of(r.trace) == [(0, "spin_lock(ptl)")]
    assert m.owner is None


@pytest.mark.parametrize("walker_cpu", [0, 1], ids=["holders_cpu", "other_cpu"])
def test_contended_mutex_in_rcu_is_sleep_in_atomic(walker_cpu):
    """mutex_lock() inside rcu_read_lock() is sleep-in-atomic even when the mutex is contended."""
    m = mutex("m", "m")

    def holder():
        yield ev.Acquire(m)
        yield ev.Release(m)

    def rcu_locker():
        yield ev.RCU_READ_LOCK
        yield ev.Acquire(m)
        yield ev.Release(m)
        yield ev.RCU_READ_UNLOCK

    tasks = [(0, "holder", [op("hold", holder)]), (walker_cpu, "walker", [op("walk", rcu_locker)])]
    r = run(tasks, [(0, 1), (1, 0)])
    assert r.finding is not None
    assert r.finding.kind == "sleep-in-atomic"
    assert r.finding.message == (
        "BUG: sleeping function called from invalid context: rcu_locker() calls mutex_lock(m) "
        "in an RCU read-side section (walk)"
    )
    assert (r.finding.task, r.finding.step) == (1, 1)
    assert project(r.trace) == [
        (0, 0, 0, "holder", "mutex_lock(m)", "None"),
        (1, walker_cpu, 0, "rcu_locker", "rcu_read_lock()", "None"),
    ]


@pytest.mark.parametrize(
    "lock", [mutex("m", "m"), bitlock("PG_locked", "page")], ids=["mutex", "page"]
)
def test_trylock_in_rcu_is_fine(lock):
    """mutex_trylock()/trylock_page() never sleep, so they are fine inside RCU."""

    def body():
        yield ev.RCU_READ_LOCK
        got = yield ev.TryAcquire(lock)
        if got:
            yield ev.Release(lock)
        yield ev.RCU_READ_UNLOCK
        return got

    r = run([(0, "t", [op("try", body)])])
    assert r.finding is None
    assert r.tasks[0].results == [True]


def test_spinlock_in_rcu_is_fine():
    """spin_lock() inside an RCU read section does not sleep: no finding."""
    ptl = spinlock("ptl", "ptl")
    r = run([(0, "t", [OpCall("walk", _in_rcu(ev.Acquire(ptl)))])])
    # the op returns with ptl held: that is a lock-leak, not sleep-in-atomic
    assert r.finding is not None and r.finding.kind == "lock-leak"

    def body():
        yield ev.RCU_READ_LOCK
        yield ev.Acquire(ptl)
        yield ev.Release(ptl)
        yield ev.RCU_READ_UNLOCK

    ptl = spinlock("ptl", "ptl")
    r = run([(0, "t", [op("walk", body)])])
    assert r.finding is None


# ---------------------------------------------------------------- 7. bad unlock


def test_unlock_of_mutex_held_by_other_task():
    """mutex_unlock() by a task that does not own the mutex is a bad-unlock."""
    m = mutex("m", "m")
    c = Cell(1)

    def unlock():
        yield ev.Release(m)

    tasks = [(0, "owner", [op("hold", _under(m), c)]), (1, "thief", [op("steal", unlock)])]
    r = run(tasks, [(0, 1), (1, 0)])
    assert r.finding is not None
    assert r.finding.kind == "bad-unlock"
    assert r.finding.task == 1
    assert r.finding.message == (
        "unlock() releases m, which this task does not hold (held by task 0) (steal)"
    )
    assert r.finding.step == 1
    assert events_of(r.trace) == [(0, "mutex_lock(m)"), (1, "mutex_unlock(m)")]


def test_other_bad_unlocks():
    """Unlocking a free mutex, up_read() of a write-held rwsem, stray rcu_read_unlock()."""
    m = mutex("m", "m")
    sem = rwsem("sem", "sem")

    def free_unlock():
        yield ev.Release(m)

    def wrong_mode():
        yield ev.Acquire(sem, "w")
        yield ev.Release(sem, "r")

    def rcu_unbalanced():
        yield ev.RCU_READ_UNLOCK

    for fn, msg in [
        (free_unlock, "free_unlock() releases m, which this task does not hold (held by nobody)"),
        (wrong_mode, "wrong_mode() releases sem, which this task does not hold (held by task 0)"),
        (rcu_unbalanced, "rcu_unbalanced() rcu_read_unlock() without lock"),
    ]:
        r = run([(0, "t", [op("o", fn)])])
        assert r.finding is not None
        assert r.finding.kind == "bad-unlock"
        assert r.finding.message.startswith(msg)


# ---------------------------------------------------------------- 8. determinism


def _toy():
    c = Cell(1)
    m, ptl = mutex("m", "m"), spinlock("ptl", "ptl")
    return [
        (0, "a", [op("inc", locked_incr, c, m), op("rd", rcu_reader, c)]),
        (0, "b", [op("inc_y", locked_incr, c, ptl, "y"), op("rd", rcu_reader, c)]),
        (1, "c", [op("inc", locked_incr, c, m), op("racy", incr, c, "y")]),
    ]


def test_same_schedule_same_trace():
    """A run is a pure function of its operations and decisions."""
    decisions = [(1, 2), (2, 1), (1, 0), (2, 3), (0, 1), (2, 0)]
    r1 = run(_toy(), decisions)
    r2 = run(_toy(), decisions)
    assert r1.finding is None
    assert project(r1.trace) == project(r2.trace)
    assert (r1.decisions, r1.preemptions, r1.steps) == (r2.decisions, r2.preemptions, r2.steps)
    assert r1.decisions == decisions
    assert (r1.steps, r1.preemptions) == (20, 4)


# ---------------------------------------------------------------- 9. trace fn names


def test_trace_names_innermost_generator():
    """Each trace step names the innermost kernel function (yield from helpers, not the op)."""
    c = Cell(1)

    def read_field(o):
        v = yield ev.Load(o, "x")
        return v

    def inner_helper(o):
        v = yield from read_field(o)
        yield ev.Store(o, "y", v)
        return v

    def outer(o):
        yield ev.Load(o, "y")
        v = yield from inner_helper(o)
        yield ev.Mark("walk")
        yield ev.Store(o, "x", v + 1)

    r = run([(0, "t", [op("outer", outer, c)])])
    assert r.finding is None
    assert [t[3] for t in r.trace] == ["outer", "read_field", "inner_helper", "outer"]


def test_mark_and_current_are_not_steps():
    """Mark and Current are answered inline: they are neither trace steps nor preemption points."""
    seen = []

    class Obs:
        def on_mark(self, eng, task, mark):
            seen.append((task.tid, mark.kind, mark.data))

    c = Cell(1)

    def body():
        me = yield ev.CURRENT
        yield ev.Mark("begin", 1)
        yield ev.Load(c, "x")
        yield ev.Mark("end")
        return me

    r = Engine(ncpus=1, observers=[Obs()]).run(
        [(0, "t", [op("body", body)])], ReplayScheduler([])
    )
    assert r.finding is None
    assert r.steps == 1
    me = r.tasks[0].results[0]
    assert isinstance(me, Task) and me.tid == 0
    assert seen == [(0, "begin", 1), (0, "end", None)]


def test_setup_runs_alone_before_tasks():
    """setup ops run as task -1 on CPU 0 before any task; they count apart from task steps."""
    c = Cell(1)
    r = run([(1, "t", [op("inc", incr, c)])], [], setup=[op("init", incr, c)])
    assert r.finding is None
    assert (r.setup_steps, r.steps) == (2, 2)
    assert [t[0] for t in r.trace] == [-1, -1, 0, 0]
    assert c.x == 2


# ---------------------------------------------------------------- 10. model errors


def test_stray_yield_is_model_error():
    """Yielding a non-event is a bug of the model: ModelError naming the op and function."""

    def helper():
        yield 42

    def stray():
        yield ev.Load(Cell(1), "x")
        yield from helper()

    with pytest.raises(ModelError, match=r"^stray_op: helper yielded 42, not an engine event$"):
        run([(0, "t", [op("stray_op", stray)])])


def test_stray_yield_in_setup_is_model_error():
    """A stray yield in a setup op is a ModelError too, not a finding."""

    def stray():
        yield None

    with pytest.raises(ModelError, match="setup_op: stray yielded None"):
        run([], [], setup=[op("setup_op", stray)])


class _Runaway(Exception):
    pass


def _busy_wait(c):
    """Busy-waits on c->x (which nobody sets); gives up loudly after 5000 loads."""
    for _ in range(5000):
        yield ev.Load(c, "x")
    raise _Runaway("engine let a run go 5000 steps with max_steps=100")


@pytest.mark.parametrize("where", ["task", "setup"])
def test_max_steps_stops_a_runaway_decision(where):
    """A runaway task or setup op (never blocks nor finishes) gets ModelError past max_steps."""
    eng = Engine(ncpus=1, max_steps=100)
    busy = [op("busy", _busy_wait, Cell(1))]
    if where == "task":
        with pytest.raises(ModelError, match=r"^run exceeded 100 steps in busy$"):
            eng.run([(0, "t", busy)], ReplayScheduler([]))
    else:
        with pytest.raises(ModelError, match=r"^setup exceeded 100 steps$"):
            eng.run([], ReplayScheduler([]), setup=busy)
    assert len(eng.trace) == 101


class _Runaway(Exception):
    pass


def _busy_wait(c):
    """Busy-waits on c->x (which nobody sets); gives up loudly after 5000 loads."""
    for _ in range(5000):
        yield ev.Load(c, "x")
    raise _Runaway("engine let a run go 5000 steps with max_steps=100")


class _OneStepAtATime:
    """A scheduler (like a random explorer) that hands out one-step decisions forever."""

    def pick(self, runnable, last):
        return runnable[0], 1


def test_max_steps_stops_a_run_of_short_decisions():
    """A run made of many one-step decisions is stopped with ModelError after max_steps too."""
    eng = Engine(ncpus=1, max_steps=100)
    with pytest.raises(ModelError, match="exceeded 100 steps"):
        eng.run([(0, "t", [op("busy", _busy_wait, Cell(1))])], _OneStepAtATime())
