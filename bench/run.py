"""Benchmarks of the explorers, all in one run on one machine.

    python3 bench/run.py [--quick] [--variants V,V,...] [--seeds N] [--shrink-seeds K]
                         [--out DIR]

Compares the ``hypothesis`` explorer (the state machine: choices per operation and per
preemption), the ``random`` explorer, and the naive baseline machine (bench/naive.py: one
Hypothesis rule per atomic step): programs/s (a program is one interleaving; a Hypothesis
example of the state machine runs several), atomic steps/s and Hypothesis choices per program
on mainline; time and programs to the first finding per buggy variant (median of seeds 1..N,
N = 31 by default; an explorer that does not find within the limit counts as the limit), the
shrunk trace (operations, preemptions, steps) and the shrink time (medians over seeds 1..K,
K = 5 by default: the other seeds stop at their first finding).  Programs to a first finding
are geometric, so a median of few seeds is mostly luck: over seeds 1..11 the naive machine's
median lockless-walk finding came after 1.0 s, over seeds 1..31 after 1.8 s (the hypothesis
explorer's: 0.15 s and 0.10 s), and a median of 5 seeds moved by 2x between runs.

The explorers take turns, so that a machine that speeds up or slows down meanwhile (these are
shared machines: the same work took 20% longer from one minute to the next) weighs on each
alike: throughput is measured in slices of a fixed number of programs (:data:`SLICE`), one
per seed 1..5, each explorer's slice after the other's; first findings seed by seed, each
explorer on the seed in turn.  Each timed run starts after a full garbage collection, so that
it does not pay for the garbage of the run before (a shrink leaves much: one seed took 0.06 s
alone and 0.67 s after six shrinks).

Writes the keys machine, date, seeds, shrink_seeds, throughput, first_finding and checks of
DIR/results.json (its other keys are kept, see results_file.py) and DIR/results.md; DIR is
--out (default bench/).
--quick is a smoke test of this script and writes nothing.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from naive import NaiveMachine  # noqa: E402
from results_file import update  # noqa: E402

from rmapfuzz.explore.generate import GenSettings  # noqa: E402
from rmapfuzz.explore.hypothesis import explore_hypothesis  # noqa: E402
from rmapfuzz.explore.machine import RmapMachine  # noqa: E402
from rmapfuzz.explore.random import explore_random  # noqa: E402
from rmapfuzz.kernel.variants import BUILTIN  # noqa: E402

BUGGY = ("lockless-walk", "page-anon-vma-lock", "linus-2012")


def _run(
    explorer: str, variant: str, seed: int, *, time_limit: float | None,
    max_examples: int | None = None, shrink: bool = True,
) -> dict[str, Any]:  # fmt: skip
    cls = BUILTIN[variant]
    gc.collect()
    t0 = time.perf_counter()
    machine = None
    if explorer == "random":
        ex = explore_random(
            cls, seed=seed, settings=GenSettings(), time_limit=time_limit, max_examples=max_examples
        )
        first = ex.elapsed_s if ex.outcome else None
        programs = ex.example_index + 1 if ex.example_index is not None else None
    else:
        base = NaiveMachine if explorer == "naive" else RmapMachine
        machine = base.for_variant(cls)
        ex = explore_hypothesis(
            cls, seed=seed, time_limit=time_limit, machine=machine, max_examples=max_examples,
            shrink=shrink,
        )  # fmt: skip
        at = machine.stats.first_failure_at
        first = at - t0 if at is not None else None
        programs = machine.stats.first_failure_examples
    out = ex.outcome
    row: dict[str, Any] = {
        "explorer": explorer,
        "variant": variant,
        "seed": seed,
        "examples": ex.examples,
        "steps": ex.steps,
        "elapsed_s": round(ex.elapsed_s, 3),
        "found": out is not None,
        "first_finding_s": round(first, 3) if first is not None else None,
        "programs": programs,  # drawn up to and including the first failing one
        "shrunk": shrink and explorer != "random",
        "shrink_s": round(ex.elapsed_s - first, 3) if first is not None else None,
        "kind": out.finding.kind if out else None,
        "ops": out.program.n_ops if out else None,
        "preemptions": out.result.preemptions if out else None,
        "shrunk_steps": out.result.steps if out else None,
    }
    if machine is not None and ex.examples:
        row["choices"] = machine.stats.choices
        row["choices_per_example"] = round(machine.stats.choices / ex.examples, 1)
        row["repeated"] = machine.stats.repeated  # programs drawn again, not run again
    return row


def warm(explorers: tuple[str, ...]) -> None:
    """Imports, caches, Hypothesis's first run: every timed run is a later run of the process."""
    for e in explorers:
        _run(e, "mainline", 0, time_limit=1.0)


#: programs per explorer in one throughput slice: a few seconds each (for hypothesis one round)
SLICE = {"hypothesis": 400, "random": 800, "naive": 100}


def throughput(
    explorers: tuple[str, ...], seeds: range, scale: float = 1.0
) -> list[dict[str, Any]]:
    """Mainline: per seed a slice of :data:`SLICE` programs (times ``scale``) per explorer,
    the explorers in turn."""
    warm(explorers)
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in explorers}
    for s in seeds:
        for e in explorers:
            n = max(1, round(SLICE[e] * scale))
            runs[e].append(_run(e, "mainline", s, time_limit=None, max_examples=n))
    out = []
    for e, rs in runs.items():
        examples, steps = sum(r["examples"] for r in rs), sum(r["steps"] for r in rs)
        elapsed = sum(r["elapsed_s"] for r in rs)
        row: dict[str, Any] = {
            "explorer": e, "seeds": [r["seed"] for r in rs], "examples": examples,
            "steps": steps, "elapsed_s": round(elapsed, 3),
            "examples_per_s": round(examples / elapsed, 1), "steps_per_s": round(steps / elapsed),
        }  # fmt: skip
        if "choices" in rs[0]:
            row["choices_per_example"] = round(sum(r["choices"] for r in rs) / examples, 1)
        out.append(row)
    return out


