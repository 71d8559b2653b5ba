"""The seeded random explorer: random programs, random schedules, stop at the first finding.

Example ``i`` of seed ``s`` draws everything from ``random.Random(s * 1_000_003 + i)``, so the
example that finds a bug is the same whatever the time limit, and replays byte for byte.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import attrs

from rmapfuzz.explore.generate import GenSettings, for_variant, generate, packed_range, unpack
from rmapfuzz.kernel.variants import Mainline
from rmapfuzz.runner import Outcome, execute

T = TypeVar("T")


class RngChoices:
    """:class:`~rmapfuzz.explore.generate.Choices` from a ``random.Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def boolean(self, p: float) -> bool:
        return self.rng.random() < p

    def packed(self, sizes: Sequence[int]) -> list[int]:
        return unpack(self.rng.randrange(packed_range(sizes)), sizes)

    def group(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


class RandomScheduler:
    """Random decisions: keep the last task half of the time; run until it blocks a third of
    the time, else for 1..``max_run`` steps (short runs hit narrow windows)."""

    def __init__(self, rng: random.Random, max_run: int = 40) -> None:
        self.rng = rng
        self.max_run = max_run

    def pick(self, runnable: tuple[int, ...], last: int | None) -> tuple[int, int]:
        rng = self.rng
        if last in runnable and rng.random() < 0.5:
            tid = last
        else:
            tid = runnable[rng.randrange(len(runnable))]
        if rng.random() < 0.3:
            return tid, 0
        return tid, rng.randint(1, self.max_run if rng.random() < 0.5 else 6)


@attrs.define
class Exploration:
    """What an explorer run did: how much it explored and the first finding, if any."""

    examples: int = 0
    steps: int = 0
    elapsed_s: float = 0.0
    outcome: Outcome | None = None
    example_index: int | None = None


def example_rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 1_000_003 + index)


def run_example(
    variant: type[Mainline],
    seed: int,
    index: int,
    settings: GenSettings,
    knobs: dict[str, Any] | None = None,
) -> Outcome:
    """Example ``index`` of ``seed``: its program and schedule, run."""
    rng = example_rng(seed, index)
    program = generate(RngChoices(rng), for_variant(settings, variant))
    return execute(variant, program, RandomScheduler(rng), knobs=knobs)


def explore_random(
    variant: type[Mainline],
    *,
    seed: int,
    settings: GenSettings,
    knobs: dict[str, Any] | None = None,
    max_examples: int | None = None,
    time_limit: float | None = None,
    progress: Callable[[Exploration], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    run: Callable[..., Outcome] | None = None,
) -> Exploration:
    """Run examples 0, 1, ... until a finding, ``max_examples``, ``time_limit`` seconds or
    ``should_stop()``.  ``run(variant, seed, index, settings, knobs)`` makes example ``index``
    (default :func:`run_example`; the pct explorer passes its own)."""
    run = run or run_example
    ex = Exploration()
    t0 = time.perf_counter()
    i = 0
    while max_examples is None or i < max_examples:
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        if should_stop is not None and i % 50 == 0 and should_stop():
            break
        try:
            outcome = run(variant, seed, i, settings, knobs)
        except KeyboardInterrupt:  # a job's Ctrl-C: stop here
            break
        ex.examples += 1
        ex.steps += outcome.result.steps + outcome.result.setup_steps
        i += 1
        if outcome.finding is not None:
            ex.outcome = outcome
            ex.example_index = i - 1
            break
        if progress is not None and i % 200 == 0:
            ex.elapsed_s = time.perf_counter() - t0
            progress(ex)
    ex.elapsed_s = time.perf_counter() - t0
    return ex
