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
- ``figure_cdf_all_measures.py`` lines 153–164: each measure's distribution of environment losses is drawn as
  a CDF with three lines, its max (the robust sign error), its 90th percentile (``np.percentile(losses,
  q=90)``) and its mean; lines 128–131 order the measures by the mean over all hyperparameters.
  ``supp_figure_monte_carlo_ablation.py`` lines 83–88 compare measures by the same mean, 90th percentile and
  max (and the median): :attr:`RobustSignError.worst`, :attr:`~RobustSignError.p90`,
  :attr:`~RobustSignError.mean`.

The filter is kept as the paper has it, and what it dropped is reported: every environment's ESS and number
of model pairs, and :meth:`RobustSignError.shortfall` says why none passed. An environment of combinations
with n₁ and n₂ repeats holds n₁·n₂ pairs and, by Cauchy–Schwarz ((Σ w)² ≤ k·Σ w² over k pairs), ESS ≤ n₁·n₂:
2 seeds per combination give ESS ≤ 4 < 12 whatever the gaps, and ESS ≥ 12 needs ≥ 4 seeds
(:func:`seeds_needed`); with enough pairs, the pairs whose gaps differ by less than Δ* (w_H(Δ*) = 0.5,
0.0196 at n = 10 000; :func:`resolvable_gap_difference`) weigh 0.

Hyperparameter values are compared by equality (the peer uses ``math.isclose`` for floats, to absorb values
recomputed on different devices): pass the grid's own values.

References:
    Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas, Roy. In search of robust measures of
    generalization. NeurIPS 2020, §3–4 (coupled networks, environments, Monte Carlo noise, ESS filter).
"""

from __future__ import annotations

import math
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
    env_losses["all"]: all of them. worst, p90, mean: summaries of each (nan where no environment was kept).
    env_ess[hp] and env_pairs[hp]: the ESS and the number of model pairs of every environment where `hp`
    varies, kept or not (same order, "all" too); max_repeats: the most models of one hyperparameter
    combination (its seeds); n_test and min_ess: what the weights and the filter used. The filter's numbers
    say why an environment was dropped (:meth:`shortfall`)."""
    env_losses: dict[str, np.ndarray]
    env_ess: dict[str, np.ndarray]
    env_pairs: dict[str, np.ndarray]
    max_repeats: int
    n_test: int | None
    min_ess: float

    def summary(self, stat: str) -> dict[str, float]:
        """{hp or 'all': stat of its environment losses}, stat one of 'max', 'p90', 'mean'."""
        fns = {"max": np.max, "p90": lambda x: np.percentile(x, 90), "mean": np.mean}
        return {k: float(fns[stat](v)) if len(v) else float("nan") for k, v in self.env_losses.items()}

    @property
    def worst(self) -> float:
        """The robust sign error: the largest loss over the kept environments of every varied hyperparameter,
        max_e L_e, the paper's sup over environments of the expected sign error (§3; nan: none kept)."""
        return self.summary("max")["all"]

    @property
    def p90(self) -> float:
        """The 90th percentile of the kept environments' losses (all hyperparameters): with the k losses sorted,
        L₍₁₎ ≤ … ≤ L₍ₖ₎, the value at 0-based position r = 0.9·(k − 1), interpolated linearly between
        L₍⌊r⌋₊₁₎ and L₍⌊r⌋₊₂₎ (np.percentile's default, as figure_cdf_all_measures.py line 161 draws it);
        nan when none was kept."""
        return self.summary("p90")["all"]

    @property
    def mean(self) -> float:
        """The mean loss over the kept environments (all hyperparameters), (1/k)·Σ_e L_e, each unordered
        environment counted twice as in the paper's distributions: the average-case, non-robust counterpart
        of :attr:`worst`, by which the paper's figure orders the measures (figure_cdf_all_measures.py lines
        128–131); nan when none was kept."""
        return self.summary("mean")["all"]

    @property
    def too_few_repeats(self) -> bool:
        """True when no environment holds min_ess model pairs: the ESS filter (ESS ≤ pairs) cannot pass any,
        whatever the gaps, and only more seeds per combination can help."""
        pairs = self.env_pairs["all"]
        return len(pairs) > 0 and not reaches(pairs.max(), self.min_ess)

    def shortfall(self) -> str:
        """Why no environment was kept, from the data ('' when one was): no two combinations differ in
        exactly one hyperparameter; too few seeds per combination for ESS ≥ min_ess (by Cauchy–Schwarz,
        (Σw)² ≤ k·Σw² over k pairs, so ESS ≤ pairs = n₁·n₂); or weights too few or uneven (gaps closer than
        the test set resolves get weight 0)."""
        if len(self.env_losses["all"]):
            return ""
        lead = f"no environment passed the effective-sample-size filter ESS ≥ {self.min_ess:g}"
        pairs, ess = self.env_pairs["all"], self.env_ess["all"]
        if not len(pairs):
            return (f"{lead}: there is no environment (no two hyperparameter combinations among the models "
                    f"ranked differ in exactly one value)")
        most = int(pairs.max())
        if self.too_few_repeats:
            seeds = f"{self.max_repeats} seed{'s' if self.max_repeats > 1 else ''}"
            return (f"{lead}: at most {seeds} per grid point give at most {most} model "
                    f"pair{'s' if most > 1 else ''} per environment (ESS ≤ pairs, so ESS ≤ {most}); it takes ≥ "
                    f"{seeds_needed(self.min_ess)} seeds per grid point")
        resolved = "" if self.n_test is None else (
            f"; a pair's weight (w_H − {MIN_WEIGHT:g})₊ is 0 unless its gaps differ by more than "
            f"{resolvable_gap_difference(self.n_test):.3g} (n_test = {self.n_test})")
        return (f"{lead}: environments hold up to {most} model pairs, but the largest ESS is "
                f"{float(ess.max()):.3g}{resolved}")


