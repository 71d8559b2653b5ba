"""Swim-lanes: a run's trace as one column per CPU, one row per atomic step.

Each cell reads ``kernel_function: event``; ``+``/``-`` mark a lock taken/released, a task's
operation is announced in its column when it starts, the setup is folded into one line, and
the step where the finding was made is marked ``>>``.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.events import describe
from rmapfuzz.engine.findings import Finding
from rmapfuzz.engine.run import SETUP_TID
from rmapfuzz.program import Program

CELL = 60


#: model functions for C's ``__foo`` are spelled ``_foo`` (Python would mangle ``__foo``)
_DOUBLE_UNDERSCORE = frozenset(
    {"_put_anon_vma", "_page_set_anon_rmap", "_split_vma", "_unmap_and_move", "_vma_unlink",
     "_insert_vm_struct"}
)


def kernel_name(fn: str) -> str:
    return "_" + fn if fn in _DOUBLE_UNDERSCORE else fn


def cell_text(fn: str, event: Any, result: Any) -> str:
    cls = type(event)
    sign = ""
    if cls is ev.Acquire or (cls is ev.TryAcquire and result is True):
        sign = "+"
    elif cls is ev.Release:
        sign = "-"
    text = f"{sign}{kernel_name(fn)}: {event!r}"
    if cls is ev.Load or cls is ev.Rmw or (cls is ev.TryAcquire and result is False):
        text += f" -> {describe(result)}"
    elif result == "!":
        text += " !!"
    return text


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def swimlanes(
    trace: list[tuple[int, int, int, str, Any, Any]],
    program: Program,
    *,
    setup_steps: int,
    finding: Finding | None = None,
    width: int = CELL,
) -> str:
    cpus = program.cpus
    lines = []
    header = " step | " + " | ".join(f"cpu{c}".ljust(width) for c in range(cpus))
    rule = "------+-" + "-+-".join("-" * width for _ in range(cpus))
    lines.append(header)
    lines.append(rule)
    if setup_steps:
        lines.append(
            f"{'':>5} | setup, alone on cpu0: {len(program.setup)} operations, {setup_steps} "
            f"steps: " + "; ".join(str(o) for o in program.setup)
        )
        lines.append(rule)
    started: set[tuple[int, int]] = set()
    mark = finding.step if finding is not None else -1
    for i in range(setup_steps, len(trace)):
        tid, cpu, op_index, fn, event, result = trace[i]
        if tid == SETUP_TID:
            continue
        key = (tid, op_index)
        if key not in started:
            started.add(key)
            op = program.tasks[tid].ops[op_index]
            cells = [""] * cpus
            cells[cpu] = f"── task {tid}: {op} ──"
            lines.append(f"{'':>5} | " + " | ".join(_fit(c, width).ljust(width) for c in cells))
        cells = [""] * cpus
        cells[cpu] = cell_text(fn, event, result)
        prefix = f">>{i:>3}" if i == mark else f"{i:>5}"
        lines.append(f"{prefix} | " + " | ".join(_fit(c, width).ljust(width) for c in cells))
    if mark >= 0 and mark < setup_steps:
        tid, cpu, op_index, fn, event, result = trace[mark]
        lines.append(f">>{mark:>3} | (in the setup) {cell_text(fn, event, result)}")
    return "\n".join(lines)


def finding_report(finding: Finding) -> str:
    lines = [f"FINDING {finding.kind}: {finding.message}"]
    if finding.step >= 0:
        who = f" by task {finding.task}" if finding.task is not None and finding.task >= 0 else ""
        lines.append(f"  seen at step {finding.step}{who}")
    if finding.observed or finding.real:
        lines.append("  the walker saw:")
        lines.extend(f"    {x}" for x in finding.observed or ("(nothing yet)",))
        lines.append("  the chain really was:")
        lines.extend(f"    {x}" for x in finding.real or ("(empty)",))
    return "\n".join(lines)
