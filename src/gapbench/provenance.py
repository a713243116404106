"""Provenance: which code, on which machine, produced a result.

Every stored run and every checkpoint carries this dict (STYLE rule 9, airbench's "a result is stored together
with the code version that produced it"):

    {"gapbench": "0.2.0",            # package version
     "git_sha": "2619a44…" | None,   # HEAD of the git checkout the package was imported from, if any
     "torch": "2.13.0", "python": "3.11.7", "platform": "Linux-…", "hostname": "…",
     "time": "2025-01-01T12:00:00+00:00"}   # UTC, ISO 8601, when this process first asked

The dict is computed once per process (``git`` is run at most once) and a fresh copy is returned each call,
so callers may modify their copy freely.
"""

from __future__ import annotations

import datetime
import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT_S = 2.0  # seconds; a slow or hung git must never delay a sweep


def provenance() -> dict[str, Any]:
    """A copy of this process's provenance dict (see the module docstring for the keys)."""
    return dict(_cached())


@functools.lru_cache(maxsize=1)
def _cached() -> dict[str, Any]:
    import torch

    from . import __version__
    return {
        "gapbench": __version__,
        "git_sha": git_sha(Path(__file__).resolve().parent),
        "torch": str(torch.__version__),           # TorchVersion is a str subclass; keep it plain
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def git_sha(directory: Path) -> str | None:
    """HEAD's commit of the git work tree holding `directory`'s package, or None; never raises.

    The package file must be tracked by that repository: an installed copy that merely sits inside some
    other repository (a virtualenv in a user's project) must not be stamped with that project's sha.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                                 timeout=GIT_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    sha = git("rev-parse", "HEAD")
    return sha if sha and len(sha) == 40 else None

