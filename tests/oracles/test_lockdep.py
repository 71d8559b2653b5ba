"""The lockdep-style lock-order checker (rmapfuzz/oracles/lockdep.py) on toy operations, and on
the mainline model: it must see inversions and cycles that a run did not deadlock on, follow
lockdep's trylock and nesting rules, and stay silent on mainline."""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz.engine import Engine, OpCall, ReplayScheduler
from rmapfuzz.engine import events as ev
from rmapfuzz.engine.locks import bitlock, mutex, rwsem, spinlock
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.random import run_example
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles.lockdep import LockdepOracle


def _run(tasks: list[list[Any]], decisions=()) -> tuple[Any, LockdepOracle]:
    """Each task is a list of generator functions (their names are the kernel functions)."""
    oracle = LockdepOracle()
    eng = Engine(ncpus=2, observers=[oracle])
    spec = [(i % 2, f"t{i}", [OpCall(f.__name__, f) for f in ops]) for i, ops in enumerate(tasks)]
    return eng.run(spec, ReplayScheduler(decisions)), oracle


PTL = spinlock("ptl", "pte_lock")
PAGE = bitlock("page#1.PG_locked", "PG_locked")
AV = rwsem("av#1.rwsem", "anon_vma->rwsem")
X = mutex("x", "x_lock")
Y = mutex("y", "y_lock")
Z = mutex("z", "z_lock")


@pytest.fixture(autouse=True)
def _free_locks():
    """The toy locks are module-level: a run that stops at a finding leaves them held."""
    yield
    for lock in (PTL, PAGE, AV, X, Y, Z):
        lock.owner = None
        lock.readers.clear()


def test_inversion_against_the_documented_order_without_deadlock():
    """lock_page() under the anon_vma rwsem: mm/rmap.c says PG_locked comes first.  One task,
    no deadlock in this run -- lockdep (and this) still reports it."""

    def walk_and_lock():
        yield ev.Acquire(AV, "r")
        yield ev.Acquire(PAGE)
        yield ev.Release(PAGE)
        yield ev.Release(AV, "r")

    r, _ = _run([[walk_and_lock]])
    f = r.finding
    assert f is not None and f.kind == "lock-order", f
    assert (
        "walk_and_lock() takes page#1.PG_locked (PG_locked) while holding av#1.rwsem "
        "(anon_vma->rwsem), against the order of mm/rmap.c" in f.message
    )


def test_documented_order_is_clean():
    def walk():
        yield ev.Acquire(PAGE)
        yield ev.Acquire(PTL)
        yield ev.Release(PTL)
        yield ev.Release(PAGE)

    r, oracle = _run([[walk]])
    assert r.finding is None
    assert oracle.dependencies() == ["PG_locked -> pte_lock"]


def test_abba_cycle_across_tasks_that_did_not_deadlock():
    """Two tasks take two unranked classes in opposite orders, one after the other: no
    deadlock in this run, but the graph has a cycle."""

    def ab():
        yield ev.Acquire(X)
        yield ev.Acquire(Y)
        yield ev.Release(Y)
        yield ev.Release(X)

    def ba():
        yield ev.Acquire(Y)
        yield ev.Acquire(X)
        yield ev.Release(X)
        yield ev.Release(Y)

    r, _ = _run([[ab], [ba]], [(0, 0), (1, 0)])
    f = r.finding
    assert f is not None and f.kind == "lock-order"
    assert "possible circular locking dependency: ba() takes x (x_lock) while holding y" in (
        f.message
    )
    assert "x_lock -> y_lock (task 0, ab()" in f.message
    assert f.task == 1


