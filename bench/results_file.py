"""bench/results.json, the one JSON file of the benchmarks.

Each script owns some top-level keys and rewrites only those, keeping every other key as it
finds it: run.py owns ``machine``, ``date``, ``seeds``, ``shrink_seeds``, ``throughput``,
``first_finding`` and ``checks``;
variants.py owns ``variants``; exhaustive.py owns ``exhaustive``.  The read-modify-write holds
an exclusive lock on the directory and replaces the file atomically, so two scripts finishing
at once do not lose each other's keys.

* run.py: ``machine`` {python, platform}, ``date``, ``seeds`` and ``shrink_seeds`` (first
  findings over seeds 1..seeds, shrinks over 1..shrink_seeds), ``throughput`` (per explorer on
  mainline),
  ``first_finding`` (per explorer and variant, its ``runs`` per seed), ``checks``;
* ``variants``: {machine, date, time_limit_s, seeds, explorers, ``rows`` (per variant, explorer
  and seed: found, first_finding_s, programs, examples, elapsed_s, kind; hypothesis rows also
  shrink_s, ops, preemptions, steps and ``exhaustive``, the shortest counterexample of the
  shrunk program), ``exhaustive`` (per variant and shipped reproducer: file, ops, recorded,
  schedules, elapsed_s, schedules_per_s, capped, kind, preemptions, steps, setup_finding; a
  variant without one: file null and a note), ``shrink_optimal`` (per variant: optimal,
  shortest, shrunk)};
* ``exhaustive``: {machine, date, max_preemptions, unreduced_time_s, ``rows`` (per program and
  variant: reduced, for mainline unreduced and ratio_at_largest_bound)}.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

NAME = "results.json"


def update(directory: Path, owned: dict[str, Any]) -> Path:
    """Set the top-level keys ``owned`` of ``directory``/results.json (created if missing),
    keeping the others; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    lock = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        data.update(owned)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{NAME}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(data, indent=2) + "\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    finally:
        os.close(lock)  # releases the lock
    return path
