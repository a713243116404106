"""Batched evaluation of a classifier: logits, margins, 0-1 error.

Margin convention (SPEC §3): Γ(f(x), y) = f(x)_y − max_{j≠y} f(x)_j. A point is misclassified when Γ ≤ 0
(a tie counts as an error) and counts in the margin loss L̂_γ when Γ ≤ γ.
All functions run under ``torch.inference_mode()`` in big batches, never change the model's train/eval mode
permanently, and return tensors on the model's device.
(This module was gapbench.evaluate; ``gb.evaluate`` is now the bench of gapbench.evaluation.)
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

EVAL_BATCH = 8192  # rows per forward pass: large enough to reach matmul peak, small enough for any CNN here


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Put `model` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def logits(model: nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Model outputs for all rows of x, computed in batches under inference mode."""
    with eval_mode(model), torch.inference_mode():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def margins_from_logits(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Γ_i = out[i, y_i] − max_{j≠y_i} out[i, j] for every row."""
    true = out.gather(1, y[:, None]).squeeze(1)
    others = out.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margins of `model` on (x, y)."""
    return margins_from_logits(logits(model, x), y.to(x.device))


def zero_one_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of points with margin ≤ 0 (ties are errors)."""
    return float((margins(model, x, y) <= 0).double().mean())