def reaches(ess: Any, min_ess: float) -> np.ndarray:
    """ESS ≥ min_ess elementwise, np.isclose counting as equal (figure_cdf_all_measures.py)."""
    return (np.asarray(ess) > min_ess) | np.isclose(ess, min_ess)


def seeds_needed(min_ess: float = PAPER_MIN_ESS) -> int:
    """The fewest seeds s per combination for which an environment can reach ESS ≥ min_ess: s² model pairs,
    ESS = s² when their weights are equal (paper: ⌈√12⌉ = 4, 16 pairs)."""
    min_ess = check_positive_float(min_ess, "min_ess", "seeds_needed()")
    seeds = max(1, math.isqrt(math.floor(min_ess)))
    while not reaches(seeds * seeds, min_ess):
        seeds += 1
    return seeds


def resolvable_gap_difference(n_test: int) -> float:
    """Δ* = √(2·ln(2 / (1 − √0.5)) / n): the gap difference at which w_H(Δ) = 0.5, below which a pair's
    weight (w_H − 0.5)₊ is 0 (0.0196 at n = 10 000)."""
    n_test = check_positive_int(n_test, "n_test", "resolvable_gap_difference()")
    return math.sqrt(2.0 * math.log(2.0 / (1.0 - math.sqrt(MIN_WEIGHT))) / n_test)


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
    envs = {name: environments(exactly_one & differs[:, :, col], combo, weight, loss)
            for col, name in enumerate(names)}
    envs["all"] = tuple(np.concatenate(parts) for parts in zip(*envs.values(), strict=True))
    keep = {name: reaches(ess, min_ess) & (sum_w > 0)              # no weight: no estimate
            for name, (_, sum_w, ess, _) in envs.items()}
    return RobustSignError(
        env_losses={name: losses[keep[name]] for name, (losses, _, _, _) in envs.items()},
        env_ess={name: ess for name, (_, _, ess, _) in envs.items()},
        env_pairs={name: pairs for name, (_, _, _, pairs) in envs.items()},
        max_repeats=int(np.bincount(combo).max()), n_test=n_test, min_ess=min_ess)


def environments(pairs: np.ndarray, combo: np.ndarray, weight: np.ndarray, loss: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per environment (combo_i, combo_j) over the model pairs in `pairs`: the loss Σ w·loss / Σ w (nan where
    Σ w = 0), Σ w, the effective sample size (Σ w)² / Σ w² (0 where Σ w = 0) and the number of model pairs."""
    n_combos = combo.max() + 1
    i, j = np.nonzero(pairs)
    env = combo[i] * n_combos + combo[j]
    present = np.unique(env)
    w, w_loss = weight[i, j], weight[i, j] * loss[i, j]
    size = n_combos * n_combos
    sum_w = np.bincount(env, w, size)[present]
    sum_w2 = np.bincount(env, w * w, size)[present]
    sum_w_loss = np.bincount(env, w_loss, size)[present]
    count = np.bincount(env, minlength=size)[present]
    no_weight = np.isclose(sum_w, 0)
    ess = sum_w**2 / np.where(no_weight, 1.0, sum_w2)
    losses = sum_w_loss / np.where(sum_w > 0, sum_w, 1.0)
    return np.where(sum_w > 0, losses, np.nan), sum_w, ess, count
