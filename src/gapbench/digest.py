"""The checksum of both checkpoint formats: one SHA-256 over a sequence of named tensors and plain values.

For each (name, value), in the order given:

    tensor   the line "<name>:<dtype>:<shape as a list>\\n", then the raw bytes of its values in C order
    other    the line "<name>=<encode(value)>\\n"

so changing any value, name, dtype or shape, or the order, changes the digest. What a non-tensor value turns
into is the caller's: :func:`gapbench.checkpoint.weights_digest` writes ``<type name>:<repr>``,
``gapbench.pacbayes.store`` writes canonical JSON. Both formats' files on disk were written with this byte
stream, so it must never change (tests/test_checkpoint_digests.py pins it).

References:
    NIST FIPS 180-4, Secure Hash Standard (SHA-256).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import torch


def named_sha256(items: Iterable[tuple[str, Any]], encode: Callable[[Any], str]) -> str:
    """Hex SHA-256 of `items` (name, value) in order (module doc); `encode` writes each non-tensor value."""
    digest = hashlib.sha256()
    for name, value in items:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{list(value.shape)}\n".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{name}={encode(value)}\n".encode())
    return digest.hexdigest()
