"""Per buggy variant: each explorer's first finding, the shrunk trace, the exhaustive shortest.

    python3 bench/variants.py [--explorers hypothesis,pct,random] [--seeds 1,2,3] [--time 120]
                              [--out DIR] [--add] [--quick] [VARIANT...]

For each variant, explorer and seed the explorer runs until its first finding or ``--time``
seconds (the same seeds and limit for every explorer; each explorer is warmed up on mainline
first): seconds and programs to the first finding.  The hypothesis explorer (what
``rmapfuzz fuzz`` runs by default) then shrinks its finding, and the shrunk program is handed to
the exhaustive explorer with the shrunk trace's preemptions as the bound; pct and random do not
shrink.  Per variant, an exhaustive row per shipped reproducer of the variant in corpus/ (a
finding): ``check_program`` with the reproducer's preemptions as the bound, the time to the
shortest counterexample (fewest preemptions, then steps), schedules explored, schedules/s.
"shrink optimal" says whether every hypothesis run's shrunk trace has as many operations and
preemptions as that shortest counterexample (issue 5, shrink optimality).

Writes the key ``variants`` of DIR/results.json (its other keys are kept, see results_file.py)
and DIR/variants.md; with --add, the rows already there that this run does not redo are kept.
DIR is --out (default bench/).  --quick (2 variants, 1 seed, 5 s unless given) is a smoke test
and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_file import update

from rmapfuzz import corpus
from rmapfuzz.explore.exhaustive import check_program
from rmapfuzz.explore.generate import GenSettings, cpus_for
from rmapfuzz.explore.hypothesis import explore_hypothesis
from rmapfuzz.explore.machine import RmapMachine
from rmapfuzz.explore.pct import explore_pct
from rmapfuzz.explore.random import Exploration, explore_random
from rmapfuzz.kernel.variants import BUILTIN, Mainline
from rmapfuzz.program import Program

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "corpus"
#: per exhaustive search (a bound that is not searched to the end is reported as capped)
MAX_SCHEDULES = 20_000
BUGGY = tuple(n for n, c in BUILTIN.items() if c(**c.knobs).expected == "buggy")
QUICK_VARIANTS = ("lockless-walk", "prepare-nolock")

#: what an explorer run gives: the exploration, seconds and programs to the first finding (both
#: None when nothing was found)
Ran = tuple[Exploration, float | None, int | None]
#: an explorer run: (variant class, label, seed, time limit) -> Ran
Run = Callable[[type[Mainline], str, int, float], Ran]


def _hypothesis(cls: type[Mainline], name: str, seed: int, limit: float) -> Ran:
    machine = RmapMachine.for_variant(cls, knobs=cls.knobs, label=name)
    t0 = time.perf_counter()
    ex = explore_hypothesis(cls, seed=seed, knobs=cls.knobs, time_limit=limit, machine=machine)
    st = machine.stats
    at = st.first_failure_at
    return ex, None if at is None else at - t0, st.first_failure_examples


def _unshrunk(explore: Callable[..., Exploration]) -> Run:
    """The runner of an explorer that stops at its first finding (pct, random)."""

    def run(cls: type[Mainline], name: str, seed: int, limit: float) -> Ran:
        settings = GenSettings(cpus=cpus_for(cls))  # as `rmapfuzz fuzz` without --cpus
        ex = explore(cls, seed=seed, settings=settings, knobs=cls.knobs, time_limit=limit)
        return (ex, ex.elapsed_s, ex.examples) if ex.outcome else (ex, None, None)

    return run


RUNNERS: dict[str, Run] = {
    "hypothesis": _hypothesis,
    "pct": _unshrunk(explore_pct),
    "random": _unshrunk(explore_random),
}


def exhaustive(
    cls: type[Mainline], program: Program, knobs: dict[str, Any], bound: int
) -> dict[str, Any]:
    """The exhaustive shortest counterexample of ``program`` up to ``bound`` preemptions."""
    r = check_program(
        cls, program, knobs=knobs, max_preemptions=bound, max_schedules=MAX_SCHEDULES
    )  # fmt: skip
    f = r.found
    return {
        "schedules": r.schedules,
        "elapsed_s": round(r.elapsed_s, 3),
        "schedules_per_s": round(r.schedules / r.elapsed_s, 1) if r.elapsed_s else None,
        "capped": r.capped,
        "kind": f.finding.kind if f else None,
        "preemptions": f.preemptions if f else None,
        "steps": f.steps if f else None,
        "setup_finding": r.setup_finding,  # found while running the program's setup
    }


def one(explorer: str, name: str, seed: int, limit: float) -> dict[str, Any]:
    cls = BUILTIN[name]
    ex, first, programs = RUNNERS[explorer](cls, name, seed, limit)
    o = ex.outcome
    row: dict[str, Any] = {
        "variant": name, "explorer": explorer, "seed": seed, "found": o is not None,
        "first_finding_s": None if first is None else round(first, 3), "programs": programs,
        "examples": ex.examples, "elapsed_s": round(ex.elapsed_s, 3),
    }  # fmt: skip
    if o is None:
        return row
    row["kind"] = o.finding.kind
    if explorer == "hypothesis":  # the only one that shrinks
        r = o.result
        row.update(
            shrink_s=None if first is None else round(ex.elapsed_s - first, 2),
            ops=o.program.n_ops, preemptions=r.preemptions, steps=r.steps,
            exhaustive=exhaustive(cls, o.program, cls.knobs, r.preemptions),
        )  # fmt: skip
    return row


def reproducer_rows(name: str, repros: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The exhaustive rows of ``name``: one per shipped reproducer of a finding, or one saying
    there is none."""
    rows = []
    for path, repro in repros:
        if repro["variant"] != name or repro["expected"]["finding"] is None:
            continue
        ops, pre, steps = corpus.size(repro)
        row = {
            "variant": name, "file": f"corpus/{path.name}", "ops": ops,
            "recorded": {"kind": repro["expected"]["finding"]["kind"], "preemptions": pre,
                         "steps": steps},
        }  # fmt: skip
        cls = corpus.variant_class(repro)
        row |= exhaustive(cls, Program.from_json(repro["program"]), repro["knobs"], pre)
        rows.append(row)
    return rows or [{"variant": name, "file": None, "note": "no reproducer in corpus/"}]


