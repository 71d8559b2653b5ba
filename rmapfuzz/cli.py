"""The ``rmapfuzz`` command.

Exit status: 0 no finding, 1 a finding, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rmapfuzz import __version__
from rmapfuzz.errors import RmapfuzzError, UsageError

EXIT_CLEAN, EXIT_FINDING, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_duration(text: str) -> float:
    """Seconds: ``90``, ``1.5``, ``30s``, ``10m``, ``8h``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise UsageError(f"--time {text!r}: expected seconds, or a number with s, m or h")
    value = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if value <= 0:
        raise UsageError(f"--time {text!r}: must be positive")
    return value


def _positive(name: str, value: int | None, lo: int = 1, hi: int | None = None) -> None:
    if value is None:
        return
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise UsageError(f"{name} must be {rng}, got {value}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="rmapfuzz",
        description="Fuzz a step-level model of the Linux anonymous reverse map for torn "
        "anon_vma chains and other rmap races.",
    )
    p.add_argument("--version", action="version", version=f"rmapfuzz {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("variants", help="list the built-in variants and their expected verdicts")
    v.add_argument("--json", action="store_true", help="one JSON object per line")

    f = sub.add_parser(
        "fuzz",
        help="explore random programs and interleavings until a finding",
        description="Explore programs (processes, vmas, pages, operations on tasks) and their "
        "interleavings on simulated CPUs; stop at the first finding and print its trace as "
        "per-CPU swim-lanes.",
    )
    f.add_argument(
        "--variant",
        default="mainline",
        help="built-in name (see 'rmapfuzz variants'), file.py:Class or module:Class",
    )
    f.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a knob of the variant (repeatable), e.g. require_mmap_sem=yes",
    )
    f.add_argument(
        "--explorer",
        default=None,
        choices=["hypothesis", "random", "pct", "portfolio"],
        help="hypothesis: the state machine, shrinking the finding (default); "
        "random: seeded random programs and schedules, no shrinking; "
        "pct: the random explorer's programs under PCT priority scheduling (d-1 random "
        "change points, d deepening from 2 to --pct-depth), no shrinking; "
        "portfolio: hypothesis, pct and random mixed (worker w of --workers runs the "
        "(w mod 3)-th; one process takes rounds of 200 examples with each in turn; the "
        "default of --workers jobs)",
    )
    f.add_argument(
        "--pct-depth",
        type=int,
        default=None,
        metavar="D",
        help="pct: the maximum depth d, 1..8; examples deepen from d=2 to D in rounds of 50, "
        "then start over (default 4)",
    )
    f.add_argument(
        "--pct-steps",
        type=int,
        default=None,
        metavar="K",
        help="pct: change points fall after the j-th event of a task, j uniform in 1..K "
        "(PCT's k; default: the task's estimated count of that event)",
    )
    f.add_argument("--seed", type=int, default=0, help="seed of the exploration (default 0)")
    f.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="stop after this many programs (default: no limit)",
    )
    f.add_argument(
        "--time",
        default=None,
        help="stop after this long: seconds, or 30s/10m/8h (default 60 when "
        "--max-examples is not given)",
    )
    f.add_argument(
        "--cpus", type=int, help="simulated CPUs, 1..8 (default: the variant's own, else 2)"
    )
    f.add_argument(
        "--corpus",
        default="corpus",
        metavar="DIR",
        help="where findings are saved as reproducers (default: corpus)",
    )
    f.add_argument("--no-save", action="store_true", help="do not write reproducers")
    f.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run N worker processes (seeds SEED..SEED+N-1) sharing the corpus and "
        "a Hypothesis database; shows progress; resumes from the database",
    )
    f.add_argument(
        "--database",
        default=".rmapfuzz/hypothesis",
        metavar="DIR",
        help="the Hypothesis database of --workers jobs (default: .rmapfuzz/hypothesis)",
    )
    f.add_argument(
        "--keep-going",
        action="store_true",
        help="go on after a finding, collecting distinct ones (by signature)",
    )
    f.add_argument(
        "--json",
        action="store_true",
        help="print the trace, then a summary JSON object as the last line",
    )

    r = sub.add_parser(
        "replay",
        help="re-run reproducer files and check each gives its recorded outcome byte for byte",
        description="Re-run each reproducer (program + schedule) and compare the finding, "
        "steps, preemptions and trace hash with what it recorded.  Exit 0: all reproduce; "
        "1: one differs; 2: a file is invalid (nothing is run, nothing is written).",
    )
    r.add_argument("files", nargs="+", metavar="FILE", help="reproducer JSON files")
    r.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per file, then a summary object as the last line",
    )
    r.add_argument(
        "--variant",
        default=None,
        metavar="SPEC",
        help="file.py:Class or module:Class for reproducers recorded with that "
        "variant (a reproducer never loads code by itself)",
    )

    s = sub.add_parser(
        "show",
        help="print a reproducer: program, schedule, swim-lanes and finding (re-running it)",
    )
    s.add_argument("file", metavar="FILE", help="a reproducer JSON file")
    s.add_argument(
        "--html",
        default=None,
        metavar="OUT",
        help="write the picture as one self-contained HTML page to OUT instead",
    )
    s.add_argument(
        "--variant",
        default=None,
        metavar="SPEC",
        help="file.py:Class or module:Class, for a reproducer of a user variant",
    )

    c = sub.add_parser(
        "check",
        help="explore every schedule of one program up to K preemptions (exhaustive, with "
        "partial-order reduction)",
        description="Run one fixed program under every schedule with at most K preemptions, "
        "bound 0, 1, ... K in turn, pruning schedules that only reorder independent steps "
        "(dynamic partial-order reduction).  Prints the shortest counterexample (fewest "
        "preemptions, then fewest steps) as swim-lanes and saves it as a reproducer, or says "
        "that there is none up to K preemptions.  Exit 0: none; 1: a finding; 2: bad input.",
        epilog="--ops SPEC: 'setup: OP; OP ... | OP; OP ... | ...': the setup, then one "
        "'|'-separated section per task (task i on cpu i, or 'cpuN: OPS'); an OP is "
        "name(arg, ...) with decimal or 0x integers, e.g. 'setup: mmap(1,0x10000,2,0); "
        "fault(1,0x10000); fork(1) | migrate(1) | exit(2)'.",
    )
    c.add_argument(
        "--variant",
        default="mainline",
        help="built-in name (see 'rmapfuzz variants'), file.py:Class or module:Class",
    )
    c.add_argument(
        "--knob",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a knob of the variant (repeatable), e.g. require_mmap_sem=yes",
    )
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--program",
        metavar="FILE",
        help="a program JSON file, or a reproducer whose program is checked",
    )
    what.add_argument("--ops", metavar="SPEC", help="the program as text (see below)")
    c.add_argument(
        "--max-preemptions",
        type=int,
        default=2,
        metavar="K",
        help="the largest preemption bound searched (default 2)",
    )
    c.add_argument(
        "--max-schedules",
        type=int,
        default=None,
        metavar="N",
        help="give up a bound after N runs (default 200000): the answer is then no proof",
    )
    c.add_argument(
        "--no-reduction",
        action="store_true",
        help="plain preemption-bounded enumeration (to measure what the reduction saves)",
    )
    c.add_argument(
        "--corpus",
        default="corpus",
        metavar="DIR",
        help="where a finding is saved as a reproducer (default: corpus)",
    )
    c.add_argument("--no-save", action="store_true", help="do not write a reproducer")
    c.add_argument(
        "--json",
        action="store_true",
        help="print the result, then a summary JSON object as the last line",
    )
    return p


