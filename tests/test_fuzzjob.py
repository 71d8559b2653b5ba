"""Long fuzz jobs (issue 3, item 7): --keep-going, worker processes with a progress line,
clean Ctrl-C that keeps every finding, and resuming from the Hypothesis database."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs

from rmapfuzz import corpus, fuzzjob
from rmapfuzz.cli import main
from rmapfuzz.explore.random import Exploration
from rmapfuzz.fuzzjob import (
    PORTFOLIO,
    PORTFOLIO_ROUND,
    JobSpec,
    portfolio_explorer,
    run_rounds,
    worker_explorer,
)

REPO = Path(__file__).resolve().parent.parent


def rmapfuzz(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m rmapfuzz ARGS``; output decoded as is (a progress line's ``\\r`` kept)."""
    p = subprocess.run([sys.executable, "-m", "rmapfuzz", *args], cwd=cwd, capture_output=True,
                       timeout=180)  # fmt: skip
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())


def test_keep_going_collects_distinct_findings_one_file_each(tmp_path, monkeypatch, capsys):
    """keep_going collects >= 2 distinct signatures, one replayable corpus file per signature."""
    saves: list[str] = []
    real_save = corpus.save

    def counting_save(repro, directory):
        saves.append(repro["signature"])
        return real_save(repro, directory)

    monkeypatch.setattr(corpus, "save", counting_save)
    spec = JobSpec(variant="lockless-walk", label="lockless-walk", knobs={}, explorer="random",
                   max_examples=20_000, corpus_dir=tmp_path, keep_going=True)  # fmt: skip
    new: list[tuple[str, str | None]] = []
    # stop once two signatures are in and one of them was found again
    res = run_rounds(spec, 4, should_stop=lambda: len(new) >= 2 and len(saves) > len(new),
                     report=lambda examples, steps, found: new.extend(found))  # fmt: skip
    sigs = res.signatures
    assert len(set(sigs)) == len(sigs) >= 2
    assert len(saves) > len(set(saves)), "no finding was made twice: de-duplication untested"
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == len(sigs)
    assert sorted(corpus.load(f)["signature"] for f in files) == sorted(sigs)
    assert sorted(res.saved) == sorted(str(f) for f in files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    assert main(["replay", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == len(files)


PROGRESS = re.compile(
    r"\[(\d+):(\d\d):(\d\d)\] (\d+) examples, (\d+) interleavings/s, (\d+) findings, corpus (\d+)"
)


#: seconds of the mainline job: enough for several progress lines (the issue's example is 30 s;
#: the property does not depend on the length, the suite's time does)
JOB_TIME = 10


def test_workers_show_progress_and_finish_with_a_summary(tmp_path):
    """--workers 2 --time T on mainline: exit 0, a live progress line on stderr, a summary."""
    t0 = time.perf_counter()
    p = rmapfuzz("fuzz", "--workers", "2", "--time", str(JOB_TIME), "--variant", "mainline",
                 "--corpus", "T", "--database", "D", cwd=tmp_path)  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-2000:]
    assert JOB_TIME <= elapsed < JOB_TIME + 40
    lines = [m for m in PROGRESS.finditer(p.stderr)]
    assert len(lines) >= 5, p.stderr[-2000:]
    assert "\r" in p.stderr  # one line, rewritten in place
    last = lines[-1]
    examples = int(last.group(4))
    assert examples > 0 and int(last.group(5)) > 0
    assert last.group(6) == "0" and last.group(7) == "0"
    assert JOB_TIME - 1 <= int(last.group(2)) * 60 + int(last.group(3)) <= JOB_TIME + 30
    counts = [int(m.group(4)) for m in lines]
    assert counts == sorted(counts)
    summary = p.stdout.strip().splitlines()[-1]
    assert summary.startswith("rmapfuzz: mainline: no finding in ")
    assert f" {examples} examples" in summary and "atomic steps" in summary
    assert not (tmp_path / "T").exists() or not list((tmp_path / "T").iterdir())


def test_sigint_stops_cleanly_keeping_every_finding(tmp_path):
    """Ctrl-C during a --keep-going job: a prompt exit, every corpus file whole and reported."""
    corpus_dir = tmp_path / "T"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rmapfuzz", "fuzz", "--workers", "2", "--time", "120",
         "--keep-going", "--variant", "lockless-walk", "--corpus", "T", "--database", "D"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not list(corpus_dir.glob("*.json")):
            assert proc.poll() is None, "the job ended before its first finding"
            assert time.monotonic() < deadline, "no finding saved within 90 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-2000:]  # findings were made
    assert "interrupted" in err
    files = sorted(corpus_dir.iterdir())
    assert files and not [f for f in files if f.name.startswith(".")]
    for f in files:
        assert f.suffix == ".json"
        repro = corpus.load(f)
        assert repro["variant"] == "lockless-walk" and repro["expected"]["finding"] is not None
        assert f"T/{f.name}" in out, f"{f.name} not reported on stdout"
    assert "saved: T/" in out
    assert main(["replay", *map(str, files)]) == 0


def test_a_second_run_resumes_from_the_database(tmp_path):
    """A run with the database of an earlier one re-finds its bug in fewer examples."""

    def run(corpus_dir: str) -> dict:
        p = rmapfuzz("fuzz", "--workers", "1", "--max-examples", "3000", "--seed", "1",
                     "--variant", "lockless-walk", "--corpus", corpus_dir, "--database", "D",
                     "--json", cwd=tmp_path)  # fmt: skip
        assert p.returncode == 1, p.stderr[-2000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run("T1")
    assert first["found"] and list((tmp_path / "D").rglob("*"))
    second = run("T2")  # a fresh corpus: only the database carries the bug over
    assert second["found"]
    assert second["examples"] < first["examples"], (first["examples"], second["examples"])
    assert [f["signature"] for f in second["findings"]] == [
        f["signature"] for f in first["findings"]
    ]
    assert second["trace"]["ops"] <= first["trace"]["ops"]


def test_portfolio_rounds_take_each_explorer_in_turn(monkeypatch):
    """A single-process portfolio run: rounds of PORTFOLIO_ROUND examples, the explorers in
    turn from PORTFOLIO[seed % 3], round seeds seed + 1000 * round, the budget respected."""
    calls: list[tuple[str, int, int | None]] = []

    def fake(spec, explorer, seed, left, n_left, reuse, should_stop, progress):
        calls.append((explorer, seed, n_left))
        return Exploration(examples=n_left or 0)

    monkeypatch.setattr(fuzzjob, "_explore", fake)
    spec = JobSpec(variant="mainline", label="mainline", knobs={}, explorer="portfolio",
                   max_examples=2 * PORTFOLIO_ROUND * 3 + 7)  # fmt: skip
    res = run_rounds(spec, 4)
    n = PORTFOLIO_ROUND
    assert [c[0] for c in calls] == [PORTFOLIO[(4 + r) % 3] for r in range(7)]
    assert [c[1] for c in calls] == [4 + 1000 * r for r in range(7)]
    assert [c[2] for c in calls] == [n] * 6 + [7]
    assert res.examples == spec.max_examples
    assert [portfolio_explorer(0, r) for r in range(4)] == ["hypothesis", "pct", "random",
                                                            "hypothesis"]  # fmt: skip
    assert [worker_explorer("portfolio", w) for w in range(4)] == [*PORTFOLIO, PORTFOLIO[0]]
    assert worker_explorer("random", 5) == "random"


def test_portfolio_finds_lockless_walk_and_names_its_explorer(tmp_path, monkeypatch):
    """Short rounds, so the explorers alternate before the finding: the finding is credited
    to the explorer of its round, in the result and in the corpus file, the same every run."""
    monkeypatch.setattr(fuzzjob, "PORTFOLIO_ROUND", 40)
    spec = JobSpec(variant="lockless-walk", label="lockless-walk", knobs={},
                   explorer="portfolio", max_examples=3000)  # fmt: skip
    results = []
    for d in ("a", "b"):
        res = run_rounds(attrs.evolve(spec, corpus_dir=tmp_path / d), 2)
        assert res.first is not None, "lockless-walk not found"
        ((sig, path),) = res.findings
        who = res.explorers[sig]
        assert corpus.load(path)["explorer"] == who
        # seed 2 starts with random; the finding's round is the one its explorer had
        rnd = (res.first_seed - 2) // 1000
        assert who == portfolio_explorer(2, rnd)
        assert rnd >= 1, "found in the first round: the alternation is untested"
        results.append((sig, who, res.first_seed, res.examples, res.first.decisions))
    assert results[0] == results[1]


def test_workers_default_to_the_portfolio(tmp_path):
    """A --workers job without --explorer is a portfolio; the summary names the explorer of the
    worker whose reproducer was kept, as does its corpus file."""
    p = rmapfuzz("fuzz", "--workers", "2", "--max-examples", "3000", "--variant",
                 "lockless-walk", "--corpus", "T", "--database", "D", "--json",
                 cwd=tmp_path)  # fmt: skip
    assert p.returncode == 1, p.stderr[-2000:]
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["explorer"] == "portfolio"
    assert s["found_by"] in PORTFOLIO[:2]  # worker 0 or 1
    assert s["findings"][0]["explorer"] == s["found_by"]
    assert corpus.load(tmp_path / s["saved"])["explorer"] == s["found_by"]
    assert f"found by the {s['found_by']} explorer" in p.stdout
