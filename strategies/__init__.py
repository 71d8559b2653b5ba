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

import contextlib
import functools
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from hypothesis import strategies as st

from rmapfuzz.explore.generate import GenSettings, generate, packed_range, unpack
from rmapfuzz.program import Program

T = TypeVar("T")

__all__ = ["programs", "schedules"]


@functools.cache
def _integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    # Building a strategy costs more than drawing from it: build each range once.
    return st.integers(lo, hi)


_BOOLEANS = st.booleans()


class _DrawChoices:
    """:class:`rmapfuzz.explore.generate.Choices` backed by a Hypothesis ``draw``."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return int(self.draw(_integers(lo, hi)))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.draw(_integers(0, len(options) - 1))]

    def boolean(self, p: float) -> bool:
        return bool(self.draw(_BOOLEANS))

    def packed(self, sizes: Sequence[int]) -> list[int]:
        return unpack(self.draw(_integers(0, packed_range(sizes) - 1)), sizes)

    def group(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # each draw is already a span of its own


@st.composite
def programs(draw: Any, cpus: int = 2, max_tasks: int = 3, max_ops_per_task: int = 2) -> Program:
    """Programs as the random explorer makes them: a setup, then 2..max_tasks tasks."""
    return generate(_DrawChoices(draw), GenSettings(cpus, max_tasks, max_ops_per_task))


def schedules(max_tasks: int = 3, max_run: int = 40, max_decisions: int = 12) -> Any:
    """Decision lists ``[(task, run), ...]``, each decision one choice: ``run`` is
    ``value // max_tasks``, so shrinking a decision toward 0 first shortens its run, and 0
    ("until it blocks or finishes") removes its preemption.  A decision naming a task that
    cannot run makes :func:`rmapfuzz.execute` raise
    :class:`rmapfuzz.errors.ReplayDivergence` (the state machine maps it to a runnable task)."""
    return st.lists(
        st.integers(0, max_tasks * (max_run + 1) - 1).map(
            lambda v: (v % max_tasks, v // max_tasks)
        ),
        max_size=max_decisions,
    )
