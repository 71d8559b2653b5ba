"""Benchmarks of the explorers: throughput on mainline, time to first finding on buggy variants.

    python3 bench/run.py [--quick]

Writes bench/results.json and bench/results.md (a readable table).  Numbers are for this
machine; compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.random import explore_random
from rmapfuzz.kernel.variants import BUILTIN

HERE = Path(__file__).resolve().parent


def throughput(variant: str, seconds: float) -> dict:
    ex = explore_random(BUILTIN[variant], seed=1, settings=GenSettings(), time_limit=seconds)
    return {
        "variant": variant,
        "explorer": "random",
        "examples": ex.examples,
        "steps": ex.steps,
        "elapsed_s": round(ex.elapsed_s, 2),
        "examples_per_s": round(ex.examples / ex.elapsed_s, 1),
        "steps_per_s": round(ex.steps / ex.elapsed_s),
        "found": ex.outcome is not None,
    }


def time_to_finding(variant: str, seeds: range, limit: float) -> dict:
    runs = []
    for seed in seeds:
        ex = explore_random(BUILTIN[variant], seed=seed, settings=GenSettings(), time_limit=limit)
        out = ex.outcome
        runs.append({
            "seed": seed,
            "found": out is not None,
            "elapsed_s": round(ex.elapsed_s, 3),
            "examples": ex.examples,
            "kind": out.finding.kind if out else None,
            "ops": out.program.n_ops if out else None,
            "steps": out.result.steps if out else None,
            "preemptions": out.result.preemptions if out else None,
        })
    found = [r["elapsed_s"] for r in runs if r["found"]]
    return {
        "variant": variant,
        "explorer": "random",
        "limit_s": limit,
        "found": len(found),
        "of": len(runs),
        "median_s": round(statistics.median(found), 3) if found else None,
        "runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test of the bench)")
    args = ap.parse_args()
    secs = 3.0 if args.quick else 30.0
    seeds = range(1, 4) if args.quick else range(1, 12)
    limit = 10.0 if args.quick else 60.0
    results = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "throughput": [throughput("mainline", secs)],
        "first_finding": [
            time_to_finding(v, seeds, limit)
            for v in ("lockless-walk", "page-anon-vma-lock", "linus-2012")
        ],
    }
    if not args.quick:
        (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| variant | explorer | examples/s | steps/s |", "|---|---|---|---|"]
    for t in results["throughput"]:
        lines.append(f"| {t['variant']} | {t['explorer']} | {t['examples_per_s']} | {t['steps_per_s']} |")
    lines += ["", "| variant | explorer | found | median time to first finding (s) | median ops | median preemptions |",
              "|---|---|---|---|---|---|"]
    for f in results["first_finding"]:
        ok = [r for r in f["runs"] if r["found"]]
        mops = statistics.median(r["ops"] for r in ok) if ok else None
        mpre = statistics.median(r["preemptions"] for r in ok) if ok else None
        lines.append(f"| {f['variant']} | {f['explorer']} | {f['found']}/{f['of']} | {f['median_s']} | {mops} | {mpre} |")
    table = "\n".join(lines) + "\n"
    if not args.quick:
        (HERE / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
