"""Tests 3–5 of a measure or bound across a zoo: validity (bounds), ranking scores, cost.

**Validity** (a bound): the fraction of models whose bound is below their test error, with its exact
Clopper–Pearson interval at 95 % (gapbench.ranking.validity). A bound valid at δ fails on each model with
probability ≤ δ, so its violation rate has expectation ≤ δ: the verdict is "INVALID" when the interval's
lower end exceeds δ (more violations than δ allows, at 95 % confidence), "valid on every model" with no
violation, else "violations within δ".

**Ranking** against the gap (test − training error) and against the test error, over the zoo's models that
met the stop rule: Kendall's τ over all models; Jiang et al.'s Ψ and the PGDL score over the grid points,
the seeds of a point averaged (a seed is not a hyperparameter) and missing points (capped models, failed
values) skipped as gapbench.ranking describes; Dziugaite et al.'s sign error over coupled models (seeds
pair up), with the models' test-set size for the noise weight, read three ways (``SIGN_ERRORS``) from the
distribution of the losses of the environments that pass the paper's ESS filter, as the paper's figures draw
it: its max (``sign_error``, the robust score), its 90th percentile (``sign_error_p90``) and its mean
(``sign_error_mean``, the average-case counterpart), each lower is better. One environment at loss 1 (the
measure orders every weighted pair against the gap) sets the max to 1 whatever happens elsewhere, so on a
zoo where most quantities fail somewhere the max ties them and the p90 and the mean rank them. Where no
environment passes, all three are None with one reason, from the data (e.g. too few seeds per grid point:
ESS ≤ pairs). The hyperparameters are the zoo's varied ones other than the seed, less any that takes one
value over the models ranked (nothing to rank across). A measure registered with higher_is_better=True (a margin: larger
predicts a smaller gap) is negated first, so that every score reads "higher predicts a larger gap"; the PGDL
score is unaffected by the sign. A score the zoo cannot support is None with the reason.

Architectures (mnist-hparams: MLPs varying depth and width, the CNN with its own fixed depth and its
cnn_width as 'width'): 'arch' is a hyperparameter like the others, and the CNN's depth and width are values
of their own. So Ψ scores within each architecture's sub-grid: every group varying one hyperparameter holds
one architecture (in the quick preset the CNN's groups vary lr, batch size and weight decay, and the depth
and width groups are the MLPs'), and ψ_arch has no group (the architecture never changes alone) and stays
out of Ψ, reported with 0 groups. The PGDL score pairs every two grid points, across architectures too,
and conditions on every two hyperparameters, 'arch' included.

**Cost**: seconds per model (median over the timings given: see gapbench.evaluation.run) and what the
quantity needs beyond the model (data, the initialization, a search), from its registration (None: not
declared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GapbenchError
from ..quantity import Quantity
from ..ranking import granulated_psi, kendall_tau, pgdl_score, robust_sign_error, validity
from .values import Value

TARGETS = ("gap", "test_error")
# score -> the statistic of the kept environments' sign errors (gapbench.ranking.RobustSignError.summary)
SIGN_ERRORS = {"sign_error": "max",          # robust: the worst environment (Dziugaite et al. 2020, §3)
               "sign_error_p90": "p90",      # its 90th percentile (their figures' dashed line)
               "sign_error_mean": "mean"}    # the mean over environments: the average-case counterpart
SCORES = ("tau", "psi", "pgdl", *SIGN_ERRORS)
LOWER_IS_BETTER = {*SIGN_ERRORS, "seconds"}


@dataclass(frozen=True)
class ValidityTest:
    verdict: str
    delta: float
    n_models: int
    violations: int
    violation_rate: float
    ci_low: float
    ci_high: float
    largest_violation: float
    vacuity: float
    median_tightness: float
    significant_violations: int | None          # bound below the level-δ/N lower CP limit of the true error
    bound: list[float]                 # the figure's data: bound and test error per model
    test_error: list[float]


def validity_test(models, values: dict[str, Value], delta: float, n_test: int | None = None) -> ValidityTest | str:
    """Validity of a bound over `models` (those where it has a value); a string when none has one. With the
    test-set size `n_test`, the violations that the test set's noise cannot explain are counted too
    (gapbench.ranking.validity, at 95 %)."""
    ok = [m for m in models if values[m.id].ok]
    if not ok:
        return "not computable: the bound has no value on any model"
    bound = [values[m.id].value for m in ok]
    test = [m.test_error for m in ok]
    v = validity(bound, test, n_test=n_test)
    noise = ("" if v.significant_violations is None else
             f"; {v.significant_violations} beyond the test set's noise")
    if v.ci_low > delta:
        verdict = (f"INVALID: {v.violations} of {v.n_models} models violate it, more than δ = {delta:g} allows "
                   f"(Clopper–Pearson interval [{v.ci_low:.3g}, {v.ci_high:.3g}]{noise})")
    elif v.violations == 0:
        verdict = f"valid on every model ({v.n_models})"
    else:
        verdict = f"violations within δ = {delta:g} ({v.violations} of {v.n_models}{noise})"
    return ValidityTest(verdict, delta, v.n_models, v.violations, v.violation_rate, v.ci_low, v.ci_high,
                        v.largest_violation, v.vacuity, v.median_tightness, v.significant_violations, bound, test)


def rank_in(value: float, pool: list[float], lower_is_better: bool) -> int:
    """`value`'s rank among `pool`: 1 + the number of values better than it, so equal values share a rank."""
    return 1 + sum((v < value) if lower_is_better else (v > value) for v in pool)


