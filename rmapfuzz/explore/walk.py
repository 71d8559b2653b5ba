"""The random-walk schedule: at every atomic step, a runnable task chosen uniformly at random,
optionally with a *hold*: after its ``j``-th event of a class, one task drops out of the walk and
runs only when no other task can.

The walk is the scheduler of classic stress testing and of the naive baseline (bench/naive.py),
which spends one Hypothesis choice per step to make it.  Here the whole walk comes from one
seed, so it costs two choices.  It preempts at almost every step: races whose windows are wide
but must overlap in time (a walk of the anon_vma tree against a fork cloning into it) fall to
it far more often than to a few well-placed preemptions.  What it cannot do is keep one task
inside a narrow window while the others run a whole operation: the reclaim walker between
page_mapped() and the trylock in page_lock_anon_vma_read() while an exit frees the anon_vma
and a fork takes its slot again (B7, B8), or migration between the refcount increment and the
recheck in page_get_anon_vma() (B18).  A hold does that: it is a PCT change point
(:mod:`rmapfuzz.explore.pct`, same ``(task, class, j)`` and the same odds) on top of the walk,
and the walk goes on among the other tasks meanwhile.  A walk's recorded decisions replay like
any others; the shrink passes reduce its many preemptions afterwards.
"""

from __future__ import annotations

import random

import attrs

from rmapfuzz.engine import Engine
from rmapfuzz.explore.generate import Choices
from rmapfuzz.explore.pct import PctPlan, PctScheduler, draw_point, event_estimates
from rmapfuzz.program import Program

#: the chance that a walk holds a task (drawn as a "one more?" flag the shrinker deletes)
P_HOLD = 0.5


@attrs.frozen
class WalkPlan:
    """A random walk, its choices determined by ``seed``; ``holds`` are change points
    ``(task, class, j)`` as in :class:`rmapfuzz.explore.pct.PctPlan`, each dropping its task
    below the walk (the later ones below the earlier ones)."""

    seed: int
    holds: tuple[tuple[int, int, int], ...] = ()


def draw_walk(choices: Choices, program: Program) -> WalkPlan:
    """A walk's seed (two choices: 2**16 walks per program), then at most one hold, in a
    group with its flag."""
    seed = choices.integer(0, 2**16 - 1)
    holds: list[tuple[int, int, int]] = []
    with choices.group():
        if choices.boolean(P_HOLD):
            holds.append(draw_point(choices, event_estimates(program)))
    return WalkPlan(seed, tuple(holds))


def walk_scheduler(plan: WalkPlan, engine: Engine, ntasks: int) -> PctScheduler:
    """The scheduler that follows ``plan``: every task at one priority above the holds', ties
    broken by the seed's generator one step at a time."""
    top = len(plan.holds) + 1
    changes = tuple((t, k, j, top - 1 - i) for i, (t, k, j) in enumerate(plan.holds))
    return PctScheduler(PctPlan((top,) * ntasks, changes), engine, random.Random(plan.seed))
