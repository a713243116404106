"""Validity statistics of a bound across a zoo: how often and by how much it fails to bound the test error,
how often it is vacuous, and how tight it is.

A model *violates* the bound when bound < test error. The violation rate is a binomial proportion over the
zoo's models, reported with its exact (Clopper–Pearson) two-sided interval at the caller's confidence:
[Beta(α/2; k, N − k + 1), Beta(1 − α/2; k + 1, N − k)] for k violations among N models, α = 1 − confidence
(scipy.stats.binomtest(...).proportion_ci(method="exact")). The interval is about the zoo's sampling of
models; the test error of each model is taken as measured.

With the test-set size n_test, a violation is also tested against the test set's noise: model i is a
*significant* violation when its bound lies below L_i, the one-sided lower Clopper–Pearson limit of its true
error at level δ/N, L_i = Beta(δ/N; k_i, n_test − k_i + 1) for k_i = n_test · test_error_i errors (L_i = 0
when k_i = 0), δ = 1 − confidence. Guarantee: if every bound holds for its model's true error e_i, a model
is flagged only when L_i > e_i, which has probability ≤ δ/N per model; by the union bound over the N models
the chance that any model is flagged is ≤ δ.

References:
    Clopper, Pearson. The use of confidence or fiducial limits illustrated in the case of the binomial.
    Biometrika 26(4), 1934.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta, binomtest

from ..errors import check_positive_int, check_probability, param_error
from ._inputs import finite_vector


@dataclass(frozen=True)
class Validity:
    """n_models: N; violations: k, the models with bound < test error; violation_rate = k / N and its
    Clopper–Pearson interval [ci_low, ci_high] at `confidence`; largest_violation: max(test error − bound)
    over violating models (0 without one); vacuity: fraction of models with bound ≥ 1; median_tightness:
    median of bound − test error (+inf when more than half the bounds are infinite); significant_violations:
    the models whose bound is below the lower confidence limit of their true error (None without n_test)."""
    n_models: int
    violations: int
    violation_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    largest_violation: float
    vacuity: float
    median_tightness: float
    significant_violations: int | None = None


def validity(bound: Any, test_error: Any, confidence: float = 0.95, n_test: int | None = None) -> Validity:
    """Validity statistics of `bound` (one value per model, +inf allowed) against `test_error` (in [0, 1]),
    measured on n_test points per model when given (see the module docstring)."""
    where = "validity()"
    confidence = check_probability(confidence, "confidence", where)
    bound_arr = np.asarray(bound, dtype=float)
    if bound_arr.ndim != 1 or np.isnan(bound_arr).any() or (bound_arr == -np.inf).any():
        raise param_error("bound", where, "a 1-d array of floats, +inf allowed, no NaN", bound,
                          "Drop the models whose bound could not be computed.")
    test_error = finite_vector(test_error, "test_error", where, n=len(bound_arr))
    if len(test_error) == 0:
        raise param_error("bound", where, "values for at least one model", "an empty array")
    if ((test_error < 0) | (test_error > 1)).any():
        raise param_error("test_error", where, "errors in [0, 1]", float(test_error[(test_error < 0) |
                                                                                  (test_error > 1)][0]))
    violated = bound_arr < test_error
    k, n = int(violated.sum()), len(bound_arr)
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    excess = test_error[violated] - bound_arr[violated]
    return Validity(n_models=n, violations=k, violation_rate=k / n, ci_low=float(interval.low),
                    ci_high=float(interval.high), confidence=confidence,
                    largest_violation=float(excess.max()) if k else 0.0,
                    vacuity=float((bound_arr >= 1).mean()),
                    median_tightness=float(np.median(bound_arr - test_error)),
                    significant_violations=None if n_test is None else
                    significant(bound_arr, test_error, n_test, 1 - confidence, where))


def significant(bound: np.ndarray, test_error: np.ndarray, n_test: Any, delta: float, where: str) -> int:
    """The number of models whose bound is below the level-δ/N lower Clopper–Pearson limit of their error."""
    n_test = check_positive_int(n_test, "n_test", where)
    errors = test_error * n_test
    if not np.allclose(errors, np.round(errors), rtol=0, atol=1e-6):
        raise param_error("test_error", where, f"error counts over n_test = {n_test} points (multiples of "
                          f"1/{n_test})", float(test_error[np.argmax(np.abs(errors - np.round(errors)))]),
                          "Pass the test-set size the errors were measured on.")
    k = np.round(errors)
    lower = np.where(k > 0, beta.ppf(delta / len(bound), np.maximum(k, 1), n_test - k + 1), 0.0)
    return int((bound < lower).sum())
