"""Oracles: they watch the trace and the heap and raise findings; they never change the model."""

from typing import Any

from rmapfuzz.oracles.invariants import InvariantOracle
from rmapfuzz.oracles.torn import TornChainOracle


def default_oracles(kernel: Any) -> list[Any]:
    """The oracles every run gets: torn-chain (I2) and the invariants."""
    return [TornChainOracle(kernel), InvariantOracle(kernel)]


__all__ = ["InvariantOracle", "TornChainOracle", "default_oracles"]