def test_trylock_adds_no_dependency():
    """Lockdep: "trylock can be done in any order" -- y trylocked under x, then x under y."""

    def x_then_try_y():
        yield ev.Acquire(X)
        assert (yield ev.TryAcquire(Y))
        yield ev.Release(Y)
        yield ev.Release(X)

    def y_then_x():
        yield ev.Acquire(Y)
        yield ev.Acquire(X)
        yield ev.Release(X)
        yield ev.Release(Y)

    r, oracle = _run([[x_then_try_y], [y_then_x]], [(0, 0), (1, 0)])
    assert r.finding is None, r.finding
    assert oracle.dependencies() == ["y_lock -> x_lock"]


def test_a_trylocked_lock_is_on_the_held_stack():
    """...but a blocking acquisition under a trylocked lock depends on it (and on the first
    blocking lock below it): x, trylock y, then z gives y -> z and x -> z."""

    def nest():
        yield ev.Acquire(X)
        yield ev.TryAcquire(Y)
        yield ev.Acquire(Z)
        yield ev.Release(Z)
        yield ev.Release(Y)
        yield ev.Release(X)

    def z_then_y():
        yield ev.Acquire(Z)
        yield ev.Acquire(Y)
        yield ev.Release(Y)
        yield ev.Release(Z)

    r, oracle = _run([[nest], [z_then_y]], [(0, 0), (1, 0)])
    assert sorted(oracle.dependencies()) == ["x_lock -> z_lock", "y_lock -> z_lock"]
    f = r.finding
    assert f is not None and f.kind == "lock-order" and "y_lock -> z_lock" in f.message


def test_nesting_annotation_and_recursive_locking():
    """dup_mmap() takes the child's mmap_sem nested (SINGLE_DEPTH_NESTING); any other
    function taking a second mmap_sem is lockdep's "possible recursive locking"."""
    a, b = rwsem("mm#1.mmap_sem", "mm->mmap_sem"), rwsem("mm#2.mmap_sem", "mm->mmap_sem")

    def dup_mmap():
        yield ev.Acquire(a, "w")
        yield ev.Acquire(b, "w")
        yield ev.Release(b, "w")
        yield ev.Release(a, "w")

    r, oracle = _run([[dup_mmap]])
    assert r.finding is None
    assert oracle.dependencies() == ["mm->mmap_sem -> mm->mmap_sem/1"]

    def two_mms():
        yield ev.Acquire(a, "r")
        yield ev.Acquire(b, "r")
        yield ev.Release(b, "r")
        yield ev.Release(a, "r")

    r, _ = _run([[two_mms]])
    f = r.finding
    assert f is not None and f.kind == "lock-order"
    assert "possible recursive locking detected: two_mms() takes mm#2.mmap_sem" in f.message


def test_mainline_random_runs_respect_the_order():
    """Mainline on random programs and schedules: no lock-order finding."""
    for i in range(120):
        out = run_example(Mainline, 7, i, GenSettings())
        assert out.finding is None or out.finding.kind != "lock-order", out.finding


def test_mainline_dependencies_follow_the_rmap_c_header():
    """move_pages against a fork: the dependencies are those of the header of mm/rmap.c, with
    dup_mmap()'s and copy_pte_range()'s nesting annotations."""
    k = Mainline()
    k.boot()
    oracle = LockdepOracle(k)
    prog = [
        (0, "t0", [OpCall("move_pages", lambda: k.start_op("move_pages", (1, 0x10000)))]),
        (1, "t1", [OpCall("fork", lambda: k.start_op("fork", (1,)))]),
    ]
    setup = [
        OpCall("mmap", lambda: k.start_op("mmap", (1, 0x10000, 2, 0))),
        OpCall("fault", lambda: k.start_op("fault", (1, 0x10000))),
    ]
    r = Engine(ncpus=2, observers=[oracle]).run(prog, ReplayScheduler([]), setup=setup)
    assert r.finding is None
    assert {
        "mm->mmap_sem -> PG_locked",
        "PG_locked -> anon_vma->rwsem",
        "anon_vma->rwsem -> mm->page_table_lock",
        "mm->mmap_sem -> mm->mmap_sem/1",
        "pte_lock -> pte_lock/1",
    } <= set(oracle.dependencies())