def cmd_variants(args: argparse.Namespace) -> int:
    from rmapfuzz.kernel.variants import BUILTIN

    for name, cls in BUILTIN.items():
        inst = cls()
        row = {
            "name": name,
            "summary": cls.summary,
            "expected": inst.expected,
            "commit": cls.commit,
            "knobs": dict(inst.knob),
            "focus": list(cls.focus),
            "cpus": cls.cpus,
            "max_tasks": cls.max_tasks,
        }
        if args.json:
            print(json.dumps(row))
        else:
            knobs = (
                (
                    " ["
                    + ", ".join(
                        f"{k}={'yes' if v is True else 'no' if v is False else v}"
                        for k, v in inst.knob.items()
                    )
                    + "]"
                )
                if inst.knob
                else ""
            )
            print(f"{name:24} {inst.expected:6} {cls.summary}{knobs}")
            if cls.commit:
                print(f"{'':31} {cls.commit}")
    return EXIT_CLEAN


def cmd_fuzz(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rmapfuzz.fuzzjob import JobSpec, run_rounds, run_workers
    from rmapfuzz.kernel.variants import load_variant, parse_knob, variant_label

    _positive("--cpus", args.cpus, 1, 8)
    _positive("--max-examples", args.max_examples)
    _positive("--workers", args.workers, 1, 64)
    _positive("--pct-depth", args.pct_depth, 1, 8)
    _positive("--pct-steps", args.pct_steps, 1, 1_000_000)
    if args.explorer is None:
        args.explorer = "portfolio" if args.workers else "hypothesis"
    for name, value in (("--pct-depth", args.pct_depth), ("--pct-steps", args.pct_steps)):
        if value is not None and args.explorer not in ("pct", "portfolio"):
            raise UsageError(f"{name} needs --explorer pct or portfolio, not {args.explorer}")
    time_limit = parse_duration(args.time) if args.time is not None else None
    if time_limit is None and args.max_examples is None:
        time_limit = 60.0
    variant = load_variant(args.variant)
    knobs = dict(parse_knob(k) for k in args.knob)
    label = variant_label(variant, args.variant)
    variant(**knobs)  # unknown knobs are a usage error before anything runs
    spec = JobSpec(
        variant=args.variant,
        label=label,
        knobs=knobs,
        explorer=args.explorer,
        seed=args.seed,
        cpus=args.cpus,
        max_examples=args.max_examples,
        time_limit=time_limit,
        corpus_dir=None if args.no_save else Path(args.corpus),
        database=Path(args.database) if args.workers else None,
        keep_going=args.keep_going,
        pct_depth=args.pct_depth,
        pct_steps=args.pct_steps,
    )
    if args.workers:
        res = run_workers(spec, args.workers, progress=not args.json)
        outcome = _outcome_of(res.saved[0], variant) if res.saved else None
        _credit_saved(res)
    else:
        res = run_rounds(spec, args.seed)
        outcome = res.first
    summary: dict[str, Any] = {
        "variant": label,
        "explorer": args.explorer,
        "seed": args.seed,
        "knobs": knobs,
        "found": bool(res.signatures),
        "examples": res.examples,
        "steps": res.steps,
        "elapsed_s": round(res.elapsed_s, 3),
        "steps_per_s": round(res.steps / res.elapsed_s) if res.elapsed_s else None,
        "examples_per_s": round(res.examples / res.elapsed_s, 1) if res.elapsed_s else None,
        "failure": None,
        "trace": None,
        "saved": res.saved[0] if res.saved else None,
        "findings": [
            {"signature": sig, "saved": path, "explorer": res.explorers.get(sig)}
            for sig, path in res.findings
        ],
        "found_by": res.explorers.get(res.findings[0][0]) if res.findings else None,
        "interrupted": res.interrupted,
    }
    if outcome is not None:
        _print_finding(label, outcome, res, summary)
    else:
        what = "interrupted" if res.interrupted else "no finding"
        print(
            f"rmapfuzz: {label}: {what} in {res.examples} examples, {res.steps} atomic steps "
            f"({res.elapsed_s:.1f}s, {args.explorer} explorer, seed {args.seed})"
        )
    if len(res.signatures) > 1:
        print(f"{len(res.signatures)} distinct findings:")
        for sig, path in res.findings:
            print(f"  {sig}: {path or '(not saved)'}")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    if res.signatures:
        return EXIT_FINDING
    return 130 if res.interrupted else EXIT_CLEAN


def _credit_saved(res: Any) -> None:
    """Workers racing to one signature keep the smaller reproducer: credit its explorer."""
    from rmapfuzz import corpus

    for sig, path in res.findings:
        if path:
            res.explorers[sig] = corpus.load(path)["explorer"]


def _outcome_of(path: str, variant: Any) -> Any:
    from rmapfuzz import corpus

    repro = corpus.load(path)
    return corpus.replay(repro, variant_override=variant).outcome


def _print_finding(label: str, outcome: Any, res: Any, summary: dict[str, Any]) -> None:
    from rmapfuzz.render import finding_report, swimlanes

    f = outcome.finding
    r = outcome.result
    summary["failure"] = {"kind": f.kind, "message": f.message, "step": f.step}
    summary["trace"] = {
        "ops": outcome.program.n_ops,
        "steps": r.steps,
        "preemptions": r.preemptions,
        "cpus": outcome.program.cpus,
        "program": outcome.program.to_json(),
        "schedule": [list(d) for d in r.decisions],
    }
    print(
        f"rmapfuzz: {label}: {f.kind} after {res.examples} examples ({res.elapsed_s:.1f}s, "
        f"found by the {summary['found_by']} explorer)"
    )
    print(outcome.program.describe())
    print(
        f"schedule: {' '.join(f'({t},{n})' for t, n in r.decisions)}"
        f"  [{r.preemptions} preemptions, {r.steps} steps]"
    )
    print()
    print(swimlanes(r.trace, outcome.program, setup_steps=r.setup_steps, finding=f))
    print()
    print(finding_report(f))
    _print_advisories(outcome)
    summary["lockset"] = list(outcome.advisories)
    if summary["saved"]:
        print(f"\nsaved: {summary['saved']}  (rmapfuzz replay {summary['saved']})")


def _print_advisories(outcome: Any, indent: str = "") -> None:
    """The run's advisory lines (the lockset check, rmap-spec I15): not findings."""
    for line in getattr(outcome, "advisories", ()) if outcome is not None else ():
        print(f"{indent}{line}")


def cmd_replay(args: argparse.Namespace) -> int:
    """Exit 0 when every file reproduces, 1 when one differs, 2 when one is invalid."""
    from rmapfuzz import corpus
    from rmapfuzz.errors import InvalidReproducer
    from rmapfuzz.kernel.variants import load_variant

    override = load_variant(args.variant) if args.variant else None
    loaded, invalid = [], False
    for path in args.files:
        try:
            loaded.append((path, corpus.load(path, override)))
        except InvalidReproducer as e:
            print(f"rmapfuzz: error: {e}", file=sys.stderr)
            invalid = True
    if invalid:
        return EXIT_USAGE
    differ = 0
    for path, repro in loaded:
        report = corpus.replay(repro, override)
        differ += not report.ok
        if args.json:
            print(
                json.dumps(
                    {
                        "file": path,
                        "signature": repro["signature"],
                        "ok": report.ok,
                        "differences": report.differences,
                        "lockset": list(getattr(report.outcome, "advisories", [])),
                    }
                )
            )
        elif report.ok:
            ops, preemptions, steps = corpus.size(repro)
            print(
                f"ok      {path}: {repro['signature']} "
                f"({ops} ops, {preemptions} preemptions, {steps} steps)"
            )
        else:
            print(f"DIFFERS {path}: {repro['signature']}")
            print("\n".join(f"    {d}" for d in report.differences))
        if not args.json:
            _print_advisories(report.outcome, "    ")
    if args.json:
        print(
            json.dumps({"files": len(loaded), "reproduced": len(loaded) - differ, "differ": differ})
        )
    else:
        print(
            f"rmapfuzz: {len(loaded) - differ} of {len(loaded)} reproducers replay their "
            f"recorded outcome" + (f"; {differ} differ" if differ else "")
        )
    return EXIT_FINDING if differ else EXIT_CLEAN


def cmd_show(args: argparse.Namespace) -> int:
    """Exit 0 when the file reproduces its recorded outcome, 1 when it differs."""
    from pathlib import Path

    from rmapfuzz import corpus
    from rmapfuzz.kernel.variants import load_variant
    from rmapfuzz.render import finding_report, swimlanes
    from rmapfuzz.render_html import page

    override = load_variant(args.variant) if args.variant else None
    repro = corpus.load(args.file, override)
    report = corpus.replay(repro, override)
    out = report.outcome
    knobs = " ".join(f"{k}={json.dumps(v)}" for k, v in repro["knobs"].items())
    head = [
        f"{args.file}: {repro['signature']}",
        f"variant {repro['variant']}{' ' + knobs if knobs else ''}, explorer "
        f"{repro['explorer']}, seed {repro['seed']}, recorded by rmapfuzz {repro['rmapfuzz']}",
    ]
    if not report.ok:
        head.append("this replay differs from the recording:")
        head += [f"    {d}" for d in report.differences]
    if out is None:  # the schedule did not apply: there is no run to draw
        print("\n".join(head))
        return EXIT_FINDING
    r = out.result
    head += [
        out.program.describe(),
        f"schedule: {' '.join(f'({t},{n})' for t, n in r.decisions)}"
        f"  [{r.preemptions} preemptions, {r.steps} steps]",
    ]
    if args.html:
        html = page(
            r.trace,
            out.program,
            setup_steps=r.setup_steps,
            finding=out.finding,
            title=f"rmapfuzz: {repro['signature']}",
            preamble="\n".join(head),
        )
        try:
            Path(args.html).write_text(html, encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--html {args.html}: cannot write: {e.strerror}") from None
        print(f"rmapfuzz: wrote {args.html}")
    else:
        print("\n".join(head))
        print()
        print(swimlanes(r.trace, out.program, setup_steps=r.setup_steps, finding=out.finding))
        print()
        print(finding_report(out.finding) if out.finding else "no finding: the run is clean")
        _print_advisories(out)
    return EXIT_CLEAN if report.ok else EXIT_FINDING


def _check_program(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from rmapfuzz.errors import InvalidProgram
    from rmapfuzz.explore.ops_spec import parse_ops
    from rmapfuzz.program import Program

    if args.ops is not None:
        return parse_ops(args.ops)
    try:
        data = json.loads(Path(args.program).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"--program {args.program}: cannot read: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"--program {args.program}: not JSON: {e}") from None
    if isinstance(data, dict) and "schema" in data and "program" in data:
        data = data["program"]  # a reproducer: check its program
    try:
        return Program.from_json(data)
    except InvalidProgram as e:
        raise UsageError(f"--program {args.program}: {e}") from None


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when no schedule up to K preemptions has a finding, 1 when one has."""
    from rmapfuzz import corpus
    from rmapfuzz.explore.exhaustive import DEFAULT_MAX_SCHEDULES, check_program
    from rmapfuzz.kernel.variants import load_variant, parse_knob, variant_label
    from rmapfuzz.render import finding_report, swimlanes
    from rmapfuzz.runner import execute

    _positive("--max-preemptions", args.max_preemptions, 0, 50)
    _positive("--max-schedules", args.max_schedules)
    variant = load_variant(args.variant)
    knobs = dict(parse_knob(k) for k in args.knob)
    label = variant_label(variant, args.variant)
    variant(**knobs)
    program = _check_program(args)
    res = check_program(
        variant,
        program,
        knobs=knobs,
        max_preemptions=args.max_preemptions,
        reduction=not args.no_reduction,
        max_schedules=args.max_schedules or DEFAULT_MAX_SCHEDULES,
    )
    summary: dict[str, Any] = {
        "variant": label,
        "knobs": knobs,
        "explorer": "exhaustive",
        "reduction": not args.no_reduction,
        "max_preemptions": args.max_preemptions,
        "found": res.found is not None,
        "proved": res.proved,
        "capped": res.capped,
        "schedules": res.schedules,
        "pruned": res.pruned,
        "bounds": [b.to_json() for b in res.bounds],
        "elapsed_s": round(res.elapsed_s, 3),
        "schedules_per_s": round(res.schedules / res.elapsed_s, 1) if res.elapsed_s else None,
        "failure": None,
        "preemptions": None,
        "steps": None,
        "saved": None,
    }
    counts = f"{res.schedules} schedules explored, {res.pruned} pruned ({res.elapsed_s:.1f}s)"
    if res.found is None:
        if res.capped:
            b = res.bounds[-1]
            print(
                f"rmapfuzz: {label}: no finding up to {res.proved} preemptions; bound {b.bound} "
                f"given up after {b.schedules + b.blocked} runs (--max-schedules): {counts}"
            )
        else:
            print(f"rmapfuzz: {label}: no finding up to {res.proved} preemptions: {counts}")
        if args.json:
            print(json.dumps(summary, sort_keys=True))
        return EXIT_CLEAN
    found = res.found
    outcome = execute(variant, program, found.decisions, knobs=knobs)
    f = outcome.finding
    r = outcome.result
    if f is None or f.kind != found.finding.kind:
        raise RmapfuzzError(f"the counterexample does not replay ({found.finding.kind})")
    summary["failure"] = {"kind": f.kind, "message": f.message, "step": f.step}
    summary["preemptions"] = r.preemptions
    summary["steps"] = r.steps
    summary["schedule"] = [list(d) for d in r.decisions]
    if not args.no_save:
        repro = corpus.record(label, knobs, outcome, explorer="exhaustive")
        summary["saved"] = str(corpus.save(repro, args.corpus))
    print(
        f"rmapfuzz: {label}: {f.kind}; shortest counterexample: {r.preemptions} preemptions, "
        f"{r.steps} steps; {counts}"
    )
    print(program.describe())
    print(
        f"schedule: {' '.join(f'({t},{n})' for t, n in r.decisions)}"
        f"  [{r.preemptions} preemptions, {r.steps} steps]"
    )
    print()
    print(swimlanes(r.trace, program, setup_steps=r.setup_steps, finding=f))
    print()
    print(finding_report(f))
    if summary["saved"]:
        print(f"\nsaved: {summary['saved']}  (rmapfuzz replay {summary['saved']})")
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return EXIT_FINDING


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "variants":
            return cmd_variants(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "show":
            return cmd_show(args)
        if args.command == "check":
            return cmd_check(args)
        return cmd_fuzz(args)
    except RmapfuzzError as e:
        print(f"rmapfuzz: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("rmapfuzz: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CLEAN


if __name__ == "__main__":
    sys.exit(main())
