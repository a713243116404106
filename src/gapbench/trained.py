"""The result of training one model: what `train.fit` returns and `checkpoint.save` writes.

``Run.init_source`` records where the initial weights came from, so that a bound using them as a prior mean
(PAC-Bayes) can check they do not depend on its points:

    {"kind": "seeded", "seed": s}          built by build_model with ModelConfig.init_seed = s (data-free)
    {"kind": "run", "signature": sig, "source": pool, "train_indices": idx, "init_source": parent's record}
                                           the trained weights of run `sig`, which saw the points `idx` of
                                           the pool `pool` (and, through its own init, those of its parent)
    {"kind": "unknown"}                    not recorded (checkpoints written before the field existed)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import RunConfig, signature

TRAIN_STATUSES = ("converged", "max_epochs", "failed")


@dataclass
class Run:
    """A trained model with everything needed to measure it and to reproduce it."""

    model: nn.Module                      # trained weights (eval with gapbench.inference)
    init_state: dict[str, torch.Tensor]   # state_dict at initialization (before any step)
    config: RunConfig
    train_indices: torch.Tensor           # positions of the training points in their source pool
    status: str = "converged"             # one of TRAIN_STATUSES
    reason: str = ""                      # why it stopped ('margin 99% >= 10 at epoch 12', 'loss is nan at step 40')
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0                  # wall-clock training time
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per evaluation (epoch, loss, ...)
    extra: dict[str, Any] = field(default_factory=dict)           # e.g. two-phase gate state
    init_source: dict[str, Any] = field(default_factory=lambda: unknown_source())  # module docstring

    @property
    def signature(self) -> str:
        return signature(self.config)

    def init_model(self) -> nn.Module:
        """A copy of the model at its initial weights (the reference Z for distance-from-init measures)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.init_state)
        return model


def unknown_source() -> dict[str, Any]:
    """The init_source of a Run whose initial weights have no record."""
    return {"kind": "unknown"}


def seeded_source(seed: int) -> dict[str, Any]:
    """The init_source of weights drawn by build_model from a generator seeded with `seed` (no data)."""
    return {"kind": "seeded", "seed": int(seed)}


def source_from_run(run: Run, pool: str) -> dict[str, Any]:
    """The init_source of weights that start from `run`'s trained weights; `pool` is the source of the points
    `run` trained on (its Split.source, e.g. 'train')."""
    return {"kind": "run", "signature": run.signature, "source": str(pool),
            "train_indices": torch.as_tensor(run.train_indices).detach().cpu().clone(),
            "init_source": run.init_source}


def data_ancestry(init_source: dict[str, Any]) -> tuple[list[tuple[str, str, torch.Tensor]], str]:
    """Every (signature, pool, indices) of a run whose training produced weights with this init_source,
    following the chain of parent runs, and the kind of the chain's root ('seeded' or 'unknown')."""
    points = []
    while init_source.get("kind") == "run":
        points.append((str(init_source.get("signature", "?")), init_source["source"],
                       torch.as_tensor(init_source["train_indices"])))
        init_source = init_source.get("init_source", unknown_source())
    return points, init_source.get("kind", "unknown")
