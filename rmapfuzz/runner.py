"""One run: a variant, a program and a scheduler in; an :class:`Outcome` out."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs

from rmapfuzz.engine import Engine, Finding, OpCall, ReplayScheduler, RunResult
from rmapfuzz.engine.run import Scheduler
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.oracles import advisories, default_oracles
from rmapfuzz.program import Op, Program


@attrs.define
class Outcome:
    program: Program
    result: RunResult
    kernel: Mainline
    #: advisory oracle output (``lockset: ...`` lines), not findings
    advisories: list[str] = attrs.field(factory=list)

    @property
    def finding(self) -> Finding | None:
        return self.result.finding

    @property
    def decisions(self) -> list[tuple[int, int]]:
        return self.result.decisions


def _call(kernel: Mainline, op: Op) -> OpCall:
    return OpCall(str(op), functools.partial(kernel.start_op, op.name, op.args))


def execute(
    variant: type[Mainline],
    program: Program,
    scheduler: Scheduler | Sequence[tuple[int, int]] = (),
    *,
    knobs: dict[str, Any] | None = None,
    max_steps: int = 200_000,
) -> Outcome:
    """Run ``program`` on a fresh machine of ``variant`` under ``scheduler`` (or decisions)."""
    if not hasattr(scheduler, "pick"):
        scheduler = ReplayScheduler(scheduler)  # type: ignore[arg-type]
    kernel = variant(**(knobs or {}))
    kernel.boot()
    oracles = default_oracles(kernel)
    engine = Engine(ncpus=program.cpus, observers=oracles, max_steps=max_steps)
    tasks = [
        (t.cpu, f"task{i}", [_call(kernel, op) for op in t.ops])
        for i, t in enumerate(program.tasks)
    ]
    result = engine.run(
        tasks,
        scheduler,
        setup=[_call(kernel, op) for op in program.setup],  # type: ignore[arg-type]
    )
    return Outcome(program, result, kernel, advisories(oracles))
