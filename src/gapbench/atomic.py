"""The one way gapbench writes a file: atomically (a reader sees the old file or the new one, never a part).

Checkpoints (both formats), figures, reports, report cards, the leaderboard and zoo manifests go through
:func:`atomic_write_bytes`; :data:`TEMP_NAME` matches the temp file a write killed before its rename leaves
behind (gapbench.outdir removes those at the start of the next run).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Temp files of atomic_write_bytes: '.<target name>.<mkstemp's 8 characters>.tmp' beside the target; a write
# killed before its rename leaves one behind (gapbench.outdir removes those at the start of the next run).
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    """The process umask. os.umask can only be read by setting it, so it is set back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temp file in the same directory, fsync, os.replace and a directory fsync:
    a reader sees the old file or the new one, never a part (checkpoints, figures, reports).

    The file gets the mode a plain open() would give (0o666 & ~umask, so 0644 under the usual umask 022);
    mkstemp alone makes it 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
