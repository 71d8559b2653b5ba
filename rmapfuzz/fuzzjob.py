"""Fuzz jobs: one explorer in this process, or N worker processes sharing a corpus and a
Hypothesis database, with a live progress line, clean Ctrl-C, and --keep-going.

Worker ``w`` uses seed ``seed + w``; in a ``portfolio`` job it runs explorer
``PORTFOLIO[w % 3]``, and a single-process portfolio run takes rounds of
:data:`PORTFOLIO_ROUND` examples with each explorer in turn.  Explorers check the stop signal
between programs (the Hypothesis machine before each of its programs, even while Hypothesis
shrinks).  Every finding
is written to the corpus the moment it is made (atomically), so an interrupted job loses
nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import corpus
from rmapfuzz.explore.random import Exploration
from rmapfuzz.kernel.variants import load_variant
from rmapfuzz.runner import Outcome

#: the explorers a ``portfolio`` job mixes, in order
PORTFOLIO = ("hypothesis", "pct", "random")
#: examples per round of a single-process portfolio run
PORTFOLIO_ROUND = 200


def portfolio_explorer(seed: int, rnd: int) -> str:
    """The explorer of round ``rnd`` of a single-process portfolio run of ``seed``: the
    portfolio in turn, starting at ``PORTFOLIO[seed % 3]``."""
    return PORTFOLIO[(seed + rnd) % len(PORTFOLIO)]


def worker_explorer(explorer: str, wid: int) -> str:
    """The explorer worker ``wid`` runs in a job of ``explorer``."""
    return PORTFOLIO[wid % len(PORTFOLIO)] if explorer == "portfolio" else explorer


@attrs.frozen
class JobSpec:
    variant: str
    label: str
    knobs: dict[str, Any]
    explorer: str = "hypothesis"
    seed: int = 0
    #: None: the variant's ``cpus``, else 2
    cpus: int | None = None
    max_examples: int | None = None
    time_limit: float | None = None
    corpus_dir: Path | None = None
    database: Path | None = None
    keep_going: bool = False
    pct_depth: int | None = None  # the pct explorer's maximum depth (None: its MAX_DEPTH)
    pct_steps: int | None = None  # the pct explorer's bound on j (None: per-operation)


@attrs.define
class JobResult:
    examples: int = 0
    steps: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    first: Outcome | None = None
    first_seed: int | None = None
    findings: list[tuple[str, str | None]] = attrs.field(factory=list)  # (signature, file)
    #: signature -> the explorer that found it
    explorers: dict[str, str] = attrs.field(factory=dict)

    @property
    def signatures(self) -> list[str]:
        return [sig for sig, _ in self.findings]

    @property
    def saved(self) -> list[str]:
        return [path for _, path in self.findings if path]

    def add(self, sig: str, path: str | None) -> bool:
        """Record a finding; False if its signature was known already."""
        if sig in self.signatures:
            return False
        self.findings.append((sig, path))
        return True


def _explore(
    spec: JobSpec,
    explorer: str,
    seed: int,
    time_limit: float | None,
    max_examples: int | None,
    reuse: bool,
    should_stop: Callable[[], bool],
    progress: Callable[[Exploration], None],
) -> Exploration:
    variant = load_variant(spec.variant)
    if explorer in ("pct", "random"):
        from rmapfuzz.explore.generate import GenSettings, cpus_for
        from rmapfuzz.explore.pct import MAX_DEPTH, explore_pct
        from rmapfuzz.explore.random import explore_random

        common: dict[str, Any] = dict(
            seed=seed,
            settings=GenSettings(cpus=cpus_for(variant, spec.cpus)),
            knobs=spec.knobs,
            max_examples=max_examples,
            time_limit=time_limit,
            should_stop=should_stop,
            progress=progress,
        )
        if explorer == "random":
            return explore_random(variant, **common)
        return explore_pct(
            variant, max_depth=spec.pct_depth or MAX_DEPTH, steps=spec.pct_steps, **common
        )
    from rmapfuzz.explore.hypothesis import explore_hypothesis

    return explore_hypothesis(
        variant,
        seed=seed,
        label=spec.label,
        knobs=spec.knobs,
        cpus=spec.cpus,
        max_examples=max_examples,
        time_limit=time_limit,
        database=spec.database,
        reuse=reuse,
        should_stop=should_stop,
        progress=progress,
    )


def _save(spec: JobSpec, explorer: str, outcome: Outcome, seed: int) -> tuple[str, str | None]:
    repro = corpus.record(spec.label, spec.knobs, outcome, explorer=explorer, seed=seed)
    path = None
    if spec.corpus_dir is not None:
        path = str(corpus.save(repro, spec.corpus_dir))
    return repro["signature"], path


Report = Callable[[int, int, list[tuple[str, str | None]]], None]


def run_rounds(
    spec: JobSpec,
    seed: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    report: Report | None = None,
) -> JobResult:
    """Explore until the time or example budget is spent, a finding is made (with keep_going:
    go on with the next round, seeded ``seed + 1000 * round``), or ``should_stop()``.

    Rounds end only at findings, so a run is deterministic for its seed whatever the budget;
    a portfolio run's rounds also end after :data:`PORTFOLIO_ROUND` examples, the next round
    taking the next explorer (:func:`portfolio_explorer`)."""
    mixed = spec.explorer == "portfolio"
    res = JobResult()
    t0 = time.perf_counter()
    rnd = 0
    while not should_stop():
        left = None if spec.time_limit is None else spec.time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            break
        n_left = None if spec.max_examples is None else spec.max_examples - res.examples
        if n_left is not None and n_left <= 0:
            break
        round_seed = seed + 1_000 * rnd
        explorer = portfolio_explorer(seed, rnd) if mixed else spec.explorer
        if mixed:
            n_left = PORTFOLIO_ROUND if n_left is None else min(n_left, PORTFOLIO_ROUND)
        seen = [0, 0]

        def progress(ex: Exploration, seen: list[int] = seen) -> None:
            if report is not None:
                report(ex.examples - seen[0], ex.steps - seen[1], [])
            seen[0], seen[1] = ex.examples, ex.steps

        ex = _explore(spec, explorer, round_seed, left, n_left, rnd == 0, should_stop, progress)
        rnd += 1
        res.examples += ex.examples
        res.steps += ex.steps
        new: list[tuple[str, str | None]] = []
        if ex.outcome is not None:
            sig, path = _save(spec, explorer, ex.outcome, round_seed)
            if res.first is None:
                res.first, res.first_seed = ex.outcome, round_seed
            if res.add(sig, path):
                res.explorers[sig] = explorer
                new.append((sig, path))
        if report is not None:
            report(ex.examples - seen[0], ex.steps - seen[1], new)
        if ex.outcome is not None and not spec.keep_going:
            break
        if ex.outcome is None and (not mixed or ex.examples == 0):
            break
    res.elapsed_s = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------ workers


def _worker(spec: JobSpec, wid: int, stop: Any, out: Any) -> None:
    """One worker; a SIGINT (the parent forwards Ctrl-C) ends the current example, keeps what
    was found so far, and stops the worker."""

    def interrupt_once(signum: int, frame: Any) -> None:
        # Ctrl-C at a terminal reaches the worker twice (its group, then the parent): the
        # second must not interrupt the saving of what the first one kept
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_once)
    spec = attrs.evolve(spec, explorer=worker_explorer(spec.explorer, wid))

    def report(examples: int, steps: int, new: list[tuple[str, str | None]]) -> None:
        out.put(("progress", wid, examples, steps, new, spec.explorer))

    try:
        res = run_rounds(spec, spec.seed + wid, should_stop=stop.is_set, report=report)
        out.put(("done", wid, res.first_seed, res.first is not None))
    except KeyboardInterrupt:  # between two examples: nothing in flight
        out.put(("done", wid, None, False))
    except Exception as e:  # report, do not hang the parent
        out.put(("error", wid, f"{type(e).__name__}: {e}", None))


def run_workers(spec: JobSpec, workers: int, *, progress: bool = True) -> JobResult:
    """N worker processes with distinct seeds; progress on stderr; Ctrl-C stops them cleanly."""
    # A job started in the background inherits SIGINT ignored (POSIX shells do that): Ctrl-C,
    # or kill -INT, must stop it all the same.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_workers(spec, workers, progress=progress)
    finally:
        signal.signal(signal.SIGINT, previous_int)


def _run_workers(spec: JobSpec, workers: int, *, progress: bool) -> JobResult:
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    out: Any = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(spec, w, stop, out), daemon=True) for w in range(workers)
    ]
    for p in procs:
        p.start()
    res = JobResult()
    t0 = time.perf_counter()
    done = 0
    errors: list[str] = []
    last_line = 0.0

    def line() -> str:
        el = time.perf_counter() - t0
        size = (
            len(list(spec.corpus_dir.glob("*.json")))
            if spec.corpus_dir and spec.corpus_dir.is_dir()
            else 0
        )
        return (
            f"[{int(el) // 3600}:{int(el) // 60 % 60:02d}:{int(el) % 60:02d}] "
            f"{res.examples} examples, {res.examples / el if el else 0:.0f} interleavings/s, "
            f"{len(res.signatures)} findings, corpus {size}"
        )

    try:
        while done < workers:
            try:
                msg = out.get(timeout=0.5)
            except queue.Empty:
                msg = None
            if msg is not None:
                kind, wid, a, b, *rest = msg
                if kind == "progress":
                    res.examples += a
                    res.steps += b
                    for sig, path in rest[0]:
                        if res.add(sig, path):
                            res.explorers[sig] = rest[1]
                            if progress:
                                print(f"\rfinding: {sig} -> {path}", file=sys.stderr)
                    if rest[0] and not spec.keep_going:
                        stop.set()
                elif kind == "error":
                    errors.append(f"worker {wid}: {a}")
                    done += 1
                else:
                    done += 1
            if progress and time.perf_counter() - last_line >= 0.5:
                last_line = time.perf_counter()
                print("\r" + line(), end="", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        res.interrupted = True
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # one Ctrl-C is enough
        stop.set()
        for p in procs:  # a Ctrl-C sent to this process only reaches the workers this way
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        if progress:
            print("\rinterrupted: stopping the workers, keeping every finding", file=sys.stderr)
        while done < workers:
            try:
                msg = out.get(timeout=30)
            except queue.Empty:
                break
            if msg[0] in ("done", "error"):
                done += 1
            elif msg[0] == "progress":
                res.examples += msg[2]
                res.steps += msg[3]
                for sig, path in msg[4]:
                    if res.add(sig, path):
                        res.explorers[sig] = msg[5]
        signal.signal(signal.SIGINT, previous)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        if progress:
            print("\r" + line(), file=sys.stderr)
    res.elapsed_s = time.perf_counter() - t0
    if errors:
        from rmapfuzz.errors import RmapfuzzError

        raise RmapfuzzError("; ".join(errors))
    return res
