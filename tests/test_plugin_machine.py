"""The pytest side of the state machine (issue 3, item 6): the README's three-line user test,
saving findings, the rmapfuzz_machine fixture and xdist.

The inner runs pass ``--hypothesis-seed`` so that each is one known exploration (shrinking a
finding takes 2-20 s depending on the seed); they run in-process, so the globals their
configuration sets are restored after each test."""

from __future__ import annotations

import attrs
import hypothesis.core
import pytest

from rmapfuzz import corpus
from rmapfuzz.cli import main
from rmapfuzz.explore import machine as machine_mod

pytest_plugins = ["pytester"]

SEED = "--hypothesis-seed=1"

THREE_LINES = {
    "lockless": (
        "from rmapfuzz import LocklessWalk, RmapMachine\n"
        "\n"
        "TestLocklessWalk = RmapMachine.for_variant(LocklessWalk).TestCase\n"
    ),
    "mainline": (
        "from rmapfuzz import Mainline, RmapMachine\n"
        "\n"
        "TestMainline = RmapMachine.for_variant(Mainline).TestCase\n"
    ),
}


@pytest.fixture(autouse=True)
def _restore_globals():
    """pytest_configure of the in-process runs sets machine defaults and Hypothesis's seed."""
    defaults = attrs.evolve(machine_mod.defaults)
    force_seed = hypothesis.core.global_force_seed
    yield
    machine_mod.defaults.profile = defaults.profile
    machine_mod.defaults.corpus_dir = defaults.corpus_dir
    hypothesis.core.global_force_seed = force_seed


def test_three_line_user_test_finds_the_lockless_walk_race(pytester: pytest.Pytester):
    """The README's three lines make a failing test showing the swim-lanes and the finding."""
    pytester.makepyfile(test_user=THREE_LINES["lockless"])
    result = pytester.runpytest(SEED, "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "TestLocklessWalk" in out
    # each on its own: the order of the report's parts varies between Hypothesis versions
    for pattern in ("*Finding_*: lockless-walk: *", "*step | cpu0 * | cpu1*", "E *>>*",
                    "E *FINDING *"):  # fmt: skip
        result.stdout.fnmatch_lines([pattern])
    result.stdout.no_fnmatch_line("E *saved: rmapfuzz replay *")  # saving is off by default


def test_three_line_user_test_passes_for_mainline(pytester: pytest.Pytester):
    """The same three lines for mainline pass (300 examples under the default ci profile)."""
    pytester.makepyfile(test_user=THREE_LINES["mainline"])
    result = pytester.runpytest(SEED, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_save_option_writes_the_finding_as_a_reproducer(pytester: pytest.Pytester):
    """--rmapfuzz-save --rmapfuzz-corpus DIR: the failing machine test writes replayable files."""
    pytester.makepyfile(test_user=THREE_LINES["lockless"])
    out_dir = pytester.path / "found"
    result = pytester.runpytest(SEED, "-p", "no:cacheprovider", "--rmapfuzz-save",
                                "--rmapfuzz-corpus", str(out_dir))  # fmt: skip
    result.assert_outcomes(failed=1)
    files = sorted(out_dir.glob("*.json"))
    assert files, result.stdout.str()[-3000:]
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]
    for f in files:
        repro = corpus.load(f)
        assert repro["variant"] == "lockless-walk" and repro["explorer"] == "hypothesis"
        assert repro["expected"]["finding"] is not None
    result.stdout.fnmatch_lines([f"E *saved: rmapfuzz replay {out_dir}/*.json"])
    assert main(["replay", *map(str, files)]) == 0


FIXTURE_TEST = """
def test_machine(rmapfuzz_machine):
    rmapfuzz_machine.run_as_test()
"""


def test_fixture_runs_the_variant_given_on_the_command_line(pytester: pytest.Pytester):
    """rmapfuzz_machine with --rmapfuzz-variant lockless-walk runs that variant and fails."""
    pytester.makepyfile(test_fixture=FIXTURE_TEST)
    result = pytester.runpytest(SEED, "-p", "no:cacheprovider",
                                "--rmapfuzz-variant", "lockless-walk")  # fmt: skip
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Finding_*: lockless-walk: *", "E *FINDING *"])


def test_fixture_defaults_to_mainline_and_passes(pytester: pytest.Pytester):
    """rmapfuzz_machine without --rmapfuzz-variant is mainline's machine, and passes."""
    pytester.makepyfile(
        test_fixture=FIXTURE_TEST + "\n\ndef test_label(rmapfuzz_machine):\n"
        "    assert rmapfuzz_machine.variant_label == 'mainline'\n"
    )
    result = pytester.runpytest(SEED, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_machine_tests_run_under_xdist(pytester: pytest.Pytester):
    """pytest -n 2 on the lockless-walk and mainline three-line tests: 1 failed, 1 passed."""
    pytester.makepyfile(
        test_lockless=THREE_LINES["lockless"], test_mainline=THREE_LINES["mainline"]
    )
    result = pytester.runpytest_subprocess(SEED, "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_lockless.py::TestLocklessWalk*"])
