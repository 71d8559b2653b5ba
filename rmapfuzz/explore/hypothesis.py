"""The ``hypothesis`` explorer: the state machine run by Hypothesis, shrinking the first finding
(Hypothesis's shrinker, then the schedule-aware pass of :mod:`rmapfuzz.explore.minimize`).

Hypothesis runs in rounds of ``round_examples`` programs (``max_examples`` counts programs too;
a Hypothesis example runs several, see :mod:`rmapfuzz.explore.machine`); round ``r`` of seed
``s`` is seeded ``s * 1_000_003 + r``, so the run is deterministic for a seed (without a
database) and a time limit only decides how many rounds run.  With a database (long fuzz jobs),
Hypothesis first replays what earlier runs saved there: that is how a job resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import seed as hypothesis_seed

from rmapfuzz.explore.machine import (
    RmapFinding,
    RmapMachine,
    examples_for,
    machine_settings,
    run_machine,
)
from rmapfuzz.explore.minimize import minimize
from rmapfuzz.explore.random import Exploration
from rmapfuzz.kernel.variants import Mainline


def explore_hypothesis(
    variant: type[Mainline],
    *,
    seed: int,
    label: str | None = None,
    knobs: dict[str, Any] | None = None,
    cpus: int | None = None,
    max_examples: int | None = None,
    time_limit: float | None = None,
    database: str | Path | None = None,
    round_examples: int = 400,
    progress: Callable[[Exploration], None] | None = None,
    machine: type[RmapMachine] | None = None,
    reuse: bool = True,
    should_stop: Callable[[], bool] | None = None,
    shrink: bool = True,
) -> Exploration:
    """Run the machine until a finding (shrunk, unless ``shrink`` is off: the benchmarks time
    first findings on more seeds than they shrink), ``max_examples`` or ``time_limit``
    seconds."""
    machine = machine or RmapMachine.for_variant(variant, knobs=knobs, cpus=cpus, label=label)
    stats = machine.stats
    if should_stop is not None:
        # checked before every program: Hypothesis may be shrinking when a job is stopped
        machine.should_stop = staticmethod(should_stop)
    ex = Exploration()
    t0 = time.perf_counter()
    r = 0
    while max_examples is None or stats.examples < max_examples:
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        if should_stop is not None and should_stop():
            break
        n = round_examples
        if max_examples is not None:
            n = min(n, max_examples - stats.examples)
        hypothesis_seed(seed * 1_000_003 + r)(machine)
        r += 1
        try:
            run_machine(
                machine,
                machine_settings(
                    examples_for(n, machine.programs_per_example),
                    database,
                    reuse=reuse,
                    step_count=machine.step_count,
                    shrink=shrink,
                ),
            )
        except RmapFinding as e:
            ex.outcome = (
                minimize(machine.variant, e.outcome, knobs=machine.knobs) if shrink else e.outcome
            )
            break
        except KeyboardInterrupt:
            # interrupted (a job's Ctrl-C): keep the latest failing example, unshrunk
            ex.outcome = stats.last
            break
        finally:
            ex.examples, ex.steps = stats.examples, stats.steps
            ex.elapsed_s = time.perf_counter() - t0
        if progress is not None:
            progress(ex)
    ex.examples, ex.steps = stats.examples, stats.steps
    ex.elapsed_s = time.perf_counter() - t0
    # the programs that ran clean only spare Hypothesis's replays within this exploration;
    # Hypothesis's caches keep every machine class, and so its stats, for the whole process
    # (a --keep-going job makes a machine per round)
    stats.clean.clear()
    return ex
