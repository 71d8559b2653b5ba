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
    assert ex["pla-refcount-check"]["file"] is None  # no shipped reproducer
    assert "| prepare-nolock |" in (out / "variants.md").read_text()
    assert sorted(os.listdir(out)) == ["results.json", "variants.md"]
