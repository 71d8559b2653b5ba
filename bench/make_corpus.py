"""Regenerate the shipped corpus: a minimal reproducer per buggy built-in variant, and for each
the same program replayed on mainline, which must be clean.

    python3 bench/make_corpus.py [--out corpus] [VARIANT...]

For each buggy variant the random explorer runs SEEDS with two tasks of one operation each, at
most MAX_EXAMPLES examples per seed (a count, not a time limit, so the result does not depend on
the machine), and the finding smallest by (ops, preemptions, steps) is kept and shrunk further
by the schedule-aware pass (rmapfuzz/explore/minimize.py); where the random explorer finds
nothing, the pct explorer runs the same seeds, and where it finds nothing either, the
hypothesis explorer (``rmapfuzz fuzz``'s default, already shrunk) runs seeds in turn, up to
HYPOTHESIS_EXAMPLES programs each, until one finds.  Mainline then runs
its program under the same schedule, or under the longest prefix of it that mainline's locks let
it follow (a decision naming a task that mainline has blocked diverges); what mainline does from
there on is recorded.  Files of the same name are replaced; run it after changing the model.
A variant with no finding by either makes the exit status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rmapfuzz import corpus
from rmapfuzz.errors import ReplayDivergence
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.hypothesis import explore_hypothesis
from rmapfuzz.explore.minimize import minimize
from rmapfuzz.explore.pct import explore_pct
from rmapfuzz.explore.random import explore_random
from rmapfuzz.kernel.variants import BUILTIN, Mainline
from rmapfuzz.program import Program
from rmapfuzz.runner import Outcome, execute

BUGGY = tuple(name for name, cls in BUILTIN.items() if cls(**cls.knobs).expected == "buggy")
SEEDS = range(1, 9)
MAX_EXAMPLES = 2000
#: programs per seed of the last resort, the hypothesis explorer (a count: deterministic)
HYPOTHESIS_EXAMPLES = 20_000
SETTINGS = GenSettings(max_tasks=2, max_ops_per_task=1)
#: variants whose race needs a bigger program than SETTINGS allows
SETTINGS_FOR: dict[str, GenSettings] = {
    # B7/B8/B18 need a walker, an exit that frees the anon_vma and a third task that reuses
    # the slot (or holds its root): three tasks at least, four make it likely; B8 on four
    # CPUs (see PlaRefcountCheck)
    "pla-no-recheck": GenSettings(max_tasks=4, max_ops_per_task=2),
    "pla-refcount-check": GenSettings(cpus=4, max_tasks=4, max_ops_per_task=2),
    "put-inside-rcu": GenSettings(max_tasks=4, max_ops_per_task=2),
}


def smallest_finding(name: str) -> tuple[str, int, Outcome] | None:
    """The random explorer's smallest finding over SEEDS; if it has none, the pct explorer's
    (races that need two preemptions in narrow windows); if it has none, the first seed's
    finding of the hypothesis explorer."""
    for explorer, explore in (("random", explore_random), ("pct", explore_pct)):
        found = []
        for seed in SEEDS:
            ex = explore(
                BUILTIN[name], seed=seed, settings=SETTINGS_FOR.get(name, SETTINGS),
                knobs=BUILTIN[name].knobs,
                max_examples=MAX_EXAMPLES,
            )  # fmt: skip
            if ex.outcome is not None:
                r = ex.outcome.result
                key = (ex.outcome.program.n_ops, r.preemptions, r.steps, seed)
                found.append((key, ex.outcome))
        if found:
            (*_, seed), outcome = min(found, key=lambda f: f[0])
            # the pass counts replays, not seconds: the result is the same on any machine
            return explorer, seed, minimize(BUILTIN[name], outcome, knobs=BUILTIN[name].knobs)
    for seed in SEEDS:
        ex = explore_hypothesis(
            BUILTIN[name], seed=seed, knobs=BUILTIN[name].knobs, max_examples=HYPOTHESIS_EXAMPLES
        )
        if ex.outcome is not None:
            return "hypothesis", seed, ex.outcome
    return None


def on_mainline(program: Program, schedule: list[tuple[int, int]]) -> Outcome:
    """Mainline under the longest prefix of ``schedule`` it can follow."""
    for n in range(len(schedule), -1, -1):
        try:
            return execute(Mainline, program, schedule[:n])
        except ReplayDivergence:
            continue
    raise AssertionError("the empty schedule cannot diverge")


def write(repro: dict, out: Path) -> Path:
    path = out / corpus.file_name(repro)
    path.unlink(missing_ok=True)  # a regenerated file replaces the old one, whatever its size
    saved = corpus.save(repro, out)
    report = corpus.replay(corpus.load(saved))
    assert report.ok, (saved, report.differences)
    return saved


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "corpus")
    p.add_argument("variants", nargs="*", help="only these buggy variants (default: all)")
    args = p.parse_args()
    out, missing = args.out, []
    for name in args.variants or BUGGY:
        if name not in BUGGY:
            raise SystemExit(f"make_corpus: {name!r} is not a buggy built-in variant")
        found = smallest_finding(name)
        if found is None:
            print(
                f"{name}: no finding in seeds {SEEDS.start}..{SEEDS.stop - 1} "
                "(random, pct, hypothesis)"
            )
            missing.append(name)
            continue
        explorer, seed, buggy = found
        path = write(
            corpus.record(name, BUILTIN[name].knobs, buggy, explorer=explorer, seed=seed), out
        )
        clean = on_mainline(buggy.program, buggy.decisions)
        assert clean.finding is None, (name, clean.finding)
        twin = write(corpus.record("mainline", {}, clean, explorer=f"replay:{path.name}"), out)
        r = buggy.result
        print(
            f"{path.name}: {explorer} seed {seed}, {buggy.program.n_ops} ops, "
            f"{r.preemptions} preemptions, {r.steps} steps; {twin.name}: "
            f"{len(clean.decisions)} of {len(buggy.decisions)} decisions"
        )
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
