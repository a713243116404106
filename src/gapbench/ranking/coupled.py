"""Dziugaite, Drouin et al. 2020's robust sign error over coupled networks.

An *environment* is an ordered pair of hyperparameter combinations (c1, c2) that differ in exactly one
hyperparameter (the others are the environment's shared values). Its loss is the weighted mean, over every
pair of models (i ∈ c1, j ∈ c2) (repeats, i.e. seeds, of a combination all pair up), of the sign error
(1 − sign(μ_i − μ_j)·sign(g_i − g_j)) / 2: 0 when the measure orders the pair as the gap does, 1 when it
orders it the other way, 1/2 on a tie. The robust score is the distribution of environment losses, read by
its worst case (max), its 90th percentile and its mean, per varied hyperparameter and over all of them.

Ported from nitarshan/robust-generalization-measures @ 8e90129, ``experiments/coupled_networks``:

- ``common.py`` lines 93–115 (``sign_error``): the loss above, np.sign, so a tie costs 1/2.
- ``common.py`` lines 29–50 (``hoeffding_weight``, shift = 0): the confidence that two measured gaps differ,
  w_H(Δ) = max(0, 1 − 2·exp(−2n(Δ/2)²))², Δ = |g_i − g_j|, n the test-set size. Derivation: by Hoeffding,
  each measured gap is within Δ/2 of its expectation with probability ≥ 1 − 2·exp(−2n(Δ/2)²) (the
  test error is a mean of n [0, 1] losses; the training error is held fixed); when both are, the expected
  gaps are ordered as the measured ones; the square treats the two test sets as independent.
- ``create_environments.py`` lines 51–83: every ordered pair of models whose combinations differ in exactly
  one value, both orders; with noise filtering the weight is (w_H − 0.5)₊ (lines 64–70), without it 1.
- ``figure_cdf_all_measures.py`` lines 49–92 (``get_all_losses``): environment loss = Σ w·loss / Σ w; an
  environment enters only if its effective sample size (Σ w)² / Σ w² is ≥ min_ess (``np.isclose`` counts as
  equal; Σ w² = 0 gives ESS 0); each unordered environment appears twice, (c1, c2) and (c2, c1), with the
  same loss, as in the paper's distributions. The paper's figures use min_ess = 12 and n = 10 000
  (``makefile``, ``create_environments.py`` line 110).

Hyperparameter values are compared by equality (the peer uses ``math.isclose`` for floats, to absorb values
recomputed on different devices): pass the grid's own values.

References:
    Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas, Roy. In search of robust measures of
    generalization. NeurIPS 2020, §3–4 (coupled networks, environments, Monte Carlo noise, ESS filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import check_positive_float, check_positive_int
from ._inputs import hp_codes, paired_vectors

PAPER_N_TEST = 10_000  # test-set size behind the paper's gaps (CIFAR-10 and SVHN test sets as used there)
PAPER_MIN_ESS = 12.0   # the paper's minimum effective sample size per environment (makefile: min_ess=12)
MIN_WEIGHT = 0.5       # create_environments.py: keep pairs whose gaps differ with probability > 1/2, (w − 0.5)₊


@dataclass(frozen=True)
class RobustSignError:
    """env_losses[hp]: the loss of each kept environment in which `hp` varies (both orders of each);
    env_losses["all"]: all of them. worst, p90, mean: summaries of each (nan where no environment was kept)."""
    env_losses: dict[str, np.ndarray]

    def summary(self, stat: str) -> dict[str, float]:
        """{hp or 'all': stat of its environment losses}, stat one of 'max', 'p90', 'mean'."""
        fns = {"max": np.max, "p90": lambda x: np.percentile(x, 90), "mean": np.mean}
        return {k: float(fns[stat](v)) if len(v) else float("nan") for k, v in self.env_losses.items()}

    @property
    def worst(self) -> float:
        """The robust sign error: the largest environment loss over every varied hyperparameter."""
        return self.summary("max")["all"]


def hoeffding_weight(gap_difference: np.ndarray, n_test: int) -> np.ndarray:
    """w_H(Δ) = max(0, 1 − 2·exp(−2·n·(Δ/2)²))²: a lower bound on the probability that two gaps measured on
    n test points each, |Δ| apart, are ordered as their expectations are (common.py lines 29–50)."""
    one_side = 2.0 * np.exp(-2.0 * n_test * (np.abs(gap_difference) / 2.0) ** 2)
    return np.maximum(0.0, 1.0 - one_side) ** 2


def robust_sign_error(hps: Any, measure: Any, gap: Any, n_test: int | None = PAPER_N_TEST,
                      min_ess: float = PAPER_MIN_ESS) -> RobustSignError:
    """Environment sign errors of `measure` against `gap` over coupled models (see the module docstring).

    n_test: the test-set size behind each gap, for the Monte Carlo noise weight; None gives every pair
    weight 1 (the paper's ablation, ``filter_noise=false``). min_ess: environments with a smaller effective
    sample size are dropped.
    """
    where = "robust_sign_error()"
    measure, gap = paired_vectors(measure, gap, where)
    names, codes = hp_codes(hps, len(measure), where)
    min_ess = check_positive_float(min_ess, "min_ess", where)
    if n_test is None:
        weight = np.ones((len(gap), len(gap)))
    else:
        n_test = check_positive_int(n_test, "n_test", where)
        excess = hoeffding_weight(gap[:, None] - gap[None, :], n_test) - MIN_WEIGHT
        weight = np.where(excess > 0, excess, 0.0)
    loss = (1.0 - np.sign(measure[:, None] - measure[None, :]) * np.sign(gap[:, None] - gap[None, :])) / 2.0
    combo = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)
    differs = codes[:, None, :] != codes[None, :, :]                      # (model, model, hp)
    exactly_one = differs.sum(axis=2) == 1
    env_losses = {name: environment_losses(exactly_one & differs[:, :, col], combo, weight, loss, min_ess)
                  for col, name in enumerate(names)}
    env_losses["all"] = np.concatenate(list(env_losses.values()))
    return RobustSignError(env_losses=env_losses)


def environment_losses(pairs: np.ndarray, combo: np.ndarray, weight: np.ndarray, loss: np.ndarray,
                       min_ess: float) -> np.ndarray:
    """Σ w·loss / Σ w per environment (combo_i, combo_j) over the model pairs in `pairs`, for the
    environments whose effective sample size (Σ w)² / Σ w² is at least min_ess."""
    n_combos = combo.max() + 1
    i, j = np.nonzero(pairs)
    env = combo[i] * n_combos + combo[j]
    present = np.unique(env)
    w, w_loss = weight[i, j], weight[i, j] * loss[i, j]
    size = n_combos * n_combos
    sum_w = np.bincount(env, w, size)[present]
    sum_w2 = np.bincount(env, w * w, size)[present]
    sum_w_loss = np.bincount(env, w_loss, size)[present]
    ess = sum_w**2 / np.where(np.isclose(sum_w, 0), 1.0, sum_w2)
    keep = ((ess > min_ess) | np.isclose(ess, min_ess)) & (sum_w > 0)   # no weight: no estimate
    return sum_w_loss[keep] / sum_w[keep]
