"""The Hypothesis stateful machine: generation that shrinks operations and interleavings together.

The one rule, ``explore``, runs ``programs_per_example`` programs, each on a freshly booted
kernel: ``start`` creates the processes, vmas and pages (the setup: mmap, fault, fork,
mprotect, each run to completion at once) and spawns the tasks; ``schedule`` runs them to the
end under a drawn plan; then the quiescent checks.  A plan is a random walk (two choices: its
seed; maybe a hold, one PCT change point that takes a task out of the walk) or a PCT plan (a
few choices per change point), so choices grow with operations and change points, never with
atomic steps (DESIGN.md section 3).  Shrinking moves a walk to PCT
and deletes change points (preemptions) after it has deleted operations;
:mod:`rmapfuzz.explore.minimize` then shrinks the recorded decisions themselves.

Hypothesis spends a few milliseconds per example whatever it holds (about what one program
costs to run), so an example runs several programs.  They are spans of one rule call, not
several rule calls, and every span has a label of its own: Hypothesis's mutator copies a span
over another of the same label, which here only repeats a program already run.

Programs are drawn with :func:`rmapfuzz.strategies.programs` (the random explorer's generator,
Hypothesis choosing); what ran is recorded as a plain :class:`~rmapfuzz.program.Program` and
decision list, which replay with :func:`rmapfuzz.runner.execute` without Hypothesis.

Subclass it for a variant without touching the machine::

    TestMyPatch = RmapMachine.for_variant(MyPatch).TestCase
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, rule

from rmapfuzz.engine import Engine, Finding, FindingError, OpCall
from rmapfuzz.explore.generate import (
    GenSettings,
    cpus_for,
    for_variant,
    generate,
    packed_range,
    unpack,
)
from rmapfuzz.explore.pct import PctPlan, PctScheduler, draw_plan
from rmapfuzz.explore.walk import WalkPlan, draw_walk, walk_scheduler
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles import default_oracles
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome

#: the widest range Hypothesis draws uniformly (see ConjectureChoices.integer)
DIGIT = 256
SPAN_LABEL = 0x726D6170  # "rmap": marks one operation or one change point for the shrinker
#: programs remembered as clean per machine (see run_program)
_CLEAN_CACHE = 100_000


class ConjectureChoices:
    """Choices for the program generator and the decisions, straight from Hypothesis's choice
    sequence: ``ConjectureData.draw_integer`` costs ~35 us a choice here, a draw through a
    strategy object ~150 us (hypothesis.internal; if it is not there, strategies are used).
    Hypothesis still shrinks every choice toward 0, the simplest value."""

    def __init__(self, data: Any) -> None:
        cd = getattr(data, "conjecture_data", None)
        if cd is not None and hasattr(cd, "draw_integer") and hasattr(cd, "start_span"):
            self._int = cd.draw_integer
            self._cd = cd
            self._spans = 0
        else:  # pragma: no cover - another Hypothesis
            self._int = lambda lo, hi: data.draw(st.integers(lo, hi))
            self._cd = None

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        cd = self._cd
        if cd is None:  # pragma: no cover
            yield
            return
        # every span its own label: Hypothesis's mutator copies a span over another of the
        # same label, which here would only repeat a program or an operation already run
        self._spans += 1
        cd.start_span(SPAN_LABEL + self._spans)
        try:
            yield
        finally:
            cd.stop_span()

    def integer(self, lo: int, hi: int) -> int:
        """Uniform in [lo, hi], as the generator assumes.  Hypothesis draws an integer
        uniformly only within 256 of 0 (the inner piece of its distribution); beyond, from a
        tail that favours small values.  A wider range drawn in one go would come out mostly
        small: the high digits of a packed operation (its flags, its page count) nearly always
        0.  So a wider range is drawn as base-256 digits, most significant first, and scaled:
        still 0 for all-zero digits, still smaller for lexicographically smaller digits (what
        the shrinker makes), at most 1/8 off uniform."""
        span = hi - lo + 1
        if span <= DIGIT:
            return int(self._int(lo, hi))
        u, scale = 0, 1
        while scale < span or (scale % span and scale < 8 * span):
            u = u * DIGIT + int(self._int(0, DIGIT - 1))
            scale *= DIGIT
        return lo + u * span // scale

    def choice(self, options: Any) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def boolean(self, p: float) -> bool:
        # True with probability p (in tenths); 0, the shrink target, is False
        return self._int(0, 9) >= 10 - round(p * 10)

    def packed(self, sizes: Any) -> list[int]:
        return unpack(self.integer(0, packed_range(sizes) - 1), sizes)


def _no_local_constants() -> Any:
    return _NO_CONSTANTS


_NO_CONSTANTS: Any = None


def pin_hypothesis_constants() -> None:
    """Turn off Hypothesis's pool of *local* constants, for the whole process.

    Hypothesis draws about one integer in twenty from constants, among them the literals of
    the local (non-library) modules imported so far (``hypothesis.internal.conjecture.
    providers``).  Which modules those are depends on how a run was started — the CLI, a
    pytest session, a fuzz worker — so the same seed gave different runs (measured: seed 2 of
    lockless-walk ran 999 examples alone, 356 after the CLI had imported its modules).  Without
    them a draw depends on the seed and the Hypothesis version only.  Idempotent; it is
    process-wide, so other Hypothesis tests of the process lose the local constants too (a
    heuristic of Hypothesis's, not a contract)."""
    global _NO_CONSTANTS
    try:
        from hypothesis.internal.conjecture import providers
        from hypothesis.internal.constants_ast import Constants
    except ImportError:  # pragma: no cover - another Hypothesis
        return
    if providers._get_local_constants is _no_local_constants:
        return
    _NO_CONSTANTS = Constants()
    providers._get_local_constants = _no_local_constants
    providers.CONSTANTS_CACHE.cache.clear()  # may hold the pool as it was


def skip_futile_mutations() -> None:
    """Spare this machine Hypothesis's span mutator, for the whole process.

    After each generated example Hypothesis tries up to six copies of one span over another
    of the same label (``ConjectureRunner.generate_mutations_from``).  The machine's own spans
    all have labels of their own (see :meth:`ConjectureChoices.group`), so with one rule per
    example the only pairs are the stateful runner's: its one step and its forced stop, and
    two empty spans.  No such copy is a new test case: measured, 0 runs from 93 rounds of
    mutation on mainline.  Each attempt still costs a simulation of the whole example in
    Hypothesis's data tree: 12% of the machine's throughput.  Other tests (and machines that
    take several rules per example, like bench/naive.py) keep the mutator.  Idempotent; if
    Hypothesis has no such method, nothing changes."""
    try:
        from hypothesis.internal.conjecture.engine import ConjectureRunner
    except ImportError:  # pragma: no cover - another Hypothesis
        return
    mutate = getattr(ConjectureRunner, "generate_mutations_from", None)
    if mutate is None or getattr(mutate, "_rmapfuzz", False):
        return

    @functools.wraps(mutate)
    def generate_mutations_from(self: Any, data: Any) -> None:
        machine = getattr(data, "hypothesis_runner", None)
        if isinstance(machine, RmapMachine) and machine.step_count == 1:
            return
        mutate(self, data)

    generate_mutations_from._rmapfuzz = True  # type: ignore[attr-defined]
    ConjectureRunner.generate_mutations_from = generate_mutations_from  # type: ignore[method-assign]


#: programs (each its own interleaving) per test run of the machine under pytest, by profile
PROFILES = {"ci": 300, "fuzz": 100_000}


def examples_for(programs: int, per_example: int) -> int:
    """Hypothesis examples that run about ``programs`` programs, ``per_example`` each."""
    return max(1, -(-programs // per_example))


@attrs.define
class Defaults:
    """What machines made by :meth:`RmapMachine.for_variant` get unless told otherwise; the
    pytest plugin sets these from ``--rmapfuzz-profile`` and ``--rmapfuzz-save``."""

    profile: str = "ci"
    corpus_dir: Path | None = None


defaults = Defaults()


def machine_settings(
    max_examples: int,
    database: str | Path | None = None,
    *,
    reuse: bool = True,
    step_count: int = 1,
    shrink: bool = True,
) -> settings:
    """Hypothesis settings for the machine; ``reuse`` replays what the database holds first (a
    resumed job), off for later rounds of a --keep-going job; ``shrink`` off reports the first
    failing example as it was found."""
    phases = [Phase.explicit, Phase.generate, Phase.target]
    if shrink:
        phases.append(Phase.shrink)
    if reuse and database:
        phases.insert(1, Phase.reuse)
    return settings(
        max_examples=max_examples,
        stateful_step_count=step_count,
        deadline=None,
        database=DirectoryBasedExampleDatabase(str(database)) if database else None,
        suppress_health_check=list(HealthCheck),
        phases=phases,
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
    )


def run_machine(machine: type[RmapMachine], run_settings: settings) -> None:
    """Hypothesis's ``run_state_machine_as_test`` under :meth:`RmapMachine.database_key`
    (``get_state_machine_test`` is the test it runs, split out for HypoFuzz)."""
    test = get_state_machine_test(machine, settings=run_settings)
    test._hypothesis_internal_database_key = machine.database_key()  # as hypothesis.find() does
    test()


class RmapFinding(AssertionError):
    """A finding made under the state machine; one subclass per finding kind, so that
    Hypothesis, which tells failures apart by exception type, shrinks toward the same kind."""

    outcome: Outcome
    finding: Finding
    label: str


@functools.cache
def finding_class(kind: str) -> type[RmapFinding]:
    name = "Finding_" + "".join(c if c.isalnum() else "_" for c in kind)
    return type(name, (RmapFinding,), {"__module__": __name__})


@attrs.define
class MachineStats:
    """Shared by all instances of one machine class: what the exploration did."""

    #: programs drawn (each with its decisions), ``repeated`` of them not run again
    examples: int = 0
    repeated: int = 0
    steps: int = 0
    choices: int = 0
    first_failure_at: float | None = None
    #: programs drawn up to and including the first failing one
    first_failure_examples: int | None = None
    last: Outcome | None = None
    #: (program, schedule plan) pairs that ran clean
    clean: set[tuple[Program, PctPlan | WalkPlan]] = attrs.field(factory=set)


class RmapMachine(RuleBasedStateMachine):
    variant: ClassVar[type[Mainline]] = Mainline
    variant_label: ClassVar[str] = "mainline"
    knobs: ClassVar[dict[str, Any]] = {}
    #: simulated CPUs (None: the variant's ``cpus``, else 2)
    cpus: ClassVar[int | None] = None
    corpus_dir: ClassVar[Path | None] = None
    stats: ClassVar[MachineStats] = MachineStats()
    #: rules per Hypothesis example (its stateful_step_count)
    step_count: ClassVar[int] = 1
    #: programs a Hypothesis example runs, one after another
    programs_per_example: ClassVar[int] = 4
    #: skip programs already run clean (off for a subclass that watches every run)
    remember_clean: ClassVar[bool] = True
    #: set by a fuzz job: checked before each program (a staticmethod, or None)
    should_stop: ClassVar[Any] = None

    @classmethod
    def for_variant(
        cls,
        variant: type[Mainline],
        *,
        knobs: dict[str, Any] | None = None,
        cpus: int | None = None,
        label: str | None = None,
        corpus_dir: str | Path | None = None,
        profile: str | None = None,
    ) -> type[RmapMachine]:
        """A machine class for ``variant``: a fresh class with its own stats, and a unittest
        ``TestCase`` whose settings follow ``profile`` (default: :data:`defaults`).  Findings
        are saved to ``corpus_dir`` (default: :data:`defaults`, i.e. only with
        ``--rmapfuzz-save``)."""
        corpus = corpus_dir if corpus_dir is not None else defaults.corpus_dir
        machine = type(
            f"{variant.__name__}Machine",
            (cls,),
            {
                "variant": variant,
                "variant_label": label or variant.name,
                "knobs": dict(knobs or {}),
                "cpus": cpus,
                "corpus_dir": Path(corpus) if corpus is not None else None,
                "stats": MachineStats(),
                # a module of that name does not exist: inspect then tells Hypothesis at once
                # that the class has no source (its digest falls back to the name, as it did
                # after parsing this file for a class statement that is not there: 16 ms a
                # run, and unused, see database_key)
                "__module__": f"{cls.__module__}.for_variant",
            },
        )
        machine.TestCase.settings = machine_settings(
            examples_for(PROFILES[profile or defaults.profile], machine.programs_per_example),
            step_count=machine.step_count,
        )
        return machine

    @classmethod
    def run_as_test(cls) -> None:
        """Run the machine as one test (what ``TestCase`` does), raising the shrunk finding."""
        run_machine(cls, cls.TestCase.settings)

    @classmethod
    def database_key(cls) -> bytes:
        """Where Hypothesis's database keeps this machine's examples: the machine classes, the
        variant (its label), its knobs and CPUs, the programs per example.  Hypothesis's own
        key is a digest of its stateful runner's source and the class's name: the same for
        two jobs of one variant with different knobs or CPUs, and recomputed (tokenized) on
        every run, ~10 ms."""
        ident = (
            [f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__ if issubclass(c, RmapMachine)],
            cls.variant_label,
            sorted(cls.knobs.items()),
            cls.ncpus(),
            cls.programs_per_example,
        )
        return hashlib.sha384(repr(ident).encode()).digest()

    def __init__(self) -> None:
        pin_hypothesis_constants()  # before the example's first draw
        skip_futile_mutations()  # before Hypothesis mutates the first example
        super().__init__()
        self._new_world()

    @classmethod
    def gen_settings(cls) -> GenSettings:
        """What the generator draws for this machine: its CPUs, the variant's focus and
        ``max_tasks``."""
        return for_variant(GenSettings(cpus=cls.ncpus()), cls.variant)

    @classmethod
    def ncpus(cls) -> int:
        return cpus_for(cls.variant, cls.cpus)

    def _new_world(self) -> None:
        """A freshly booted kernel and an empty engine: where the next program runs."""
        self.kernel = self.variant(**self.knobs)
        self.kernel.boot()
        self.engine = Engine(ncpus=self.ncpus(), observers=default_oracles(self.kernel))
        self.setup_ops: list[Op] = []
        self.task_progs: list[TaskProgram] = []
        self.failed = False
        self.finished = False
        self.fresh = True

    # ------------------------------------------------------------ plumbing

    def _call(self, op: Op) -> OpCall:
        return OpCall(str(op), functools.partial(self.kernel.start_op, op.name, op.args))

    def program(self) -> Program:
        return Program(self.ncpus(), tuple(self.setup_ops), tuple(self.task_progs))

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run an engine action; a finding becomes a failure Hypothesis can shrink."""
        try:
            return fn(*args)
        except FindingError as e:
            self.failed = True
            outcome = Outcome(self.program(), self.engine.result(e), self.kernel)
            self._raise(outcome)

    def _raise(self, outcome: Outcome) -> None:
        from rmapfuzz.render import finding_report, swimlanes

        f = outcome.finding
        assert f is not None
        stats = type(self).stats
        stats.last = outcome
        if stats.first_failure_at is None:
            stats.first_failure_at = time.perf_counter()
            stats.first_failure_examples = stats.examples
        exc = finding_class(f.kind)(f"{self.variant_label}: {f.kind}: {f.message}")
        exc.outcome, exc.finding, exc.label = outcome, f, self.variant_label
        r = outcome.result
        exc.add_note(outcome.program.describe())
        exc.add_note(
            "schedule: "
            + " ".join(f"({t},{n})" for t, n in r.decisions)
            + f"  [{r.preemptions} preemptions, {r.steps} steps]"
        )
        exc.add_note(swimlanes(r.trace, outcome.program, setup_steps=r.setup_steps, finding=f))
        exc.add_note(finding_report(f))
        if self.corpus_dir is not None:
            from rmapfuzz import corpus

            path = corpus.save(
                corpus.record(self.variant_label, self.knobs, outcome, explorer="hypothesis"),
                self.corpus_dir,
            )
            exc.add_note(f"saved: rmapfuzz replay {path}")
        raise exc

    def _setup(self, op: Op) -> None:
        self.setup_ops.append(op)
        self._guard(self.engine.setup_op, self._call(op))

    # --------------------------------------------------------------- rules

    @rule(data=st.data())
    def explore(self, data: Any) -> None:
        """``programs_per_example`` programs, each from start to end on a fresh kernel: draw
        it and its schedule, run its setup, spawn its tasks, run them to completion under the
        schedule and check the quiescent invariants.  They share Hypothesis's fixed cost per
        example; each is a span of its own, which the shrinker empties (the simplest program
        runs clean) when the finding does not need it."""
        choices = ConjectureChoices(data)
        for _ in range(self.programs_per_example):
            with choices.group():
                self.run_program(choices)

    def run_program(self, choices: ConjectureChoices) -> None:
        """The body of ``explore`` (override this, not the rule, to watch each program).

        All the program's choices are drawn first, then it runs.  A run is a function of its
        choices (a fresh kernel, a deterministic engine), so a program whose choices already
        ran clean in this machine is not run again: when the shrinker replays an example, the
        programs before the failing one cost their draws only."""
        stop = type(self).should_stop
        if stop is not None and stop():
            raise KeyboardInterrupt  # a job is stopping: whatever Hypothesis is doing ends
        program = generate(choices, self.gen_settings())
        plan = self.draw_schedule(choices, program)
        stats = type(self).stats
        stats.examples += 1
        if self.remember_clean and (program, plan) in stats.clean:
            stats.repeated += 1
            return
        if not self.fresh:
            self._new_world()
        self.start(program)
        self.schedule(plan)
        self._finish()
        if self.remember_clean:
            if len(stats.clean) >= _CLEAN_CACHE:
                stats.clean.clear()
            stats.clean.add((program, plan))

    def build(self, choices: ConjectureChoices) -> None:
        """Draw a program and start it (a machine that takes its decisions one by one)."""
        type(self).stats.examples += 1
        self.start(generate(choices, self.gen_settings()))

    def start(self, program: Program) -> None:
        """Create the processes, vmas and pages (the setup runs alone, operation by operation)
        and spawn the tasks."""
        self.fresh = False
        for op in program.setup:
            self._setup(op)
        for tp in program.tasks:
            self.spawn(tp)

    def spawn(self, tp: TaskProgram) -> None:
        """Start a task running ``tp.ops`` on ``tp.cpu``."""
        self.task_progs.append(tp)
        name = f"task{len(self.task_progs) - 1}"
        self._guard(self.engine.spawn, tp.cpu, name, [self._call(op) for op in tp.ops])

    @staticmethod
    def draw_schedule(choices: ConjectureChoices, program: Program) -> PctPlan | WalkPlan:
        """A random walk (its seed, maybe a hold) three times in four, else a PCT plan; PCT
        first when shrinking."""
        with choices.group():
            if choices.integer(0, 3):
                return draw_walk(choices, program)
        return draw_plan(choices, program)

    def schedule(self, plan: PctPlan | WalkPlan) -> None:
        """Run the tasks to the end under ``plan`` (the engine records the decisions taken,
        which replay without the plan)."""
        sched: Any = (
            walk_scheduler(plan, self.engine, len(self.task_progs))
            if isinstance(plan, WalkPlan)
            else PctScheduler(plan, self.engine)
        )
        self._guard(self._follow, sched)

    def _follow(self, sched: Any) -> None:
        engine = self.engine
        while runnable := engine.runnable():
            engine.decide(*sched.pick(runnable, engine.last), runnable=runnable)

    def _finish(self) -> None:
        self.finished = True
        self._guard(self.engine.finish)
        type(self).stats.steps += len(self.engine.trace)

    def teardown(self) -> None:
        stats = type(self).stats
        if self.failed:
            stats.steps += len(self.engine.trace)
        stats.choices += len(current_build_context().data.choices)
