"""Findings: what a run observed going wrong, in kernel terms."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class Finding:
    """One thing the model did wrong.

    ``kind`` is a short stable identifier (``torn-chain``, ``migration-entry-leak``,
    ``use-after-free``, ``deadlock``, ``kernel-bug``, ``invariant-I4`` ...), ``message`` reads
    like an LKML report, ``step`` is the trace index where it was seen (-1: at the end of the
    run), ``observed``/``real`` carry a walker's observed chain beside the real one.
    """

    kind: str
    message: str
    step: int = -1
    task: int | None = None
    observed: tuple[str, ...] = ()
    real: tuple[str, ...] = ()

    def signature(self) -> str:
        """What two findings must share to count as the same bug."""
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "step": self.step,
            "task": self.task,
            "observed": list(self.observed),
            "real": list(self.real),
        }


class FindingError(Exception):
    """Raised (by the model, an oracle or the engine) to stop a run with a finding."""

    def __init__(self, kind: str, message: str, **extra: Any) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.extra = extra


class SleepInAtomic(FindingError):
    """A call that may sleep, made in atomic context or an RCU read-side section: what
    might_sleep() reports with CONFIG_DEBUG_ATOMIC_SLEEP, whether or not the call blocks."""

    def __init__(self, task: Any, fn: str, call: str) -> None:
        ctx = "an RCU read-side section" if task.rcu else "atomic context (spinlock held)"
        super().__init__(
            "sleep-in-atomic",
            f"BUG: sleeping function called from invalid context: {fn}() calls {call} in "
            f"{ctx} ({task.op_label})",
            task=task.tid,
        )


class KernelBug(FindingError):
    """A BUG_ON()/VM_BUG_ON() of the modelled kernel fired."""

    def __init__(self, message: str) -> None:
        super().__init__("kernel-bug", message)
