"""Reproducers: one run (a finding, or a clean run) as a JSON file that replays byte for byte.

A reproducer holds what the run needs and what it gave, never explorer state::

    {"schema": 1, "rmapfuzz": "0.1.0", "variant": "lockless-walk", "knobs": {},
     "explorer": "random", "seed": 6, "program": {...Program.to_json()...},
     "schedule": [[task, run], ...],
     "expected": {"finding": {"kind", "message", "step"} | null,
                  "steps", "preemptions", "trace_sha256"},
     "signature": "lockless-walk: torn-chain in anon_vma_interval_tree_iter_first()"}

The schedule is the engine's decisions, so a file survives any change of the explorers.  The
signature names the bug class (variant, finding kind, kernel function at the finding step; no
object ids); a corpus keeps one file per signature, the smallest by (ops, preemptions, steps).
Loading validates everything and never imports code: a variant that is not built in must be
handed over by the caller (``--variant``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import __version__
from rmapfuzz.engine.events import describe
from rmapfuzz.errors import (
    InvalidProgram,
    InvalidReproducer,
    ModelError,
    ReplayDivergence,
    UsageError,
)
from rmapfuzz.kernel.variants import BUILTIN, Mainline
from rmapfuzz.program import Program
from rmapfuzz.render import Trace, kernel_name
from rmapfuzz.runner import Outcome, execute

SCHEMA = 1
FIELDS = (
    "schema", "rmapfuzz", "variant", "knobs", "explorer", "seed", "program", "schedule",
    "expected", "signature",
)  # fmt: skip
_EXPECTED = ("finding", "steps", "preemptions", "trace_sha256")
_FINDING = ("kind", "message", "step")


def trace_sha256(trace: Trace) -> str:
    """sha256 of every trace event, setup included, one canonical line each."""
    h = hashlib.sha256()
    for tid, cpu, op_index, fn, event, result in trace:
        h.update(f"{tid}\t{cpu}\t{op_index}\t{fn}\t{event!r}\t{describe(result)}\n".encode())
    return h.hexdigest()


def signature(label: str, outcome: Outcome) -> str:
    """The bug class: variant, finding kind and the kernel function at the finding step.

    A clean run has no bug class; it is identified by its trace.
    """
    f = outcome.finding
    trace = outcome.result.trace
    if f is None:
        return f"{label}: clean run, trace {trace_sha256(trace)[:16]}"
    where = f"{kernel_name(trace[f.step][3])}()" if 0 <= f.step < len(trace) else "end of run"
    return f"{label}: {f.kind} in {where}"


def _expected(outcome: Outcome) -> dict[str, Any]:
    f = outcome.finding
    r = outcome.result
    return {
        "finding": None if f is None else {"kind": f.kind, "message": f.message, "step": f.step},
        "steps": r.steps,
        "preemptions": r.preemptions,
        "trace_sha256": trace_sha256(r.trace),
    }


def record(
    label: str,
    knobs: dict[str, Any],
    outcome: Outcome,
    *,
    explorer: str,
    seed: int | None = None,
) -> dict[str, Any]:
    """The reproducer of ``outcome``, a run of the variant ``label`` with ``knobs``."""
    return {
        "schema": SCHEMA,
        "rmapfuzz": __version__,
        "variant": label,
        "knobs": dict(knobs),
        "explorer": explorer,
        "seed": seed,
        "program": outcome.program.to_json(),
        "schedule": [list(d) for d in outcome.decisions],
        "expected": _expected(outcome),
        "signature": signature(label, outcome),
    }


def dumps(repro: dict[str, Any]) -> str:
    """The file's text: one top-level field per line, in a fixed order, so equal reproducers
    are equal files and a diff shows which field changed."""
    body = ",\n".join(
        f"  {json.dumps(k)}: {json.dumps(repro[k], sort_keys=True, ensure_ascii=False)}"
        for k in FIELDS
    )
    return "{\n" + body + "\n}\n"


def _sanitise(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "_"


def file_name(repro: dict[str, Any]) -> str:
    """``<variant>-<kind>-<sha256(signature)[:10]>.json``."""
    f = repro["expected"]["finding"]
    digest = hashlib.sha256(repro["signature"].encode()).hexdigest()[:10]
    return f"{_sanitise(repro['variant'])}-{_sanitise(f['kind'] if f else 'clean')}-{digest}.json"


def size(repro: dict[str, Any]) -> tuple[int, int, int]:
    """What shrinking minimises: (operations, preemptions, steps)."""
    e = repro["expected"]
    return Program.from_json(repro["program"]).n_ops, e["preemptions"], e["steps"]


def save(repro: dict[str, Any], directory: str | os.PathLike[str]) -> Path:
    """Write ``repro`` into ``directory`` atomically; return the path of the file kept.

    One file per signature: an existing file that is no bigger (by :func:`size`) is kept; one
    that cannot be loaded is an :class:`InvalidReproducer`, never silently overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(repro)
    if path.exists() and size(load(path)) <= size(repro):
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dumps(repro))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


