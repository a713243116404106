"""Closed-form linear examples: NK 2019's provable failure of uniform convergence, and KKB's memorization.

Both are job functions for the sweep (``fn(config, runtime, out_dir) -> JobResult``) plus the pure pieces
they are made of, so the tests can check them against explicitly materialized data.

NK linear example (SPEC §4.3; constants reconstructed [verify], each a parameter):
x = (x1, x2), y uniform in {−1, +1}; x1 = 2y·u with u ∈ R^K fixed, ‖u‖ = u_norm_scale/√m (default 1/√m);
x2 ~ N(0, noise_var_scale/D · I_D) (default 32/D), independent of y. One step of gradient descent from w = 0,
step 1, on the linear loss −y·wᵀx gives w = Σ_i y_i x_i, so w1 = 2m·u and w2 = Σ_i y_i x2_i.
Everything needed is a function of the m×m Gram matrix G = X2 X2ᵀ of the training noise:
  training margin  y_i wᵀx_i = 4·m‖u‖² + (Y G Y 1)_i           (Y = diag(y))
  S' margin (x2 → −x2):       4·m‖u‖² − (Y G Y 1)_i
  ‖w‖² = 4m²‖u‖² + 1ᵀ Y G Y 1
  test margin = 4m‖u‖² + ξ, ξ ~ N(0, var_x2·‖w2‖²) exactly (a fresh x2 is independent of w2),
  so the population test error is Φ(−4m‖u‖² / sqrt(var_x2·‖w2‖²)) in closed form.
G is accumulated over column chunks of X2, so D ≥ 1000·m never needs m·D floats at once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import norm

from .config import Runtime
from .errors import ConfigError

CHUNK = 1 << 14  # noise dimensions generated per step: m x CHUNK float64 at a time


def nk_linear_gram(m: int, dim_noise: int, noise_var: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels y ∈ {±1}^m and the Gram matrix X2 X2ᵀ of m draws of N(0, noise_var·I_D), streamed in chunks."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (m,), generator=gen, dtype=torch.int64).double() * 2 - 1
    gram = torch.zeros(m, m, dtype=torch.float64)
    std = math.sqrt(noise_var)
    for start in range(0, dim_noise, CHUNK):
        cols = min(CHUNK, dim_noise - start)
        block = torch.randn(m, cols, generator=gen, dtype=torch.float64) * std
        gram.addmm_(block, block.T)
    return y.numpy(), gram.numpy()


def nk_linear_quantities(y: np.ndarray, gram: np.ndarray, u_sq_norm: float, noise_var: float,
                         gammas: tuple[float, ...] = (0.0, 1.0)) -> dict[str, float]:
    """Every reported quantity of NK's linear example from the labels, the noise Gram matrix and ‖u‖²."""
    m = len(y)
    signal = 4.0 * m * u_sq_norm            # y·w1ᵀx1 = 2m·uᵀ(2u) for every point, train or test
    noise_margin = y * (gram @ y)           # y_i·w2ᵀx2_i = (Y G Y 1)_i
    train_margins = signal + noise_margin
    sprime_margins = signal - noise_margin
    w2_sq = float(y @ gram @ y)
    test_error = float(norm.cdf(-signal / math.sqrt(noise_var * w2_sq)))
    out = {"test_error": test_error,
           "train_error": float(np.mean(train_margins <= 0)),
           "sprime_error": float(np.mean(sprime_margins <= 0)),
           "w_norm": math.sqrt(4.0 * m * m * u_sq_norm + w2_sq),
           "min_train_margin": float(train_margins.min()),
           "uc_lower_bound": float(np.mean(sprime_margins <= 0)) - test_error}
    for gamma in gammas:
        out[f"sprime_margin_error_{gamma:g}"] = float(np.mean(sprime_margins <= gamma))
    return out


def nk_linear_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `nk2019-linear`: one draw of S at one m."""
    from .sweep import JobResult
    p = config["hp"]
    m, dim_noise = int(p["n_train"]), int(p["dim_noise"])
    noise_var = float(p["noise_var_scale"]) / dim_noise
    u_sq_norm = float(p["u_norm_scale"]) ** 2 / m
    y, gram = nk_linear_gram(m, dim_noise, noise_var, int(p["seed"]))
    return JobResult(nk_linear_quantities(y, gram, u_sq_norm, noise_var))


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


def memorization_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `kkb2017-linear-memorization`: min-norm interpolant + c·(direction in the joint null
    space of the training and test features), at one label-noise fraction and one c (KKB §3, Prop. 1-2)."""
    from .api import load_data
    from .sweep import JobResult
    p = config["hp"]
    data = load_data(config["data"]["name"], data_dir=runtime.data_dir, n_train=int(p["n_train"]),
                     n_test=int(p["n_test"]), label_noise=float(p["label_noise"]), subset_seed=int(p["seed"]),
                     label_seed=int(p["seed"]))
    x_train = data.train.x.reshape(len(data.train), -1)
    x_test = data.test.x.reshape(len(data.test), -1)
    if p["features"] == "pixels":
        phi_train, phi_test = x_train.double(), x_test.double()
    else:
        phi_train = random_relu_features(x_train, int(p["d_features"]), int(p["seed"]))
        phi_test = random_relu_features(x_test, int(p["d_features"]), int(p["seed"]))
    targets = torch.nn.functional.one_hot(data.train.y, data.num_classes).double()
    w_star = min_norm_interpolant(phi_train, targets)
    direction = null_direction(phi_train, phi_test, int(p["seed"]) + 1)
    # add c·v to every class row with a fixed sign pattern: the norm grows like c·sqrt(K)
    signs = torch.where(torch.arange(data.num_classes) % 2 == 0, 1.0, -1.0).double()
    w_c = w_star + float(p["c"]) * signs[:, None] * direction[None, :]
    pred_train, pred_test = phi_train @ w_c.T, phi_test @ w_c.T
    base_test = phi_test @ w_star.T
    return JobResult({
        "train_error": float((pred_train.argmax(1) != data.train.y).double().mean()),
        "test_error": float((pred_test.argmax(1) != data.test.y).double().mean()),
        "w_norm": float(w_c.norm()),
        "w_norm_ratio": float(w_c.norm() / w_star.norm()),
        "max_test_output_change": float((pred_test - base_test).abs().max()),
        "train_residual": float((pred_train - targets).abs().max()),
        "d_features": float(phi_train.shape[1]),
    })
