"""Reproducers: record -> save -> load -> replay gives the same outcome byte for byte; a corpus
keeps one file per bug class; a damaged file is refused with one line and nothing is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rmapfuzz import LocklessWalk, Mainline, __version__, corpus, execute, explore_random
from rmapfuzz.cli import main
from rmapfuzz.errors import InvalidReproducer, ReplayDivergence
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.program import Program
from rmapfuzz.runner import Outcome

REPO_CORPUS = Path(__file__).resolve().parent.parent / "corpus"
SMALL = GenSettings(max_tasks=2, max_ops_per_task=1)


@pytest.fixture(scope="module")
def found() -> Outcome:
    """A small lockless-walk finding from the random explorer."""
    for seed in range(1, 20):
        ex = explore_random(LocklessWalk, seed=seed, settings=SMALL, max_examples=500)
        if ex.outcome is not None:
            return ex.outcome
    pytest.fail("the random explorer found no lockless-walk race in 19 seeds")


@pytest.fixture
def repro(found: Outcome) -> dict:
    return corpus.record("lockless-walk", {}, found, explorer="random", seed=1)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_record_holds_a_semantic_reproducer(repro: dict, found: Outcome):
    """The schedule is the engine's decisions; the signature names no object (no ``#id``)."""
    assert list(repro) == list(corpus.FIELDS)
    assert repro["schema"] == 1 and repro["rmapfuzz"] == __version__
    assert repro["schedule"] == [list(d) for d in found.decisions]
    assert Program.from_json(repro["program"]) == found.program
    f = repro["expected"]["finding"]
    assert f == {
        "kind": found.finding.kind,
        "message": found.finding.message,
        "step": found.finding.step,
    }
    assert repro["signature"].startswith(f"lockless-walk: {f['kind']} in ")
    assert "#" not in repro["signature"]


def test_round_trip_replays_and_resaves_byte_identical(repro: dict, tmp_path: Path):
    path = corpus.save(repro, tmp_path / "a")
    assert path.name.startswith("lockless-walk-" + repro["expected"]["finding"]["kind"] + "-")
    loaded = corpus.load(path)
    assert loaded == repro
    report = corpus.replay(loaded)
    assert report.ok and report.differences == []
    assert report.outcome.finding.kind == repro["expected"]["finding"]["kind"]
    again = corpus.save(loaded, tmp_path / "b")
    assert again.read_bytes() == path.read_bytes() == corpus.dumps(repro).encode()


def test_trace_hash_is_deterministic_and_sees_every_step(found: Outcome):
    a = execute(LocklessWalk, found.program, found.decisions)
    b = execute(LocklessWalk, found.program, found.decisions)
    assert corpus.trace_sha256(a.result.trace) == corpus.trace_sha256(b.result.trace)
    assert corpus.trace_sha256(a.result.trace[:-1]) != corpus.trace_sha256(a.result.trace)


def test_a_clean_run_is_recorded_and_replays_clean(found: Outcome, tmp_path: Path):
    """The buggy program on mainline, under the schedule prefix mainline's locks allow."""
    for n in range(len(found.decisions), -1, -1):
        try:
            clean = execute(Mainline, found.program, found.decisions[:n])
            break
        except ReplayDivergence:
            continue
    assert clean.finding is None
    repro = corpus.record("mainline", {}, clean, explorer="replay")
    path = corpus.save(repro, tmp_path)
    assert path.name.startswith("mainline-clean-")
    assert corpus.replay(corpus.load(path)).ok


def test_dedup_keeps_the_smaller_reproducer(repro: dict, tmp_path: Path):
    """One file per signature, the smallest by (ops, preemptions, steps), whichever came first."""
    bigger = json.loads(json.dumps(repro))
    bigger["expected"]["steps"] += 100
    small = corpus.save(repro, tmp_path / "x")
    assert corpus.save(bigger, tmp_path / "x") == small
    assert corpus.load(small) == repro
    big = corpus.save(bigger, tmp_path / "y")
    assert corpus.save(repro, tmp_path / "y") == big
    assert corpus.load(big) == repro
    assert len(list((tmp_path / "y").iterdir())) == 1