# ------------------------------------------------------------------ loading


_JSON_NAME = {str: "string", dict: "object", list: "array"}


def _int(v: Any) -> bool:
    return type(v) is int


def _check(data: dict[str, Any]) -> str | None:
    """The first problem of a decoded reproducer, in words, or None."""
    for k in FIELDS:
        if k not in data:
            return f"missing key {k!r}"
    for k in data:
        if k not in FIELDS:
            return f"unknown key {k!r}"
    types = {
        "rmapfuzz": str, "variant": str, "knobs": dict, "explorer": str, "program": dict,
        "schedule": list, "expected": dict, "signature": str,
    }  # fmt: skip
    for k, t in types.items():
        if not isinstance(data[k], t):
            return f"{k!r} must be a JSON {_JSON_NAME[t]}, got {json.dumps(data[k])[:40]}"
    if data["seed"] is not None and not _int(data["seed"]):
        return f"'seed' must be an integer or null, got {json.dumps(data['seed'])}"
    for name, value in data["knobs"].items():
        if type(value) not in (bool, int):
            return f"knob {name!r} must be true, false or an integer, got {json.dumps(value)}"
    for d in data["schedule"]:
        if not (isinstance(d, list) and len(d) == 2 and all(_int(x) and x >= 0 for x in d)):
            return f"a schedule decision must be [task, run] (integers >= 0), got {json.dumps(d)}"
    return _check_expected(data["expected"])


def _check_expected(e: dict[str, Any]) -> str | None:
    if sorted(e) != sorted(_EXPECTED):
        return f"'expected' must have exactly the keys {', '.join(_EXPECTED)}"
    for k in ("steps", "preemptions"):
        if not (_int(e[k]) and e[k] >= 0):
            return f"expected {k!r} must be an integer >= 0, got {json.dumps(e[k])}"
    sha = e["trace_sha256"]
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        return "expected 'trace_sha256' must be 64 lowercase hex digits"
    f = e["finding"]
    if f is None:
        return None
    if not (isinstance(f, dict) and sorted(f) == sorted(_FINDING)):
        return f"expected 'finding' must be null or an object with keys {', '.join(_FINDING)}"
    if not (isinstance(f["kind"], str) and isinstance(f["message"], str) and _int(f["step"])):
        return "expected finding: 'kind' and 'message' must be strings, 'step' an integer"
    return None


