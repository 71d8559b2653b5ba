"""The rmapfuzz command: its JSON contract, exit statuses and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rmapfuzz.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_variants_lists_builtins_with_verdicts(capsys):
    """Every shipped variant is listed with its expected verdict; mainline must be safe."""
    code, out, _ = run(capsys, "variants", "--json")
    assert code == 0
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert rows["mainline"]["expected"] == "safe"
    for name in ("lockless-walk", "page-anon-vma-lock", "linus-2012"):
        assert rows[name]["expected"] == "buggy"
    assert set(rows["linus-2012"]["knobs"]) == {
        "require_mmap_sem", "recheck_each_phase", "own_pins_counted", "use_fault_address",
        "stack_growth_under_read",
    }


def test_fuzz_lockless_walk_finds_the_race(capsys):
    """The 2012 RFC's lockless walk is caught, exit 1, with the JSON summary last."""
    code, out, _ = run(capsys, "fuzz", "--variant", "lockless-walk", "--explorer", "random",
                       "--seed", "1", "--max-examples", "2000", "--no-save", "--json")
    assert code == 1
    s = last_json(out)
    for key in ("variant", "explorer", "seed", "found", "examples", "steps", "elapsed_s",
                "failure", "trace"):
        assert key in s
    assert s["found"] is True and s["variant"] == "lockless-walk" and s["explorer"] == "random"
    assert set(s["failure"]) >= {"kind", "message"}
    assert set(s["trace"]) >= {"ops", "steps", "preemptions", "cpus"}
    assert "FINDING" in out and "cpu0" in out and ">>" in out


def test_pct_options_reach_the_explorer_and_the_summary_names_it(capsys):
    """--explorer pct with --pct-depth/--pct-steps finds lockless-walk, the same twice; the
    summary credits pct."""
    args = ("fuzz", "--variant", "lockless-walk", "--explorer", "pct", "--pct-depth", "2",
            "--pct-steps", "40", "--seed", "1", "--max-examples", "3000", "--no-save", "--json")
    code, out, _ = run(capsys, *args)
    assert code == 1
    s = last_json(out)
    assert s["explorer"] == "pct" and s["found_by"] == "pct"
    assert s["findings"][0]["explorer"] == "pct" and "found by the pct explorer" in out
    assert s["trace"]["preemptions"] >= 1
    again = last_json(run(capsys, *args)[1])
    assert (again["trace"], again["examples"]) == (s["trace"], s["examples"])


@pytest.mark.parametrize(
    "explorer, variant, seed", [("random", "page-anon-vma-lock", "1"),
                                ("hypothesis", "lockless-walk", "1")],
)
def test_same_seed_same_trace_and_failure(capsys, tmp_path, explorer, variant, seed):
    """Determinism: two runs with one seed print identical trace/failure JSON."""
    args = ("fuzz", "--explorer", explorer, "--variant", variant, "--seed", seed,
            "--max-examples", "3000", "--corpus", str(tmp_path), "--json")
    a = last_json(run(capsys, *args)[1])
    b = last_json(run(capsys, *args)[1])
    assert a["found"]
    assert (a["trace"], a["failure"]) == (b["trace"], b["failure"])


def test_hypothesis_explorer_shrinks_and_saves(capsys, tmp_path):
    """The default explorer shrinks the lockless-walk race to a small trace and saves it."""
    code, out, _ = run(capsys, "fuzz", "--variant", "lockless-walk", "--seed", "3",
                       "--max-examples", "3000", "--corpus", str(tmp_path), "--json")
    assert code == 1
    s = last_json(out)
    assert s["explorer"] == "hypothesis"
    assert s["trace"]["ops"] <= 5 and s["trace"]["preemptions"] <= 3
    assert s["saved"] and s["saved"].startswith(str(tmp_path))
    assert run(capsys, "replay", s["saved"])[0] == 0


@pytest.mark.parametrize("explorer", ["random", "hypothesis"])
def test_fuzz_mainline_reports_no_finding_with_counts(capsys, tmp_path, explorer):
    """Mainline stays clean and says how much it explored."""
    code, out, _ = run(capsys, "fuzz", "--variant", "mainline", "--seed", "1", "--explorer",
                       explorer, "--max-examples", "150", "--corpus", str(tmp_path), "--json")
    assert code == 0
    s = last_json(out)
    assert s["found"] is False and s["failure"] is None and s["trace"] is None
    # Hypothesis may run a few examples beyond max_examples (invalid ones do not count)
    assert 150 <= s["examples"] <= 200 and s["steps"] > 150 * 100
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, needle",
    [
        (("fuzz", "--variant", "no-such-variant"), "unknown variant"),
        (("fuzz", "--variant", "missing/file.py:Patch"), "does not exist"),
        (("fuzz", "--cpus", "0"), "--cpus"),
        (("fuzz", "--cpus", "9"), "--cpus"),
        (("fuzz", "--time", "soon"), "--time"),
        (("fuzz", "--max-examples", "0"), "--max-examples"),
        (("fuzz", "--explorer", "pct", "--pct-depth", "0"), "--pct-depth"),
        (("fuzz", "--explorer", "pct", "--pct-depth", "9"), "--pct-depth"),
        (("fuzz", "--explorer", "pct", "--pct-steps", "0"), "--pct-steps"),
        (("fuzz", "--explorer", "random", "--pct-depth", "3"), "--pct-depth"),
        (("fuzz", "--pct-steps", "5"), "--pct-steps"),
        (("fuzz", "--explorer", "nope"), "invalid choice"),
        (("fuzz", "--variant", "linus-2012", "--knob", "nonsense=yes"), "no knob"),
        (("fuzz", "--variant", "linus-2012", "--knob", "require_mmap_sem"), "name=value"),
        (("fuzz", "--bogus"), "unrecognized"),
        (("fuzz", "--variant", "rmapfuzz.kernel.variants:Nope"), "no class"),
        (("fuzz", "--variant", "rmapfuzz.errors:UsageError"), "does not derive"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    """Bad input: exit 2, one line on stderr naming the problem, nothing on stdout."""
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_user_variant_file(capsys, tmp_path):
    """A user's variant in their own file, named as file.py:Class, runs like a built-in."""
    f = tmp_path / "my_patch.py"
    f.write_text(textwrap.dedent("""
        from rmapfuzz import LocklessWalk

        class MyPatch(LocklessWalk):
            '''The RFC again, under another name.'''
    """))
    code, out, _ = run(capsys, "fuzz", "--variant", f"{f}:MyPatch", "--seed", "1",
                       "--max-examples", "2000", "--corpus", str(tmp_path / "c"), "--json")
    assert code == 1
    assert last_json(out)["variant"] == f"{f}:MyPatch"


def test_broken_variant_file_is_one_line(capsys, tmp_path):
    """A variant file that raises on import is reported in one line, exit 2."""
    f = tmp_path / "broken.py"
    f.write_text("raise RuntimeError('oops')\n")
    code, _, err = run(capsys, "fuzz", "--variant", f"{f}:X")
    assert code == 2 and "failed to load" in err and len(err.strip().splitlines()) == 1


def test_module_entry_point_no_traceback():
    """python -m rmapfuzz: a bad option exits 2 without a traceback."""
    p = subprocess.run([sys.executable, "-m", "rmapfuzz", "fuzz", "--cpus", "0"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
