"""mm/interval_tree.c: the anon_vma interval tree, and mm/mmap.c's pre/post update helpers.

The augmented rbtree is modelled as a tuple of avcs sorted by (start pgoff, insertion order),
the order rmap walks visit them (commit 38a76013ad80; mremap relies on it).  An insert or
remove takes three steps: mark the tree busy (rotations begin), publish the new node set, mark
it clean.  A reader holding the root rwsem never sees the busy state; a reader without it may,
and the torn-chain oracle reports that.  Keys are computed from the vma at insertion, as
``avc_start_pgoff()``/``avc_last_pgoff()`` do; invariant I11 checks them against the vma.
"""

from __future__ import annotations

from rmapfuzz.engine import events as ev
from rmapfuzz.kernel.base import Gen, KernelBase
from rmapfuzz.kernel.objects import PAGE_SHIFT, AnonVmaChain, IntervalTree


def _pos(avc: AnonVmaChain) -> tuple[int, int]:
    return (avc.key[0], avc.seq)


class IntervalTreeOps(KernelBase):
    def anon_vma_interval_tree_insert(self, avc: AnonVmaChain, tree: IntervalTree) -> Gen:
        """mm/interval_tree.c anon_vma_interval_tree_insert(): key from the vma, then rebalance."""
        vma = avc.vma
        pgoff = yield ev.Load(vma, "vm_pgoff")
        start = yield ev.Load(vma, "vm_start")
        end = yield ev.Load(vma, "vm_end")
        # The node is not reachable yet: setting its key is private to this task.
        avc.key = (pgoff, pgoff + ((end - start) >> PAGE_SHIFT) - 1)
        avc.seq = self.next_avc_seq()
        yield ev.Store(tree, "busy", avc)
        nodes = tuple(sorted((*tree.nodes, avc), key=_pos))
        yield ev.Store(tree, "nodes", nodes)
        yield ev.Store(tree, "busy", None)

    def anon_vma_interval_tree_remove(self, avc: AnonVmaChain, tree: IntervalTree) -> Gen:
        """mm/interval_tree.c anon_vma_interval_tree_remove(): unlink and rebalance."""
        yield ev.Store(tree, "busy", avc)
        yield ev.Store(tree, "nodes", tuple(n for n in tree.nodes if n is not avc))
        yield ev.Store(tree, "busy", None)

    def anon_vma_interval_tree_iter_first(self, tree: IntervalTree, pgoff: int) -> Gen:
        """mm/interval_tree.c anon_vma_interval_tree_iter_first(): leftmost node covering pgoff."""
        nodes = yield ev.Load(tree, "nodes")
        for n in nodes:
            if n.key[0] <= pgoff <= n.key[1]:
                return n
        return None

    def anon_vma_interval_tree_iter_next(
        self, tree: IntervalTree, avc: AnonVmaChain, pgoff: int
    ) -> Gen:
        """mm/interval_tree.c anon_vma_interval_tree_iter_next(): follow the node's links.

        Reads the current node (freed memory if it was unlinked and freed meanwhile), then the
        tree as it is now: nodes inserted behind the cursor are not seen, nodes ahead are."""
        key = yield ev.Load(avc, "key")
        here = (key[0], avc.seq)
        nodes = yield ev.Load(tree, "nodes")
        for n in nodes:
            if _pos(n) > here and n.key[0] <= pgoff <= n.key[1]:
                return n
        return None

    def anon_vma_interval_tree_pre_update_vma(self, vma) -> Gen:  # type: ignore[no-untyped-def]
        """mm/mmap.c anon_vma_interval_tree_pre_update_vma(): take vma's avcs out of their trees."""
        for avc in vma.anon_vma_chain:
            yield from self.anon_vma_interval_tree_remove(avc, avc.anon_vma.rb_root)

    def anon_vma_interval_tree_post_update_vma(self, vma) -> Gen:  # type: ignore[no-untyped-def]
        """mm/mmap.c anon_vma_interval_tree_post_update_vma(): put them back with new keys."""
        for avc in vma.anon_vma_chain:
            yield from self.anon_vma_interval_tree_insert(avc, avc.anon_vma.rb_root)
