"""The random-walk schedule: at every atomic step, a runnable task chosen uniformly at random.

This is the scheduler of classic stress testing and of the naive baseline (bench/naive.py),
which spends one Hypothesis choice per step to make it.  Here the whole walk comes from one
seed, so it costs one choice.  It preempts at almost every step: races whose windows are wide
but must overlap in time (a walk of the anon_vma tree against a fork cloning into it) fall to
it far more often than to a few well-placed preemptions, whereas PCT's change points
(:mod:`rmapfuzz.explore.pct`) hit narrow windows deep in one task.  A walk's recorded
decisions replay like any others; the shrink passes reduce its many preemptions afterwards.
"""

from __future__ import annotations

import random

import attrs


@attrs.frozen
class WalkPlan:
    """A random walk, all of it determined by ``seed``."""

    seed: int


class WalkScheduler:
    """Follows a :class:`WalkPlan`: one step of a uniformly chosen runnable task at a time."""

    def __init__(self, plan: WalkPlan) -> None:
        self.rng = random.Random(plan.seed)

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int]:
        return runnable[self.rng.randrange(len(runnable))], 1
