"""The rmapfuzz pytest plugin (entry point ``pytest11``): corpus files as tests, and options.

* Every ``.json`` file whose top-level object has ``"schema"`` and ``"rmapfuzz"`` keys is one
  test item that replays it, so ``pytest corpus/`` is a regression suite; other JSON files are
  ignored.  A failing item shows what differs and the swim-lanes of the replay.
* Options (group ``rmapfuzz``): ``--rmapfuzz-corpus DIR``, ``--rmapfuzz-save`` (machines save
  their findings there), ``--rmapfuzz-variant SPEC`` (the variant of the ``rmapfuzz_machine``
  fixture), ``--rmapfuzz-profile {ci,fuzz}`` (examples per machine test: 300 or 100 000), read
  by tests through the :func:`rmapfuzz_options` fixture.

Importing this module imports nothing of rmapfuzz and changes nothing: the model is loaded only
when a corpus file is collected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

_SAVED_DEFAULTS = pytest.StashKey[Any]()


@attrs.frozen
class RmapfuzzOptions:
    """The plugin's command-line options, as tests see them."""

    variant: str | None
    corpus: Path
    save: bool
    profile: str


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rmapfuzz", "rmapfuzz: rmap race fuzzing")
    group.addoption(
        "--rmapfuzz-corpus",
        default="corpus",
        metavar="DIR",
        help="directory of reproducers, where new findings are saved (default corpus)",
    )
    group.addoption(
        "--rmapfuzz-save", action="store_true", help="save new findings to the corpus directory"
    )
    group.addoption(
        "--rmapfuzz-variant",
        default=None,
        metavar="SPEC",
        help="variant to fuzz: built-in name, file.py:Class or module:Class",
    )
    group.addoption("--rmapfuzz-profile", default="ci", choices=("ci", "fuzz"),
                    help="Hypothesis profile: ci (short, the default) or fuzz (long)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Machines made by ``RmapMachine.for_variant`` follow --rmapfuzz-profile/-save.  Nothing
    is imported unless one of them is given."""
    profile = config.getoption("rmapfuzz_profile")
    save = config.getoption("rmapfuzz_save")
    if profile != "ci" or save:
        from rmapfuzz.explore import machine

        config.stash[_SAVED_DEFAULTS] = attrs.evolve(machine.defaults)
        machine.defaults.profile = profile
        if save:
            machine.defaults.corpus_dir = Path(config.getoption("rmapfuzz_corpus"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put the machine defaults back (an in-process pytester run must not leak its options)."""
    saved = config.stash.get(_SAVED_DEFAULTS, None)
    if saved is not None:
        from rmapfuzz.explore import machine

        machine.defaults.profile = saved.profile
        machine.defaults.corpus_dir = saved.corpus_dir


@pytest.fixture
def rmapfuzz_machine(rmapfuzz_options: RmapfuzzOptions) -> Any:
    """The state machine class for ``--rmapfuzz-variant`` (default mainline); a test calls
    ``rmapfuzz_machine.run_as_test()``."""
    from rmapfuzz.explore.machine import RmapMachine
    from rmapfuzz.kernel.variants import load_variant, variant_label

    spec = rmapfuzz_options.variant or "mainline"
    variant = load_variant(spec)
    return RmapMachine.for_variant(variant, label=variant_label(variant, spec))


@pytest.fixture
def rmapfuzz_options(request: pytest.FixtureRequest) -> RmapfuzzOptions:
    """The values of the ``--rmapfuzz-*`` options."""
    opt = request.config.getoption
    return RmapfuzzOptions(
        variant=opt("rmapfuzz_variant"),
        corpus=Path(opt("rmapfuzz_corpus")),
        save=opt("rmapfuzz_save"),
        profile=opt("rmapfuzz_profile"),
    )


def _is_reproducer(path: Path) -> bool:
    """A reproducer by its keys; a file too damaged to decode but naming both keys is one as
    well, so that a corrupted corpus file fails instead of vanishing from the suite."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return '"schema"' in text and '"rmapfuzz"' in text
    return isinstance(data, dict) and "schema" in data and "rmapfuzz" in data


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".json" and _is_reproducer(file_path):
        return ReproducerFile.from_parent(parent, path=file_path)
    return None


class ReproducerFile(pytest.File):
    def collect(self) -> list[pytest.Item]:
        return [ReproducerItem.from_parent(self, name="replay")]


class ReplayFailed(Exception):
    """A reproducer did not give its recorded outcome."""


class ReproducerItem(pytest.Item):
    def runtest(self) -> None:
        from rmapfuzz import corpus

        repro = corpus.load(self.path)
        report = corpus.replay(repro)
        if not report.ok:
            lines = [f"{self.path.name} ({repro['signature']}) does not reproduce:"]
            lines += [f"  {d}" for d in report.differences]
            if report.outcome is not None:
                from rmapfuzz.render import finding_report, swimlanes

                r = report.outcome.result
                f = report.outcome.finding
                lines += [
                    "",
                    "the replay:",
                    swimlanes(
                        r.trace, report.outcome.program, setup_steps=r.setup_steps, finding=f
                    ),
                ]
                lines += ["", finding_report(f) if f else "no finding"]
            raise ReplayFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from rmapfuzz.errors import RmapfuzzError

        if isinstance(excinfo.value, (ReplayFailed, RmapfuzzError)):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"rmapfuzz replay {self.path.name}"
