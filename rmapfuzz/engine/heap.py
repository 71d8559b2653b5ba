"""Heap objects with lifetimes.

Every model object that lives on the kernel heap derives from :class:`HeapObject`.  Freeing
poisons it: a later access through a stale pointer is a use-after-free finding, unless the
object's slab is ``SLAB_TYPESAFE_BY_RCU`` (``typesafe = True``), whose memory stays an object of
the same type and may be handed out again at once; readers then see the new incarnation.
"""

from __future__ import annotations


class HeapObject:
    __slots__ = ()
    oid: int
    freed: bool
    typesafe = False
    prefix = "obj"

    def short(self) -> str:
        return f"{self.prefix}#{self.oid}"

    def __repr__(self) -> str:
        return self.short()
