"""The kernel objects of the anonymous reverse map (rmap-spec section 6.1), as attrs classes.

Field names follow the C structures (include/linux/mm_types.h, include/linux/rmap.h).  Objects
have identity (``eq=False``); their reprs are short because they end up in traces.

Address space: user addresses are real addresses with 4 KiB pages; a page table ("pte page")
covers :data:`PTRS_PER_TABLE` pages and has its own split PTL, so two addresses may or may not
share a PTL, as in the kernel.  All page tables of an mm exist from its creation (pmd/pte
allocation is not modelled: it never races with rmap).
"""

from __future__ import annotations

from typing import Any

import attrs

from rmapfuzz.engine.heap import HeapObject
from rmapfuzz.engine.locks import Lock, bitlock, rwsem, spinlock

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_TABLE = 4
TASK_LO = 0x10000
TASK_HI = 0x30000

VM_WRITE = 0x2
VM_GROWSDOWN = 0x100
VM_SEQ_READ = 0x8000
VM_RAND_READ = 0x10000
#: include/linux/mm.h: "Bits set in the VMA until the stack is in its final location" (exec)
VM_STACK_INCOMPLETE_SETUP = VM_RAND_READ | VM_SEQ_READ


def table_index(addr: int) -> int:
    return (addr >> PAGE_SHIFT) // PTRS_PER_TABLE


def flags_str(flags: int) -> str:
    s = "rw" if flags & VM_WRITE else "r-"
    s += "/gd" if flags & VM_GROWSDOWN else ""
    incomplete = flags & VM_STACK_INCOMPLETE_SETUP == VM_STACK_INCOMPLETE_SETUP
    return s + ("/tmpstack" if incomplete else "")


# ------------------------------------------------------------------------- ptes


@attrs.frozen(repr=False)
class Present:
    """A present pte mapping ``page``; ``young`` is the accessed bit."""

    page: Page
    write: bool = True
    young: bool = True

    def __repr__(self) -> str:
        return (
            f"pte({self.page.short()},{'w' if self.write else 'r'}{'' if self.young else ',old'})"
        )


@attrs.frozen(repr=False)
class Migration:
    """A migration entry: a swap-type pte that names the page being migrated."""

    page: Page
    write: bool = True

    def __repr__(self) -> str:
        return f"migration({self.page.short()},{'w' if self.write else 'r'})"


@attrs.frozen(repr=False)
class Swap:
    """A swap entry: the pte of a swapped-out anonymous page names its swap slot
    (include/linux/swapops.h swp_entry(); one swap device, so the offset is the slot)."""

    slot: SwapSlot

    def __repr__(self) -> str:
        return f"swap({self.slot.short()})"


# ---------------------------------------------------------------------- objects


@attrs.define(eq=False, repr=False)
class Page(HeapObject):
    """struct page of an anonymous page.  Pages are frames: they are never freed here.

    ``mapping`` is the anon_vma (the PAGE_MAPPING_ANON bit is implied by ``anon``);
    ``mapcount`` is ``_mapcount`` (-1 when unmapped).  ``mapping_gen`` is ghost state for the
    oracles: the generation of the anon_vma slot when ``mapping`` was written.
    """

    prefix = "page"
    oid: int
    mapping: Any = None
    index: int = 0
    mapcount: int = -1
    lock: Lock = attrs.field(default=None)
    mapping_gen: int = 0
    #: PageSwapCache() and page_private(): the swap slot while the page is in the swap cache
    private: Any = None
    #: PageLRU(): on the LRU, so migration or reclaim may isolate it (kernel/vmscan.py)
    lru: bool = False
    freed: bool = False

    def __attrs_post_init__(self) -> None:
        self.lock = bitlock(f"{self.short()}.PG_locked", "PG_locked")


#: include/linux/swap.h: the swap_map bit of a slot whose page is in the swap cache
SWAP_HAS_CACHE = 0x40


@attrs.define(eq=False, repr=False)
class SwapSlot(HeapObject):
    """One slot of the (single, tiny) swap device: ``count`` is ``swap_map[offset]`` (one per
    swap pte naming the slot, plus SWAP_HAS_CACHE while a page is in the swap cache for it);
    ``page`` is the swap cache (swapper_space radix tree) entry of the slot.  Slots are an
    array: never freed, a slot whose count is 0 is free."""

    prefix = "swp"
    oid: int
    count: int = 0
    page: Any = None
    freed: bool = False


