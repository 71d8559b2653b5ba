"""The Hypothesis state machine (issue 3, item 1): cheap choices, small shrunk traces that
replay, determinism, subclassing for a user's variant, and a clean mainline."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest
from hypothesis import seed
from hypothesis.control import current_build_context
from hypothesis.stateful import run_state_machine_as_test

from rmapfuzz import LocklessWalk, Mainline, RmapMachine
from rmapfuzz.explore import machine as machine_mod
from rmapfuzz.explore.hypothesis import explore_hypothesis
from rmapfuzz.explore.machine import RmapFinding, machine_settings
from rmapfuzz.kernel.objects import PAGE_SIZE, TASK_LO
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import execute


@pytest.fixture(autouse=True)
def _restore_machine_defaults():
    """Machines made by for_variant read the module's defaults; leave them as found."""
    saved = attrs.evolve(machine_mod.defaults)
    yield
    machine_mod.defaults.profile = saved.profile
    machine_mod.defaults.corpus_dir = saved.corpus_dir


# ------------------------------------------------------------------ choices


def test_choices_per_example_are_far_fewer_than_atomic_steps():
    """On mainline, Hypothesis makes < 1/4 as many choices per example as the run takes steps."""
    m = RmapMachine.for_variant(Mainline)
    ex = explore_hypothesis(Mainline, seed=1, max_examples=200, machine=m)
    s = m.stats
    assert ex.outcome is None
    assert s.examples >= 200 and s.steps > 0 and s.choices > 0
    assert s.choices / s.examples < (s.steps / s.examples) / 4, attrs.asdict(s)


