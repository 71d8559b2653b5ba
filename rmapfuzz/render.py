"""Swim-lanes: a run's trace as one column per CPU, one row per atomic step.

Each cell reads ``kernel_function: event``; ``+``/``-`` mark a lock taken/released, and after
the event come the locks the task holds once the step is done (``[av#1.rwsem:r ptl(...)]``,
``:r`` for a shared hold).  A task's operation is announced in its column when it starts, the
setup is folded into one line, and the step where the finding was made is marked ``>>``.
:func:`lanes` is the picture as data; the text here and the HTML page of
:mod:`rmapfuzz.render_html` are two drawings of it.
"""

from __future__ import annotations

from typing import Any

import attrs

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.events import describe
from rmapfuzz.engine.findings import Finding
from rmapfuzz.engine.run import SETUP_TID
from rmapfuzz.program import Program

CELL = 60

Trace = list[tuple[int, int, int, str, Any, Any]]

#: model functions for C's ``__foo`` are spelled ``_foo`` (Python would mangle ``__foo``)
_DOUBLE_UNDERSCORE = frozenset(
    {
        "_put_anon_vma",
        "_page_set_anon_rmap",
        "_split_vma",
        "_unmap_and_move",
        "_vma_unlink",
        "_insert_vm_struct",
        "_isolate_lru_page",
    }
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


@attrs.frozen
class Row:
    """One line of the picture: an atomic step (``step`` >= 0) or an operation starting."""

    cpu: int
    text: str
    step: int | None = None
    locks: tuple[str, ...] = ()
    marked: bool = False

    @property
    def holds(self) -> str:
        return "[" + " ".join(self.locks) + "]" if self.locks else ""


def _hold(lock: Any, mode: str) -> str:
    return f"{lock.name}:r" if mode == "r" else lock.name


def lanes(
    trace: Trace, program: Program, *, setup_steps: int, finding: Finding | None
) -> list[Row]:
    """The steps after the setup, with each task's lock holds replayed from its lock events."""
    held: dict[int, list[str]] = {}
    started: set[tuple[int, int]] = set()
    mark = finding.step if finding is not None else -1
    rows = []
    for i in range(setup_steps, len(trace)):
        tid, cpu, op_index, fn, event, result = trace[i]
        if tid == SETUP_TID:
            continue
        if (tid, op_index) not in started:
            started.add((tid, op_index))
            rows.append(Row(cpu, f"── task {tid}: {program.tasks[tid].ops[op_index]} ──"))
        locks = held.setdefault(tid, [])
        cls = type(event)
        if (cls is ev.Acquire and result != "!") or (cls is ev.TryAcquire and result is True):
            locks.append(_hold(event.lock, event.mode))
        elif cls is ev.Release and result != "!":
            locks.remove(_hold(event.lock, event.mode))
        rows.append(Row(cpu, cell_text(fn, event, result), i, tuple(locks), i == mark))
    return rows


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def swimlanes(
    trace: Trace,
    program: Program,
    *,
    setup_steps: int,
    finding: Finding | None = None,
    width: int = CELL,
) -> str:
    cpus = program.cpus
    rows = lanes(trace, program, setup_steps=setup_steps, finding=finding)
    lock_w = [max((len(r.holds) for r in rows if r.cpu == c), default=0) for c in range(cpus)]
    col_w = [width + (w + 1 if w else 0) for w in lock_w]
    lines = [
        " step | " + " | ".join(f"cpu{c}".ljust(col_w[c]) for c in range(cpus)),
        "------+-" + "-+-".join("-" * w for w in col_w),
    ]
    if setup_steps:
        lines.append(
            f"{'':>5} | setup, alone on cpu0: {len(program.setup)} operations, {setup_steps} "
            f"steps: " + "; ".join(str(o) for o in program.setup)
        )
        lines.append(lines[1])
    for row in rows:
        cells = [" " * w for w in col_w]
        text = _fit(row.text, width).ljust(width)
        cells[row.cpu] = f"{text} {row.holds}".ljust(col_w[row.cpu]) if lock_w[row.cpu] else text
        if row.step is None:
            prefix = ""
        else:
            prefix = f">>{row.step:>3}" if row.marked else str(row.step)
        while len(cells) > 1 and not cells[-1].strip():
            cells.pop()
        lines.append(f"{prefix:>5} | " + " | ".join(cells).rstrip())
    mark = finding.step if finding is not None else -1
    if 0 <= mark < setup_steps:
        tid, cpu, op_index, fn, event, result = trace[mark]
        lines.append(f">>{mark:>3} | (in the setup) {cell_text(fn, event, result)}")
    return "\n".join(lines)


def _two_columns(
    left_title: str, left: tuple[str, ...], right_title: str, right: tuple[str, ...]
) -> list[str]:
    """Two titled lists side by side, items indented under their titles."""
    width = max(len(left_title), *(len(x) + 2 for x in left)) + 3
    out = [f"  {left_title.ljust(width)}{right_title}"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        out.append(f"    {a.ljust(width - 2)}  {b}".rstrip())
    return out


def finding_report(finding: Finding) -> str:
    lines = [f"FINDING {finding.kind}: {finding.message}"]
    if finding.step >= 0:
        who = f" by task {finding.task}" if finding.task is not None and finding.task >= 0 else ""
        lines.append(f"  seen at step {finding.step}{who}")
    if finding.observed or finding.real:
        lines.extend(
            _two_columns(
                "the walker saw:",
                finding.observed or ("(nothing yet)",),
                "the chain really was:",
                finding.real or ("(empty)",),
            )
        )
    return "\n".join(lines)
