"""The IDX file format (LeCun et al.'s MNIST distribution), gzip-compressed or raw.

Layout: a 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the
values in C order, big-endian. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64. MNIST images are ``0x00000803`` (uint8, 3 dims: n × 28 × 28), labels ``0x00000801``
(uint8, 1 dim: n). A gzip file is recognized by its content (first bytes 0x1f 0x8b), not by its name.

References:
    Y. LeCun, C. Cortes, C. J. C. Burges, The MNIST database of handwritten digits (1998), "file formats".
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAGIC_IMAGES = 0x00000803  # uint8, 3 dims
MAGIC_LABELS = 0x00000801  # uint8, 1 dim


def read_bytes(path: str | Path) -> bytes:
    """The file's content, gunzipped if it is gzip-compressed; DataError naming the file if gzip is broken."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Cannot decompress {path}: it is not a valid gzip file or is truncated ({exc}). "
                        f"Delete it and provide the canonical file again.") from None


def parse_idx(content: bytes, path: str | Path = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array in native byte order; `path` only names the source in errors."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in IDX_TYPES:
        magic = content[:4].hex() if content else "(empty file)"
        raise DataError(f"{path} is not an IDX file: its first bytes are {magic}, expected 0x0000 followed "
                        f"by a type code in {[hex(t) for t in IDX_TYPES]} and the number of dimensions "
                        f"(MNIST images 0x00000803, labels 0x00000801).")
    dtype = np.dtype(IDX_TYPES[content[2]])
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path} is truncated: {len(content)} bytes, shorter than its {header}-byte IDX "
                        f"header.")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        raise DataError(f"{path} is truncated or corrupt: its IDX header declares shape {tuple(shape)} "
                        f"({expected} bytes with the header) but the content has {len(content)} bytes. "
                        f"Delete it and provide the canonical file again.")
    values = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gz or raw) into a numpy array of its stored type and shape."""
    return parse_idx(read_bytes(path), path)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file (gzip-compressed when `compress` or, if None, when the name ends in .gz).

    The inverse of :func:`read_idx`; used to build small test files and to export subsets.
    """
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in IDX_TYPES.items()}
    native = np.asarray(array)
    if native.dtype not in codes:
        raise DataError(f"Cannot write {native.dtype} to IDX: supported types are {sorted(map(str, codes))}.")
    head = bytes([0, 0, codes[native.dtype], native.ndim]) + struct.pack(f">{native.ndim}I", *native.shape)
    body = head + native.astype(native.dtype.newbyteorder(">")).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        body = gzip.compress(body, mtime=0)
    path.write_bytes(body)
    return path