def shrink_optimal(name: str, res: dict[str, Any]) -> dict[str, Any]:
    """Whether every hypothesis run of ``name`` shrank to as many ops and preemptions as the
    exhaustive shortest counterexample of the smallest shipped reproducer (None: nothing to
    compare); each run is marked equal, smaller (the corpus is not minimal) or larger."""
    shrunk = [
        {"seed": r["seed"], "ops": r["ops"], "preemptions": r["preemptions"],
         "same_program": r["exhaustive"]["preemptions"] == r["preemptions"]}
        for r in res["rows"]
        if r["variant"] == name and r["explorer"] == "hypothesis" and r["found"]
    ]  # fmt: skip
    ex = [r for r in res.get("exhaustive", []) if r["variant"] == name and r.get("kind")]
    best = min(((r["ops"], r["preemptions"]) for r in ex), default=None)
    optimal = None
    if best is not None:
        for x in shrunk:  # by (ops, preemptions), as corpus.size orders reproducers
            got = (x["ops"], x["preemptions"])
            x["vs_shortest"] = "equal" if got == best else "smaller" if got < best else "larger"
        optimal = all(x["vs_shortest"] == "equal" for x in shrunk) if shrunk else None
    shortest = None if best is None else {"ops": best[0], "preemptions": best[1]}
    return {"variant": name, "optimal": optimal, "shortest": shortest, "shrunk": shrunk}


def _ran(res: dict[str, Any], name: str) -> bool:
    return any(r["variant"] == name for r in res["rows"])


