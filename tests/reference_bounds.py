"""Slow, obviously correct references for the bounds: pure Python loops, brute-force sums, plain numpy.

Nothing here imports gapbench's bound code; each function is the textbook formula written out. The mp_*
functions work at 50 digits with mpmath, so they need no log-space tricks of their own.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import torch
from torch import nn


def binomial_cdf(n: int, k: int, p: float) -> float:
    """P[Bin(n, p) ≤ k] by summing the pmf C(n, i)·p^i·(1 − p)^(n − i) term by term."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def binomial_inverse(n: int, k: int, delta: float) -> float:
    """max{p : P[Bin(n, p) ≤ k] ≥ δ} by 100 halvings with the brute-force cdf (1 for k = n)."""
    if k == n:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if binomial_cdf(n, k, mid) >= delta:
            lo = mid
        else:
            hi = mid
    return hi


def kl(q: float, p: float) -> float:
    """Binary kl in nats, written out with the 0·ln 0 = 0 convention."""
    total = 0.0
    if q > 0:
        total += q * math.log(q / p)
    if q < 1:
        total += (1 - q) * math.log((1 - q) / (1 - p))
    return total


def kl_inverse(q: float, c: float) -> float:
    """max{p ∈ [q, 1] : kl(q‖p) ≤ c}: scan p upward in steps of 1e-4, then 60 halvings in the last step."""
    step = 1e-4
    p = q
    while p + step < 1 and kl(q, p + step) <= c:
        p += step
    lo, hi = p, min(p + step, 1.0)
    if hi == 1.0 and (q == 1.0 or kl(q, 1 - 1e-15) <= c):
        return 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if kl(q, mid) <= c:
            lo = mid
        else:
            hi = mid
    return hi


def kl_diag_gaussians(mean_q, std_q, mean_p, std_p) -> float:
    """Σ_i KL(N(μq_i, σq_i²) ‖ N(μp_i, σp_i²)), one coordinate at a time with the 1-D formula
    ln(σp/σq) + (σq² + (μq − μp)²)/(2σp²) − 1/2."""
    total = 0.0
    for mq, sq, mp, sp in zip(mean_q, std_q, mean_p, std_p, strict=False):
        total += math.log(sp / sq) + (sq ** 2 + (mq - mp) ** 2) / (2 * sp ** 2) - 0.5
    return total


def union_weight(j: int) -> float:
    """6/(π²·i²) with i the 1-based position of j in the enumeration 0, 1, −1, 2, −2, … of ℤ."""
    order = [0]
    for m in range(1, abs(j) + 1):
        order += [m, -m]
    return 6 / (math.pi ** 2 * (order.index(j) + 1) ** 2)