def variant_class(repro: dict[str, Any], override: type[Mainline] | None = None) -> type[Mainline]:
    """The class to run ``repro`` with: the built-in variant it names, or ``override`` when the
    recorded label is ``file.py:Class``/``module:Class`` and ``override`` is that class (its path
    may differ: a corpus is replayed from other directories)."""
    label = repro["variant"]
    if override is not None and label not in BUILTIN:
        if label.rpartition(":")[2] != override.__name__:
            raise InvalidReproducer(
                f"recorded with variant {label}, but --variant gives class {override.__name__}"
            )
        cls = override
    elif label in BUILTIN:
        cls = BUILTIN[label]
    else:
        raise InvalidReproducer(
            f"variant {label} is not built in: pass --variant {label} to run it "
            f"(a reproducer never loads code by itself)"
        )
    try:
        cls(**repro["knobs"])
    except UsageError as e:
        raise InvalidReproducer(str(e)) from None
    return cls


def load(
    path: str | os.PathLike[str], variant_override: type[Mainline] | None = None
) -> dict[str, Any]:
    """Read and validate a reproducer; any problem is an :class:`InvalidReproducer` whose
    message starts with ``path``.  Nothing the file names is imported."""

    def bad(problem: str) -> InvalidReproducer:
        return InvalidReproducer(f"{path}: {problem}")

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise bad(f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        body = text.strip()
        if body.startswith("{") and (e.pos >= len(body) or not body.endswith("}")):
            raise bad(f"truncated: the JSON object ends early ({e.msg}, line {e.lineno})") from None
        raise bad(f"not JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise bad(f"not a reproducer: the top level is {type(data).__name__}, not an object")
    if "schema" not in data:
        raise bad("missing key 'schema'")
    if data["schema"] != SCHEMA or not _int(data["schema"]):
        raise bad(
            f"unknown schema version {json.dumps(data['schema'])} (this rmapfuzz reads {SCHEMA})"
        )
    problem = _check(data)
    if problem is not None:
        raise bad(problem)
    try:
        program = Program.from_json(data["program"])
    except InvalidProgram as e:
        raise bad(f"program: {e}") from None
    if program.to_json() != data["program"]:
        raise bad("program: not in the form Program.to_json() writes")
    for tid, _ in data["schedule"]:
        if tid >= len(program.tasks):
            raise bad(f"schedule names task {tid}, but the program has {len(program.tasks)} tasks")
    try:
        variant_class(data, variant_override)
    except InvalidReproducer as e:
        raise bad(str(e)) from None
    return data


# ------------------------------------------------------------------ replaying


@attrs.frozen
class ReplayReport:
    """``ok`` when the replay gave the recorded outcome byte for byte; else ``differences``
    says what differs.  ``outcome`` is None when the run could not be replayed at all."""

    ok: bool
    differences: list[str]
    outcome: Outcome | None


def _finding_text(f: dict[str, Any] | None) -> str:
    return "none" if f is None else f"{f['kind']} at step {f['step']}: {f['message']}"


def replay(repro: dict[str, Any], variant_override: type[Mainline] | None = None) -> ReplayReport:
    """Run the reproducer's program under its schedule and compare with what it recorded."""
    cls = variant_class(repro, variant_override)
    schedule = [(t, n) for t, n in repro["schedule"]]
    try:
        outcome = execute(cls, Program.from_json(repro["program"]), schedule, knobs=repro["knobs"])
    except ReplayDivergence as e:
        return ReplayReport(False, [f"schedule: {e}"], None)
    except ModelError as e:  # a bug of the tool, but still: this file does not reproduce
        return ReplayReport(False, [f"the model failed: {e}"], None)
    want, got = repro["expected"], _expected(outcome)
    differences = []
    if want["finding"] != got["finding"]:
        differences.append(
            f"finding: recorded {_finding_text(want['finding'])}; "
            f"replayed {_finding_text(got['finding'])}"
        )
    for k in ("steps", "preemptions", "trace_sha256"):
        if want[k] != got[k]:
            differences.append(f"{k}: recorded {want[k]}, replayed {got[k]}")
    sig = signature(repro["variant"], outcome)
    if sig != repro["signature"]:
        differences.append(f"signature: recorded {repro['signature']!r}, replayed {sig!r}")
    return ReplayReport(not differences, differences, outcome)
