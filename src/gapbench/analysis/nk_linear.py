"""NK 2019's overparameterized linear example: a provable failure of uniform convergence, in closed form.

The pure pieces of the `nk2019-linear` experiment (its job is gapbench.experiments.analysis_jobs.nk_linear_job),
checked in tests/test_linear.py against explicitly materialized data.

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

import numpy as np
import torch
from scipy.stats import norm

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