@dataclass(frozen=True)
class RankingTest:
    """scores[target][score]: a float or None; reasons[target][score]: why None."""

    verdict: str
    oriented: bool                                 # the measure was negated (higher_is_better)
    n_models: int
    n_failed: int
    scores: dict[str, dict[str, float | None]]
    reasons: dict[str, dict[str, str]]
    per_hp_psi: dict[str, float] = field(default_factory=dict)     # ψ_i vs the gap
    psi_groups: dict[str, int] = field(default_factory=dict)      # groups that entered each ψ_i (0: none)
    measure: list[float] = field(default_factory=list)   # the figure's data: oriented measure and gap
    gap: list[float] = field(default_factory=list)
    sign_error_environments: dict[str, int] = field(default_factory=dict)   # target -> environments kept


def orientation(quantity: Quantity) -> float:
    return -1.0 if quantity.meta.get("higher_is_better") else 1.0


def _hps(models, varied: list[str]) -> list[dict[str, Any]]:
    """Each model's varied hyperparameters other than the seed, less those constant over `models`."""
    keys = [k for k in varied if k != "seed" and len({repr(m.hp.get(k)) for m in models}) > 1]
    return [{k: m.hp.get(k) for k in keys} for m in models]


def _score(fn, *args) -> tuple[Any, str]:
    try:
        value = fn(*args)
    except GapbenchError as err:
        return None, str(err)
    if isinstance(value, float) and math.isnan(value):
        return None, "the score is NaN on these models"
    return value, ""


def _sign_errors(hps, measure, y, n_test: int | None, seeds_hint: str
                 ) -> tuple[dict[str, tuple[float | None, str]], int]:
    """{score: (value, why)} for each of SIGN_ERRORS (the max, 90th percentile and mean of the kept
    environments' losses, gapbench.ranking.RobustSignError), and the number of environments kept. Where none
    passed the ESS filter, each is None with the same reason: the shortfall computed from the data, and
    `seeds_hint` where more seeds per grid point would help."""
    result, why = _score(lambda: robust_sign_error(hps, measure, y, n_test=n_test))
    if result is not None and math.isnan(result.worst):
        hint = f", {seeds_hint}" if seeds_hint and result.too_few_repeats else ""
        result, why = None, result.shortfall() + hint
    if result is None:
        return {score: (None, why) for score in SIGN_ERRORS}, 0
    kept = len(result.env_losses["all"])
    return {score: (result.summary(stat)["all"], "") for score, stat in SIGN_ERRORS.items()}, kept


def ranking_test(quantity: Quantity, models, values: dict[str, Value], varied: list[str],
                 n_test: int | None, seeds_hint: str = "") -> RankingTest:
    """The ranking scores (SCORES) against the gap and the test error (module docstring). n_test: the
    test-set size behind the gaps (None: the sign error weighs every pair 1); seeds_hint: what to do when the
    zoo has too few seeds per grid point for the sign error's ESS filter (e.g. a preset with more)."""
    ok = [m for m in models if values[m.id].ok]
    sign = orientation(quantity)
    measure = [sign * values[m.id].value for m in ok]
    hps = _hps(ok, varied)
    scores, reasons, per_hp, groups, environments = {}, {}, {}, {}, {}
    for target in TARGETS:
        y = [m.gap if target == "gap" else m.test_error for m in ok]
        if not (hps and hps[0]):
            none = (None, "no hyperparameter other than the seed varies over the models ranked")
            results = {"tau": _score(kendall_tau, measure, y)} | {score: none for score in SCORES[1:]}
            environments[target] = 0
        else:
            psi = _score(granulated_psi, hps, measure, y)
            sign_errors, environments[target] = _sign_errors(hps, measure, y, n_test, seeds_hint)
            results = {
                "tau": _score(kendall_tau, measure, y),
                "psi": (psi[0].psi if psi[0] is not None else None, psi[1]),
                "pgdl": _score(lambda *a: pgdl_score(*a).score, hps, measure, y),
                **sign_errors,
            }
            if target == "gap" and psi[0] is not None:
                per_hp, groups = psi[0].per_hp, psi[0].groups
        scores[target] = {k: v for k, (v, _) in results.items()}
        reasons[target] = {k: r for k, (v, r) in results.items() if v is None}
    tau, psi = scores["gap"]["tau"], scores["gap"]["psi"]
    if tau is None:
        verdict = "not computable: " + reasons["gap"]["tau"]
    else:
        lead = psi if psi is not None else tau
        psi_text = f"Ψ = {psi:.3g}, " if psi is not None else ""
        verdict = (f"{'predicts' if lead > 0 else 'does not predict'} the gap's ranking ({psi_text}"
                   f"τ = {tau:.3g} over {len(ok)} models)")
    return RankingTest(verdict, sign < 0, len(models), len(models) - len(ok), scores, reasons, per_hp, groups,
                       measure, [m.gap for m in ok], sign_error_environments=environments)


@dataclass(frozen=True)
class CostTest:
    verdict: str
    seconds_per_model: float | None
    seconds: list[float]
    needs: tuple[str, ...] | None


def cost_test(quantity: Quantity, values: list[Value]) -> CostTest:
    seconds = [v.seconds for v in values if v.ok]
    per_model = float(np.median(seconds)) if seconds else None
    needs = quantity.needs
    need_text = "undeclared needs" if needs is None else ("needs " + ", ".join(needs) if needs else
                                                         "needs the model only")
    verdict = (f"{per_model:.3g} s per model, {need_text}" if per_model is not None
               else f"not measured (no value), {need_text}")
    return CostTest(verdict, per_model, seconds, None if needs is None else tuple(needs))
