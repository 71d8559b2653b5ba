"""docs/linus-2012.md must not go stale silently.

The verdict on Linus's 2012 special case rests on the reproducers in docs/linus-2012/: each must
still replay its recorded outcome byte for byte (a model change that alters one of those runs
fails here, and the reproducer and the doc are regenerated with the command the doc gives), each
must be cited in the doc with its replay command, and the doc must cite no file that is gone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rmapfuzz import corpus

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "linus-2012.md"
DIR = ROOT / "docs" / "linus-2012"
FILES = sorted(DIR.glob("*.json"))
CITED = re.compile(r"docs/linus-2012/([A-Za-z0-9._-]+\.json)")


def test_the_verdict_has_reproducers() -> None:
    assert DOC.is_file()
    assert FILES, "docs/linus-2012/ has no reproducer"
    found = [p for p in FILES if corpus.load(p)["expected"]["finding"] is not None]
    assert found, "no reproducer of a breaking knob setting"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_reproducer_replays_its_recorded_outcome(path: Path) -> None:
    repro = corpus.load(path)
    assert repro["variant"] == "linus-2012"
    report = corpus.replay(repro)
    assert report.ok, (
        f"{path.relative_to(ROOT)} no longer reproduces (regenerate it and update "
        f"docs/linus-2012.md): " + "; ".join(report.differences)
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_doc_cites_reproducer_with_its_replay_command(path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"rmapfuzz replay docs/linus-2012/{path.name}" in text, (
        f"docs/linus-2012.md does not give the replay command of {path.name}"
    )


def test_doc_cites_no_missing_reproducer() -> None:
    cited = set(CITED.findall(DOC.read_text(encoding="utf-8")))
    missing = sorted(name for name in cited if not (DIR / name).is_file())
    assert not missing, f"docs/linus-2012.md cites reproducers that do not exist: {missing}"


def test_doc_states_each_recorded_finding() -> None:
    """The finding the doc describes for a file is the one the file records."""
    text = DOC.read_text(encoding="utf-8")
    for path in FILES:
        f = corpus.load(path)["expected"]["finding"]
        if f is not None:
            assert f["message"] in text, f"{path.name}: its finding message is not in the doc"


def test_replay_command_exits_0() -> None:
    """What the doc tells the reader to run: `rmapfuzz replay docs/linus-2012/*.json`."""
    proc = subprocess.run(
        [sys.executable, "-m", "rmapfuzz", "replay", *map(str, FILES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
