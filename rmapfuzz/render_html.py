"""The swim-lanes as one self-contained HTML page: inline CSS, no scripts, no external resources.

The same picture as the text of :mod:`rmapfuzz.render`: one column per CPU, one row per atomic
step with its step number and kernel function, the locks the task holds after the step, the
detecting step marked, and the walker's observed chain beside the real chain.
"""

from __future__ import annotations

from html import escape

from rmapfuzz.engine.findings import Finding
from rmapfuzz.program import Program
from rmapfuzz.render import Row, Trace, cell_text, lanes

_CSS = """
body { font: 14px/1.35 system-ui, sans-serif; margin: 1.5em; color: #222; }
pre, code, td { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
table.lanes { border-collapse: collapse; }
table.lanes th, table.lanes td { border: 1px solid #ccc; padding: 1px 6px; vertical-align: top; }
table.lanes th { background: #eee; position: sticky; top: 0; }
td.step { text-align: right; color: #777; }
td.setup, td.op { background: #f4f4f4; font-style: italic; }
td.held { background: #eef5ff; }
.fn { font-weight: bold; }
.locks { display: block; color: #1a55a0; font-size: 11px; }
tr.finding td { background: #ffd9d9; }
tr.finding td.step { color: #b00; font-weight: bold; }
.finding-box { border: 2px solid #b00; padding: .5em 1em; margin: 1em 0; max-width: 110em; }
table.chains td { padding: 0 2em 0 0; vertical-align: top; }
"""


def _cell(row: Row) -> str:
    if row.step is None:
        return f'<td class="op">{escape(row.text)}</td>'
    fn, _, event = row.text.partition(": ")
    locks = f'<span class="locks">{escape(row.holds)}</span>' if row.locks else ""
    cls = ' class="held"' if row.locks else ""
    return f'<td{cls}><span class="fn">{escape(fn)}</span>: {escape(event)}{locks}</td>'


def _lanes_table(
    trace: Trace, program: Program, setup_steps: int, finding: Finding | None
) -> list[str]:
    cpus = program.cpus
    out = [
        '<table class="lanes">',
        "<tr><th>step</th>" + "".join(f"<th>cpu{c}</th>" for c in range(cpus)) + "</tr>",
    ]
    if setup_steps:
        setup = "; ".join(str(o) for o in program.setup)
        out.append(
            f'<tr><td class="step"></td><td class="setup" colspan="{cpus}">setup, alone on cpu0: '
            f"{len(program.setup)} operations, {setup_steps} steps: {escape(setup)}</td></tr>"
        )
    mark = finding.step if finding is not None else -1
    if 0 <= mark < setup_steps:
        tid, cpu, op_index, fn, event, result = trace[mark]
        out.append(
            f'<tr class="finding" id="finding"><td class="step">&gt;&gt;{mark}</td>'
            f'<td colspan="{cpus}">(in the setup) {escape(cell_text(fn, event, result))}</td></tr>'
        )
    for row in lanes(trace, program, setup_steps=setup_steps, finding=finding):
        cells = ["<td></td>"] * cpus
        cells[row.cpu] = _cell(row)
        step = "" if row.step is None else f"&gt;&gt;{row.step}" if row.marked else str(row.step)
        attrs = ' class="finding" id="finding"' if row.marked else ""
        out.append(f'<tr{attrs}><td class="step">{step}</td>{"".join(cells)}</tr>')
    out.append("</table>")
    return out


def _finding_box(finding: Finding) -> list[str]:
    out = [
        '<div class="finding-box">',
        f"<p><b>FINDING {escape(finding.kind)}</b>: {escape(finding.message)}</p>",
    ]
    if finding.step >= 0:
        out.append(f'<p>seen at <a href="#finding">step {finding.step}</a></p>')
    if finding.observed or finding.real:
        seen = "<br>".join(escape(x) for x in finding.observed or ("(nothing yet)",))
        real = "<br>".join(escape(x) for x in finding.real or ("(empty)",))
        out += [
            '<table class="chains"><tr><th>the walker saw</th><th>the chain really was</th></tr>',
            f"<tr><td><code>{seen}</code></td><td><code>{real}</code></td></tr></table>",
        ]
    out.append("</div>")
    return out


def page(
    trace: Trace,
    program: Program,
    *,
    setup_steps: int,
    finding: Finding | None,
    title: str,
    preamble: str,
) -> str:
    """One HTML page: ``title``, ``preamble`` (pre-formatted text), the finding, the lanes."""
    body = [f"<h1>{escape(title)}</h1>", f"<pre>{escape(preamble)}</pre>"]
    body += _finding_box(finding) if finding is not None else ["<p>No finding.</p>"]
    body += _lanes_table(trace, program, setup_steps, finding)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