def merged(new: dict[str, Any], out: Path, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``new`` with the rows of ``out``/results.json it does not redo (--add); rows and
    exhaustive rows in BUGGY order.  Both runs must share the time limit."""
    path = out / "results.json"
    old = json.loads(path.read_text()).get("variants") if path.exists() else None
    if not old:
        return new
    if old["time_limit_s"] != new["time_limit_s"]:
        raise SystemExit(
            f"variants.py: --add: {path} was measured with --time {old['time_limit_s']:g}, "
            f"not {new['time_limit_s']:g}"
        )
    redo = {(r["variant"], r["explorer"], r["seed"]) for r in new["rows"]}
    rows = [r for r in old["rows"] if (r["variant"], r["explorer"], r["seed"]) not in redo]
    rows += new["rows"]
    order = {n: i for i, n in enumerate(BUGGY)}
    ex = [r for r in old.get("exhaustive", []) if r["variant"] not in names] + new["exhaustive"]
    return new | {
        "seeds": sorted(set(old["seeds"]) | set(new["seeds"])),
        "explorers": list(dict.fromkeys(old["explorers"] + new["explorers"])),
        "rows": sorted(rows, key=lambda r: order[r["variant"]]),
        "exhaustive": sorted(ex, key=lambda r: order[r["variant"]]),
    }


def _med(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else "-"


def table(res: dict[str, Any]) -> str:
    """variants.md from the ``variants`` key of results.json."""
    limit, explorers = res["time_limit_s"], res["explorers"]
    head = ["variant"]
    for e in explorers:
        head += [f"{e}: median s (programs) to first finding", f"{e}: found"]
    if "hypothesis" in explorers:
        head += [
            "hypothesis: shrunk ops / preemptions / steps (median)", "median shrink s",
            "exhaustive on the shrunk program: preemptions / steps (kind)",
        ]  # fmt: skip
    head += [
        "shipped reproducer: ops / preemptions", "exhaustive shortest: preemptions / steps "
        "(kind)", "schedules", "s to shortest", "schedules/s",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = list(dict.fromkeys(r["variant"] for r in res["rows"]))
    for name in names:
        cells = [name]
        for e in explorers:
            rs = [r for r in res["rows"] if r["variant"] == name and r["explorer"] == e]
            f = [r for r in rs if r["found"]]
            t = _med([r["first_finding_s"] if r["found"] else limit for r in rs])
            t = f">{limit:g}" if t == "-" or t >= limit else round(t, 3)
            cells += [f"{t} ({_med([r['programs'] for r in f])})", f"{len(f)}/{len(rs)}"]
        if "hypothesis" in explorers:
            hyp = [
                r for r in res["rows"]
                if r["variant"] == name and r["explorer"] == "hypothesis" and r["found"]
            ]  # fmt: skip
            cells += [
                " / ".join(str(_med([r[k] for r in hyp])) for k in ("ops", "preemptions", "steps")),
                str(_med([r["shrink_s"] for r in hyp if r["shrink_s"] is not None])),
                "; ".join(_shortest(r["exhaustive"]) for r in hyp) or "-",
            ]  # fmt: skip
        ex = [r for r in res.get("exhaustive", []) if r["variant"] == name]
        if not ex or ex[0]["file"] is None:
            cells += ["none in corpus/" if ex else "not measured"] + ["-"] * 4
        else:
            cells += [
                "; ".join(f"{r['ops']} / {r['recorded']['preemptions']}" for r in ex),
                "; ".join(_shortest(r) for r in ex),
                "; ".join(str(r["schedules"]) for r in ex),
                "; ".join(str(r["elapsed_s"]) for r in ex),
                "; ".join(str(r["schedules_per_s"]) for r in ex),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for s in res.get("shrink_optimal", []):
        lines.append(f"- {s['variant']}: shrink optimal: {_optimal_text(s)}")
    return "\n".join(lines) + "\n"


def _shortest(x: dict[str, Any]) -> str:
    if x["kind"] is None:
        return "none" + (" (capped)" if x["capped"] else "")
    where = ", in setup" if x.get("setup_finding") else ""
    return f"{x['preemptions']} / {x['steps']} ({x['kind']}{where})"


def _optimal_text(s: dict[str, Any]) -> str:
    shrunk, best = s["shrunk"], s["shortest"]
    if not shrunk:
        return "- (the hypothesis explorer found nothing)"
    if best is None:
        return "- (no shipped reproducer to hold the shrunk trace to)"
    runs = ", ".join(f"{x['ops']} / {x['preemptions']}" for x in shrunk)
    same = sum(x["same_program"] for x in shrunk)
    verdict = "yes"
    if not s["optimal"]:
        n = {v: sum(x["vs_shortest"] == v for x in shrunk) for v in ("larger", "smaller")}
        verdict = "no, " + ", ".join(f"{n[v]} run(s) {v}" for v in n if n[v])
        if n["smaller"]:
            verdict += " (the shipped reproducer is not minimal)"
    return (
        f"{verdict}; shrunk ops / preemptions: {runs}; exhaustive shortest (shipped "
        f"reproducer): {best['ops']} / {best['preemptions']}; on the shrunk program itself the "
        f"exhaustive shortest has as many preemptions in {same}/{len(shrunk)} runs"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--explorers", default="hypothesis,pct,random",
        help=f"comma-separated, of {', '.join(RUNNERS)} (default: all three)",
    )  # fmt: skip
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default 1)")
    ap.add_argument("--time", type=float, default=None, help="seconds per run (default 120)")
    ap.add_argument("--out", type=Path, default=HERE, help="where to write (default: bench/)")
    ap.add_argument(
        "--quick", action="store_true",
        help=f"a smoke test: {', '.join(QUICK_VARIANTS)} unless given, 1 seed, 5 s; writes "
        "nothing",
    )  # fmt: skip
    ap.add_argument(
        "--add", action="store_true",
        help="keep the rows of results.json that this run does not redo (other variants, "
        "explorers or seeds), e.g. to add a seed to one variant",
    )  # fmt: skip
    ap.add_argument("variants", nargs="*", help=f"default: every buggy variant ({len(BUGGY)})")
    args = ap.parse_args()
    if unknown := [v for v in args.variants if v not in BUGGY]:
        ap.error(f"not a buggy built-in variant: {', '.join(unknown)}")
    explorers = [e for e in args.explorers.split(",") if e]
    if not explorers or any(e not in RUNNERS for e in explorers):
        ap.error(f"--explorers: choose among {', '.join(RUNNERS)}")
    seeds = [int(s) for s in (args.seeds or "1").split(",") if s]
    limit = args.time if args.time is not None else 5.0 if args.quick else 120.0
    names = args.variants or (QUICK_VARIANTS if args.quick else BUGGY)
    for e in explorers:  # warm up (imports, caches, Hypothesis's first run)
        RUNNERS[e](BUILTIN["mainline"], "mainline", 0, 1.0)
    res: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d"),
        "time_limit_s": limit,
        "seeds": seeds,
        "explorers": explorers,
        "rows": [],
        "exhaustive": [],
    }
    repros = [(p, corpus.load(p)) for p in sorted(CORPUS.glob("*.json"))]
    for name in names:
        for e in explorers:
            for s in seeds:
                res["rows"].append(one(e, name, s, limit))
                print(json.dumps(res["rows"][-1]), flush=True)
        res["exhaustive"] += reproducer_rows(name, repros)
        for r in res["exhaustive"]:
            if r["variant"] == name:
                print(json.dumps(r), flush=True)
    if args.add:
        res = merged(res, args.out, names)
    res["shrink_optimal"] = [shrink_optimal(n, res) for n in BUGGY if _ran(res, n)]
    text = table(res)
    if not args.quick:
        update(args.out, {"variants": res})
        (args.out / "variants.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
