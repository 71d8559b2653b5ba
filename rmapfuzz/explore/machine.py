"""The Hypothesis stateful machine: generation that shrinks operations and interleavings together.

The initialize rule ``build`` creates the processes, vmas and pages (the setup: mmap, fault,
fork, mprotect, each run to completion at once) and spawns the tasks; the rule ``run`` takes
scheduling decisions ``(task, steps)``.  Choices therefore grow with operations and preemptions,
never with atomic steps (DESIGN.md section 3): a decision is a run length, ``steps=0`` meaning
"until it blocks or finishes", so shrinking deletes decisions and moves steps toward 0 —
removing preemptions — after it has removed operations.  Teardown runs every task to completion
with the default policy and the quiescent checks.

Programs are drawn with :func:`rmapfuzz.strategies.programs` (the random explorer's generator,
Hypothesis choosing); what ran is recorded as a plain :class:`~rmapfuzz.program.Program` and
decision list, which replay with :func:`rmapfuzz.runner.execute` without Hypothesis.

Subclass it for a variant without touching the machine::

    TestMyPatch = RmapMachine.for_variant(MyPatch).TestCase
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rmapfuzz.engine import Engine, Finding, FindingError, OpCall
from rmapfuzz.explore.generate import GenSettings, generate, packed_range, unpack
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles import default_oracles
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome

MAX_DECISIONS = 12
SPAN_LABEL = 0x726D6170  # "rmap": marks one operation or one decision for the shrinker
MAX_RUN = 40
MAX_TASKS = 3


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
        else:  # pragma: no cover - another Hypothesis
            self._int = lambda lo, hi: data.draw(st.integers(lo, hi))
            self._cd = None

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        cd = self._cd
        if cd is None:  # pragma: no cover
            yield
            return
        cd.start_span(SPAN_LABEL)
        try:
            yield
        finally:
            cd.stop_span()

    def integer(self, lo: int, hi: int) -> int:
        return int(self._int(lo, hi))

    def choice(self, options: Any) -> Any:
        return options[self._int(0, len(options) - 1)]

    def boolean(self, p: float) -> bool:
        # True with probability p (in tenths); 0, the shrink target, is False
        return self._int(0, 9) >= 10 - round(p * 10)

    def packed(self, sizes: Any) -> list[int]:
        return unpack(self._int(0, packed_range(sizes) - 1), sizes)


#: examples per test run of the machine under pytest, by profile
PROFILES = {"ci": 300, "fuzz": 100_000}


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
    step_count: int = 3,
) -> settings:
    """Hypothesis settings for the machine; ``reuse`` replays what the database holds first (a
    resumed job), off for later rounds of a --keep-going job."""
    phases = [Phase.explicit, Phase.generate, Phase.target, Phase.shrink]
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

    examples: int = 0
    steps: int = 0
    choices: int = 0
    first_failure_at: float | None = None
    last: Outcome | None = None


class RmapMachine(RuleBasedStateMachine):
    variant: ClassVar[type[Mainline]] = Mainline
    variant_label: ClassVar[str] = "mainline"
    knobs: ClassVar[dict[str, Any]] = {}
    cpus: ClassVar[int] = 2
    corpus_dir: ClassVar[Path | None] = None
    stats: ClassVar[MachineStats] = MachineStats()
    #: rules per example (Hypothesis's stateful_step_count): the build plus the decisions
    step_count: ClassVar[int] = 3

    @classmethod
    def for_variant(
        cls,
        variant: type[Mainline],
        *,
        knobs: dict[str, Any] | None = None,
        cpus: int = 2,
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
                "__module__": cls.__module__,
            },
        )
        machine.TestCase.settings = machine_settings(
            PROFILES[profile or defaults.profile], step_count=machine.step_count
        )
        return machine

    @classmethod
    def run_as_test(cls) -> None:
        """Run the machine as one test (what ``TestCase`` does), raising the shrunk finding."""
        run_state_machine_as_test(cls, settings=cls.TestCase.settings)

    def __init__(self) -> None:
        super().__init__()
        self.kernel = self.variant(**self.knobs)
        self.kernel.boot()
        self.engine = Engine(ncpus=self.cpus, observers=default_oracles(self.kernel))
        self.setup_ops: list[Op] = []
        self.task_progs: list[TaskProgram] = []
        self.failed = False
        self.finished = False
        type(self).stats.examples += 1

    # ------------------------------------------------------------ plumbing

    def _call(self, op: Op) -> OpCall:
        return OpCall(str(op), functools.partial(self.kernel.start_op, op.name, op.args))

    def program(self) -> Program:
        return Program(self.cpus, tuple(self.setup_ops), tuple(self.task_progs))

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

    # --------------------------------------------------------------- setup

    @initialize(data=st.data())
    def build(self, data: Any) -> None:
        """Create the processes, vmas and pages (the setup runs alone, operation by operation)
        and spawn the tasks.  Programs are drawn by the generator the random explorer uses."""
        program = generate(ConjectureChoices(data), GenSettings(cpus=self.cpus))
        for op in program.setup:
            self._setup(op)
        for tp in program.tasks:
            self.spawn(tp)

    def spawn(self, tp: TaskProgram) -> None:
        """Start a task running ``tp.ops`` on ``tp.cpu``."""
        self.task_progs.append(tp)
        name = f"task{len(self.task_progs) - 1}"
        self._guard(self.engine.spawn, tp.cpu, name, [self._call(op) for op in tp.ops])

    @rule(data=st.data())
    def run(self, data: Any) -> None:
        """Up to MAX_DECISIONS scheduling decisions (task, steps): the task-th runnable task
        runs ``steps`` steps (0: until it blocks or finishes).  A decision is one choice, and
        one preemption at most; 0 shrinks to "no preemption"."""
        c = ConjectureChoices(data)
        for _ in range(MAX_DECISIONS):
            with c.group():
                if not c.boolean(0.9):
                    return
                steps, task = c.packed((MAX_RUN + 1, MAX_TASKS))
            runnable = self._guard(self.engine.runnable)
            if not runnable:
                return
            self._guard(self.engine.decide, runnable[task % len(runnable)], steps)

    def _finish(self) -> None:
        self.finished = True
        self._guard(self.engine.finish)

    @invariant()
    def quiescent_checks_when_idle(self) -> None:
        """Once every spawned task has finished, the quiescent invariants hold."""
        tasks = self.engine.tasks
        if tasks and not self.finished and not self.failed and all(t.done for t in tasks):
            self._finish()

    def teardown(self) -> None:
        try:
            if not self.failed and not self.finished:
                self._finish()
        finally:
            stats = type(self).stats
            stats.steps += len(self.engine.trace)
            stats.choices += len(current_build_context().data.choices)
