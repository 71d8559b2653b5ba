"""The benchmark scripts of bench/: their smoke modes run and write nothing, and results.json is
rewritten key by key (each script keeps the keys it does not own)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def snapshot() -> dict[str, str]:
    """Every file of bench/ (bytecode caches aside) and a digest of its content."""
    return {
        str(p.relative_to(BENCH)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(BENCH.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def bench(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("script", ["variants.py", "exhaustive.py"])
def test_quick_runs_and_writes_nothing(script, tmp_path):
    before = snapshot()
    p = bench(script, "--quick", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert snapshot() == before
    if script == "variants.py":
        for explorer in ("hypothesis", "pct", "random"):
            assert f"{explorer}: found" in p.stdout
        assert "- lockless-walk: shrink optimal: " in p.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("--seeds", "0"), "--seeds must be at least 1, got 0"),
        (("--seeds", "3", "--shrink-seeds", "4"), "--shrink-seeds must be between 0 and --seeds"),
    ],
)
def test_run_refuses_an_impossible_seed_count(tmp_path, args, message):
    p = bench("run.py", *args, "--out", str(tmp_path), cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def test_variants_keeps_the_keys_it_does_not_own(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    theirs = {"throughput": [{"explorer": "random"}], "exhaustive": {"rows": []}}
    (out / "results.json").write_text(json.dumps({**theirs, "variants": "stale"}))
    p = bench(
        "variants.py", "--explorers", "random", "--time", "5", "--out", str(out),
        "prepare-nolock", "pla-refcount-check", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert {k: data[k] for k in theirs} == theirs
    v = data["variants"]
    assert v["explorers"] == ["random"] and v["time_limit_s"] == 5.0
    assert {(r["variant"], r["explorer"]) for r in v["rows"]} == {
        ("prepare-nolock", "random"), ("pla-refcount-check", "random"),
    }  # fmt: skip
    ex = {r["variant"]: r for r in v["exhaustive"]}
    assert ex["prepare-nolock"]["kind"] == "lockset"
    assert ex["prepare-nolock"]["file"].startswith("corpus/prepare-nolock-")
    assert ex["pla-refcount-check"]["file"].startswith("corpus/pla-refcount-check-")
    assert "| prepare-nolock |" in (out / "variants.md").read_text()
    assert sorted(os.listdir(out)) == ["results.json", "variants.md"]


@pytest.fixture
def variants_module(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import variants

    return variants


def test_variant_without_reproducer_gets_a_row_saying_so(variants_module):
    assert variants_module.reproducer_rows("pla-refcount-check", []) == [
        {"variant": "pla-refcount-check", "file": None, "note": "no reproducer in corpus/"}
    ]


def test_add_keeps_the_rows_it_does_not_redo(variants_module, tmp_path):
    def row(variant, seed, found):
        return {"variant": variant, "explorer": "hypothesis", "seed": seed, "found": found}

    old = {
        "time_limit_s": 120.0, "seeds": [1], "explorers": ["hypothesis", "pct"],
        "rows": [row("mremap-no-rmap-locks", 1, False), row("lockless-walk", 1, True)],
        "exhaustive": [{"variant": "lockless-walk"}, {"variant": "mremap-no-rmap-locks"}],
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"variants": old}))
    new = {
        "time_limit_s": 120.0, "seeds": [2], "explorers": ["hypothesis"],
        "rows": [row("mremap-no-rmap-locks", 2, True)],
        "exhaustive": [{"variant": "mremap-no-rmap-locks", "again": True}],
    }  # fmt: skip
    got = variants_module.merged(new, tmp_path, ["mremap-no-rmap-locks"])
    assert got["seeds"] == [1, 2] and got["explorers"] == ["hypothesis", "pct"]
    assert [(r["variant"], r["seed"]) for r in got["rows"]] == [
        ("lockless-walk", 1), ("mremap-no-rmap-locks", 1), ("mremap-no-rmap-locks", 2),
    ]  # fmt: skip
    assert got["exhaustive"] == [
        {"variant": "lockless-walk"}, {"variant": "mremap-no-rmap-locks", "again": True},
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="--time 120"):
        variants_module.merged(new | {"time_limit_s": 60.0}, tmp_path, [])
