"""Stop rules, evaluated once per epoch on the full training split (and once at epoch 0, before training).

Rules (``TrainConfig.stop``):

- ``margin``: stop when the fraction of training points with margin Γ_i ≥ γ* reaches ``margin_fraction``
  (NK 2019: ≥ 99 % of the training set at γ* = 10). Γ_i = f(x_i)_{y_i} − max_{j≠y_i} f(x_i)_j.
- ``loss``: stop when the full-pass training loss (the registered loss, batch mean over the whole training
  split, computed under inference mode) is ≤ ``loss_threshold``.
- ``train_error``: stop when the 0-1 training error (Γ_i ≤ 0 counts as an error) is ≤ ``error_threshold``.
- ``epochs``: train exactly ``max_epochs`` epochs; reaching them counts as meeting the rule ('converged').

Any other rule that has not been met after ``max_epochs`` epochs ends the run with status 'max_epochs'.
Checking at epoch 0 means a model that already satisfies its rule at initialization is not trained.
"""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..inference import margins_from_logits
from .losses import Loss


def epoch_metrics(out: torch.Tensor, y: torch.Tensor, loss: Loss, target_margin: float) -> dict[str, float]:
    """Full-pass training metrics from the logits `out` (n, K) of every training point.

    Returns loss (batch mean over all n points), train_error (fraction with Γ ≤ 0) and margin_fraction
    (fraction with Γ ≥ target_margin).
    """
    margin = margins_from_logits(out, y)
    return {"loss": float(loss.mean(out, y)),
            "train_error": float((margin <= 0).double().mean()),
            "margin_fraction": float((margin >= target_margin).double().mean())}


def stop_reason(metrics: dict[str, float], tc: TrainConfig, epoch: int) -> str:
    """Why the rule `tc.stop` is met after `epoch` epochs, or '' when it is not."""
    if tc.stop == "margin" and metrics["margin_fraction"] >= tc.margin_fraction:
        return (f"margin: {metrics['margin_fraction']:.2%} of training points have margin >= "
                f"{tc.target_margin:g} (target {tc.margin_fraction:.2%}) at epoch {epoch}")
    if tc.stop == "loss" and metrics["loss"] <= tc.loss_threshold:
        return f"loss: training loss {metrics['loss']:.4g} <= {tc.loss_threshold:g} at epoch {epoch}"
    if tc.stop == "train_error" and metrics["train_error"] <= tc.error_threshold:
        return (f"train_error: training error {metrics['train_error']:.4g} <= {tc.error_threshold:g} "
                f"at epoch {epoch}")
    if tc.stop == "epochs" and epoch >= tc.max_epochs:
        return f"epochs: trained max_epochs={tc.max_epochs} epochs"
    return ""


def divergence_reason(step_losses: torch.Tensor, first_step: int, epoch: int) -> str:
    """'loss is nan at step S (epoch E)' for the first non-finite per-step loss, or '' when all are finite.

    `step_losses` holds the minibatch losses of one epoch in order; `first_step` is the global index of its
    first entry (steps are numbered from 1).
    """
    bad = (~torch.isfinite(step_losses)).nonzero()
    if bad.numel() == 0:
        return ""
    i = int(bad[0, 0])
    return f"loss is {float(step_losses[i])} at step {first_step + i} (epoch {epoch})"


def eval_divergence_reason(metrics: dict[str, float], epoch: int) -> str:
    """'training loss is inf at epoch E' when the full-pass loss is not finite, else ''."""
    if not math.isfinite(metrics["loss"]):
        return f"training loss is {metrics['loss']} at epoch {epoch} (full-pass evaluation)"
    return ""
