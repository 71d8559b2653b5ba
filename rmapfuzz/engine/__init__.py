"""Tasks on simulated CPUs executing atomic steps; knows nothing of the kernel."""

from rmapfuzz.engine.findings import Finding, FindingError, KernelBug
from rmapfuzz.engine.run import Engine, OpCall, RunResult, Task
from rmapfuzz.engine.schedule import ReplayScheduler

__all__ = [
    "Engine",
    "Finding",
    "FindingError",
    "KernelBug",
    "OpCall",
    "ReplayScheduler",
    "RunResult",
    "Task",
]
