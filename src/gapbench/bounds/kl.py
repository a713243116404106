"""Numeric cores of the tail-inversion bounds: binary kl, its upper inverse, binomial tail inversion, and the
countable union-bound weights shared by the grid-uniform bounds.

    kl(q ‖ p) = q·ln(q/p) + (1 − q)·ln((1 − q)/(1 − p))                     (0·ln 0 = 0)
    kl⁻¹(q, c) = max{p ∈ [q, 1] : kl(q ‖ p) ≤ c}
    Bin⁻(n, k, δ) = max{p ∈ [0, 1] : P[Bin(n, p) ≤ k] ≥ δ}
                  = BetaInv(1 − δ; k + 1, n − k) = beta.isf(δ; k + 1, n − k) for k < n, and 1 for k = n

Both inverses are computed by bisection on a bracket [lo, hi] that always keeps the inequality true at lo and
false at hi, until hi − lo ≤ TOL; the *upper* end is returned, so the result is never below the exact value
(rounding can only loosen the bound, never invalidate it). The binomial inversion works in log space,
ln P[Bin(n, p) ≤ k] ≥ ln δ, so a level δ/|F| far below the smallest float (|F| = 10¹⁰⁰⁰) still has a value.

References:
    Langford, "Tutorial on practical prediction theory for classification", JMLR 6, 2005 (binomial tail
    inversion, Thm 3.3; kl form, Cor 3.7).
    Clopper & Pearson, Biometrika 26, 1934 (the same upper limit via the Beta quantile).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp

from ..errors import GapbenchError, check_positive_float, check_positive_int, check_probability

TOL = 1e-12              # bisection stops when the bracket is this narrow (≪ the 1e-9 the spec asks for)
MAX_STEPS = 200          # halvings: 2⁻²⁰⁰ is far below float64 resolution, so TOL is always reached first
LOG_CDF_FLOOR = math.log(1e-290)   # below this scipy's cdf nears float underflow (1e-308): sum the pmf in logs
TAIL_CHUNK = 4096        # pmf terms per log-space block of the far lower tail
NEGLIGIBLE_NATS = 50.0   # a term e⁻⁵⁰ ≈ 2e-22 below the running total no longer changes it in float64


def kl_bernoulli(q: float, p: float) -> float:
    """kl(q ‖ p) between Bernoulli(q) and Bernoulli(p), in nats; +inf where p ∈ {0, 1} and p ≠ q."""
    def term(a: float, b: float) -> float:
        if a == 0.0:
            return 0.0
        return math.inf if b == 0.0 else a * math.log(a / b)
    return term(q, p) + term(1.0 - q, 1.0 - p)


def kl_inverse_upper(q: float, c: float) -> float:
    """kl⁻¹(q, c) = max{p ∈ [q, 1] : kl(q ‖ p) ≤ c}, by bisection (upper end of the final bracket).

    kl(q ‖ ·) is increasing on [q, 1], so the set is an interval [q, p*]; p* = 1 when kl(q ‖ 1) ≤ c.
    """
    q = check_probability(q, "q", "kl_inverse_upper()", open_low=False, open_high=False)
    c = check_positive_float(c, "c", "kl_inverse_upper()", allow_zero=True)
    if kl_bernoulli(q, 1.0) <= c:
        return 1.0
    lo, hi = q, 1.0
    for _ in range(MAX_STEPS):
        if hi - lo <= TOL:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kl_bernoulli(q, mid) <= c else (lo, mid)
    return hi


def check_counts(n: int, k: int, where: str) -> tuple[int, int]:
    """Validate n ≥ 1 points and 0 ≤ k ≤ n errors."""
    n = check_positive_int(n, "n", where)
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise GapbenchError(f"The 'k' parameter of {where} must be an int in [0, n] = [0, {n}] (the "
                            f"number of errors among the n points). Got {k!r} instead.")
    return n, k


def binomial_log_cdf(k: int, n: int, p: float) -> float:
    """ln P[Bin(n, p) ≤ k], finite wherever the probability is > 0, however small.

    scipy's logcdf is log(cdf) and returns −inf once the cdf underflows (e.g. k = 0, n = 1000, p = 0.9); there
    the pmf is summed in log space instead (:func:`_log_far_lower_tail`).
    """
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 0.0 if k >= n else -math.inf
    value = float(stats.binom.logcdf(k, n, p))
    return value if value > LOG_CDF_FLOOR else _log_far_lower_tail(k, n, p)


def _log_far_lower_tail(k: int, n: int, p: float) -> float:
    """ln Σ_{i ≤ k} P[Bin(n, p) = i] by log-sum-exp over blocks of i = k, k − 1, …, each pmf term from
    scipy's logpmf (a log-gamma formula, no underflow).

    The pmf is unimodal, so once a block's smallest-i term is NEGLIGIBLE_NATS below the running total the
    walk is past the mode and every later term is smaller still: the remainder (≤ n terms of ≤ e⁻⁵⁰ of the
    total) is below float64 resolution.
    """
    total = -math.inf
    top = k
    while top >= 0:
        logs = stats.binom.logpmf(np.arange(max(0, top - TAIL_CHUNK + 1), top + 1), n, p)
        total = float(np.logaddexp(total, logsumexp(logs)))
        if logs[0] < total - NEGLIGIBLE_NATS:
            break
        top -= TAIL_CHUNK
    return total


def binomial_inverse_log(n: int, k: int, log_delta: float) -> float:
    """Bin⁻(n, k, δ) from ln δ (any finite ln δ < 0, so δ = δ₀/|F| may be far below the smallest float):
    bisection on ln P[Bin(n, p) ≤ k] ≥ ln δ, the log-cdf decreasing in p; 1 when k = n.

    With probability ≥ 1 − δ over n i.i.d. Bernoulli(p) draws with k successes, p ≤ Bin⁻(n, k, δ)
    (Langford 2005, Thm 3.3).
    """
    n, k = check_counts(n, k, "binomial_inverse_log()")
    if isinstance(log_delta, bool) or not isinstance(log_delta, (int, float)) or not -math.inf < log_delta < 0:
        raise GapbenchError(f"The 'log_delta' parameter of binomial_inverse_log() must be a finite float < 0 "
                            f"(ln δ for δ in (0, 1)). Got {log_delta!r} instead.")
    if k == n:
        return 1.0
    lo, hi = 0.0, 1.0                         # log cdf(k; n, 0) = 0 ≥ ln δ and log cdf(k; n, 1) = −∞ for k < n
    for _ in range(MAX_STEPS):
        if hi - lo <= TOL:
            break
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binomial_log_cdf(k, n, mid) >= log_delta else (lo, mid)
    return hi


def binomial_inverse_upper(n: int, k: int, delta: float) -> float:
    """Bin⁻(n, k, δ) = max{p : P[Bin(n, p) ≤ k] ≥ δ} (Langford 2005, Def. 3.2): :func:`binomial_inverse_log`
    at ln δ."""
    n, k = check_counts(n, k, "binomial_inverse_upper()")
    delta = check_probability(delta, "delta", "binomial_inverse_upper()")
    return binomial_inverse_log(n, k, math.log(delta))


def binomial_inverse_beta(n: int, k: int, delta: float) -> float:
    """The same limit in closed form (Clopper–Pearson): beta.isf(δ; k + 1, n − k) for k < n, else 1.

    isf(δ), not ppf(1 − δ): 1 − δ rounds to 1 for δ < 1.1e-16, and ppf(1) = 1 whatever n and k. When the
    limit lies above the largest float below 1 (sf there still > δ: e.g. n = 5, k = 2, δ = 5e-108), scipy's
    isf returns NaN; the limit then rounds to 1.0.
    """
    n, k = check_counts(n, k, "binomial_inverse_beta()")
    delta = check_probability(delta, "delta", "binomial_inverse_beta()")
    if k == n:
        return 1.0
    limit = float(stats.beta.isf(delta, k + 1, n - k))
    if math.isnan(limit) and stats.beta.sf(math.nextafter(1.0, 0.0), k + 1, n - k) > delta:
        return 1.0
    return limit


def grid_index_weight(j: int) -> float:
    """Prior weight of the integer grid exponent j ∈ ℤ for a countable union bound: with i(j) = 2|j| + [j ≤ 0]
    (0, 1, −1, 2, −2, … ↦ 1, 2, 3, 4, 5, …: a bijection ℤ → {1, 2, …}), w(j) = 6/(π²·i(j)²), so that
    Σ_{j∈ℤ} w(j) = Σ_{i≥1} 6/(π² i²) = 1.

    A bound that holds at level δ·w(j) for the grid value 2^j then holds for all j at once with probability
    ≥ 1 − δ; a product of such weights over several independent grids also sums to 1.
    """
    i = 2 * abs(j) + (1 if j <= 0 else 0)
    return 6.0 / (math.pi ** 2 * i ** 2)


def grid_exponent_up(value: float) -> int:
    """The smallest integer j with 2^j ≥ value (value > 0): the grid cell a measured norm is rounded up to."""
    j = math.ceil(math.log2(value))
    return j if 2.0 ** j >= value else j + 1
