"""Where data files live, how they are verified, and the opt-in download.

The data directory is, in order: the ``--data-dir`` argument, the ``GAPBENCH_DATA`` environment variable,
a per-user cache directory (``platformdirs.user_cache_dir('gapbench')``). The directory is only ever read,
except by ``gapbench data fetch`` or an explicit ``download=True``, which write each file atomically (temp
file + rename) and only after its checksum matched.

Checksums are computed once per file and kept in memory, keyed by (real path, size, mtime in ns), so a
repeated load costs nothing and an edited file is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

DATA_ENV = "GAPBENCH_DATA"
DOWNLOAD_TIMEOUT_S = 10.0   # per connection attempt: fail fast offline rather than hang a sweep
HASH_CHUNK_BYTES = 1 << 20  # files are hashed in 1 MiB chunks
FILE_MODE = 0o644          # downloaded files: readable by all (mkstemp creates them 0600)

_digest_cache: dict[tuple[str, int, int, str], str] = {}


@dataclass(frozen=True)
class Checksum:
    """An expected digest of one file: `algorithm` is a hashlib name ('sha256', 'md5')."""

    algorithm: str
    hexdigest: str


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: `data_dir` if given, else $GAPBENCH_DATA, else the per-user cache directory."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


def user_cache_dir() -> Path:
    """The per-user cache directory, the data directory when neither --data-dir nor $GAPBENCH_DATA is set."""
    import platformdirs
    return Path(platformdirs.user_cache_dir("gapbench"))


def data_dir_origin(data_dir: str | Path | None = None) -> str:
    """Where :func:`resolve_data_dir` takes the directory from: '--data-dir', '$GAPBENCH_DATA' or the cache."""
    if data_dir is not None and str(data_dir) != "":
        return "--data-dir"
    return f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "the per-user cache"


def file_key(path: Path) -> tuple[str, int, int]:
    """(real path, size in bytes, mtime in ns): identifies one version of a file for the in-memory caches."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return real, stat.st_size, stat.st_mtime_ns


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of the file's bytes, cached by (real path, size, mtime, algorithm)."""
    key = (*file_key(Path(path)), algorithm)
    if key not in _digest_cache:
        hasher = hashlib.new(algorithm)
        with open(key[0], "rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                hasher.update(chunk)
        _digest_cache[key] = hasher.hexdigest()
    return _digest_cache[key]


def verify_file(path: Path, expected: Checksum) -> None:
    """Raise DataError naming the file, the expected and the actual digest if they differ."""
    actual = file_digest(path, expected.algorithm)
    if actual != expected.hexdigest.lower():
        raise DataError(
            f"Checksum mismatch for {path}: expected {expected.algorithm} {expected.hexdigest}, got "
            f"{actual}. The file is corrupt, truncated or a different version. Delete it and provide the "
            f"canonical file again (or load with verify=False if you really mean to use a modified copy).")


def find_file(stem: str, directories: list[Path]) -> Path | None:
    """The first of `<dir>/<stem>.gz`, `<dir>/<stem>` that exists, searching `directories` in order."""
    for directory in directories:
        for name in (f"{stem}.gz", stem):
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def fetch_command(dataset: str, root: Path, source: str | None = None) -> str:
    """The `gapbench data fetch` line that puts `dataset` where a loader reading `root` looks for it."""
    command = f"gapbench data fetch {dataset}"
    if Path(root) != resolve_data_dir():   # the CLI without --data-dir would write elsewhere
        command += f" --data-dir {root}"
    return command + (f" --from {source}" if source else "")


def missing_error(dataset: str, files: list[str], root: Path, searched: list[Path], url: str,
                  mirror_files: str) -> DataError:
    """The error for absent files: which files, which directories, and the command that provides them.

    `mirror_files` names what a local copy for ``--from DIR`` must hold (the canonical download names).
    """
    where = ", ".join(str(d) for d in searched)
    return DataError(
        f"Dataset '{dataset}' not found: missing {', '.join(files)} (searched {where}). Run "
        f"`{fetch_command(dataset, root)}` to download it from {url} (checksum-verified), or, without network "
        f"access, `{fetch_command(dataset, root, 'DIR')}` with DIR holding {mirror_files}. To read another "
        f"data directory instead, pass --data-dir DIR or set the {DATA_ENV} environment variable.")


def download(url: str, dest: Path, expected: Checksum | None, timeout_s: float = DOWNLOAD_TIMEOUT_S,
             offline_fix: str = "") -> Path:
    """Download `url` to `dest` atomically, verifying `expected` before the rename; fail fast offline.

    `url` may be http(s):// or file://. `offline_fix` replaces the advice given when the download fails.
    """
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            while chunk := response.read(HASH_CHUNK_BYTES):
                out.write(chunk)
        if expected is not None:
            actual = file_digest(tmp, expected.algorithm)
            if actual != expected.hexdigest.lower():
                raise DataError(f"Downloaded {url} but its {expected.algorithm} is {actual}, expected "
                                f"{expected.hexdigest}; nothing was saved. Try again later or provide the "
                                f"file by hand at {dest}.")
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, dest)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        fix = offline_fix or f"Without network access, copy the file to {dest} by hand."
        raise DataError(f"Could not download {url} within {timeout_s:g} s ({exc}). {fix}") from None
    except OSError as exc:
        raise DataError(f"Could not write {dest} ({exc}). Is the data directory read-only? Download into a "
                        f"writable directory and pass it with --data-dir or {DATA_ENV}.") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return dest
