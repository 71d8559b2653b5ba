"""Schedules: sequences of decisions ``(task, run)`` and the scheduler that replays them."""

from __future__ import annotations

from collections.abc import Sequence


class ReplayScheduler:
    """Hands out recorded decisions in order, then lets the engine's default decide.

    The engine raises :class:`~rmapfuzz.errors.ReplayDivergence` when a decision names a task
    that is not runnable, so a replay either reproduces the recorded run or says where not.
    """

    def __init__(self, decisions: Sequence[tuple[int, int]]) -> None:
        self.decisions = [(int(t), int(n)) for t, n in decisions]
        self.pos = 0

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int] | None:
        if self.pos >= len(self.decisions):
            return None
        d = self.decisions[self.pos]
        self.pos += 1
        return d
