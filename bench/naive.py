"""The naive baseline for the benchmarks: the same machine, but one Hypothesis rule per atomic
step (``step(task)`` runs exactly one step of the task-th runnable task).  This is the design
DESIGN.md section 3 warns against; it is here to be measured against, not used."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import rule

from rmapfuzz.explore.machine import RmapMachine


class NaiveMachine(RmapMachine):
    step_count = 150

    @rule(task=st.integers(0, 3))
    def run(self, task: int, steps: int = 1) -> None:  # type: ignore[override]
        """One atomic step of the task-th runnable task."""
        runnable = self._guard(self.engine.runnable)
        if runnable:
            self._guard(self.engine.decide, runnable[task % len(runnable)], 1)
