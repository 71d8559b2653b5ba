"""The public face: __all__ matches what the package exports; strategies work from @given."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from rmapfuzz.strategies import programs, schedules

import rmapfuzz
from rmapfuzz import Mainline, execute
from rmapfuzz.errors import ReplayDivergence


def test_all_matches_exports():
    """Every name in __all__ exists, and every public non-module attribute is in __all__."""
    for name in rmapfuzz.__all__:
        assert hasattr(rmapfuzz, name), name
    public = {
        n for n, v in vars(rmapfuzz).items()
        if not n.startswith("_") and type(v).__name__ != "module"
    }
    assert public == set(rmapfuzz.__all__) - {"__version__"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), schedules())
def test_mainline_never_finds_anything(program, schedule):
    """Mainline (root rwsem for every walker) is clean under any program and schedule."""
    try:
        out = execute(Mainline, program, schedule)
    except ReplayDivergence:
        return
    assert out.finding is None, out.finding
