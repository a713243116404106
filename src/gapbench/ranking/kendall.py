"""Kendall's τ between a measure and the generalization gap, and Jiang et al.'s granulated Ψ.

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio. Fantastic generalization measures and where to find them.
    ICLR 2020. Eq. (2) (τ over a set of models), Eq. (4)–(5) and §4 (granulated Kendall coefficient Ψ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from ..errors import GapbenchError
from ._inputs import hp_codes, paired_vectors, point_means


def kendall_tau(measure: Any, gap: Any) -> float:
    """Kendall's τ_b between `measure` and `gap` over all models (scipy.stats.kendalltau).

    τ_b = (P − Q) / sqrt((P + Q + T_m)(P + Q + T_g)) over the unordered pairs: P concordant, Q discordant,
    T_m (T_g) tied in the measure only (the gap only). Without ties it equals Jiang et al.'s Eq. (2),
    τ = Σ_{i≠j} sign(μ_i − μ_j) sign(g_i − g_j) / (N(N − 1)).

    NaN or inf is an error (drop failed models first); a constant measure or gap, for which τ is 0/0, is an
    error too.
    """
    where = "kendall_tau()"
    measure, gap = paired_vectors(measure, gap, where)
    for name, values in (("measure", measure), ("gap", gap)):
        if np.ptp(values) == 0:
            raise GapbenchError(f"The '{name}' parameter of {where} is constant ({float(values[0]):g} at all "
                                f"{len(values)} models), so Kendall's τ is 0/0. Rank a quantity that varies.")
    return float(kendalltau(measure, gap).statistic)


def pair_tau(measure: np.ndarray, gap: np.ndarray) -> float:
    """Jiang et al. 2020 Eq. (2) on one set T of models: the mean over ordered pairs i ≠ j of
    sign(μ_i − μ_j)·sign(g_i − g_j) (a tie in either contributes 0)."""
    n = len(measure)
    signs = np.sign(measure[:, None] - measure[None, :]) * np.sign(gap[:, None] - gap[None, :])
    return float(signs.sum() / (n * (n - 1)))


@dataclass(frozen=True)
class GranulatedPsi:
    """Ψ and its parts: psi = mean of per_hp; per_hp[name] = ψ_name, for the hyperparameters with at least one
    group; groups[name] = the number of groups (grid points that differ only in `name`, ≥ 2 of them) that entered
    ψ_name, 0 for a hyperparameter that never varies alone (absent from per_hp); points = the number of grid
    points after averaging the repeats."""
    psi: float
    per_hp: dict[str, float]
    groups: dict[str, int]
    points: int


def granulated_psi(hps: Any, measure: Any, gap: Any) -> GranulatedPsi:
    """Jiang et al. 2020's granulated Kendall coefficient Ψ (Eq. (4)–(5)).

    For each varied hyperparameter i, the grid points are grouped by their values of all the *other*
    hyperparameters (a point θ_{−i} of Θ_1 × … × Θ_{i−1} × Θ_{i+1} × … × Θ_n); within a group only θ_i changes.
    ψ_i is the mean over groups of τ (Eq. (2)) within the group, Ψ = (1/n) Σ_i ψ_i.

    Jiang et al. train a complete grid, one model per point, so each group holds |Θ_i| ≥ 2 points and
    m_i = |Θ_1 × … × Θ_n| / |Θ_i| groups enter ψ_i. Beyond that:

    - **Repeats** (models with equal hyperparameters: seeds; a seed is not a hyperparameter of Eq. (4)) are
      averaged first, the measure and the gap each on its own, so every grid point enters its groups once.
    - **Incomplete grid** (models not trained, or dropped for missing the stop rule): a group of a single
      point has τ = 0/0 (N(N − 1) = 0) and is skipped; ψ_i is the mean over the groups of ≥ 2 points, which is
      Eq. (4) on the grid that was trained. `groups` says how many entered each ψ_i.
    - **A hyperparameter that never varies alone** (no group of ≥ 2 points; e.g. an architecture whose other
      hyperparameters take values of their own, such as a CNN's fixed depth beside the MLPs' depths): ψ_i is
      undefined and Ψ is the mean over the hyperparameters that have a group (listed with 0 groups).
      Conversely, every group lies within one value of each *other* hyperparameter: with the architecture
      among the hyperparameters, ψ_width compares widths within one architecture's sub-grid.

    Within a group τ is Eq. (2) (ties count 0), which equals τ_b when there are no ties. An error when no
    hyperparameter has a group.
    """
    where = "granulated_psi()"
    measure, gap = paired_vectors(measure, gap, where)
    names, codes = hp_codes(hps, len(measure), where)
    codes, measure, gap = point_means(codes, measure, gap)
    per_hp, groups = {}, {}
    for col, name in enumerate(names):
        taus = group_taus(np.delete(codes, col, axis=1), measure, gap)
        groups[name] = len(taus)
        if taus:
            per_hp[name] = float(np.mean(taus))
    if not per_hp:
        raise GapbenchError(
            f"No two grid points in the 'hps' parameter of {where} differ in a single hyperparameter (of "
            f"{names}), so every ψ_i (Jiang et al. 2020, Eq. (4)) is undefined. Train at least one pair of models "
            "that differ in one hyperparameter only.")
    return GranulatedPsi(psi=float(np.mean(list(per_hp.values()))), per_hp=per_hp, groups=groups,
                         points=len(measure))


def group_taus(other_codes: np.ndarray, measure: np.ndarray, gap: np.ndarray) -> list[float]:
    """Eq. (2) τ within each group of points with equal rows of `other_codes`, for groups of ≥ 2 points."""
    if other_codes.shape[1] == 0:                  # a single varied hyperparameter: one group of all models
        group = np.zeros(len(measure), dtype=np.int64)
    else:
        group = np.unique(other_codes, axis=0, return_inverse=True)[1].reshape(-1)
    members = [np.flatnonzero(group == g) for g in range(group.max() + 1)]
    return [pair_tau(measure[m], gap[m]) for m in members if len(m) >= 2]