@pytest.mark.parametrize("span", [300, 5760, 2**16])
def test_wide_ranges_are_drawn_uniformly(span):
    """The generator assumes uniform choices (as RngChoices makes them).  Hypothesis draws
    uniformly only within 256 of 0; a packed operation of 5760 values drawn in one go had its
    top field (mremap's "move it back" flag) set in 18% of the generated programs, not 50%."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from rmapfuzz.explore.machine import ConjectureChoices, pin_hypothesis_constants

    pin_hypothesis_constants()
    halves = [0, 0]

    @seed(span)
    @settings(
        max_examples=300, database=None, deadline=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(st.data())
    def draw(data):
        c = ConjectureChoices(data)
        for _ in range(10):
            v = c.integer(0, span - 1)
            assert 0 <= v < span
            halves[v * 2 // span] += 1

    draw()
    assert 0.4 < halves[1] / sum(halves) < 0.6, halves


def test_wide_range_draws_keep_the_order_the_shrinker_relies_on():
    """Digits compare as the value does: all zeros (the shrinker's aim) give the low end, all
    255s the high end, and lexicographically smaller digits never a larger value."""
    from rmapfuzz.explore.machine import ConjectureChoices

    class Digits:
        def __init__(self, digits):
            self.digits = list(digits)

        def draw_integer(self, lo, hi):
            assert (lo, hi) == (0, 255)
            return self.digits.pop(0)

        def start_span(self, label):  # pragma: no cover - not used here
            pass

    class Data:
        def __init__(self, digits):
            self.conjecture_data = Digits(digits)

    def value(*digits):
        return ConjectureChoices(Data(digits)).integer(7, 5766)

    assert value(0, 0) == 7 and value(255, 255) == 5766
    grid = [(a, b) for a in range(0, 256, 5) for b in range(0, 256, 17)]
    values = [value(a, b) for a, b in grid]
    assert values == sorted(values)


def _program(faults: int) -> Program:
    """Task 0 reclaims page 1 of process 1; task 1 faults ``faults`` fresh pages in the child."""
    setup = (Op("mmap", (1, TASK_LO, 8, 0)), Op("fault", (1, TASK_LO)), Op("fork", (1,)))
    faulting = tuple(Op("fault", (2, TASK_LO + (1 + i) * PAGE_SIZE)) for i in range(faults))
    return Program(2, setup, (TaskProgram(0, (Op("reclaim", (1,)),)), TaskProgram(1, faulting)))


class _Wanted(Exception):
    """Raised by the measuring machine for the examples it looks for."""


@attrs.frozen
class _Run:
    choices: int
    decisions: list[tuple[int, int]]
    preemptions: int
    steps: int
    program: Program


def _minimal_preempting_run(monkeypatch: pytest.MonkeyPatch, program: Program) -> _Run:
    """The mainline machine on a fixed ``program``: Hypothesis shrinks to the simplest example
    whose decisions preempt a task at least once and finish every task; that example's
    choices (the last one run: Hypothesis replays the minimal failure)."""
    monkeypatch.setattr(machine_mod, "generate", lambda choices, settings: program)

    class Fixed(RmapMachine.for_variant(Mainline)):  # type: ignore[misc]
        runs: list[_Run] = []
        remember_clean = False

        def run_program(self, choices) -> None:
            before = len(current_build_context().data.choices)
            super().run_program(choices)
            done = all(t.done for t in self.engine.tasks)
            preemptions = self.engine.preemptions
            type(self).runs.append(
                _Run(
                    choices=len(current_build_context().data.choices) - before,
                    decisions=list(self.engine.decisions),
                    preemptions=preemptions,
                    steps=len(self.engine.trace) - self.engine.setup_steps,
                    program=self.program(),
                )
            )
            if done and preemptions >= 1:
                raise _Wanted

    seed(3)(Fixed)
    with pytest.raises(_Wanted):
        run_state_machine_as_test(
            Fixed, settings=machine_settings(200, step_count=Fixed.step_count)
        )
    run = Fixed.runs[-1]
    assert run.program == program and run.preemptions >= 1
    return run


def test_more_work_costs_no_more_choices(monkeypatch):
    """Four times a task's work costs the same Hypothesis choices for the simplest schedule
    that preempts (a random walk's decisions grow with the steps, its choices do not)."""
    light = _minimal_preempting_run(monkeypatch, _program(1))
    heavy = _minimal_preempting_run(monkeypatch, _program(4))
    assert heavy.steps >= 2 * light.steps, (light, heavy)
    assert heavy.choices == light.choices, (light, heavy)


def test_hypothesis_mutations_of_a_machine_example_run_nothing(monkeypatch):
    """skip_futile_mutations() loses nothing: Hypothesis's span mutator, let loose on the
    machine's examples, never gets a new test case run (its only same-label spans are the
    stateful runner's own)."""
    from hypothesis.internal.conjecture.engine import ConjectureRunner

    machine_mod.skip_futile_mutations()
    original = ConjectureRunner.generate_mutations_from.__wrapped__
    ran: list[int] = []

    def counting(self, data):
        before = self.call_count
        original(self, data)
        ran.append(self.call_count - before)

    counting._rmapfuzz = True  # not wrapped again by the machine
    monkeypatch.setattr(ConjectureRunner, "generate_mutations_from", counting)
    explore_hypothesis(Mainline, seed=1, max_examples=400)
    assert len(ran) > 50 and sum(ran) == 0, ran


def test_an_exploration_drops_its_clean_programs_when_it_ends():
    """Hypothesis keeps every machine class alive for the process, and with it its stats: the
    clean-program cache (up to 100,000 programs) must not outlive its exploration."""
    m = RmapMachine.for_variant(Mainline)
    seen: list[int] = []
    explore_hypothesis(
        Mainline, seed=1, max_examples=40, machine=m,
        progress=lambda ex: seen.append(len(m.stats.clean)),
    )  # fmt: skip
    assert seen and seen[-1] > 0
    assert m.stats.clean == set() and m.stats.examples >= 40


def test_without_shrinking_the_finding_is_the_failing_example_as_found(monkeypatch):
    """shrink=False (the benchmarks' unshrunk seeds): neither Hypothesis's shrinker nor
    minimize runs; the finding is the failing example's."""
    from rmapfuzz.explore import hypothesis as hyp_mod

    def no_minimize(*args, **kwargs):
        raise AssertionError("minimize ran")

    monkeypatch.setattr(hyp_mod, "minimize", no_minimize)
    m = RmapMachine.for_variant(LocklessWalk)
    ex = explore_hypothesis(LocklessWalk, seed=1, max_examples=3000, machine=m, shrink=False)
    assert ex.outcome is not None and ex.outcome is m.stats.last
    assert m.stats.first_failure_examples is not None
    assert ex.examples <= m.stats.first_failure_examples + m.programs_per_example  # its replay


def test_database_key_names_the_variant_its_knobs_and_cpus():
    """Examples saved for one machine are not replayed for another: the key differs with the
    variant, its knobs, its CPUs and the machine class, and is the same for the same ones."""
    base = RmapMachine.for_variant(Mainline)
    keys = {
        RmapMachine.for_variant(Mainline).database_key(),
        RmapMachine.for_variant(LocklessWalk).database_key(),
        RmapMachine.for_variant(Mainline, cpus=3).database_key(),
        RmapMachine.for_variant(Mainline, knobs={"x": 1}).database_key(),
        type("Sub", (base,), {}).database_key(),
    }
    assert len(keys) == 5 and base.database_key() in keys


# ------------------------------------------------------------------ shrinking


@pytest.mark.parametrize("s", [1, 2, 3])
def test_shrunk_lockless_walk_finding_is_small_and_replays(s):
    """explore_hypothesis shrinks lockless-walk to <= 5 ops, <= 3 preemptions; it replays."""
    ex = explore_hypothesis(LocklessWalk, seed=s)
    o = ex.outcome
    assert o is not None and o.finding is not None
    assert o.program.n_ops <= 5, o.program.describe()
    assert o.result.preemptions <= 3, o.decisions
    again = execute(LocklessWalk, o.program, o.decisions)
    assert again.finding is not None
    assert (again.finding.kind, again.finding.message, again.finding.step) == (
        o.finding.kind,
        o.finding.message,
        o.finding.step,
    )
    assert again.result.preemptions == o.result.preemptions
    assert again.result.steps == o.result.steps


def test_same_seed_same_program_decisions_and_finding():
    """Without a database, one seed gives the same program, decisions and finding twice."""
    first = explore_hypothesis(LocklessWalk, seed=4, database=None).outcome
    second = explore_hypothesis(LocklessWalk, seed=4, database=None).outcome
    assert first is not None and second is not None
    assert second.program == first.program
    assert second.decisions == first.decisions
    f, g = first.finding, second.finding
    assert (g.kind, g.message, g.step) == (f.kind, f.message, f.step)


# ------------------------------------------------------------------ subclassing


def test_a_user_variant_plugs_in_through_for_variant():
    """A user's variant gets its own machine and TestCase; it fails with notes showing lanes."""

    class MyPatch(LocklessWalk):
        name = "my-patch"

    before = {k: RmapMachine.__dict__.get(k) for k in ("variant", "variant_label", "stats")}
    machine = RmapMachine.for_variant(MyPatch)
    assert issubclass(machine, RmapMachine) and machine.variant is MyPatch
    assert machine.variant_label == "my-patch"
    seed(1)(machine)
    with pytest.raises(RmapFinding) as info:
        machine.TestCase("runTest").runTest()
    e = info.value
    assert type(e) is not RmapFinding and type(e).__name__.startswith("Finding_")
    assert str(e).startswith("my-patch: " + e.outcome.finding.kind)
    assert isinstance(e.outcome.kernel, MyPatch)
    notes = "\n".join(getattr(e, "__notes__", []))
    assert "cpu0" in notes and "cpu1" in notes and ">>" in notes  # the swim-lanes
    assert "FINDING " + e.outcome.finding.kind in notes
    assert machine.stats.examples > 0
    assert {k: RmapMachine.__dict__.get(k) for k in before} == before  # the machine untouched
    assert RmapMachine.stats.examples == 0


def test_mainline_machine_runs_150_examples_clean():
    """The mainline machine runs 150 examples of programs and interleavings with no finding."""
    machine = RmapMachine.for_variant(Mainline, profile="ci")
    seed(1)(machine)
    run_state_machine_as_test(
        machine, settings=machine_settings(150, step_count=machine.step_count)
    )
    assert machine.stats.examples >= 150
    assert machine.stats.steps > 150 * 50
    assert machine.stats.last is None and machine.stats.first_failure_at is None


_RUN = """
import sys
sys.path.insert(0, {tmp!r})
{imports}
from rmapfuzz.explore.hypothesis import explore_hypothesis
from rmapfuzz.kernel.variants import Mainline
ex = explore_hypothesis(Mainline, seed=2, max_examples=120)
print(ex.examples, ex.steps)
"""


def test_same_seed_same_run_whatever_modules_are_loaded(tmp_path):
    """Hypothesis draws some integers from the literals of the local modules loaded so far;
    the machine turns that off, so a seed runs the same from pytest, the CLI or a worker."""
    (tmp_path / "odd_constants.py").write_text(
        "A = 65536\nB = 4096\nC = 3 * 1000003\nD = [17, 4242, 2**31 - 5, 123456789]\n"
    )

    def run(imports: str) -> str:
        code = _RUN.format(tmp=str(tmp_path), imports=imports)
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=300, check=True)  # fmt: skip
        return p.stdout

    plain = run("")
    assert plain == run("import odd_constants, rmapfuzz.cli, rmapfuzz.fuzzjob, rmapfuzz.render")
