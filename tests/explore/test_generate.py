"""The program generator: deterministic per seed, and a variant's focus weights, never forces."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rmapfuzz.explore import generate as generate_module
from rmapfuzz.explore.generate import (
    DEFAULT_CPUS,
    FOCUS_WEIGHT,
    GenSettings,
    cpus_for,
    for_variant,
    generate,
    menu,
)
from rmapfuzz.explore.random import RngChoices, run_example
from rmapfuzz.kernel.syscalls import OPS
from rmapfuzz.kernel.variants import BUILTIN, Mainline
from rmapfuzz.program import Program


def programs(settings: GenSettings, n: int = 400) -> list[Program]:
    return [generate(RngChoices(random.Random(i)), settings) for i in range(n)]


def task_ops(progs: list[Program]) -> Counter[str]:
    return Counter(op.name for p in progs for t in p.tasks for op in t.ops)


def test_same_seed_same_program():
    s = GenSettings(focus=("mremap", "migrate"))
    assert programs(s, 50) == programs(s, 50)


def test_no_focus_and_empty_focus_draw_the_same_programs():
    """None (the variant's, here mainline's empty focus) and () are the generator of old."""
    assert programs(GenSettings(), 100) == programs(GenSettings(focus=()), 100)


def test_menu_weights_only_what_it_has():
    assert menu(("a", "b"), ("b", "z")) == ("a", "b") + ("b",) * FOCUS_WEIGHT
    assert menu(("a", "b"), ()) == ("a", "b")


@pytest.mark.parametrize("op", ["mremap", "exec_shift", "exit", "munmap"])
def test_focus_weights_its_operation(op):
    plain = task_ops(programs(GenSettings()))[op]
    focused = task_ops(programs(GenSettings(focus=(op,))))[op]
    assert focused > 2 * plain, (plain, focused)


def test_focus_never_forces():
    """With a focus, programs without the focused operation are still drawn, and every
    operation of the unfocused menus still appears."""
    progs = programs(GenSettings(focus=("mremap",)))
    assert any(all(op.name != "mremap" for t in p.tasks for op in t.ops) for p in progs)
    assert set(task_ops(programs(GenSettings()))) <= set(task_ops(progs))


def test_focus_builds_the_setup_its_operations_need():
    def share(settings: GenSettings, pred) -> float:
        progs = programs(settings)
        return sum(1 for p in progs if any(pred(op) for op in p.setup)) / len(progs)

    def temp_stack(op):
        return op.name == "mmap" and op.args[3] == 2

    def moved(op):
        return op.name == "mremap"

    assert share(GenSettings(focus=("exec_shift",)), temp_stack) > 2 * share(
        GenSettings(), temp_stack
    )
    assert share(GenSettings(focus=("mremap",)), moved) > 2 * share(GenSettings(), moved)


def test_big_focus_asks_for_more_tasks():
    def mean_tasks(settings: GenSettings) -> float:
        progs = programs(settings)
        return sum(len(p.tasks) for p in progs) / len(progs)

    assert mean_tasks(GenSettings(focus=("reclaim", "exit", "fork"))) > mean_tasks(GenSettings())


def test_for_variant_takes_the_variants_unless_told():
    v = BUILTIN["mremap-no-rmap-locks"]
    assert for_variant(GenSettings(), v).focus == v.focus
    assert for_variant(GenSettings(focus=()), v).focus == ()
    assert for_variant(GenSettings(), Mainline).focus == ()


def test_builtin_foci_name_operations():
    names = set(OPS) | {"fault_below"}
    for cls in BUILTIN.values():
        assert set(cls.focus) <= names, (cls.name, cls.focus)
    assert Mainline.focus == ()


def test_random_example_replays():
    a = run_example(BUILTIN["temp-stack-migration"], 1, 7, GenSettings())
    b = run_example(BUILTIN["temp-stack-migration"], 1, 7, GenSettings())
    assert a.program == b.program and a.decisions == b.decisions
    assert [repr(e) for e in a.result.trace] == [repr(e) for e in b.result.trace]


def _meets(p: Program) -> bool:
    """A walker takes a page a child faulted, and another task ends that child."""
    owner: dict[int, int] = {}
    faulted: dict[int, set[int]] = {}
    next_pid = 2
    for op in p.setup:
        if op.name == "fault" and op.args[1] not in faulted.setdefault(op.args[0], set()):
            faulted[op.args[0]].add(op.args[1])
            owner[len(owner) + 1] = op.args[0]
        elif op.name == "fork":
            faulted[next_pid] = set(faulted.get(op.args[0], ()))
            next_pid += 1
    for i, t in enumerate(p.tasks):
        for op in t.ops:
            if op.name in ("migrate", "reclaim") and owner.get(op.args[0], 1) != 1:
                child = owner[op.args[0]]
                if any(
                    o.name == "exit" and o.args[0] == child
                    for j, u in enumerate(p.tasks)
                    if j != i
                    for o in u.ops
                ):
                    return True
    return False


def test_tasks_meet_on_related_objects(monkeypatch):
    """Pids and pages an earlier operation acts on are drawn again more often: a walker of a
    child's page and the exit of that child (the lifetime races B6, B8, B18) come together more
    often than with independent arguments."""
    s = GenSettings(focus=("migrate", "reclaim", "exit"))
    related = sum(map(_meets, programs(s, 3000)))
    monkeypatch.setattr(generate_module, "RELATED_MAX", 0)
    independent = sum(map(_meets, programs(s, 3000)))
    assert related > 1.3 * independent, (related, independent)


def test_for_variant_raises_max_tasks_to_the_variants():
    v = BUILTIN["pla-refcount-check"]
    assert v.max_tasks == 4 and for_variant(GenSettings(), v).max_tasks == 4
    assert for_variant(GenSettings(max_tasks=5), v).max_tasks == 5
    assert for_variant(GenSettings(), Mainline).max_tasks == GenSettings().max_tasks


def test_cpus_for_takes_the_users_then_the_variants_then_the_default():
    b8 = BUILTIN["pla-refcount-check"]
    assert cpus_for(b8) == b8.cpus == 4
    assert cpus_for(b8, 3) == 3
    assert cpus_for(Mainline) == DEFAULT_CPUS == GenSettings().cpus
