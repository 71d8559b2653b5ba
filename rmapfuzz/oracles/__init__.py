"""Oracles: they watch the trace and the heap and raise findings; they never change the model."""

from typing import Any

from rmapfuzz.oracles.invariants import InvariantOracle
from rmapfuzz.oracles.lockdep import LockdepOracle
from rmapfuzz.oracles.lockset import LocksetOracle
from rmapfuzz.oracles.torn import TornChainOracle


def default_oracles(kernel: Any) -> list[Any]:
    """The oracles every run gets: torn-chain (I2), the invariants, lockdep's lock order (I14)
    and the lockset check (I15, advisory unless the variant sets ``lockset_findings``)."""
    return [
        TornChainOracle(kernel),
        InvariantOracle(kernel),
        LockdepOracle(kernel),
        LocksetOracle(kernel),
    ]


def advisories(oracles: list[Any]) -> list[str]:
    """The advisory lines (``lockset: ...``) of a run's oracles."""
    return [line for o in oracles if hasattr(o, "advisories") for line in o.advisories()]


__all__ = [
    "InvariantOracle",
    "LockdepOracle",
    "LocksetOracle",
    "TornChainOracle",
    "advisories",
    "default_oracles",
]
