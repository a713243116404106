"""Held-out points must not be training points: the check behind every held-out bound and certificate.

A held-out bound (KKB §6 Proposition, Langford 2005) is about n points independent of the model. Points the
model was trained on are not: its error there is biased low, and a "bound" computed on them is no bound. The
training record of a model (a :class:`~gapbench.trained.Run`, or its ``train_indices`` with the pool they point
into) is compared with a :class:`~gapbench.data.types.Split` by pool identity and position:

    no record                 the result states the assumption it rests on (and how to have it checked)
    same pool, overlap        refused (GapbenchError), whatever the size of the overlap
    same pool, no overlap     "checked: disjoint from the k training points"
    other pool, same dataset  "checked: ..." (a test file or a fresh generated draw holds no training point)
    other dataset, no pool    refused: indices of different pools say nothing about each other
    an (x, y) pair            refused when a record is given (pass the Split); assumed otherwise
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .data.registry import pool_id
from .data.types import Split
from .errors import GapbenchError

ASSUMED = ("assumes the {n} points were not used to train or select f; pass run= or train_indices= to have it "
           "checked")


@dataclass(frozen=True)
class TrainingRecord:
    """Which points a model was trained on: positions in the pool named `pool` (a Split.pool identity)."""

    indices: torch.Tensor
    pool: str


def training_record(run: Any = None, train_indices: Any = None, train_source: str | None = None, *,
                    where: str) -> TrainingRecord | None:
    """The record given as ``run=`` (a Run) or as ``train_indices=`` with ``train_source=``; None if neither."""
    if run is not None and train_indices is not None:
        raise GapbenchError(f"{where} got both run= and train_indices=. Pass one: run= (its training indices "
                            f"and data config are used), or train_indices= with train_source=.")
    if run is not None:
        if not hasattr(run, "train_indices") or not hasattr(run, "config"):
            raise GapbenchError(f"The 'run' parameter of {where} must be a gapbench Run (gb.fit's result or "
                                f"gb.load_checkpoint's). Got {type(run).__name__} instead.")
        return TrainingRecord(_as_indices(run.train_indices, "run.train_indices", where),
                              pool_id(run.config.data, "train"))
    if train_indices is not None:
        if not isinstance(train_source, str) or not train_source:
            raise GapbenchError(f"The 'train_source' parameter of {where} must name the pool the train_indices "
                                f"point into. Got {train_source!r} instead. Pass train_source=data.train.pool "
                                f"(e.g. 'mnist:train').")
        return TrainingRecord(_as_indices(train_indices, "train_indices", where), train_source)
    if train_source is not None:
        raise GapbenchError(f"{where} got train_source= without train_indices=. Pass both, or run=.")
    return None


def held_out_statement(data: Any, n: int, record: TrainingRecord | None, *, where: str) -> str:
    """What the held-out guarantee on `data` (n points) rests on; raises where it cannot hold or be checked."""
    if record is None:
        return ASSUMED.format(n=n)
    if not isinstance(data, Split):
        raise GapbenchError(f"The 'data' parameter of {where} is an (x, y) pair, whose points cannot be "
                            f"checked against the training record. Pass the Split (e.g. data.test), which "
                            f"knows where its points came from, or drop run=/train_indices= to certify under "
                            f"the stated assumption.")
    return check_disjoint(record.indices, data, train_pool=record.pool)


def check_disjoint(train_indices: torch.Tensor, split: Split, *, train_pool: str) -> str:
    """Raise when the held-out `split` shares points with the training points (positions in `train_pool`);
    otherwise return the 'checked: ...' statement."""
    train = torch.as_tensor(train_indices).reshape(-1).cpu()
    if not split.pool:
        raise GapbenchError(f"The held-out split '{split.name or split.source}' does not say which pool its "
                            f"points come from (Split.pool is empty), so it cannot be checked against the "
                            f"{len(train)} training points. Use a split from gb.load_data, or drop "
                            f"run=/train_indices= to certify under the stated assumption.")
    if _dataset(split.pool) != _dataset(train_pool):
        raise GapbenchError(f"The held-out split '{split.name or split.source}' comes from '{split.pool}', but "
                            f"the {len(train)} training points come from '{train_pool}', another dataset: "
                            f"the training record says nothing about these points. Certify on a split of "
                            f"'{_dataset(train_pool)}', or drop run=/train_indices= to certify under the "
                            f"stated assumption.")
    if split.pool != train_pool:
        return (f"checked: drawn from '{split.pool}', not from '{train_pool}', the pool of the {len(train)} "
                f"training points")
    held = split.indices.reshape(-1).cpu()
    overlap = int(torch.isin(held, train).sum())
    if overlap:
        raise GapbenchError(f"The held-out split '{split.name or split.source}' shares {overlap} of its "
                            f"{len(held)} points with the {len(train)} training points of the model (same "
                            f"source pool '{split.pool}'), so no held-out bound is valid on it. Use the test "
                            f"split (--split test on the command line, data.test in Python), or a validation "
                            f"split disjoint from training.")
    return f"checked: disjoint from the {len(train)} training points"


def _dataset(pool: str) -> str:
    return pool.split(":", 1)[0]


def _as_indices(indices: Any, param: str, where: str) -> torch.Tensor:
    try:
        out = torch.as_tensor(indices)
    except (TypeError, ValueError, RuntimeError):
        out = None
    if out is None or out.dtype.is_floating_point or out.dtype.is_complex or out.dtype == torch.bool:
        raise GapbenchError(f"The '{param}' parameter of {where} must be integer positions in the training "
                            f"pool. Got {type(indices).__name__} instead. Pass run.train_indices or a tensor "
                            f"of ints.")
    return out.reshape(-1)
