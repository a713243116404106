"""Validation of the ranking scores' inputs: one measure value and one gap per model, and the hyperparameters
that were varied across the models as a list of dicts.

Every score works on plain inputs so that a zoo, a CSV or a hand-written test case can feed it:

- ``hps``: ``list[dict[str, Any]]``, one dict per model, all with the same keys (the varied hyperparameters,
  not the seed: repeats are models with equal dicts). Values must be hashable and are compared by equality,
  so pass the grid's own values (not recomputed floats).
- ``measure`` and ``gap``: 1-d arrays of finite floats, one per model. NaN or inf is an error: a model whose
  measure failed must be dropped by the caller, who knows why it failed (the peers drop such rows too, e.g.
  ``common.load_data`` in nitarshan/robust-generalization-measures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import GapbenchError, param_error


def finite_vector(values: Any, param: str, where: str, n: int | None = None) -> np.ndarray:
    """`values` as a 1-d float64 array of finite numbers (of length n when given), or a clear error."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise param_error(param, where, "a 1-d array of finite floats", values) from None
    if arr.ndim != 1:
        raise param_error(param, where, "a 1-d array of finite floats", f"an array of shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise param_error(param, where, f"an array of length {n} (one value per model)",
                          f"length {arr.shape[0]}", "Pass exactly one value per model, in the same order.")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise param_error(param, where, "finite at every model", f"{arr[bad[0]]} at model {int(bad[0])}",
                          "Drop the models whose value could not be computed before ranking.")
    return arr


def paired_vectors(measure: Any, gap: Any, where: str, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """measure and gap as finite vectors of the same length, at least `minimum` models."""
    measure = finite_vector(measure, "measure", where)
    gap = finite_vector(gap, "gap", where, n=measure.shape[0])
    if measure.shape[0] < minimum:
        raise param_error("measure", where, f"values for at least {minimum} models", f"{measure.shape[0]}")
    return measure, gap


def hp_codes(hps: Any, n: int, where: str, minimum_hps: int = 1) -> tuple[list[str], np.ndarray]:
    """The hyperparameter names (sorted) and an (n, k) int array: codes[m, h] indexes model m's value of hp h
    among that hp's distinct values (in order of first appearance)."""
    if not isinstance(hps, Sequence) or isinstance(hps, (str, bytes)) or len(hps) != n:
        got = f"length {len(hps)}" if isinstance(hps, Sequence) else hps
        raise param_error("hps", where, f"a list of {n} dicts (one per model)", got)
    if not all(isinstance(h, dict) for h in hps):
        raise param_error("hps", where, "a list of dicts", next(h for h in hps if not isinstance(h, dict)))
    names = sorted(hps[0])
    for m, h in enumerate(hps):
        if sorted(h) != names:
            raise param_error("hps", where, f"dicts with the same keys as model 0, {names}",
                              f"keys {sorted(h)} at model {m}")
    if len(names) < minimum_hps:
        raise param_error("hps", where, f"dicts with at least {minimum_hps} varied hyperparameter(s)", names)
    codes = np.empty((n, len(names)), dtype=np.int64)
    for col, name in enumerate(names):
        index: dict[Any, int] = {}
        try:
            codes[:, col] = [index.setdefault(h[name], len(index)) for h in hps]
        except TypeError:
            raise param_error("hps", where, f"hashable values for '{name}'",
                              type(hps[0][name]).__name__) from None
        if len(index) < 2:
            raise GapbenchError(
                f"The hyperparameter '{name}' in the 'hps' parameter of {where} takes a single value "
                f"({next(iter(index))!r}) across all {n} models. Ranking scores compare models that differ in "
                f"a hyperparameter: drop '{name}' from every dict.")
    return names, codes


def point_means(codes: np.ndarray, measure: np.ndarray, gap: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per distinct hyperparameter combination (grid point): its codes, and the mean measure and the
    mean gap over its models (the repeats of a point are its seeds; each is averaged on its own). Points are
    in order of first appearance, so a grid without repeats comes back unchanged."""
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse)
    order = np.argsort(first)                    # unique's sorted points back to first-appearance order
    mean_measure = np.bincount(inverse, measure) / counts
    mean_gap = np.bincount(inverse, gap) / counts
    return codes[first[order]], mean_measure[order], mean_gap[order]
