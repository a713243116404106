"""`gapbench data fetch` and `gapbench data list`: put a file-backed dataset into the data directory, and
say what is there.

A fetch reads each canonical download (MNIST / Fashion-MNIST: the four IDX ``.gz`` files; CIFAR-10: the
python-pickle archive) from its canonical URL, or from a mirror given as ``source`` (a base URL, or a local
directory holding the same file names), through :func:`gapbench.data.files.download`: checksum-verified
against the canonical tables in mnist.py / cifar.py, written atomically, nothing left behind on failure.
Files already present and verified are skipped. The status of a dataset is what its loader would find: the
same directories in the same order, the same checksum tables.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, GapbenchError, param_error, unknown_name
from . import cifar, mnist
from .files import Checksum, download, fetch_command, file_digest, find_file, resolve_data_dir
from .registry import DATASETS

FETCHABLE = ("mnist", "fashion_mnist", "cifar10")   # the registered datasets with kind 'file'
SOURCE_SCHEMES = ("http", "https", "file")


@dataclass(frozen=True)
class FileStatus:
    """One canonical file as the loader would find it. `state`: verified, missing, corrupt or unverified."""

    name: str
    path: Path | None                # where it is (or would be put when missing)
    state: str
    size_bytes: int = 0


@dataclass(frozen=True)
class DatasetStatus:
    """A dataset in the data directory. `state`: verified, missing, corrupt, unverified or generated."""

    name: str
    state: str
    location: Path | None            # the folder the loader reads (None for generated datasets)
    files: tuple[FileStatus, ...] = ()


@dataclass(frozen=True)
class FetchedFile:
    """One file after a fetch: `action` is 'fetched' or 'already present'."""

    path: Path
    size_bytes: int
    checksum: Checksum
    action: str


def dataset_status(name: str, data_dir: str | Path | None = None) -> DatasetStatus:
    """What the loader of `name` would find in the data directory (see :func:`resolve_data_dir`)."""
    entry = DATASETS.get(name)
    if entry.kind != "file":
        return DatasetStatus(name, "generated", None)
    root = resolve_data_dir(data_dir)
    files = _cifar_files(root) if name == "cifar10" else _idx_files(name, root)
    states = {f.state for f in files}
    state = next(s for s in ("missing", "corrupt", "unverified", "verified") if s in states)
    return DatasetStatus(name, state, files[0].path.parent, tuple(files))


def list_status(data_dir: str | Path | None = None) -> list[DatasetStatus]:
    """:func:`dataset_status` of every registered dataset, sorted by name."""
    return [dataset_status(entry.name, data_dir) for entry in DATASETS]


def fetch_dataset(name: str, data_dir: str | Path | None = None, source: str | None = None) -> list[FetchedFile]:
    """Put the canonical files of `name` into the data directory; returns one row per file.

    `source`: None for the canonical URL(s), else a base URL or a local directory holding the canonical
    file names. Raises DataError (nothing half-written) on a checksum mismatch or a failed download.
    """
    _check_fetchable(name)
    root = resolve_data_dir(data_dir)
    base = _source_base(source, name)
    status = dataset_status(name, root)
    if name == "cifar10":
        return _fetch_cifar(root, status, base, source)
    return _fetch_idx(name, root, status, base, source)


def _check_fetchable(name: str) -> None:
    if name not in DATASETS:
        raise unknown_name("dataset", name, FETCHABLE, where=" for gapbench data fetch")
    if name not in FETCHABLE:
        raise GapbenchError(f"Dataset '{name}' is generated from a seed; there is nothing to fetch. "
                            f"Datasets read from files: {', '.join(FETCHABLE)}.")


def _source_base(source: str | None, name: str) -> str | None:
    """The base URL (ending in '/') of a mirror; None for the canonical URLs."""
    if source is None:
        return None
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme in SOURCE_SCHEMES:
        return source.rstrip("/") + "/"
    folder = Path(source).expanduser()
    if scheme or not folder.is_dir():
        raise param_error("--from", f"gapbench data fetch {name}",
                          f"a base URL ({', '.join(s + '://' for s in SOURCE_SCHEMES)}) or an existing directory",
                          source, "Point it at a directory holding the canonical file names.")
    return folder.resolve().as_uri() + "/"


def _offline_fix(name: str, root: Path) -> str:
    return (f"Check the network, or fetch from a local copy: `{fetch_command(name, root, 'DIR')}` with DIR "
            f"holding the canonical file names (a base URL works too).")


def _require_local(base: str, filename: str, source: str | None) -> None:
    """A local mirror must hold the file: say so plainly instead of reporting a failed file:// download."""
    if base.startswith("file:") and source is not None:
        path = Path(urllib.request.url2pathname(urllib.parse.urlsplit(base + filename).path))
        if not path.is_file():
            raise DataError(f"--from {source} has no file {filename}; a mirror directory holds the canonical "
                            f"file names. Nothing was fetched into the data directory.")


def _idx_files(name: str, root: Path) -> list[FileStatus]:
    table, _, torchvision_dir = mnist.SOURCES[name]
    searched = [root / name, root / torchvision_dir / "raw"]
    files = []
    for stem in mnist.STEMS.values():
        path = find_file(stem, searched)
        if path is None:
            files.append(FileStatus(f"{stem}.gz", searched[0] / f"{stem}.gz", "missing"))
        else:
            files.append(FileStatus(path.name, path, _state(path, table.get(path.name)), path.stat().st_size))
    return files


def _cifar_files(root: Path) -> list[FileStatus]:
    searched = [root / "cifar10" / cifar.FOLDER, root / cifar.FOLDER]
    names = (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH)
    folder = next((d for d in searched if all((d / n).is_file() for n in names)), searched[0])
    files = []
    for name in names:
        path = folder / name
        if path.is_file():
            files.append(FileStatus(name, path, _state(path, cifar.CHECKSUMS.get(name)), path.stat().st_size))
        else:
            files.append(FileStatus(name, path, "missing"))
    return files


def _state(path: Path, expected: Checksum | None) -> str:
    if expected is None:
        return "unverified"
    return "verified" if file_digest(path, expected.algorithm) == expected.hexdigest.lower() else "corrupt"


def _fetch_idx(name: str, root: Path, status: DatasetStatus, base: str | None,
               source: str | None) -> list[FetchedFile]:
    table, canonical_base, _ = mnist.SOURCES[name]
    base = base or canonical_base
    rows = []
    for stem, found in zip(mnist.STEMS.values(), status.files, strict=True):
        filename = f"{stem}.gz"
        expected = table[filename]
        if found.state == "verified":
            rows.append(FetchedFile(found.path, found.size_bytes, table[found.name], "already present"))
            continue
        _require_local(base, filename, source)
        path = download(base + filename, root / name / filename, expected, offline_fix=_offline_fix(name, root))
        rows.append(FetchedFile(path, path.stat().st_size, expected, "fetched"))
    return rows


def _fetch_cifar(root: Path, status: DatasetStatus, base: str | None, source: str | None) -> list[FetchedFile]:
    if status.state != "verified":
        url = cifar.URL if base is None else base + cifar.ARCHIVE_NAME
        if base is not None:
            _require_local(base, cifar.ARCHIVE_NAME, source)
        cifar.fetch_cifar10(root / "cifar10", url, offline_fix=_offline_fix("cifar10", root))
        status = dataset_status("cifar10", root)
        action = "fetched"
    else:
        action = "already present"
    return [FetchedFile(f.path, f.size_bytes, cifar.CHECKSUMS[f.name], action) for f in status.files]
