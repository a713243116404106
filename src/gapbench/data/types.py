"""The in-memory dataset types every other module consumes.

A dataset lives as tensors on one device (airbench's rule: no DataLoader workers for in-memory data).
``x`` is float32 (pixels in [0, 1]); ``y`` is int64 class labels in [0, num_classes). ``indices`` are the
positions of the points in their source pool (the training-image file for training/validation points, the
test file for test points), so that overlaps between splits can be checked and recorded in checkpoints.
``pool`` names that pool across datasets (``'mnist:train'``; a generated pool adds the parameters that fix its
points), so that indices are only ever compared within one pool (see :func:`gapbench.data.pool_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import param_error, unknown_name


@dataclass(frozen=True)
class Split:
    """One split of a dataset: inputs, labels, and where each point came from."""

    x: torch.Tensor                 # (n, *input_shape) float32
    y: torch.Tensor                 # (n,) int64
    indices: torch.Tensor           # (n,) int64 positions in `source`
    source: str                     # which pool the indices refer to: 'train' or 'test' (or a generator tag)
    name: str = ""                  # 'train', 'val', 'test', 'sprime', ...
    pool: str = ""                  # identity of the source pool, e.g. 'mnist:train'; '' = unknown

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device) -> Split:
        return replace(self, x=self.x.to(device), y=self.y.to(device), indices=self.indices.to(device))

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits of one named dataset, plus extra named splits (e.g. NK's S')."""

    name: str
    train: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    val: Split | None = None
    extra: dict[str, Split] = field(default_factory=dict)   # e.g. {'sprime': ...}
    info: dict[str, Any] = field(default_factory=dict)      # provenance: files, checksums, generator params

    def split(self, name: str) -> Split:
        """Return the split called `name` ('train', 'val', 'test' or an extra split)."""
        known = {"train": self.train, "test": self.test, **self.extra}
        if self.val is not None:
            known["val"] = self.val
        if name not in known:
            raise unknown_name("split", name, known)
        return known[name]

    def to(self, device: str | torch.device) -> Dataset:
        return replace(self, train=self.train.to(device), test=self.test.to(device),
                       val=None if self.val is None else self.val.to(device),
                       extra={k: v.to(device) for k, v in self.extra.items()})


def as_xy(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a :class:`Split` or an (x, y) tensor pair, checked: n ≥ 1 rows, x of shape (n, ...), y (n,).
    The one normalization of the ``data`` argument of measures, bounds and certificates."""
    if isinstance(data, Split):
        x, y = data.x, data.y
    elif (isinstance(data, (tuple, list)) and len(data) == 2
          and all(isinstance(t, torch.Tensor) for t in data)):
        x, y = data
    else:
        raise param_error("data", where, "a Split or an (x, y) pair of tensors", type(data).__name__,
                          "Pass e.g. dataset.test or (x, y).")
    if y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise param_error("data", where, "a non-empty (x, y) pair with x of shape (n, ...) and y of shape (n,)",
                          f"x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}")
    return x, y
