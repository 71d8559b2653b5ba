"""The model of the Linux anonymous reverse map: objects, kernel functions, variants.

Each module mirrors one kernel source file (``rmap.py`` ~ mm/rmap.c, ``mmap.py`` ~ mm/mmap.c,
``memory.py`` ~ mm/memory.c, ``migrate.py`` ~ mm/migrate.c, ``fork.py`` ~ kernel/fork.c) as a
mixin; :class:`~rmapfuzz.kernel.variants.Mainline` stacks them.  The model never imports the
oracles, the explorers or Hypothesis.
"""
