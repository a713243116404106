"""The result of training one model: what `train.fit` returns and `checkpoint.save` writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import RunConfig, signature

STATUSES = ("converged", "max_epochs", "failed")


@dataclass
class Run:
    """A trained model with everything needed to measure it and to reproduce it."""

    model: nn.Module                      # trained weights (eval with gapbench.evaluate)
    init_state: dict[str, torch.Tensor]   # state_dict at initialization (before any step)
    config: RunConfig
    train_indices: torch.Tensor           # positions of the training points in their source pool
    status: str = "converged"             # one of STATUSES
    reason: str = ""                      # why it stopped ('margin 99% >= 10 at epoch 12', 'loss is nan at step 40')
    epochs: int = 0
    steps: int = 0
    seconds: float = 0.0                  # wall-clock training time
    history: list[dict[str, float]] = field(default_factory=list)  # one dict per evaluation (epoch, loss, ...)
    extra: dict[str, Any] = field(default_factory=dict)           # e.g. two-phase gate state

    @property
    def signature(self) -> str:
        return signature(self.config)

    def init_model(self) -> nn.Module:
        """A copy of the model at its initial weights (the reference Z for distance-from-init measures)."""
        import copy
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.init_state)
        return model
