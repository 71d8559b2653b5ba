"""The pytest plugin: ``pytest corpus/`` replays one item per reproducer; options reach tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rmapfuzz import corpus

pytest_plugins = ["pytester"]

REPO_CORPUS = Path(__file__).resolve().parent.parent / "corpus"
SHIPPED = sorted(REPO_CORPUS.glob("*.json"))


@pytest.fixture
def corpus_dir(pytester: pytest.Pytester) -> Path:
    """A copy of the shipped corpus, beside a JSON file that is not a reproducer."""
    d = pytester.path / "corpus"
    d.mkdir()
    for f in SHIPPED:
        shutil.copy(f, d)
    (d / "package.json").write_text(json.dumps({"name": "not-a-reproducer", "schema": 3}))
    return d


def test_the_corpus_is_a_regression_suite_with_one_item_per_file(
    pytester: pytest.Pytester, corpus_dir: Path
):
    assert len(SHIPPED) >= 6
    result = pytester.runpytest("corpus", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(SHIPPED))
    collected = pytester.runpytest("corpus", "--collect-only", "-q", "-p", "no:cacheprovider")
    items = [line for line in collected.outlines if "::" in line]
    assert sorted(items) == sorted(f"corpus/{f.name}::replay" for f in SHIPPED)


def test_the_corpus_runs_under_xdist(pytester: pytest.Pytester, corpus_dir: Path):
    result = pytester.runpytest_subprocess("corpus", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(SHIPPED))


def test_a_reproducer_that_differs_fails_with_the_differences_and_the_lanes(
    pytester: pytest.Pytester, corpus_dir: Path
):
    src = next(f for f in SHIPPED if corpus.load(f)["expected"]["finding"] is not None)
    repro = corpus.load(src)
    repro["expected"]["finding"]["message"] = "nothing to see here"
    (corpus_dir / src.name).write_text(corpus.dumps(repro))
    result = pytester.runpytest("corpus", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(SHIPPED) - 1, failed=1)
    result.stdout.fnmatch_lines([
        f"*{src.name} (*) does not reproduce:",
        "*finding: recorded * nothing to see here; replayed *",
        "*step | cpu0*",
        ">>*",
    ])  # fmt: skip


def test_a_damaged_reproducer_fails_instead_of_vanishing(
    pytester: pytest.Pytester, corpus_dir: Path
):
    victim = corpus_dir / SHIPPED[0].name
    victim.write_text(victim.read_text()[:200])
    result = pytester.runpytest("corpus", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(SHIPPED) - 1, failed=1)
    result.stdout.fnmatch_lines([f"*{victim}: truncated*"])


def test_options_reach_tests_through_the_fixture(pytester: pytest.Pytester):
    pytester.makepyfile(
        """
        from pathlib import Path

        def test_defaults(rmapfuzz_options, request):
            if request.config.getoption("rmapfuzz_save"):
                o = rmapfuzz_options
                assert (o.variant, o.corpus, o.save, o.profile) == (
                    "lockless-walk", Path("found"), True, "fuzz")
            else:
                o = rmapfuzz_options
                assert (o.variant, o.corpus, o.save, o.profile) == (
                    None, Path("corpus"), False, "ci")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest(
        "-p", "no:cacheprovider", "--rmapfuzz-variant", "lockless-walk", "--rmapfuzz-save",
        "--rmapfuzz-corpus", "found", "--rmapfuzz-profile", "fuzz",
    ).assert_outcomes(passed=1)  # fmt: skip
    bad = pytester.runpytest("-p", "no:cacheprovider", "--rmapfuzz-profile", "forever")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_help_lists_the_rmapfuzz_group(pytester: pytest.Pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["rmapfuzz*", "*--rmapfuzz-corpus=DIR*", "*--rmapfuzz-save*",
                                 "*--rmapfuzz-variant=SPEC*", "*--rmapfuzz-profile*"])  # fmt: skip
