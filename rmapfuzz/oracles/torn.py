"""The torn-chain oracle (DESIGN.md section 4).

A walk starts at its ``walk-begin`` mark (step s0) and ends at ``walk-end`` (s1); it observes
the sequence of (avc, vma, vm_start, vm_end, vm_pgoff) it visited.  It is torn when

1. an avc that was in the walked anon_vma's tree and covered the page's index at every step in
   [s0, s1] was not visited (a missed mapping) -- checked only for walks that ran to the end;
2. a visited avc was not in that tree at any step in [s0, s1] (a stale or foreign node);
3. the walker read the tree while another task was rebalancing it (a state no locked walker
   can see); reading freed memory is already a use-after-free finding of the engine;
4. the vma fields it read for vma_address() never existed together at one instant.

The oracle only reads the model; it never changes it.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import FindingError
from rmapfuzz.kernel.objects import AnonVmaChain, IntervalTree, Vma

_GEOMETRY = ("vm_start", "vm_end", "vm_pgoff")


def _covering(tree: IntervalTree, pgoff: int) -> set[AnonVmaChain]:
    return {n for n in tree.nodes if n.key[0] <= pgoff <= n.key[1]}


def _geom(vma: Vma) -> tuple[int, int, int]:
    return (vma.vm_start, vma.vm_end, vma.vm_pgoff)


def describe_avc(avc: AnonVmaChain) -> str:
    vma = avc.vma
    pid = vma.vm_mm.oid if vma is not None and vma.vm_mm is not None else "?"
    where = vma.describe() if vma is not None else "?"
    return f"{avc.short()} -> {where} mm#{pid}"


class _Active:
    __slots__ = ("walk", "tid", "s0", "always", "ever", "visited", "pending_visit")

    def __init__(self, walk: Any, tid: int, s0: int) -> None:
        self.walk = walk
        self.tid = tid
        self.s0 = s0
        self.always = _covering(walk.anon_vma.rb_root, walk.pgoff)
        self.ever = set(walk.anon_vma.rb_root.nodes)
        self.visited: list[tuple[AnonVmaChain, Vma, tuple[int, int, int] | None]] = []
        self.pending_visit: tuple[AnonVmaChain, Vma] | None = None


class TornChainOracle:
    #: the only events on_step looks at
    step_events = frozenset({ev.Store, ev.Alloc, ev.Load})

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.active: dict[int, _Active] = {}
        self.geom_hist: dict[Vma, set[tuple[int, int, int]]] = {}
        self.busy_by: dict[IntervalTree, tuple[int, str]] = {}

    # ---------------------------------------------------------------- marks

    def on_mark(self, eng: Any, t: Any, mark: ev.Mark) -> None:
        kind = mark.kind
        if kind == "walk-begin":
            if not self.active:
                self.geom_hist = {v: {_geom(v)} for v in self.kernel.live_vmas()}
            self.active[t.tid] = _Active(mark.data, t.tid, len(eng.trace))
            return
        aw = self.active.get(t.tid)
        if aw is None:
            return
        if kind == "walk-visit":
            avc, vma = mark.data
            aw.visited.append((avc, vma, None))
            if avc not in aw.ever or avc.anon_vma is not aw.walk.anon_vma:
                raise self._torn(
                    eng,
                    aw,
                    f"{aw.walk.fn}() visited {describe_avc(avc)}, which was not in "
                    f"{aw.walk.anon_vma.short()}'s chain at any point of the walk "
                    f"(a stale or foreign node)",
                )
        elif kind == "vma-geometry":
            vma, start, end, pgoff = mark.data
            if aw.visited and aw.visited[-1][1] is vma and aw.visited[-1][2] is None:
                avc, _, _ = aw.visited[-1]
                aw.visited[-1] = (avc, vma, (start, end, pgoff))
            seen = self.geom_hist.get(vma, {_geom(vma)})
            if (start, end, pgoff) not in seen:
                real = ", ".join(f"({s:#x}, {e:#x}, {p:#x})" for s, e, p in sorted(seen))
                raise self._torn(
                    eng,
                    aw,
                    f"{aw.walk.fn}() read {vma.short()} as vm_start={start:#x} vm_end={end:#x} "
                    f"vm_pgoff={pgoff:#x}, a combination that never existed (it was {real}): "
                    f"vma_address() of {aw.walk.page.short()} is wrong",
                )
        elif kind == "walk-end":
            del self.active[t.tid]
            complete = mark.data
            if complete:
                seen = {a for a, _, _ in aw.visited}
                missed = sorted(aw.always - seen, key=lambda a: a.oid)
                if missed:
                    aw_ = aw
                    raise self._torn(
                        eng,
                        aw_,
                        f"{aw.walk.fn}() missed {describe_avc(missed[0])}: it was in "
                        f"{aw.walk.anon_vma.short()}'s chain and covered index "
                        f"{aw.walk.pgoff:#x} of {aw.walk.page.short()} throughout the walk",
                    )

    # ---------------------------------------------------------------- steps

    def on_step(self, eng: Any, index: int, t: Any, e: Any, result: Any) -> None:
        cls = type(e)
        if cls is ev.Store:
            obj = e.obj
            tobj = type(obj)
            if tobj is IntervalTree:
                if e.field == "busy":
                    if e.value is None:
                        self.busy_by.pop(obj, None)
                    else:
                        self.busy_by[obj] = (t.tid, t.pending_fn, t.op_label)
                if self.active:
                    for aw in self.active.values():
                        if aw.walk.anon_vma.rb_root is obj:
                            aw.always &= _covering(obj, aw.walk.pgoff)
                            aw.ever.update(obj.nodes)
            elif tobj is Vma and e.field in _GEOMETRY and self.active:
                self.geom_hist.setdefault(obj, set()).add(_geom(obj))
        elif cls is ev.Alloc and self.active and type(e.obj) is Vma:
            self.geom_hist[e.obj] = {_geom(e.obj)}
        elif (
            cls is ev.Load
            and self.active
            and type(e.obj) is IntervalTree
            and t.tid in self.active
            and e.obj.busy is not None
        ):
            writer = self.busy_by.get(e.obj)
            if writer is not None and writer[0] != t.tid:
                aw = self.active[t.tid]
                wt, wfn, wop = writer
                raise self._torn(
                    eng,
                    aw,
                    f"{aw.walk.fn}() read {e.obj.short()} while task {wt} ({wop}) was in "
                    f"{wfn}() for {describe_avc(e.obj.busy)}: a tree under rebalancing, which "
                    f"no walker holding the root anon_vma lock can see",
                )

    # -------------------------------------------------------------- helpers

    def _torn(self, eng: Any, aw: _Active, message: str) -> FindingError:
        observed = tuple(
            describe_avc(a) + (f" read as ({g[0]:#x}, {g[1]:#x}, {g[2]:#x})" if g else "")
            for a, _, g in aw.visited
        )
        real = tuple(describe_avc(a) for a in aw.walk.anon_vma.rb_root.nodes)
        return FindingError("torn-chain", message, task=aw.tid, observed=observed, real=real)
