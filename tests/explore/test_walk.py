"""The random walk and its hold: one task out of the walk after a drawn event."""

from __future__ import annotations

from rmapfuzz.engine import Engine
from rmapfuzz.explore.pct import CLASSES
from rmapfuzz.explore.walk import WalkPlan, walk_scheduler
from rmapfuzz.kernel.variants import Mainline, PlaNoRecheck
from rmapfuzz.oracles import default_oracles
from rmapfuzz.program import Program
from rmapfuzz.runner import Outcome, _call, execute
from tests.kernel.test_historical import PROGRAM_B78

RCU = CLASSES.index("rcu")


def run_walk(variant: type[Mainline], program: Program, plan: WalkPlan) -> Outcome:
    """``program`` under ``plan``, as the state machine runs it."""
    kernel = variant()
    kernel.boot()
    engine = Engine(ncpus=program.cpus, observers=default_oracles(kernel))
    tasks = [
        (t.cpu, f"task{i}", [_call(kernel, op) for op in t.ops])
        for i, t in enumerate(program.tasks)
    ]
    setup = [_call(kernel, op) for op in program.setup]
    result = engine.run(tasks, walk_scheduler(plan, engine, len(tasks)), setup=setup)
    return Outcome(program, result, kernel)


def test_walk_is_a_function_of_its_seed_and_replays():
    for seed in range(20):
        a = run_walk(Mainline, PROGRAM_B78, WalkPlan(seed))
        b = run_walk(Mainline, PROGRAM_B78, WalkPlan(seed))
        assert a.decisions == b.decisions
        again = execute(Mainline, PROGRAM_B78, a.decisions)
        assert [repr(e) for e in again.result.trace] == [repr(e) for e in a.result.trace]


def test_held_task_runs_again_only_when_no_other_task_can():
    """After its j-th step inside an RCU section the reclaim task (task 0) leaves the walk:
    none of its steps comes before every other task has finished or is blocked."""
    checked = 0
    for seed in range(30):
        out = run_walk(Mainline, PROGRAM_B78, WalkPlan(seed, ((0, RCU, 2),)))
        steps = out.result.trace[out.result.setup_steps :]
        mine = [i for i, s in enumerate(steps) if s[0] == 0]
        # the hold fires after task 0's second step inside page_lock_anon_vma_read()'s RCU
        # section; from there, its next step follows the others' last ones
        in_rcu = [i for i in mine if steps[i][3] == "page_lock_anon_vma_read"]
        if len(in_rcu) < 3:
            continue
        held_at, resumed = in_rcu[1], in_rcu[2]
        others = [i for i, s in enumerate(steps) if s[0] != 0]
        assert all(i < resumed for i in others if i > held_at), seed
        checked += 1
    assert checked >= 10


def test_hold_reaches_b7_where_the_plain_walk_does_not():
    """B7's window (reclaim between page_mapped() and the trylock while an exit frees the
    anon_vma) needs reclaim kept out for a whole exit: a hold in the RCU section finds it for
    most seeds, the plain walk for none, and mainline stays clean under the same holds."""
    holds = ((0, RCU, 3),)
    found = [
        s for s in range(40) if run_walk(PlaNoRecheck, PROGRAM_B78, WalkPlan(s, holds)).finding
    ]
    assert len(found) >= 20
    assert not [s for s in range(40) if run_walk(PlaNoRecheck, PROGRAM_B78, WalkPlan(s)).finding]
    assert not [s for s in range(40) if run_walk(Mainline, PROGRAM_B78, WalkPlan(s, holds)).finding]
