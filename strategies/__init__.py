"""Hypothesis strategies for rmapfuzz programs and schedules (installed as
``rmapfuzz.strategies``).

``programs()`` draws programs with the same generator as the random explorer
(:func:`rmapfuzz.explore.generate.generate`), with Hypothesis as the source of choices, so
Hypothesis can shrink them; ``schedules()`` draws decision lists ``(task, run)`` where run 0
means "until it blocks or finishes" -- the encoding whose shrinking removes preemptions first.

    from hypothesis import given
    from rmapfuzz import LocklessWalk, execute
    from rmapfuzz.strategies import programs, schedules

    @given(programs(), schedules())
    def test_my_rule(program, schedule):
        assert execute(LocklessWalk, program, schedule).finding is None
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar

from hypothesis import strategies as st

from rmapfuzz.explore.generate import GenSettings, generate
from rmapfuzz.program import Program

T = TypeVar("T")

__all__ = ["programs", "schedules"]


class _DrawChoices:
    """:class:`rmapfuzz.explore.generate.Choices` backed by a Hypothesis ``draw``."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.draw(st.integers(0, len(options) - 1))]

    def boolean(self, p: float) -> bool:
        return bool(self.draw(st.booleans()))


@st.composite
def programs(draw: Any, cpus: int = 2, max_tasks: int = 3, max_ops_per_task: int = 2) -> Program:
    """Programs as the random explorer makes them: a setup, then 2..max_tasks tasks."""
    return generate(_DrawChoices(draw), GenSettings(cpus, max_tasks, max_ops_per_task))


def schedules(max_tasks: int = 3, max_run: int = 40, max_decisions: int = 12) -> Any:
    """Decision lists ``[(task, run), ...]``; a decision naming a task that cannot run makes
    the run raise :class:`rmapfuzz.errors.ReplayDivergence` (filter those out with
    ``hypothesis.assume`` or catch them)."""
    return st.lists(
        st.tuples(st.integers(0, max_tasks - 1), st.integers(0, max_run)),
        max_size=max_decisions,
    )