def first_findings(
    variant: str, explorers: tuple[str, ...], seeds: range, limit: float, shrink_seeds: int
) -> list[dict[str, Any]]:
    """Per explorer: time to the first finding of ``variant`` per seed (the explorers take
    turns on each seed) and the medians; the first ``shrink_seeds`` seeds also shrink."""
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in explorers}
    for i, s in enumerate(seeds):
        for e in explorers:
            runs[e].append(_run(e, variant, s, time_limit=limit, shrink=i < shrink_seeds))
    return [summary(e, variant, rs, limit) for e, rs in runs.items()]


def summary(
    explorer: str, variant: str, runs: list[dict[str, Any]], limit: float
) -> dict[str, Any]:
    times = [r["first_finding_s"] if r["found"] else limit for r in runs]
    found = [r for r in runs if r["found"]]
    # the shrunk trace's size and the shrink time: over the runs that shrank (random does not
    # shrink: its own trace)
    shrunk = [r for r in found if r["shrunk"] or r["explorer"] == "random"]

    def med(key: str, rows: list[dict[str, Any]] = shrunk) -> Any:
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.median(vals) if vals else None

    return {
        "explorer": explorer,
        "variant": variant,
        "limit_s": limit,
        "found": len(found),
        "of": len(runs),
        "median_first_finding_s": round(statistics.median(times), 3),
        "median_programs": med("programs", found),
        "median_ops": med("ops"),
        "median_preemptions": med("preemptions"),
        "median_shrunk_steps": med("shrunk_steps"),
        "median_shrink_s": med("shrink_s"),
        "runs": runs,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| explorer | programs/s | atomic steps/s | Hypothesis choices/program |",
        "|---|---|---|---|",
    ]
    for t in results["throughput"]:
        lines.append(
            f"| {t['explorer']} | {t['examples_per_s']} | {t['steps_per_s']} | "
            f"{t.get('choices_per_example', '-')} |"
        )
    lines += [
        "",
        "| variant | explorer | found | median s to first finding | median programs | "
        "shrunk ops | preemptions | steps | median shrink s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in results["first_finding"]:
        lines.append(
            f"| {f['variant']} | {f['explorer']} | {f['found']}/{f['of']} | "
            f"{f['median_first_finding_s']} | {f['median_programs']} | {f['median_ops']} | "
            f"{f['median_preemptions']} | "
            f"{f['median_shrunk_steps']} | {f['median_shrink_s']} |"
        )
    c = results["checks"]
    lines += [
        "",
        f"First findings: seeds 1..{results['seeds']}; shrunk ops, preemptions, steps and "
        f"shrink time: medians over seeds 1..{results['shrink_seeds']} (the others stop at "
        "their first finding).",
        "",
        f"hypothesis steps/s / random steps/s = {c['steps_ratio']}",
        f"naive / hypothesis median time to first lockless-walk finding = {c['speedup_vs_naive']}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smoke test; writes nothing")
    ap.add_argument(
        "--variants", default=",".join(BUGGY), help=f"buggy variants to time (default: {BUGGY})"
    )
    ap.add_argument(
        "--seeds", type=int, default=31, help="seeds 1..N per explorer and variant (default 31)"
    )
    ap.add_argument(
        "--shrink-seeds", type=int, default=5, help="of them, seeds 1..K also shrink (default 5)"
    )
    ap.add_argument("--out", type=Path, default=HERE, help="where to write (default: bench/)")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error(f"--seeds must be at least 1, got {args.seeds}")
    if not 0 <= args.shrink_seeds <= args.seeds:
        ap.error(
            f"--shrink-seeds must be between 0 and --seeds ({args.seeds}), got {args.shrink_seeds}"
        )
    variants = [v for v in args.variants.split(",") if v]
    if unknown := [v for v in variants if v not in BUILTIN]:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")
    scale, slices, seeds, limit = (
        (0.1, range(1, 3), range(1, 3), 10.0)
        if args.quick
        else (1.0, range(1, 6), range(1, args.seeds + 1), 60.0)
    )
    explorers = ("hypothesis", "random", "naive")
    results: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "seeds": len(seeds),
        "shrink_seeds": min(args.shrink_seeds, len(seeds)),
        "throughput": throughput(explorers, slices, scale),
        "first_finding": [
            f
            for v in variants
            for f in first_findings(
                v,
                explorers if v == "lockless-walk" else explorers[:2],
                seeds,
                limit,
                min(args.shrink_seeds, len(seeds)),
            )
        ],  # fmt: skip
    }
    tp = {t["explorer"]: t for t in results["throughput"]}
    ff = {(f["explorer"], f["variant"]): f for f in results["first_finding"]}
    hyp = ff[("hypothesis", "lockless-walk")]["median_first_finding_s"]
    results["checks"] = {
        "steps_ratio": round(tp["hypothesis"]["steps_per_s"] / tp["random"]["steps_per_s"], 3),
        "speedup_vs_naive": round(ff[("naive", "lockless-walk")]["median_first_finding_s"] / hyp, 1)
        if hyp
        else None,
    }
    text = table(results)
    if not args.quick:
        update(args.out, results)
        (args.out / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
