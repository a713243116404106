"""KKB 2017 §3 (Prop. 1-2): a linear model on random ReLU features memorizes any labels, and its norm can be made
arbitrarily large without changing a single prediction (SPEC §4.8).

The pure pieces of the `kkb2017-linear-memorization` experiment, checked in tests/test_linear.py against
explicitly materialized data: the minimum-norm interpolant, a direction in the joint null space of the training
and test features, and the seeded random features.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def min_norm_interpolant(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """W* = Tᵀ (Φ Φᵀ)⁻¹ Φ: the minimum-Frobenius-norm W with Φ Wᵀ = T (needs rank(Φ) = m)."""
    gram = features @ features.T
    return torch.linalg.solve(gram, targets).T @ features


def null_direction(train_features: torch.Tensor, test_features: torch.Tensor, seed: int) -> torch.Tensor:
    """A unit vector orthogonal to every training and test feature vector (needs d_φ > m + n_test)."""
    span = torch.cat([train_features, test_features]).T          # (d, m + n)
    if span.shape[0] <= span.shape[1]:
        raise ConfigError(f"The null direction needs more features than training + test points: d_features = "
                          f"{span.shape[0]}, n_train + n_test = {span.shape[1]}. Raise d_features above "
                          f"{span.shape[1]} or lower n_train / n_test.")
    q, _ = torch.linalg.qr(span)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(span.shape[0], generator=gen, dtype=span.dtype)
    v = v - q @ (q.T @ v)
    v = v - q @ (q.T @ v)                                         # second pass: re-orthogonalize
    return v / v.norm()


def random_relu_features(x: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """φ(x) = ReLU(A x)/sqrt(dim), A with i.i.d. N(0, 1) entries from a seeded generator (float64)."""
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(x.shape[1], dim, generator=gen, dtype=torch.float64)
    return torch.relu(x.double() @ proj) / math.sqrt(dim)
