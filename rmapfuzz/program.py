"""Programs: what the tasks run.  A program is data (JSON-serialisable), independent of any
explorer, so the same program + schedule replays the same run anywhere."""

from __future__ import annotations

from typing import Any

import attrs

from rmapfuzz.errors import InvalidProgram
from rmapfuzz.kernel.syscalls import OPS

MAX_CPUS = 8


def _fmt_arg(name: str, v: int) -> str:
    return hex(v) if name == "addr" else str(v)


@attrs.frozen
class Op:
    """One operation: a name from :data:`rmapfuzz.kernel.syscalls.OPS` and its int arguments."""

    name: str
    args: tuple[int, ...]

    def __attrs_post_init__(self) -> None:
        spec = OPS.get(self.name)
        if spec is None:
            raise InvalidProgram(f"unknown operation {self.name!r} (known: {', '.join(OPS)})")
        if len(self.args) != len(spec.args):
            raise InvalidProgram(
                f"operation {self.name} takes {len(spec.args)} arguments "
                f"({', '.join(spec.args)}), got {len(self.args)}"
            )
        for a in self.args:
            if type(a) is not int:
                raise InvalidProgram(f"operation {self.name}: argument {a!r} is not an integer")

    def __str__(self) -> str:
        names = OPS[self.name].args
        args = ", ".join(_fmt_arg(n, v) for n, v in zip(names, self.args, strict=True))
        return f"{self.name}({args})"

    def to_json(self) -> list[Any]:
        return [self.name, *self.args]

    @classmethod
    def from_json(cls, data: Any) -> Op:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise InvalidProgram(f"an operation must be [name, args...], got {data!r}")
        return cls(data[0], tuple(data[1:]))


@attrs.frozen
class TaskProgram:
    """The operations one task runs, in order, on CPU ``cpu``."""

    cpu: int
    ops: tuple[Op, ...]


@attrs.frozen
class Program:
    """``setup`` runs alone first (sequentially, on CPU 0); then ``tasks`` run concurrently."""

    cpus: int
    setup: tuple[Op, ...]
    tasks: tuple[TaskProgram, ...]

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.cpus <= MAX_CPUS:
            raise InvalidProgram(f"cpus must be 1..{MAX_CPUS}, got {self.cpus}")
        for t in self.tasks:
            if not 0 <= t.cpu < self.cpus:
                raise InvalidProgram(f"task on cpu {t.cpu}, but the program has {self.cpus} cpus")

    @property
    def n_ops(self) -> int:
        """Every operation of the program: the setup's and the tasks'."""
        return len(self.setup) + sum(len(t.ops) for t in self.tasks)

    def to_json(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "setup": [op.to_json() for op in self.setup],
            "tasks": [{"cpu": t.cpu, "ops": [op.to_json() for op in t.ops]} for t in self.tasks],
        }

    @classmethod
    def from_json(cls, data: Any) -> Program:
        if not isinstance(data, dict):
            raise InvalidProgram("a program must be a JSON object")
        try:
            tasks = tuple(
                TaskProgram(int(t["cpu"]), tuple(Op.from_json(o) for o in t["ops"]))
                for t in data["tasks"]
            )
            return cls(
                int(data["cpus"]), tuple(Op.from_json(o) for o in data.get("setup", [])), tasks
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidProgram(f"malformed program: {type(e).__name__}: {e}") from None

    def describe(self) -> str:
        lines = [f"cpus={self.cpus}"]
        if self.setup:
            lines.append("setup: " + "; ".join(str(o) for o in self.setup))
        for i, t in enumerate(self.tasks):
            lines.append(f"task {i} (cpu{t.cpu}): " + "; ".join(str(o) for o in t.ops))
        return "\n".join(lines)
