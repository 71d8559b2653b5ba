"""rmapfuzz: a step-level model of the Linux anonymous reverse map, and the tools that fuzz it.

The public face: variants (subclass :class:`Mainline` to propose a locking rule), programs,
a run (:func:`execute`), the random explorer, findings and the error types.
"""

__version__ = "0.1.0"

from rmapfuzz.engine.findings import Finding, FindingError, KernelBug
from rmapfuzz.errors import (
    InvalidProgram,
    InvalidReproducer,
    ModelError,
    ReplayDivergence,
    RmapfuzzError,
    UsageError,
)
from rmapfuzz.explore.generate import GenSettings, generate
from rmapfuzz.explore.machine import RmapMachine
from rmapfuzz.explore.random import explore_random
from rmapfuzz.kernel.variants import (
    BUILTIN,
    Linus2012,
    LocklessWalk,
    Mainline,
    PageAnonVmaLock,
    load_variant,
)
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import Outcome, execute

__all__ = [
    "BUILTIN",
    "Finding",
    "FindingError",
    "GenSettings",
    "InvalidProgram",
    "InvalidReproducer",
    "KernelBug",
    "Linus2012",
    "LocklessWalk",
    "Mainline",
    "ModelError",
    "Op",
    "Outcome",
    "PageAnonVmaLock",
    "Program",
    "ReplayDivergence",
    "RmapMachine",
    "RmapfuzzError",
    "TaskProgram",
    "UsageError",
    "__version__",
    "execute",
    "explore_random",
    "generate",
    "load_variant",
]
