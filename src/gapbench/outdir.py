"""One output directory, one run at a time: an exclusive lock on OUT/.lock, and cleanup of killed writes.

A second `gapbench run` on the same OUT waits for the first to finish (it is told who holds the lock), then
finds the first run's results in the store and reuses them: nothing is trained twice. The lock is an
advisory ``fcntl.flock`` on an open file, so the kernel releases it when its holder exits, even on
``kill -9``; a stale lock file is harmless. Where fcntl does not exist (Windows) runs are not serialised.

Under the lock, the files a killed atomic write left behind (gapbench.checkpoint.TEMP_NAME, never any other
file) and older than this run are removed: no live writer can own them, since writers hold the lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .atomic import TEMP_NAME

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:          # Windows
    fcntl = None


@contextmanager
def locked(out: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock of `out` for the duration of the block; on_wait(message) when it must wait."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(out / LOCK_NAME, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            if on_wait is not None:
                on_wait(f"waiting for another gapbench run on {out} (pid {holder})…")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def remove_orphan_temps(out: Path, older_than: float | None = None) -> list[Path]:
    """Delete gapbench's own temp files under `out` last modified before `older_than` (Unix time, default
    now); returns them. Call it holding the lock of `out`."""
    cutoff = time.time() if older_than is None else older_than
    removed = []
    for path in Path(out).rglob("*.tmp"):
        try:
            if TEMP_NAME.match(path.name) and path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path)
        except FileNotFoundError:
            continue
    return removed
