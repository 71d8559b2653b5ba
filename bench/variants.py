"""Per buggy variant: time to the first finding, the shrunk trace, and how it compares with the
exhaustive shortest counterexample of the same program.

    python3 bench/variants.py [--seeds 1,2,3] [--time 120] [VARIANT...]

For each variant and seed the hypothesis explorer (what ``rmapfuzz fuzz`` runs by default)
explores until its first finding or ``--time`` seconds, then shrinks it.  The shrunk program is
then handed to the exhaustive explorer with the shrunk trace's preemptions as the bound: its
shortest counterexample (fewest preemptions, then steps) is what the shrinker is held to
(issue 5, shrink optimality).  Writes bench/variants.json and bench/variants.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rmapfuzz.explore.exhaustive import check_program
from rmapfuzz.explore.hypothesis import explore_hypothesis
from rmapfuzz.explore.machine import RmapMachine
from rmapfuzz.kernel.variants import BUILTIN

HERE = Path(__file__).resolve().parent
#: per exhaustive search (a bound that is not searched to the end is reported as capped)
MAX_SCHEDULES = 20_000
BUGGY = tuple(n for n, c in BUILTIN.items() if c(**c.knobs).expected == "buggy")


def one(name: str, seed: int, limit: float) -> dict[str, Any]:
    cls = BUILTIN[name]
    machine = RmapMachine.for_variant(cls, knobs=cls.knobs, label=name)
    t0 = time.perf_counter()
    ex = explore_hypothesis(cls, seed=seed, knobs=cls.knobs, time_limit=limit, machine=machine)
    at = machine.stats.first_failure_at
    row: dict[str, Any] = {"variant": name, "seed": seed, "found": ex.outcome is not None,
                           "programs": ex.examples}  # fmt: skip
    if ex.outcome is None:
        return row
    o = ex.outcome
    row.update(
        first_finding_s=round(at - t0, 2) if at is not None else None,
        shrink_s=round(ex.elapsed_s - (at - t0), 2) if at is not None else None,
        kind=o.finding.kind,
        ops=o.program.n_ops,
        preemptions=o.result.preemptions,
        steps=o.result.steps,
    )
    t1 = time.perf_counter()
    r = check_program(
        cls, o.program, knobs=cls.knobs, max_preemptions=o.result.preemptions,
        max_schedules=MAX_SCHEDULES,
    )  # fmt: skip
    row["exhaustive"] = {
        "schedules": r.schedules,
        "elapsed_s": round(time.perf_counter() - t1, 2),
        "capped": r.capped,
        "kind": r.found.finding.kind if r.found else None,
        "preemptions": r.found.preemptions if r.found else None,
        "steps": r.found.steps if r.found else None,
    }
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | found | median s to first finding | shrunk ops / preemptions / steps "
        "(median) | median shrink s | exhaustive shortest on the same program: preemptions / "
        "steps (kind) |",
        "|---|---|---|---|---|---|",
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    for name, rs in by.items():
        f = [r for r in rs if r["found"]]

        def med(key: str, f: list[dict[str, Any]] = f) -> Any:
            v = [r[key] for r in f if r.get(key) is not None]
            return statistics.median(v) if v else "-"

        ex = "; ".join(
            f"{r['exhaustive']['preemptions']} / {r['exhaustive']['steps']} "
            f"({r['exhaustive']['kind']})"
            for r in f
        )
        lines.append(
            f"| {name} | {len(f)}/{len(rs)} | {med('first_finding_s')} | {med('ops')} / "
            f"{med('preemptions')} / {med('steps')} | {med('shrink_s')} | {ex or '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1", help="comma-separated seeds (default 1)")
    ap.add_argument("--time", type=float, default=120.0, help="seconds per run (default 120)")
    ap.add_argument("variants", nargs="*", help=f"default: every buggy variant ({len(BUGGY)})")
    args = ap.parse_args()
    if unknown := [v for v in args.variants if v not in BUGGY]:
        ap.error(f"not a buggy built-in variant: {', '.join(unknown)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    for name in args.variants or BUGGY:
        for s in seeds:
            rows.append(one(name, s, args.time))
            print(json.dumps(rows[-1]), flush=True)
    out = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "time_limit_s": args.time,
        "rows": rows,
    }
    (HERE / "variants.json").write_text(json.dumps(out, indent=2) + "\n")
    text = table(rows)
    (HERE / "variants.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
