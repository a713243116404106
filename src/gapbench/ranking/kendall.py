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
from ._inputs import hp_codes, paired_vectors, unique_rows


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
            raise GapbenchError(f"The '{name}' parameter of {where} is constant ({values[0]!r} at all "
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
    """Ψ and its parts: psi = mean of per_hp; per_hp[name] = ψ_name; groups[name] = the number of groups of
    models that differ only in `name` and entered ψ_name."""
    psi: float
    per_hp: dict[str, float]
    groups: dict[str, int]


def granulated_psi(hps: Any, measure: Any, gap: Any) -> GranulatedPsi:
    """Jiang et al. 2020's granulated Kendall coefficient Ψ (Eq. (4)–(5)).

    For each varied hyperparameter i, the models are grouped by their values of all the *other*
    hyperparameters (a point of Θ_1 × … × Θ_{i−1} × Θ_{i+1} × … × Θ_n); within a group only θ_i changes.
    ψ_i is the mean over groups of τ (Eq. (2)) within the group, Ψ = (1/n) Σ_i ψ_i.

    Jiang et al. train every point of a complete grid, so each group holds |Θ_i| ≥ 2 models and
    m_i = |Θ_1 × … × Θ_n| / |Θ_i| groups enter ψ_i. On an incomplete grid a group may hold a single model,
    whose τ is 0/0 (N(N − 1) = 0): such groups are skipped and ψ_i is the mean over the groups of ≥ 2 models,
    which is Eq. (4) on the grid that was trained. A hyperparameter with no such group is an error. Repeats
    (two models with equal hyperparameters) are refused: Eq. (4) has one model per grid point; average
    the seeds first.

    Within a group τ is Eq. (2) (ties count 0), which equals τ_b when there are no ties.
    """
    where = "granulated_psi()"
    measure, gap = paired_vectors(measure, gap, where)
    names, codes = hp_codes(hps, len(measure), where)
    unique_rows(codes, where)
    per_hp, groups = {}, {}
    for col, name in enumerate(names):
        taus = group_taus(np.delete(codes, col, axis=1), measure, gap)
        if not taus:
            raise GapbenchError(
                f"No two models in the 'hps' parameter of {where} differ only in '{name}', so ψ_{name} "
                "(Jiang et al. 2020, Eq. (4)) is undefined. Train at least one pair that differs only there.")
        per_hp[name], groups[name] = float(np.mean(taus)), len(taus)
    return GranulatedPsi(psi=float(np.mean(list(per_hp.values()))), per_hp=per_hp, groups=groups)


def group_taus(other_codes: np.ndarray, measure: np.ndarray, gap: np.ndarray) -> list[float]:
    """Eq. (2) τ within each group of models with equal rows of `other_codes`, for groups of ≥ 2 models."""
    if other_codes.shape[1] == 0:                  # a single varied hyperparameter: one group of all models
        group = np.zeros(len(measure), dtype=np.int64)
    else:
        group = np.unique(other_codes, axis=0, return_inverse=True)[1].reshape(-1)
    members = [np.flatnonzero(group == g) for g in range(group.max() + 1)]
    return [pair_tau(measure[m], gap[m]) for m in members if len(m) >= 2]
