"""What every `gapbench` command shares: the click group class that turns GapbenchError into one paragraph and
exit code 2, the translation of OS and SQLite faults under OUT into such errors, the runtime and --set parsing,
and the options several commands take (--backend, --ray-address, --threads, --data-dir).

No command lives here (they are in gapbench.cli, cli_evaluate and cli_zoo); like them, this module imports
neither torch nor the experiments at import time, so `gapbench --help` starts cheap.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import click

from .errors import GapbenchError

DEFAULT_OUT = "results"
STORE_NAME = "gapbench.sqlite"     # experiments.execute.STORE_NAME (not imported: the CLI starts without torch)


class _Group(click.Group):
    """Turn GapbenchError into a clean one-paragraph message instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GapbenchError as err:
            click.echo(textwrap.fill(f"error: {err}", width=100, break_on_hyphens=False,
                                     break_long_words=False), err=True)
            sys.exit(2)


@contextmanager
def _faults(out: str | Path, what: str = "the results"):
    """Turn OS and SQLite faults under OUT into GapbenchError naming the real cause and the path; anything
    else (a bug) keeps its traceback."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        from .store import store_error
        translated = store_error(Path(out) / STORE_NAME, exc)
        if translated is None:
            raise
        raise translated from exc
    except OSError as exc:
        translated = os_error(exc, Path(out), what)
        if translated is None:
            raise
        raise translated from exc


_READ_ONLY = {errno.EROFS: "is on a read-only file system", errno.EACCES: "is not writable (permission denied)",
              errno.EPERM: "is not writable (operation not permitted)"}


def os_error(exc: OSError, fallback: Path, what: str) -> GapbenchError | None:
    """A GapbenchError for the OS faults a user can fix (disk full, read-only, a file in the way), else None."""
    path = exc.filename or fallback
    name = errno.errorcode.get(exc.errno, "")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GapbenchError(f"No space left on device ({name}) while writing {what} to '{path}'. Free some "
                             f"space, or write elsewhere (--out DIR on another disk).")
    if exc.errno in _READ_ONLY:
        return GapbenchError(f"'{path}' {_READ_ONLY[exc.errno]} ({name}), so {what} cannot be written there. "
                             f"Use --out DIR (or --csv PATH) somewhere writable.")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return GapbenchError(f"'{path}' cannot be created as a directory ({name}): it, or a folder above it, is a "
                             f"file. Use --out DIR with a directory path.")
    return None


def _runtime(workers=1, data_dir=None, device="cpu", progress=True, backend="local", ray_address=None, threads=1):
    from .config import Runtime
    from .errors import param_error
    if workers < 1:
        raise param_error("workers", "gapbench run", "an int >= 1", workers)
    if threads < 1:
        raise param_error("threads", "gapbench run", "an int >= 1 (torch threads per worker or Ray task)", threads)
    if ray_address is not None and backend != "ray":
        raise GapbenchError(f"--ray-address {ray_address} was given with --backend {backend}; the address is "
                            f"used only by --backend ray. Add --backend ray, or drop --ray-address.")
    if backend == "ray":
        from .ray_backend import import_ray
        import_ray()                         # a missing extra is one paragraph now, before any work
    if device.startswith("cuda") and backend != "ray":      # Ray checks the cluster's GPUs instead
        import torch
        if not torch.cuda.is_available():
            raise GapbenchError(f"--device {device} was requested but CUDA is not available on this "
                                f"machine. Use --device cpu.")
    return Runtime(device=device, workers=workers, data_dir=data_dir, progress=progress, backend=backend,
                   ray_address=ray_address, threads=threads)


def _parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GapbenchError(f"The --set option must be key=value. Got {pair!r} instead. "
                                f"Example: --set m=128,256")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


backend_option = click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                              help="Where jobs run: local worker processes, or Ray tasks on a cluster "
                                   "(pip install 'gapbench[ray]'); the store is written here either way.")
ray_address_option = click.option("--ray-address", default=None, metavar="HOST:PORT",
                                  help="The Ray cluster for --backend ray (default: start a local Ray instance).")
threads_option = click.option("--threads", default=1, show_default=True, type=int,
                              help="torch threads per worker; with --backend ray, the CPUs each task asks for.")
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                               help="Dataset directory (default: $GAPBENCH_DATA, else the user cache).")
