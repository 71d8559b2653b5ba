"""mm/swapfile.c and mm/swap_state.c (v3.7): the swap map and the swap cache of one swap device.

Every change of a slot's ``swap_map`` count is one atomic step: the kernel makes each under
``swap_lock``, and nothing else in the model reads a count without it except
``page_swapcount()``, which the kernel also calls under it (one load here).  Deliberate
differences from the kernel:

* one tiny device (:data:`~rmapfuzz.kernel.base.SWAP_SLOTS` slots, lowest free slot first), no
  swap_info lookup, no cluster allocation, no swap count continuations;
* no I/O: a page that leaves shrink_page_list() unmapped stays in the swap cache (writeback is
  instantaneous and the second reclaim pass that would free the page is not modelled), so a
  swap pte always finds its page in the swap cache and swapin_readahead() never runs;
* ``vm_swap_full()`` is false: try_to_free_swap() after a swap-in is never called and
  free_swap_and_cache() only drops a swap cache page that no pte maps.
"""

from __future__ import annotations

from typing import Any

from rmapfuzz.engine import events as ev
from rmapfuzz.engine.findings import KernelBug
from rmapfuzz.kernel.base import Gen
from rmapfuzz.kernel.objects import SWAP_HAS_CACHE, Page, SwapSlot
from rmapfuzz.kernel.vmscan import Vmscan


# swap_map updates, as Rmw functions: old -> (new, result)
def _claim(v: int) -> tuple[int, bool]:
    return (SWAP_HAS_CACHE, True) if v == 0 else (v, False)


def _dup(v: int) -> tuple[int, bool]:
    return (v + 1, True) if v else (v, False)


def _free_one(v: int) -> tuple[int, int]:
    return (v - 1, v - 1) if v & ~SWAP_HAS_CACHE else (v, -1)


def _drop_cache(v: int) -> tuple[int, int]:
    return (v & ~SWAP_HAS_CACHE, v & ~SWAP_HAS_CACHE) if v & SWAP_HAS_CACHE else (v, -1)


class Swapfile(Vmscan):
    # ------------------------------------------------------ mm/swapfile.c

    def get_swap_page(self) -> Gen:
        """mm/swapfile.c get_swap_page() -> scan_swap_map(): the lowest free slot, its swap_map
        set to SWAP_HAS_CACHE (the caller adds the page to the swap cache); None when full."""
        for slot in self.swap_slots:
            if (yield ev.Rmw(slot, "count", _claim, "scan_swap_map")):
                return slot
        return None

    def swap_duplicate(self, slot: SwapSlot) -> Gen:
        """mm/swapfile.c swap_duplicate() -> __swap_duplicate(entry, 1): one more pte names the
        slot.  A free slot is "Bad swap file entry" (-ENOENT): here a bug of the caller."""
        if not (yield ev.Rmw(slot, "count", _dup, "swap_duplicate")):
            raise KernelBug(f"swap_duplicate: Bad swap file entry {slot.short()} (a free slot)")

    def swap_free(self, slot: SwapSlot) -> Gen:
        """mm/swapfile.c swap_free() -> swap_entry_free(p, entry, 1): a swap pte naming the slot
        is gone.  Returns the slot's new swap_map value."""
        count = yield ev.Rmw(slot, "count", _free_one, "swap_free")
        if count < 0:
            raise KernelBug(f"swap_free: Unused swap offset entry {slot.short()}")
        return count

    def swapcache_free(self, slot: SwapSlot) -> Gen:
        """mm/swapfile.c swapcache_free() -> swap_entry_free(p, entry, SWAP_HAS_CACHE)."""
        if (yield ev.Rmw(slot, "count", _drop_cache, "swapcache_free")) < 0:
            raise KernelBug(f"swapcache_free: {slot.short()} has no SWAP_HAS_CACHE")

    def page_swapcount(self, page: Page) -> Gen:
        """mm/swapfile.c page_swapcount(): how many swap ptes name the page's slot."""
        slot = yield ev.Load(page, "private")
        if slot is None:
            return 0
        return (yield ev.Load(slot, "count")) & ~SWAP_HAS_CACHE

    def reuse_swap_page(self, page: Page) -> Gen:
        """mm/swapfile.c reuse_swap_page(): with the page locked, is this mapping its only user
        (page_mapcount + page_swapcount <= 1)?  If it is and the page is in the swap cache, the
        page leaves the swap cache (delete_from_swap_cache, SetPageDirty)."""
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"VM_BUG_ON(!PageLocked(page)) in reuse_swap_page({page.short()})")
        count = (yield ev.Load(page, "mapcount")) + 1  # page_mapcount()
        if count <= 1 and (yield ev.Load(page, "private")) is not None:
            count += yield from self.page_swapcount(page)
            if count == 1:  # && !PageWriteback(page): writeback is instantaneous here
                yield from self.delete_from_swap_cache(page)
        return count <= 1

    def free_swap_and_cache(self, slot: SwapSlot) -> Gen:
        """mm/swapfile.c free_swap_and_cache(): drop a swap pte's reference (zap); if only the
        swap cache is left, trylock the page and drop it from the swap cache unless mapped."""
        count = yield from self.swap_free(slot)
        page = None
        if count == SWAP_HAS_CACHE:
            page = yield ev.Load(slot, "page")  # find_get_page(&swapper_space, entry.val)
            if page is not None and not (yield ev.TryAcquire(page.lock)):
                page = None
        if page is not None:
            # "Not mapped elsewhere, or swap space full? Free it!" (vm_swap_full() is false)
            if (yield ev.Load(page, "private")) is not None and (
                yield ev.Load(page, "mapcount")
            ) < 0:
                yield from self.delete_from_swap_cache(page)
            yield ev.Release(page.lock)

    # ----------------------------------------------------- mm/swap_state.c

    def add_to_swap_cache(self, page: Page, slot: SwapSlot) -> Gen:
        """mm/swap_state.c __add_to_swap_cache(): SetPageSwapCache, set_page_private(page,
        entry), then the radix tree insert that makes the page visible to lookups."""
        yield ev.Store(page, "private", slot)
        yield ev.Store(slot, "page", page)

    def delete_from_swap_cache(self, page: Page) -> Gen:
        """mm/swap_state.c delete_from_swap_cache(): out of the radix tree, ClearPageSwapCache,
        then swapcache_free() of the slot.  Page locked."""
        slot = yield ev.Load(page, "private")
        yield ev.Store(slot, "page", None)
        yield ev.Store(page, "private", None)
        yield from self.swapcache_free(slot)

    def add_to_swap(self, page: Page) -> Gen:
        """mm/swap_state.c add_to_swap(): allocate a swap slot and put the locked page in the
        swap cache for it.  Returns 1, or 0 when the device is full."""
        if not (yield ev.Load(page.lock, "locked")):
            raise KernelBug(f"VM_BUG_ON(!PageLocked(page)) in add_to_swap({page.short()})")
        slot = yield from self.get_swap_page()
        if slot is None:
            return 0
        yield from self.add_to_swap_cache(page, slot)
        return 1

    def lookup_swap_cache(self, slot: SwapSlot) -> Gen:
        """mm/swap_state.c lookup_swap_cache(): the page in the swap cache for the slot, if any
        (find_get_page() under RCU: one load)."""
        page: Any = yield ev.Load(slot, "page")
        return page
