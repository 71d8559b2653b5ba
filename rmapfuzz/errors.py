"""The few error types rmapfuzz raises at its users.

A *finding* (something the model did wrong) is not an error of the user; it travels as
:class:`rmapfuzz.engine.findings.FindingError`.  The types here are for mistakes of the caller
(bad variant, bad option, bad file) and for internal inconsistencies of the tool itself.
"""

from __future__ import annotations


class RmapfuzzError(Exception):
    """Base of every error rmapfuzz raises on purpose."""


class UsageError(RmapfuzzError):
    """The caller asked for something impossible: an unknown variant, a bad option value."""


class InvalidProgram(RmapfuzzError):
    """A program or schedule does not have the required form."""


class InvalidReproducer(RmapfuzzError):
    """A reproducer file cannot be used: unreadable, malformed, or naming what cannot be run.

    The message starts with the file's path and says the problem in one line.
    """


class ReplayDivergence(RmapfuzzError):
    """A recorded schedule names a task that is not runnable at that point."""

    def __init__(self, step: int, expected: int, runnable: tuple[int, ...]) -> None:
        super().__init__(
            f"replay diverged at step {step}: schedule says task {expected}, runnable {runnable}"
        )
        self.step = step
        self.expected = expected
        self.runnable = runnable


class ModelError(RmapfuzzError):
    """The model itself misbehaved (a stray yield, a runaway run): a bug in rmapfuzz."""
