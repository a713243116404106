"""CIFAR-10 from its python-pickle distribution (``cifar-10-batches-py``).

Each batch file is a pickled dict with ``b'data'``: uint8 (N, 3072), each row the 1024 red, then 1024 green,
then 1024 blue pixels of a 32×32 image in row-major order, and ``b'labels'``: N ints in 0..9. Training data
is ``data_batch_1`` .. ``data_batch_5`` (50,000 images, in that order), test data ``test_batch`` (10,000).

Pickle is the canonical format of this distribution, and unpickling can run arbitrary code. The reader
therefore uses a restricted unpickler that only resolves the globals a numpy array needs (``ndarray``,
``dtype``, ``_reconstruct``, ``_codecs.encode``) and refuses everything else, and the files are checked
against the canonical MD5s (published with the dataset; also used by torchvision) before they are read.

References:
    A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, tech. report, U. Toronto (2009).
"""

from __future__ import annotations

import codecs
import importlib
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .files import Checksum, download, file_digest, file_key, missing_error, verify_file

FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
URL = f"https://www.cs.toronto.edu/~kriz/{ARCHIVE_NAME}"
ARCHIVE_CHECKSUM = Checksum("md5", "c58f30108f718f92721af3b95e74349a")
CHECKSUMS = {
    "data_batch_1": Checksum("md5", "c99cafc152244af753f735de768cd75f"),
    "data_batch_2": Checksum("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
    "data_batch_3": Checksum("md5", "54ebc095f3ab1f0389bbae665268c751"),
    "data_batch_4": Checksum("md5", "634d18415352ddfa80567beed471001a"),
    "data_batch_5": Checksum("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    "test_batch": Checksum("md5", "40351d587109b95175f43aff81a1287e"),
}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width
ROW_BYTES = 3 * 32 * 32

_decoded: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}


def _reconstruct():
    try:
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")._reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled numpy array needs; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):
            return codecs.encode
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels uint8 (N,)) from one batch file; DataError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            batch = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"Cannot read {path}: not a CIFAR-10 python batch or truncated ({exc}). Provide the "
                        f"canonical file again.") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path} is not a CIFAR-10 batch: expected a dict with b'data' and b'labels', "
                        f"got {keys}.")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != ROW_BYTES:
        raise DataError(f"{path} has b'data' of {data.dtype} {data.shape}, expected uint8 (N, {ROW_BYTES}).")
    if labels.shape != (len(data),):
        raise DataError(f"{path} has {len(data)} images but labels of shape {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{path} has labels out of range [{labels.min()}, {labels.max()}], expected classes "
                        f"0..{NUM_CLASSES - 1}. The file is corrupt; provide the canonical file again.")
    return data.reshape(len(data), *IMAGE_SHAPE), labels.astype(np.uint8)


def load_cifar10_arrays(data_dir: str | Path, *, checksums: Mapping[str, Checksum] | None = None,
                        verify: bool = True, download_missing: bool = False,
                        ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The train (50k) and test (10k) arrays of CIFAR-10 and their provenance.

    Looks in ``<data-dir>/cifar10/cifar-10-batches-py/`` and ``<data-dir>/cifar-10-batches-py/``. Returns
    arrays ``train_images`` (N, 3, 32, 32) uint8, ``train_labels``, ``test_images``, ``test_labels``
    (read-only, cached per process) and per file ``{"path", "sha256", "verified"}``. `checksums` replaces
    the canonical table (file name -> Checksum); a file with no entry is recorded as unverified.
    """
    table = CHECKSUMS if checksums is None else checksums
    root = Path(data_dir)
    searched = [root / "cifar10" / FOLDER, root / FOLDER]
    names = (*TRAIN_BATCHES, TEST_BATCH)
    folder = next((d for d in searched if all((d / n).is_file() for n in names)), None)
    if folder is None and download_missing:
        folder = fetch_cifar10(root / "cifar10")
    if folder is None:
        missing = [n for n in names if not (searched[0] / n).is_file()]
        raise missing_error("cifar10", missing, root, searched, URL, ARCHIVE_NAME)
    files: dict[str, Any] = {}
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        path = folder / name
        if verify and name in table:
            verify_file(path, table[name])
        files[name] = {"path": str(path), "sha256": file_digest(path, "sha256"),
                       "verified": bool(verify and name in table)}
        parts[name] = _decode(path)
    arrays = {"train_images": np.concatenate([parts[n][0] for n in TRAIN_BATCHES]),
              "train_labels": np.concatenate([parts[n][1] for n in TRAIN_BATCHES]),
              "test_images": parts[TEST_BATCH][0], "test_labels": parts[TEST_BATCH][1]}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays, files


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    key = file_key(path)
    if key not in _decoded:
        images, labels = read_cifar_batch(path)
        images.flags.writeable = False
        labels.flags.writeable = False
        _decoded[key] = (images, labels)
    return _decoded[key]


def fetch_cifar10(target: Path, url: str = URL, offline_fix: str = "") -> Path:
    """Download the archive from `url` (MD5-verified) and install its six batches in ``target/FOLDER``.

    The batches are extracted into a temporary directory beside the destination and each is checked
    against `CHECKSUMS`; only then does the folder replace any earlier one (a rename), so a failure leaves
    neither a partial folder nor the archive behind. Returns the folder.
    """
    archive = download(url, target / ARCHIVE_NAME, ARCHIVE_CHECKSUM, offline_fix=offline_fix)
    staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=target))
    try:
        _extract(archive, staging, url)
        final = target / FOLDER
        if final.exists():
            final.rename(staging / "previous")        # removed with the staging directory below
        (staging / FOLDER).rename(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        archive.unlink(missing_ok=True)


def _extract(archive: Path, staging: Path, url: str) -> None:
    """Extract `archive` into `staging` and check every batch in ``staging/FOLDER`` against `CHECKSUMS`."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"Cannot extract {url}: not a readable .tar.gz ({exc}); nothing was saved.") from None
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        path = staging / FOLDER / name
        if not path.is_file():
            raise DataError(f"The archive from {url} has no {FOLDER}/{name}; nothing was saved. It is not the "
                            f"canonical CIFAR-10 python archive.")
        expected = CHECKSUMS[name]
        actual = file_digest(path, expected.algorithm)
        if actual != expected.hexdigest.lower():
            raise DataError(f"{FOLDER}/{name} in the archive from {url} has {expected.algorithm} {actual}, "
                            f"expected {expected.hexdigest}; nothing was saved.")