def margins(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f(x)_y − max_{j≠y} f(x)_j, one row at a time."""
    out = []
    for row, label in zip(logits, y, strict=False):
        others = [v for j, v in enumerate(row) if j != label]
        out.append(row[label] - max(others))
    return np.array(out)


def bartlett2017(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, *, gamma: float, delta: float,
                 spectral: list[float], l21: list[float]) -> float:
    """Lemma A.8 at fixed γ, s_i, b_i (given), confidence term 3·sqrt(ln(2/δ)/(2n)); forward pass of the
    bias-free ReLU net in numpy, ‖X‖_F summed row by row."""
    n = len(y)
    h = x.reshape(n, -1)
    x_fro = math.sqrt(sum(float(row @ row) for row in h))
    for i, w in enumerate(weights):
        h = h @ w.T
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    margin_loss = float(np.mean(margins(h, y) <= gamma))
    width = max([weights[0].shape[1]] + [w.shape[0] for w in weights])
    ratio = sum((b / s) ** (2 / 3) for b, s in zip(l21, spectral, strict=False)) ** 1.5
    complexity = 72 * x_fro * math.log(2 * width) * math.log(n) / (gamma * n) * math.prod(spectral) * ratio
    return margin_loss + 8 / n + complexity + 3 * math.sqrt(math.log(2 / delta) / (2 * n))


def l21_rows(w: np.ndarray) -> float:
    """‖Wᵀ‖_{2,1}: the sum over rows of W of their Euclidean norms, with explicit loops."""
    return sum(math.sqrt(sum(v * v for v in row)) for row in w)


def argmax_model() -> nn.Sequential:
    """f(x) = x on two inputs: it predicts the larger coordinate, so its errors on any data are known by hand."""
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[0].bias.zero_()
    return model


# ---- held-out bounds at 50 digits (mpmath), for the property tests -------------------------------------------

MP_DIGITS = 50


def mp_log_confidence(delta: float, family_size: int):
    """L = ln|F| − ln δ at 50 digits (|F| any Python int)."""
    return mpmath.log(mpmath.mpf(family_size)) - mpmath.log(mpmath.mpf(delta))


def mp_binomial_cdf(n: int, k: int, p) -> mpmath.mpf:
    """P[Bin(n, p) ≤ k] at 50 digits: the pmf summed from its tail's largest term outward, each next term by
    the ratio pmf(i + 1)/pmf(i) = (n − i)p/((i + 1)(1 − p)), until a term is 1e-60 of the sum.

    The pmf rises up to m = ⌊(n + 1)p⌋ and falls after it, so for k < m the terms i = k, k − 1, … fall, and for
    k ≥ m the upper tail i = k + 1, k + 2, … falls; that tail is subtracted from 1 (then cdf ≥ 1/2-ish, no
    cancellation that matters at 50 digits).
    """
    with mpmath.workdps(MP_DIGITS):
        p = mpmath.mpf(p)
        if p <= 0 or k >= n:
            return mpmath.mpf(1)
        if p >= 1:
            return mpmath.mpf(0)
        lower = k < mpmath.floor((n + 1) * p)
        start = k if lower else k + 1
        term = mpmath.exp(mpmath.loggamma(n + 1) - mpmath.loggamma(start + 1) - mpmath.loggamma(n - start + 1)
                          + start * mpmath.log(p) + (n - start) * mpmath.log1p(-p))
        total, i = mpmath.mpf(0), start
        while 0 <= i <= n:
            total += term
            if term < total * mpmath.mpf(10) ** -60:
                break
            if lower:
                term *= i * (1 - p) / ((n - i + 1) * p)
                i -= 1
            else:
                term *= (n - i) * p / ((i + 1) * (1 - p))
                i += 1
        return total if lower else 1 - total


def mp_binomial_brackets(n: int, k: int, delta: float, family_size: int, value: float, tol: float) -> bool:
    """Whether `value` is within `tol` above Bin⁻(n, k, δ/|F|), checked at 50 digits by its definition:
    P[Bin(n, p) ≤ k] is decreasing in p, so Bin⁻ ∈ [value − tol, value] iff cdf(value) ≤ δ/|F| ≤
    cdf(value − tol)."""
    with mpmath.workdps(MP_DIGITS):
        level = mpmath.exp(-mp_log_confidence(delta, family_size))
        if k == n:
            return value == 1.0
        low = max(value - tol, 0.0)
        return mp_binomial_cdf(n, k, value) <= level <= mp_binomial_cdf(n, k, low)


def mp_kl(q, p):
    """Binary kl at 50 digits (0·ln 0 = 0)."""
    total = mpmath.mpf(0)
    if q > 0:
        total += q * mpmath.log(q / p)
    if q < 1:
        total += (1 - q) * mpmath.log((1 - q) / (1 - p))
    return total


def mp_bisect_last_true(predicate, lo, hi, steps: int = 120):
    """max{p ∈ [lo, hi] : predicate(p)} for a predicate true on [lo, p*] and false on (p*, hi]: hi itself when
    predicate(hi), else 120 halvings at 50 digits (upper end returned)."""
    with mpmath.workdps(MP_DIGITS):
        lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
        if predicate(hi):
            return hi
        for _ in range(steps):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if predicate(mid) else (lo, mid)
        return hi


def mp_heldout(name: str, n: int, k: int, delta: float, family_size: int, assume_var=None) -> mpmath.mpf:
    """The held-out bounds (not the binomial one) at 50 digits, each by its textbook definition."""
    with mpmath.workdps(MP_DIGITS):
        log_term, emp = mp_log_confidence(delta, family_size), mpmath.mpf(k) / n
        if name == "heldout_hoeffding":
            return emp + mpmath.sqrt(log_term / (2 * n))
        if name == "heldout_kl":
            return mp_bisect_last_true(lambda p: p < 1 and mp_kl(emp, p) <= log_term / n, emp, 1)
        if name == "heldout_empirical_bernstein":
            if n == 1:
                return mpmath.inf
            log2 = log_term + mpmath.log(2)
            sample_var = mpmath.mpf(k * (n - k)) / (n * (n - 1))
            return emp + mpmath.sqrt(2 * sample_var * log2 / n) + 7 * log2 / (3 * (n - 1))
        if assume_var is not None:  # KKB's form
            return emp + 2 * log_term / (3 * n) + mpmath.sqrt(2 * mpmath.mpf(assume_var) * log_term / n)
        # assumption-free: the largest p with p − R̂ ≤ 2L/(3n) + sqrt(2p(1 − p)L/n), an interval [0, p*]
        return mp_bisect_last_true(
            lambda p: p - emp <= 2 * log_term / (3 * n) + mpmath.sqrt(2 * p * (1 - p) * log_term / n), 0, 1)
