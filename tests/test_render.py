"""Swim-lanes: lock holds replayed from the trace, the chains side by side, and ``rmapfuzz show``
as text and as one self-contained HTML page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from rmapfuzz import Finding, LocklessWalk, Mainline, corpus, execute, explore_random
from rmapfuzz.cli import main
from rmapfuzz.engine import events as ev
from rmapfuzz.engine.locks import bitlock, rwsem, spinlock
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.render import finding_report, lanes, swimlanes


def test_lock_holds_follow_acquire_trylock_and_release():
    """A failed trylock holds nothing; a shared hold is written ``:r``."""
    page = bitlock("page#1.PG_locked", "PG_locked")
    av = rwsem("av#1.rwsem", "anon_vma->rwsem")
    ptl = spinlock("ptl(mm#1,0x10000)", "pte_lock")
    trace = [
        (0, 0, 0, "reclaim", ev.TryAcquire(page), False),
        (0, 0, 0, "reclaim", ev.TryAcquire(page), True),
        (0, 0, 0, "page_lock_anon_vma_read", ev.Acquire(av, "r"), None),
        (0, 0, 0, "page_check_address", ev.Acquire(ptl), None),
        (0, 0, 0, "reclaim", ev.Release(page), None),
        (0, 0, 0, "page_check_address", ev.Release(ptl), None),
    ]
    program = Program(1, (), (TaskProgram(0, (Op("reclaim", (1,)),)),))
    rows = [r for r in lanes(trace, program, setup_steps=0, finding=None) if r.step is not None]
    assert [r.locks for r in rows] == [
        (),
        ("page#1.PG_locked",),
        ("page#1.PG_locked", "av#1.rwsem:r"),
        ("page#1.PG_locked", "av#1.rwsem:r", "ptl(mm#1,0x10000)"),
        ("av#1.rwsem:r", "ptl(mm#1,0x10000)"),
        ("av#1.rwsem:r",),
    ]


def test_text_swimlanes_show_what_each_task_holds_after_each_step():
    """move_pages() holds mmap_sem for read around the page-table walk (mm/migrate.c)."""
    program = Program(
        2,
        (Op("mmap", (1, 0x10000, 2, 0)), Op("fault", (1, 0x10000))),
        (TaskProgram(0, (Op("move_pages", (1, 0x10000)),)), TaskProgram(1, (Op("fork", (1,)),))),
    )
    out = execute(Mainline, program)
    text = swimlanes(out.result.trace, program, setup_steps=out.result.setup_steps)
    lines = text.splitlines()
    down = next(line for line in lines if "+sys_move_pages: down_read(mm#1.mmap_sem)" in line)
    assert down.split("|")[1].split()[-1] == "[mm#1.mmap_sem:r]"
    ptl = next(line for line in lines if "+follow_page: spin_lock(ptl(" in line)
    assert "[mm#1.mmap_sem:r ptl(mm#1,0x10000)]" in ptl
    up = next(line for line in lines if "up_read(mm#1.mmap_sem)" in line)
    assert "mm#1.mmap_sem:r]" not in up
    assert any("down_write(mm#1.mmap_sem)" in line and "[mm#1.mmap_sem]" in line for line in lines)


def test_finding_report_puts_the_chains_side_by_side():
    f = Finding("torn-chain", "rmap_walk_anon() missed avc#2", step=7, task=0,
                observed=("avc#1 -> vma#1", "avc#3 -> vma#3 read as (0x1, 0x2, 0x3)"),
                real=("avc#1 -> vma#1", "avc#2 -> vma#2", "avc#3 -> vma#3"))  # fmt: skip
    lines = finding_report(f).splitlines()
    title = next(line for line in lines if "the walker saw:" in line)
    assert "the chain really was:" in title
    col = title.index("the chain really was:")
    rows = lines[lines.index(title) + 1 :]
    assert [r[col + 2 :] for r in rows] == list(f.real)
    assert [r[:col].strip() for r in rows] == [*f.observed, ""]


# ----------------------------------------------------------------- rmapfuzz show


@pytest.fixture(scope="module")
def reproducer(tmp_path_factory) -> Path:
    settings = GenSettings(max_tasks=2, max_ops_per_task=1)
    for seed in range(1, 20):
        ex = explore_random(LocklessWalk, seed=seed, settings=settings, max_examples=500)
        if ex.outcome is not None:
            repro = corpus.record("lockless-walk", {}, ex.outcome, explorer="random", seed=seed)
            return corpus.save(repro, tmp_path_factory.mktemp("corpus"))
    pytest.fail("the random explorer found no lockless-walk race in 19 seeds")


def test_show_prints_program_schedule_lanes_and_finding(reproducer: Path, capsys):
    assert main(["show", str(reproducer)]) == 0
    out = capsys.readouterr().out
    repro = corpus.load(reproducer)
    for needle in ("task 0 (cpu", "schedule: (", " step | cpu0", ">>", "FINDING",
                   repro["signature"]):  # fmt: skip
        assert needle in out


class _Tables(HTMLParser):
    """Rows of the swim-lane table: (tr attributes, [(tag, attributes, text), ...])."""

    def __init__(self) -> None:
        super().__init__()
        self.in_lanes = False
        self.rows: list[tuple[dict, list[tuple[str, dict, str]]]] = []
        self.cell: list | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("class") == "lanes":
            self.in_lanes = True
        elif self.in_lanes and tag == "tr":
            self.rows.append((a, []))
        elif self.in_lanes and tag in ("td", "th"):
            self.cell = [tag, a, ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_lanes = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1][1].append(tuple(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[2] += data


def test_show_html_writes_one_self_contained_page(reproducer: Path, tmp_path: Path, capsys):
    out = tmp_path / "race.html"
    assert main(["show", str(reproducer), "--html", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [out]
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    for external in ("<script", "<link", "src=", "http://", "https://", "@import"):
        assert external not in page
    repro = corpus.load(reproducer)
    cpus = repro["program"]["cpus"]
    parsed = _Tables()
    parsed.feed(page)
    header, *body = parsed.rows
    assert [text for _, _, text in header[1]] == ["step"] + [f"cpu{c}" for c in range(cpus)]
    for _, cells in body:
        assert sum(int(a.get("colspan", 1)) for _, a, _ in cells) == 1 + cpus
    step = repro["expected"]["finding"]["step"]
    marked = [cells for attrs, cells in body if attrs.get("class") == "finding"]
    assert len(marked) == 1 and marked[0][0][2] == f">>{step}"
    finding = corpus.replay(repro).outcome.finding
    assert f"FINDING {finding.kind}</b>" in page
    assert ("the walker saw" in page) == bool(finding.observed or finding.real)
