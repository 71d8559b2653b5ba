"""Benchmark of the exhaustive explorer on fork||migrate, exit||migrate and split||migrate.

    python3 bench/exhaustive.py [--max-preemptions K] [--unreduced-time S] [--out DIR] [--quick]

For each program (rmapfuzz/explore/programs.py) and variant: the schedules explored at each
bound with partial-order reduction and without it (plain preemption-bounded enumeration, capped
at --unreduced-time seconds per program: a capped count is a lower bound, so the ratio is an
upper bound), the reduction ratio (reduced / unreduced at the largest bound), schedules/s and
time; for buggy variants the shortest counterexample and the time to it.  Writes the key
``exhaustive`` of DIR/results.json (its other keys are kept, see results_file.py); DIR is --out
(default bench/).  --quick runs bound 1 only and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from results_file import update

from rmapfuzz.explore.exhaustive import check_program
from rmapfuzz.explore.programs import PROGRAMS
from rmapfuzz.kernel.variants import BUILTIN

HERE = Path(__file__).resolve().parent
NAMES = ("fork-migrate", "exit-migrate", "split-migrate")
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("mainline", {}),
    ("linus-2012", {"require_mmap_sem": True, "use_fault_address": True}),
    ("lockless-walk", {}),
)


def _row(res: Any) -> dict[str, Any]:
    f = res.found
    return {
        "bounds": [b.to_json() for b in res.bounds],
        "schedules": res.schedules,
        "pruned": res.pruned,
        "capped": res.capped,
        "proved": res.proved,
        "elapsed_s": round(res.elapsed_s, 2),
        "schedules_per_s": round(res.schedules / res.elapsed_s, 1) if res.elapsed_s else None,
        "finding": None
        if f is None
        else {"kind": f.finding.kind, "preemptions": f.preemptions, "steps": f.steps},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-preemptions", type=int, default=2)
    ap.add_argument("--unreduced-time", type=float, default=200.0)
    ap.add_argument("--out", type=Path, default=HERE, help="where to write (default: bench/)")
    ap.add_argument("--quick", action="store_true", help="bound 1 only; writes nothing")
    args = ap.parse_args()
    k = 1 if args.quick else args.max_preemptions
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "max_preemptions": k,
        "unreduced_time_s": args.unreduced_time,
        "rows": [],
    }
    for name in NAMES:
        prog = PROGRAMS[name]
        for variant, knobs in VARIANTS:
            red = check_program(BUILTIN[variant], prog, knobs=knobs, max_preemptions=k)
            row = {"program": name, "variant": variant, "knobs": knobs, "reduced": _row(red)}
            if variant == "mainline":
                un = check_program(
                    BUILTIN[variant],
                    prog,
                    knobs=knobs,
                    max_preemptions=k,
                    reduction=False,
                    time_limit=args.unreduced_time,
                )
                row["unreduced"] = _row(un)
                last_r, last_u = red.bounds[-1], un.bounds[-1]
                if last_r.bound == last_u.bound and last_u.schedules:
                    row["ratio_at_largest_bound"] = round(last_r.schedules / last_u.schedules, 4)
                    row["ratio_is_upper_bound"] = last_u.capped
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    if not args.quick:
        update(args.out, {"exhaustive": out})
    return 0


if __name__ == "__main__":
    sys.exit(main())
