"""A compact text form of a program, for ``rmapfuzz check --ops``.

Grammar (whitespace is free; numbers are decimal or 0x hex)::

    spec    := [ "setup:" ops "|" ] task ( "|" task )*
    task    := [ "cpu" N ":" ] ops
    ops     := op ( ";" op )*
    op      := NAME "(" [ INT ( "," INT )* ] ")"

Example: ``setup: mmap(1,0x10000,2,0); fault(1,0x10000); fork(1) | migrate(1) | exit(2)`` is a
setup of three operations, then task 0 on CPU 0 running migrate(1) and task 1 on CPU 1 running
exit(2).  A task without ``cpuN:`` runs on the CPU of its position; the program has as many
CPUs as the highest CPU named plus one.  Operation names and argument counts are those of
:data:`rmapfuzz.kernel.syscalls.OPS`.
"""

from __future__ import annotations

import re

from rmapfuzz.errors import InvalidProgram
from rmapfuzz.program import MAX_CPUS, Op, Program, TaskProgram

_OP = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)\)\s*")
_CPU = re.compile(r"\s*cpu\s*(\d+)\s*:(.*)", re.S)


def _ops(text: str, where: str) -> tuple[Op, ...]:
    out = []
    for part in text.split(";"):
        if not part.strip():
            raise InvalidProgram(f"--ops: empty operation in {where}")
        m = _OP.fullmatch(part)
        if m is None:
            raise InvalidProgram(f"--ops: {part.strip()!r} in {where} is not name(args)")
        args = []
        for a in m.group(2).split(",") if m.group(2).strip() else []:
            try:
                args.append(int(a.strip(), 0))
            except ValueError:
                raise InvalidProgram(
                    f"--ops: argument {a.strip()!r} of {m.group(1)} in {where} is not an integer"
                ) from None
        out.append(Op(m.group(1), tuple(args)))
    return tuple(out)


def parse_ops(spec: str) -> Program:
    """The program ``spec`` describes; :class:`InvalidProgram` (one line) when it is malformed."""
    sections = spec.split("|")
    setup: tuple[Op, ...] = ()
    head = sections[0].strip()
    if head.startswith("setup:"):
        setup = _ops(head[len("setup:") :], "the setup")
        sections = sections[1:]
    if not sections:
        raise InvalidProgram("--ops: no task (tasks follow the setup, separated by '|')")
    tasks = []
    for i, sec in enumerate(sections):
        cpu = i
        m = _CPU.fullmatch(sec)
        if m is not None:
            cpu = int(m.group(1))
            sec = m.group(2)
        if cpu >= MAX_CPUS:
            raise InvalidProgram(f"--ops: task {i} on cpu {cpu}, at most {MAX_CPUS} cpus")
        tasks.append(TaskProgram(cpu, _ops(sec, f"task {i}")))
    cpus = max(t.cpu for t in tasks) + 1
    return Program(cpus, setup, tuple(tasks))
