"""The two generated distributions of Nagarajan & Kolter (2019) and their mirrored training sets S'.

Each generator takes a numpy Generator (see :func:`gapbench.data.subsets.rng`) and returns float32 inputs
and int64 class labels; the S' constructions are pure functions of a training set.

hypersphere (NK §4, SPEC §4.2): g ~ N(0, I_d), x = r·g/‖g‖ with r = r_inner (label 0) or r_outer (label 1),
each with probability ½. S' moves every training point to the other sphere, x' = x·r_outer/r_inner or
x·r_inner/r_outer, and flips its label; S' has the same distribution as S.

nk_linear (NK §3, SPEC §4.3): y uniform on {−1, +1}, x = (x₁, x₂) with x₁ = 2y·u ∈ R^K and
x₂ ~ N(0, (noise_var_scale/D)·I_D) ∈ R^D independent of y, where u = (u_norm_scale/√m)·1/√K (the all-ones
direction, so ‖u‖ = u_norm_scale/√m). Stored as class labels c = (y + 1)/2: class 1 ↔ y = +1,
class 0 ↔ y = −1. S' = the training points with x₂ negated and the same labels. Constants reconstructed
[verify] from NK's description (‖u‖ = 1/√m, Var x₂ = 32/D per coordinate, D ≥ 1000·m); the mechanism does
not depend on them, so each is a parameter. Memory: n·(K + D)·4 bytes per split (float32), e.g.
m = 1000, D = 10⁶: 4 GB for the training set alone.

References:
    V. Nagarajan, J. Z. Kolter, Uniform convergence may be unable to explain generalization in deep learning,
    NeurIPS 2019, §3 (linear example) and §4 (hypersphere); NeurIPS poster and slides; blog notebook in
    locuslab/uniform-convergence-NeurIPS19.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import check_positive_float, check_positive_int, param_error

ROWS_PER_CHUNK = 4096  # rows of Gaussian noise drawn per step, bounding the temporary memory


def hypersphere(n: int, dim: int, r_inner: float, r_outer: float, gen: np.random.Generator,
                ) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform on the two spheres: (x float32 (n, dim), y int64 (n,), 0 = inner, 1 = outer)."""
    where = "hypersphere()"
    check_positive_int(n, "n", where, minimum=0)
    check_positive_int(dim, "dim", where)
    _check_radii(r_inner, r_outer, where)
    x = _gaussian_rows(n, dim, gen)
    y = gen.integers(0, 2, size=n, dtype=np.int64)
    radius = np.where(y == 1, r_outer, r_inner).astype(np.float32)
    x *= (radius / np.linalg.norm(x, axis=1))[:, None]
    return x, y


def hypersphere_sprime(x: np.ndarray, y: np.ndarray, r_inner: float, r_outer: float,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """S': each point moved to the other sphere (x·r_outer/r_inner or x·r_inner/r_outer), label flipped."""
    _check_radii(r_inner, r_outer, "hypersphere_sprime()")
    scale = np.where(y == 0, r_outer / r_inner, r_inner / r_outer).astype(np.float32)
    return (x * scale[:, None]).astype(np.float32), (1 - y).astype(np.int64)


def nk_linear_u(m: int, k: int, u_norm_scale: float = 1.0) -> np.ndarray:
    """u ∈ R^K: the all-ones direction scaled to ‖u‖ = u_norm_scale/√m (float64)."""
    check_positive_int(m, "m", "nk_linear_u()")
    check_positive_int(k, "K", "nk_linear_u()")
    check_positive_float(u_norm_scale, "u_norm_scale", "nk_linear_u()")
    return np.full(k, u_norm_scale / math.sqrt(m) / math.sqrt(k))


def nk_linear(n: int, m: int, k: int, d: int, gen: np.random.Generator, u_norm_scale: float = 1.0,
              noise_var_scale: float = 32.0) -> tuple[np.ndarray, np.ndarray]:
    """n points of NK's linear example for training-set size m: (x float32 (n, K + D), class labels (n,)).

    x[:, :K] = 2y·u, x[:, K:] ~ N(0, (noise_var_scale/D)·I_D), i.e. each coordinate has
    std = sqrt(noise_var_scale/D); labels c = (y + 1)/2.
    """
    where = "nk_linear()"
    check_positive_int(n, "n", where, minimum=0)
    check_positive_int(d, "D", where)
    check_positive_float(noise_var_scale, "noise_var_scale", where)
    u = nk_linear_u(m, k, u_norm_scale)
    classes = gen.integers(0, 2, size=n, dtype=np.int64)
    sign = (2 * classes - 1).astype(np.float64)
    x = np.empty((n, k + d), dtype=np.float32)
    x[:, :k] = 2.0 * sign[:, None] * u[None, :]
    x[:, k:] = _gaussian_rows(n, d, gen)
    x[:, k:] *= np.float32(math.sqrt(noise_var_scale / d))
    return x, classes


def nk_linear_sprime(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """S': the training points with x₂ = x[:, K:] negated, labels unchanged."""
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, k:] *= -1
    return out, np.array(y, dtype=np.int64, copy=True)


def _gaussian_rows(n: int, dim: int, gen: np.random.Generator) -> np.ndarray:
    """float32 (n, dim) standard normal, drawn ROWS_PER_CHUNK rows at a time (no float64 temporary)."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, ROWS_PER_CHUNK):
        stop = min(start + ROWS_PER_CHUNK, n)
        out[start:stop] = gen.standard_normal((stop - start, dim), dtype=np.float32)
    return out


def _check_radii(r_inner: float, r_outer: float, where: str) -> None:
    check_positive_float(r_inner, "r_inner", where)
    check_positive_float(r_outer, "r_outer", where)
    if r_outer <= r_inner:
        raise param_error("r_outer", where, f"a float > r_inner = {r_inner}", r_outer,
                          "The outer sphere must be larger than the inner one.")
