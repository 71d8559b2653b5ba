"""The naive baseline for the benchmarks: the same machine, but one Hypothesis rule per atomic
step (``step(task)`` runs exactly one step of the task-th runnable task).  This is the design
DESIGN.md section 3 warns against; it is here to be measured against, not used."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, rule

from rmapfuzz.explore.machine import ConjectureChoices, RmapMachine


class NaiveMachine(RmapMachine):
    """One program per example: drawn by the initialize rule, then one rule per step."""

    step_count = 150
    programs_per_example = 1

    @initialize(data=st.data())
    def begin(self, data: Any) -> None:
        self.build(ConjectureChoices(data))

    explore = None  # type: ignore[assignment]  # not a rule here

    @rule(task=st.integers(0, 3))
    def step(self, task: int) -> None:
        """One atomic step of the task-th runnable task."""
        runnable = self._guard(self.engine.runnable)
        if runnable:
            self._guard(self.engine.decide, runnable[task % len(runnable)], 1)

    def teardown(self) -> None:
        if not self.failed and not self.finished:
            self._finish()
        super().teardown()