def test_save_is_atomic_and_leaves_no_temporary_file(repro: dict, tmp_path: Path, monkeypatch):
    corpus.save(repro, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [corpus.file_name(repro)]

    def crash(src, dst):
        raise OSError("disk full")

    other = json.loads(json.dumps(repro))
    other["signature"] += " (another)"
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        corpus.save(other, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [corpus.file_name(repro)]


def test_a_user_variant_is_never_loaded_from_the_file(found: Outcome, tmp_path: Path):
    """The label of a user variant only names it: the caller must hand over the class."""

    class MyPatch(LocklessWalk):
        pass

    user = corpus.record("patches/my_patch.py:MyPatch", {}, found, explorer="random")
    path = tmp_path / "user.json"
    path.write_text(corpus.dumps(user))
    with pytest.raises(InvalidReproducer, match=r"^.*user\.json: .*pass --variant"):
        corpus.load(path)
    assert corpus.replay(corpus.load(path, MyPatch), MyPatch).ok

    class Other(LocklessWalk):
        pass

    with pytest.raises(InvalidReproducer, match="MyPatch"):
        corpus.load(path, Other)


# ------------------------------------------------------------- damaged files


def _edit(repro: dict, fn) -> str:
    data = json.loads(json.dumps(repro))
    fn(data)
    return json.dumps(data)


def _set_op(d: dict) -> None:
    d["program"]["tasks"][0]["ops"][0][0] = "frobnicate"


CORRUPTIONS = {
    "truncated": lambda r: corpus.dumps(r)[: len(corpus.dumps(r)) // 2],
    "not-json": lambda r: "this is not JSON\n",
    "missing-key": lambda r: _edit(r, lambda d: d.pop("schedule")),
    "wrong-type": lambda r: _edit(r, lambda d: d.update(schedule="fast")),
    "wrong-expected": lambda r: _edit(r, lambda d: d["expected"].update(steps="many")),
    "schema-99": lambda r: _edit(r, lambda d: d.update(schema=99)),
    "unknown-op": lambda r: _edit(r, _set_op),
    "unknown-variant": lambda r: _edit(r, lambda d: d.update(variant="no-such-variant")),
    "unknown-knob": lambda r: _edit(r, lambda d: d.update(knobs={"turbo": True})),
    "task-out-of-range": lambda r: _edit(r, lambda d: d["schedule"].append([7, 0])),
}
PROBLEM = {
    "truncated": "truncated",
    "not-json": "not JSON",
    "missing-key": "missing key 'schedule'",
    "wrong-type": "'schedule' must be a JSON array",
    "wrong-expected": "expected 'steps' must be an integer",
    "schema-99": "unknown schema version 99",
    "unknown-op": "unknown operation 'frobnicate'",
    "unknown-variant": "pass --variant no-such-variant",
    "unknown-knob": "no knob 'turbo'",
    "task-out-of-range": "schedule names task 7",
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_damaged_file_exits_2_with_one_line_and_touches_nothing(
    kind: str, repro: dict, tmp_path: Path, capsys
):
    good = corpus.save(repro, tmp_path)
    bad = tmp_path / f"{kind}.json"
    bad.write_text(CORRUPTIONS[kind](repro))
    before = snapshot(tmp_path)
    code = main(["replay", str(good), str(bad)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"rmapfuzz: error: {bad}: ")
    assert PROBLEM[kind] in err
    assert out == ""
    assert snapshot(tmp_path) == before


def test_a_damaged_file_prints_no_traceback(repro: dict, tmp_path: Path):
    """The installed command, not just main(): stderr is one line."""
    bad = tmp_path / "cut.json"
    bad.write_text(corpus.dumps(repro)[:100])
    p = subprocess.run([sys.executable, "-m", "rmapfuzz", "replay", str(bad)],
                       capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1
    assert p.stderr.startswith(f"rmapfuzz: error: {bad}: truncated")


def test_a_tampered_expected_finding_exits_1_and_says_what_differs(
    repro: dict, tmp_path: Path, capsys
):
    data = json.loads(json.dumps(repro))
    data["expected"]["finding"]["message"] = "nothing to see here"
    path = tmp_path / "tampered.json"
    path.write_text(corpus.dumps(data))
    before = snapshot(tmp_path)
    assert main(["replay", str(path)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "nothing to see here" in out and "finding: recorded" in out
    assert main(["replay", "--json", str(path)]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["file"] == str(path) and rows[0]["ok"] is False and rows[0]["differences"]
    assert rows[-1] == {"files": 1, "reproduced": 0, "differ": 1}
    assert snapshot(tmp_path) == before


def test_the_shipped_corpus_replays(capsys):
    """``rmapfuzz replay corpus/*.json``: every buggy variant and its clean mainline twin."""
    files = sorted(str(p) for p in REPO_CORPUS.glob("*.json"))
    assert main(["replay", "--json", *files]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[-1] == {"files": len(files), "reproduced": len(files), "differ": 0}
    variants = {corpus.load(f)["variant"] for f in files}
    assert variants >= {"lockless-walk", "page-anon-vma-lock", "linus-2012", "mainline"}
    twins = [corpus.load(f) for f in files if corpus.load(f)["variant"] == "mainline"]
    assert len(twins) >= 3 and all(t["expected"]["finding"] is None for t in twins)


def test_a_schedule_that_no_longer_applies_is_a_difference(found: Outcome, tmp_path, capsys):
    """A decision naming a task that has finished cannot be replayed: exit 1, not a crash."""
    clean = execute(Mainline, found.program, [(0, 0)])
    repro = corpus.record("mainline", {}, clean, explorer="replay")
    repro["schedule"] = [[0, 0], [0, 0]]
    path = tmp_path / "diverges.json"
    path.write_text(corpus.dumps(repro))
    report = corpus.replay(corpus.load(path))
    assert not report.ok and report.outcome is None
    assert report.differences[0].startswith("schedule: replay diverged at step")
    assert main(["replay", str(path)]) == 1
    assert "replay diverged" in capsys.readouterr().out
    assert main(["show", str(path)]) == 1
