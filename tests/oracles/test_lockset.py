"""The lockset check (rmapfuzz/oracles/lockset.py, rmap-spec 1.8 / I15): advisory by default,
a finding where the variant asks; exemptions for unpublished objects and dead mms; silent on
mainline."""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.explore.generate import GenSettings
from rmapfuzz.explore.random import run_example
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import PAGE_SIZE, VM_WRITE, Present, Vma
from rmapfuzz.kernel.variants import BUILTIN, Mainline
from rmapfuzz.program import Op, Program, TaskProgram
from rmapfuzz.runner import execute

SETUP = (Op("mmap", (1, 0x10000, 2, 0)), Op("fault", (1, 0x10000)))


class ZapWithoutPtl(Mainline):
    """munmap's zap_pte_range() clears ptes without the PTL."""

    name = "test-zap-without-ptl"

    def zap_pte_range(self, mm, addr: int, end: int) -> Gen:  # type: ignore[no-untyped-def]
        pt = yield from self.pte_lockptr(mm, addr)
        for a in range(addr, end, PAGE_SIZE):
            pte = yield ev.Load(pt, "ptes", a)
            if type(pte) is Present:
                yield ev.Store(pt, "ptes", None, a)
                yield from self.page_remove_rmap(pte.page)


class ZapWithoutPtlFinding(ZapWithoutPtl):
    lockset_findings = True


class RmapAfterSetPte(Mainline):
    """do_anonymous_page() publishes the pte before page_add_new_anon_rmap(): the page is no
    longer "newly allocated", so page->mapping then needs the page lock."""

    name = "test-rmap-after-set-pte"

    def do_anonymous_page(self, mm, vma: Vma, address: int) -> Gen:  # type: ignore[no-untyped-def]
        yield from self.anon_vma_prepare(vma)
        page = self.alloc_page()
        yield ev.Alloc(page)
        pt = yield from self.pte_lockptr(mm, address)
        yield ev.Acquire(pt.ptl)
        yield ev.Store(pt, "ptes", Present(page, bool(vma.vm_flags & VM_WRITE)), address)
        yield from self.page_add_new_anon_rmap(page, vma, address)
        yield ev.Release(pt.ptl)
        return 0


def _munmap_program() -> Program:
    return Program(cpus=1, setup=SETUP, tasks=(TaskProgram(0, (Op("munmap", (1, 0x10000, 1)),)),))


def test_pte_written_without_ptl_is_advisory():
    out = execute(ZapWithoutPtl, _munmap_program(), [])
    assert out.finding is None
    assert len(out.advisories) == 1
    line = out.advisories[0]
    assert line.startswith(
        "lockset: pt(mm#1,0x10000).ptes written without ptl(mm#1,0x10000) at step "
    ), line
    assert line.endswith("(zap_pte_range, task 0 munmap(1, 0x10000, 1))"), line
    step = int(line.split("at step ")[1].split()[0])
    assert repr(out.result.trace[step][4]) == "W pt(mm#1,0x10000).ptes[0x10000] = None"


def test_lockset_findings_makes_the_first_violation_a_finding():
    out = execute(ZapWithoutPtlFinding, _munmap_program(), [])
    f = out.finding
    assert f is not None and f.kind == "lockset"
    assert f.message == (
        "pt(mm#1,0x10000).ptes written by zap_pte_range() without ptl(mm#1,0x10000) "
        "(munmap(1, 0x10000, 1))"
    )


def test_the_same_write_with_the_lock_is_clean():
    out = execute(Mainline, _munmap_program(), [])
    assert out.finding is None and out.advisories == []


def test_newly_allocated_page_is_exempt_until_published():
    """page_add_new_anon_rmap() writes ->mapping and ->index without the page lock: fine for a
    page nobody else can see yet (mainline), not once its pte is set."""
    prog = Program(cpus=1, setup=(Op("mmap", (1, 0x10000, 2, 0)),), tasks=(
        TaskProgram(0, (Op("fault", (1, 0x10000)),)),))  # fmt: skip
    assert execute(Mainline, prog, []).advisories == []
    out = execute(RmapAfterSetPte, prog, [])
    assert out.finding is None
    assert [a.split(" at step")[0] for a in out.advisories] == [
        "lockset: page#1.mapping written without page#1.PG_locked",
        "lockset: page#1.index written without page#1.PG_locked",
    ]


def test_exit_mmap_without_mmap_sem_is_exempt():
    """exit_mmap() unlinks anon_vmas and changes vma chains with no mmap_sem: mm_users is 0."""
    prog = Program(
        cpus=1,
        setup=(*SETUP, Op("fork", (1,))),
        tasks=(TaskProgram(0, (Op("exit", (2,)), Op("exit", (1,)))),),
    )
    out = execute(Mainline, prog, [])
    assert out.finding is None and out.advisories == []


def test_mainline_random_runs_have_no_lockset_warnings():
    """The protection summary holds on mainline: every write of random programs under random
    schedules has its locks (if not, the table or the model is wrong)."""
    for i in range(150):
        out = run_example(Mainline, 11, i, GenSettings())
        assert out.advisories == [], (i, out.advisories)


def test_variants_that_break_the_summary_are_reported():
    """B4's per-anon_vma lock: vma_adjust() rewrites vm_start of a child's vma under the child's
    own rwsem, not the root's."""
    prog = Program(
        cpus=1,
        setup=(*SETUP, Op("fork", (1,))),
        tasks=(TaskProgram(0, (Op("mprotect", (2, 0x10000, 1, 0)),)),),
    )
    out = execute(BUILTIN["per-anon-vma-lock-adjust"], prog, [])
    assert any(
        a.startswith("lockset: vma#2.vm_start written without av#1.rwsem (write) and")
        and "(vma_adjust, task 0 mprotect(2, 0x10000, 1, 0))" in a
        for a in out.advisories
    ), out.advisories
