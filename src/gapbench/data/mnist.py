"""MNIST and Fashion-MNIST: the four IDX files, verified against their canonical checksums.

Each file is looked up as ``<data-dir>/<name>/<stem>.gz`` or ``<stem>`` (also torchvision's
``<data-dir>/<MNIST|FashionMNIST>/raw/``). Its digest is checked against the canonical table before it is
decoded; nothing half-loaded is used. Decoded uint8 arrays are cached in memory per process, keyed by the
file's (path, size, mtime), and returned read-only; the data directory is never written (it may be
read-only), except by an explicit ``download=True``.

Canonical checksums (hard-coded so the package does not depend on any local copy):
    MNIST: SHA-256 of the four ``.gz`` files of the original distribution, and MD5 of their decompressed
    content (for raw files). Fashion-MNIST: the MD5s published by Zalando Research for the ``.gz`` files.

References:
    Y. LeCun, C. Cortes, C. J. C. Burges, The MNIST database of handwritten digits (1998).
    H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a novel image dataset for benchmarking machine learning
    algorithms, arXiv:1708.07747 (2017).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, unknown_name
from .files import Checksum, download, file_digest, file_key, find_file, missing_error, verify_file
from .idx import MAGIC_IMAGES, MAGIC_LABELS, read_idx

STEMS = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
NUM_CLASSES = 10
IMAGE_SIDE = 28
MAX_PIXEL = 255.0  # uint8 pixels are divided by this to lie in [0, 1]

MNIST_CHECKSUMS = {
    "train-images-idx3-ubyte.gz": Checksum(
        "sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": Checksum(
        "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": Checksum(
        "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": Checksum(
        "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    "train-images-idx3-ubyte": Checksum("md5", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": Checksum("md5", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": Checksum("md5", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": Checksum("md5", "27ae3e4e09519cfbb04c329615203637"),
}
FASHION_CHECKSUMS = {
    "train-images-idx3-ubyte.gz": Checksum("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train-labels-idx1-ubyte.gz": Checksum("md5", "25c81989df183df01b3e8a0aad5dffbe"),
    "t10k-images-idx3-ubyte.gz": Checksum("md5", "bef4ecab320f06d8554ea6380940ec79"),
    "t10k-labels-idx1-ubyte.gz": Checksum("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
}
SOURCES = {  # name -> (canonical checksums, download URL of the .gz files, torchvision folder name)
    "mnist": (MNIST_CHECKSUMS, "https://ossci-datasets.s3.amazonaws.com/mnist/", "MNIST"),
    "fashion_mnist": (FASHION_CHECKSUMS, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "FashionMNIST"),
}

_decoded: dict[tuple[str, int, int], np.ndarray] = {}


def load_mnist_arrays(data_dir: str | Path, name: str = "mnist", *,
                      checksums: Mapping[str, Checksum] | None = None, verify: bool = True,
                      download_missing: bool = False) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The four arrays of an IDX dataset and their provenance.

    Returns ``(arrays, files)``: arrays ``train_images`` (60000, 28, 28) uint8, ``train_labels`` (60000,)
    uint8, ``test_images``, ``test_labels`` (read-only, shared with the in-memory cache), and per file
    ``{"path", "sha256", "verified"}``. `checksums` replaces the canonical table (file name -> Checksum); a
    file with no entry is loaded and recorded as unverified. `verify=False` skips the check.
    """
    if name not in SOURCES:
        raise unknown_name("IDX dataset", name, SOURCES)
    canonical, url, torchvision_dir = SOURCES[name]
    table = canonical if checksums is None else checksums
    root = Path(data_dir)
    searched = [root / name, root / torchvision_dir / "raw"]
    paths = {key: find_file(stem, searched) for key, stem in STEMS.items()}
    if download_missing:
        for key, stem in STEMS.items():
            if paths[key] is None:
                paths[key] = download(f"{url}{stem}.gz", searched[0] / f"{stem}.gz", table.get(f"{stem}.gz"))
    missing = [f"{STEMS[k]}[.gz]" for k, p in paths.items() if p is None]
    if missing:
        gz_names = ", ".join(f"{stem}.gz" for stem in STEMS.values())
        raise missing_error(name, missing, root, searched, url, f"the four canonical .gz files ({gz_names})")
    files: dict[str, Any] = {}
    for key, path in paths.items():
        expected = table.get(path.name)
        if verify and expected is not None:
            verify_file(path, expected)
        files[key] = {"path": str(path), "sha256": file_digest(path, "sha256"),
                      "verified": bool(verify and expected is not None)}
    arrays = {key: _decode(path) for key, path in paths.items()}
    _check_consistent(arrays, paths)
    return arrays, files


def _decode(path: Path) -> np.ndarray:
    """read_idx with a per-process cache; the cached array is read-only so no caller can mutate it."""
    key = file_key(path)
    if key not in _decoded:
        array = read_idx(path)
        array.flags.writeable = False
        _decoded[key] = array
    return _decoded[key]


def _check_consistent(arrays: dict[str, np.ndarray], paths: dict[str, Path]) -> None:
    """Magic/shape of each file, equal image and label counts, labels in [0, 10)."""
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise DataError(f"{image_path} is not an image file: expected IDX magic {MAGIC_IMAGES:#010x} "
                            f"with n × {IMAGE_SIDE} × {IMAGE_SIDE} uint8 images, got {images.dtype} of shape "
                            f"{images.shape}.")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{label_path} is not a label file: expected IDX magic {MAGIC_LABELS:#010x} with "
                            f"n uint8 labels, got {labels.dtype} of shape {labels.shape}.")
        if len(images) != len(labels):
            raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} "
                            f"labels; the two files do not belong together.")
        if len(labels) and int(labels.max()) >= NUM_CLASSES:
            bad = int(np.argmax(labels >= NUM_CLASSES))
            raise DataError(f"{label_path} has labels out of range: label {int(labels[bad])} at position "
                            f"{bad}, expected classes 0..{NUM_CLASSES - 1}. The file is corrupt; provide the "
                            f"canonical file again.")