@attrs.define(eq=False, repr=False)
class IntervalTree:
    """anon_vma->rb_root: avcs sorted by (start pgoff, insertion order).

    ``nodes`` is replaced as a whole (copy on write).  ``busy`` names the avc being inserted or
    removed while a writer rebalances: a reader that looks at the tree then sees rotations in
    progress, which no locked reader can.
    """

    owner: Any
    nodes: tuple[Any, ...] = ()
    busy: Any = None
    freed = False
    typesafe = True

    def short(self) -> str:
        return f"{self.owner.short()}.rb_root"


@attrs.define(eq=False, repr=False)
class AnonVma(HeapObject):
    """struct anon_vma.  Its slab is SLAB_DESTROY_BY_RCU: freed slots are reused at once and keep
    their rwsem and (empty) tree, as the slab constructor anon_vma_ctor() runs once per object.
    ``gen`` counts incarnations of the slot (ghost state)."""

    prefix = "av"
    typesafe = True
    oid: int
    root: Any = None
    refcount: int = 0
    #: 4.0+/6.1+ fork-time reuse (kernel/modern.py); unused by the 3.7 model
    parent: Any = None
    num_children: int = 0
    num_active_vmas: int = 0
    rwsem: Lock = attrs.field(default=None)
    rb_root: IntervalTree = attrs.field(default=None)
    gen: int = 0
    freed: bool = True

    def __attrs_post_init__(self) -> None:
        self.rwsem = rwsem(f"av#{self.oid}.rwsem", "anon_vma->rwsem")
        self.rb_root = IntervalTree(self)

    def short(self) -> str:
        return f"av#{self.oid}" + (f"'{self.gen}" if self.gen > 1 else "")


@attrs.define(eq=False, repr=False)
class AnonVmaChain(HeapObject):
    """struct anon_vma_chain.  ``key`` is the interval-tree key computed at insertion
    (avc_start_pgoff, avc_last_pgoff); ``seq`` orders equal keys by insertion."""

    prefix = "avc"
    oid: int
    vma: Any = None
    anon_vma: Any = None
    key: tuple[int, int] = (0, -1)
    seq: int = 0
    freed: bool = True


@attrs.define(eq=False, repr=False)
class Vma(HeapObject):
    """struct vm_area_struct.  ``anon_vma_chain`` is newest first (the root's avc last)."""

    prefix = "vma"
    oid: int
    vm_mm: Any = None
    vm_start: int = 0
    vm_end: int = 0
    vm_pgoff: int = 0
    vm_flags: int = VM_WRITE
    anon_vma: Any = None
    anon_vma_chain: tuple[Any, ...] = ()
    freed: bool = True

    @property
    def geometry(self) -> tuple[int, int, int, int]:
        """``*tmp = *vma``: the fields a struct copy takes, read as one step."""
        return (self.vm_start, self.vm_end, self.vm_pgoff, self.vm_flags)

    def describe(self) -> str:
        return (
            f"{self.short()}[{self.vm_start:#x}-{self.vm_end:#x} pgoff={self.vm_pgoff:#x} "
            f"{flags_str(self.vm_flags)}]"
        )


@attrs.define(eq=False, repr=False)
class PageTable(HeapObject):
    """One pte page: ``ptes`` by address, guarded by its split PTL ``ptl``."""

    prefix = "pt"
    oid: int
    mm: Any = None
    base: int = 0
    ptes: dict[int, Any] = attrs.field(factory=dict)
    ptl: Lock = attrs.field(default=None)
    freed: bool = False

    def short(self) -> str:
        return f"pt({self.mm.short()},{self.base:#x})"


@attrs.define(eq=False, repr=False)
class MM(HeapObject):
    """struct mm_struct: the vma list (sorted by vm_start), page tables, locks, mm_users."""

    prefix = "mm"
    oid: int
    mmap: tuple[Vma, ...] = ()
    tables: dict[int, PageTable] = attrs.field(factory=dict)
    mmap_sem: Lock = attrs.field(default=None)
    page_table_lock: Lock = attrs.field(default=None)
    mm_users: int = 1
    freed: bool = False

    def __attrs_post_init__(self) -> None:
        self.mmap_sem = rwsem(f"mm#{self.oid}.mmap_sem", "mm->mmap_sem")
        self.page_table_lock = spinlock(f"mm#{self.oid}.page_table_lock", "mm->page_table_lock")


@attrs.define(eq=False, repr=False)
class TaskStruct(HeapObject):
    """The part of task_struct that matters here: the pid and its mm (NULL after exit_mm)."""

    prefix = "pid"
    oid: int
    mm: MM | None = None
    alloc_lock: Lock = attrs.field(default=None)
    freed: bool = False

    def __attrs_post_init__(self) -> None:
        self.alloc_lock = spinlock(f"pid{self.oid}.alloc_lock", "task->alloc_lock")

    def short(self) -> str:
        return f"pid{self.oid}"
