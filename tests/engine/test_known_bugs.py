"""Engine bugs found while writing this suite, pinned as strict xfails.

Each test states the behaviour the engine should have.  They fail today (xfail); when a fix lands
they XPASS, and strict=True turns that into a failure so the marker gets removed (move the test
into test_engine.py then).
"""

from __future__ import annotations

import pytest

from rmapfuzz.engine import Engine
from rmapfuzz.engine import events as ev
from rmapfuzz.errors import ModelError

from ._toys import Cell, op


class _Runaway(Exception):
    pass


def _busy_wait(c):
    """Busy-waits on c->x (which nobody sets); gives up loudly after 5000 loads."""
    for _ in range(5000):
        yield ev.Load(c, "x")
    raise _Runaway("engine let a run go 5000 steps with max_steps=100")


class _OneStepAtATime:
    """A scheduler (like a random explorer) that hands out one-step decisions forever."""

    def pick(self, runnable, last):
        return runnable[0], 1


@pytest.mark.xfail(strict=True, raises=_Runaway, reason="run.py run(): max_steps is only checked "
                   "inside a decision, after the break tests, and no longer between decisions; "
                   "a decision that ends by its budget (or by blocking) never reaches the check")
def test_max_steps_stops_a_run_of_short_decisions():
    """A run made of many one-step decisions is stopped with ModelError after max_steps too."""
    eng = Engine(ncpus=1, max_steps=100)
    with pytest.raises(ModelError, match="exceeded 100 steps"):
        eng.run([(0, "t", [op("busy", _busy_wait, Cell(1))])], _OneStepAtATime())
