"""Training losses by name, each with its value, its gradient with respect to the logits, and a reference.

Every loss is a mean over the batch of a per-example loss ℓ(f(x), y), with f(x) ∈ R^K the logits and
t = onehot(y) ∈ {0, 1}^K:

- ``softmax_ce``: ℓ = −log softmax(f(x))_y. ∂/∂f = (softmax(f) − t) / B.
- ``sigmoid_ce`` (NK 2019's loss: per-class binary cross-entropy on one-hot targets, averaged over batch ×
  classes): ℓ = (1/K) Σ_k [softplus(f_k) − t_k f_k] = (1/K) Σ_k BCEwithlogits(f_k, t_k).
  ∂/∂f = (sigmoid(f) − t) / (B·K).
- ``squared`` (KKB 2017's ‖ŷ − y‖²; reduction: *sum* over classes, *mean* over the batch):
  ℓ = Σ_k (f_k − t_k)². ∂/∂f = 2 (f − t) / B.

The gradients are what the fused batch-1 path uses instead of autograd; tests check them against autograd.

References:
    Nagarajan & Kolter 2019, *Uniform convergence may be unable to explain generalization in deep learning*
    (released code: ``tf.nn.sigmoid_cross_entropy_with_logits`` on one-hot labels, ``reduce_mean``).
    Kawaguchi, Kaelbling & Bengio 2017 (arXiv v5), §5, squared loss ‖ŷ − y‖₂².
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import unknown_name


@dataclass(frozen=True)
class Loss:
    """A registered loss: per-example value and the gradient of the batch mean with respect to the logits."""

    name: str
    per_example: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (B,K), y (B,)) -> (B,)
    grad: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]         # d mean_B(ℓ) / d logits, (B, K)
    formula: str
    reference: str

    def mean(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch loss: mean over the batch of the per-example loss."""
        return self.per_example(out, y).mean()


def _onehot(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, out.shape[1]).to(out.dtype)


def _softmax_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def _softmax_ce_grad(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.softmax(out, dim=1) - _onehot(out, y)) / out.shape[0]


def _sigmoid_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out, _onehot(out, y), reduction="none").mean(dim=1)


def _sigmoid_ce_grad(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(out) - _onehot(out, y)) / (out.shape[0] * out.shape[1])


def _squared(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - _onehot(out, y)).square().sum(dim=1)


def _squared_grad(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 2.0 * (out - _onehot(out, y)) / out.shape[0]


LOSSES: dict[str, Loss] = {
    "softmax_ce": Loss("softmax_ce", _softmax_ce, _softmax_ce_grad,
                       "mean_B[-log softmax(f)_y]", "standard multiclass cross-entropy"),
    "sigmoid_ce": Loss("sigmoid_ce", _sigmoid_ce, _sigmoid_ce_grad,
                       "mean_{B x K}[BCEwithlogits(f_k, onehot(y)_k)]",
                       "Nagarajan & Kolter 2019, released code (sigmoid CE on one-hot labels, reduce_mean)"),
    "squared": Loss("squared", _squared, _squared_grad,
                    "mean_B[sum_K (f_k - onehot(y)_k)^2]",
                    "Kawaguchi, Kaelbling & Bengio 2017 (v5) §5, Theorem 7's loss ||y_hat - y||^2"),
}


def get_loss(name: str) -> Loss:
    """The registered loss called `name` ('softmax_ce', 'sigmoid_ce' or 'squared')."""
    if name not in LOSSES:
        raise unknown_name("loss", name, LOSSES)
    return LOSSES[name]
