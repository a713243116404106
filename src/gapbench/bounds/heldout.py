"""Held-out ("generalization via validation") bounds on the 0-1 error of a model, from n fresh points.

KKB's Proposition: if a finite family F of models is fixed before the n held-out points are seen (every model
trained, every checkpoint and every hyper-parameter the validation set chooses among counts as a member), then
with probability ≥ 1 − δ, simultaneously for all f ∈ F (R the population risk, R̂ the held-out mean of a loss
in [0, C], resp. [a, b] with C = b − a):

    heldout_hoeffding             R ≤ R̂ + C·sqrt(ln(|F|/δ)/(2n))
    heldout_bernstein (KKB)       R ≤ R̂ + 2C·ln(|F|/δ)/(3n) + sqrt(2·var·ln(|F|/δ)/n)
    heldout_empirical_bernstein   R ≤ R̂ + sqrt(2·V_n·ln(2|F|/δ)/n) + 7C·ln(2|F|/δ)/(3(n − 1))
    heldout_kl                    R ≤ kl⁻¹(R̂, ln(|F|/δ)/n)
    heldout_binomial              R ≤ Bin⁻(n, k, δ/|F|)            (0-1 loss, k = n·R̂ errors)

`var` is an ASSUMED upper bound on the loss variance, never a plug-in estimate (a 0-1 loss always has variance
≤ 1/4, so var = 1/4 is always valid); V_n = Σ(ℓ_i − R̂)²/(n − 1) is the unbiased sample variance, which for a
0-1 loss is k(n − k)/(n(n − 1)). Each bound is a one-sided tail bound at level δ/|F| plus a union bound
over F.
Only the 0-1 loss is offered at model level for now (C = 1); the numeric cores take any C.
Ordering: binomial ≤ kl ≤ hoeffding (Pinsker: kl(q‖p) ≥ 2(p − q)²; the Chernoff bound dominates the exact
tail).

References:
    Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning", arXiv:1710.05468 v5, §6 Proposition
    (generalization guarantee via validation) and its Bernstein form.
    Maurer & Pontil, "Empirical Bernstein bounds and sample variance penalization", COLT 2009, Theorem 4.
    Langford, "Tutorial on practical prediction theory for classification", JMLR 6, 2005, Thm 3.3, Cor 3.7.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import check_choice, check_positive_float, check_positive_int, check_probability, param_error
from ..evaluate import margins
from . import BOUNDS
from .kl import binomial_inverse_upper, check_counts, kl_inverse_upper
from .types import Bound

QUANTITY = "0-1 population error of f (one member of a family F fixed before the held-out points were seen)"
ASSUMPTIONS = ("the n held-out points are i.i.d. from the population and independent of f",
               "they were not used to train or select f beyond choosing among the |F| = family_size members "
               "of a family fixed in advance (every model, checkpoint and hyper-parameter compared counts)")
REFS = {
    "heldout_hoeffding": "Kawaguchi, Kaelbling & Bengio 2017, arXiv:1710.05468 v5, §6 Proposition (Hoeffding "
                         "+ union bound over F)",
    "heldout_bernstein": "Kawaguchi, Kaelbling & Bengio 2017, arXiv:1710.05468 v5, §6 Proposition (Bernstein "
                         "form with an assumed variance bound)",
    "heldout_empirical_bernstein": "Maurer & Pontil 2009, Empirical Bernstein bounds and sample variance "
                                   "penalization, Theorem 4 (+ union bound over F)",
    "heldout_kl": "Langford 2005, Tutorial on practical prediction theory, Cor. 3.7 (Chernoff / kl form)",
    "heldout_binomial": "Langford 2005, Tutorial on practical prediction theory, Thm 3.3 (binomial tail "
                        "inversion = Clopper–Pearson upper limit at level δ/|F|)",
}


# ---- numeric cores (no model) ---------------------------------------------------------------------------

def _common(n: Any, delta: Any, family_size: Any, where: str) -> tuple[int, float, int]:
    return (check_positive_int(n, "n", where), check_probability(delta, "delta", where),
            check_positive_int(family_size, "family_size", where))


def _log_over(count: int, delta: float) -> float:
    """ln(count/δ) as ln(count) − ln(δ): count/δ overflows to inf for a subnormal δ such as 5e-324."""
    return math.log(count) - math.log(delta)


def hoeffding_slack(n: int, delta: float, family_size: int = 1, loss_range: float = 1.0) -> float:
    """C·sqrt(ln(|F|/δ)/(2n))."""
    n, delta, family_size = _common(n, delta, family_size, "hoeffding_slack()")
    loss_range = check_positive_float(loss_range, "loss_range", "hoeffding_slack()")
    return loss_range * math.sqrt(_log_over(family_size, delta) / (2 * n))


def bernstein_slack(n: int, delta: float, var: float | None, family_size: int = 1,
                    loss_range: float = 1.0) -> float:
    """2C·ln(|F|/δ)/(3n) + sqrt(2·var·ln(|F|/δ)/n), var an assumed bound on the loss variance."""
    where = "bernstein_slack()"
    n, delta, family_size = _common(n, delta, family_size, where)
    var = check_variance(var, where)
    loss_range = check_positive_float(loss_range, "loss_range", where)
    log_term = _log_over(family_size, delta)
    return 2 * loss_range * log_term / (3 * n) + math.sqrt(2 * var * log_term / n)


def empirical_bernstein_slack(n: int, delta: float, sample_var: float, family_size: int = 1,
                              loss_range: float = 1.0) -> float:
    """sqrt(2·V_n·ln(2|F|/δ)/n) + 7(b − a)·ln(2|F|/δ)/(3(n − 1)), V_n the unbiased sample variance; n ≥ 2."""
    where = "empirical_bernstein_slack()"
    _, delta, family_size = _common(n, delta, family_size, where)
    n = check_positive_int(n, "n", where, minimum=2)
    sample_var = check_positive_float(sample_var, "sample_var", where, allow_zero=True)
    loss_range = check_positive_float(loss_range, "loss_range", where)
    log_term = _log_over(2 * family_size, delta)
    return math.sqrt(2 * sample_var * log_term / n) + 7 * loss_range * log_term / (3 * (n - 1))


def zero_one_sample_var(n: int, k: int) -> float:
    """Unbiased sample variance of n 0-1 losses with k ones: k(n − k)/(n(n − 1)); n ≥ 2."""
    n, k = check_counts(n, k, "zero_one_sample_var()")
    n = check_positive_int(n, "n", "zero_one_sample_var()", minimum=2)
    return k * (n - k) / (n * (n - 1))


def heldout_binomial_value(n: int, k: int, delta: float, family_size: int = 1) -> float:
    """Bin⁻(n, k, δ/|F|): the exact test-set bound."""
    _, delta, family_size = _common(n, delta, family_size, "heldout_binomial_value()")
    per_model = delta / family_size
    if per_model == 0.0:          # δ/|F| underflows double precision: Bin⁻ ≤ 1 always, so 1 is still valid
        return 1.0
    return binomial_inverse_upper(n, k, per_model)


def heldout_kl_value(n: int, k: int, delta: float, family_size: int = 1) -> float:
    """kl⁻¹(k/n, ln(|F|/δ)/n)."""
    n, delta, family_size = _common(n, delta, family_size, "heldout_kl_value()")
    n, k = check_counts(n, k, "heldout_kl_value()")
    return kl_inverse_upper(k / n, _log_over(family_size, delta) / n)


def check_variance(var: Any, where: str) -> float:
    """The assumed variance bound of the Bernstein form: required, a float > 0."""
    if var is None or isinstance(var, bool) or not isinstance(var, (int, float)) or not 0 < var < math.inf:
        raise param_error("var", where, "a float > 0: an ASSUMED upper bound on the variance of the loss "
                          "(never a plug-in estimate)", var,
                          "Pass var=0.25, the largest variance a 0-1 loss can have, when nothing better is "
                          "known.")
    return float(var)


# ---- Bound objects from counts (used by the model-level functions and by certify) -----------------------

def heldout_bound(name: str, n: int, k: int, *, delta: float, family_size: int = 1,
                  var: float | None = None) -> Bound:
    """The held-out bound `name` for k errors among n held-out points, as a Bound (0-1 loss, C = 1)."""
    where = f"{name}()"
    n, delta, family_size = _common(n, delta, family_size, where)
    n, k = check_counts(n, k, where)
    emp = k / n
    terms: dict[str, float] = {"n": float(n), "errors": float(k), "empirical_error": emp,
                               "family_size": float(family_size), "delta_per_member": delta / family_size}
    if name == "heldout_hoeffding":
        terms["slack"] = hoeffding_slack(n, delta, family_size)
        value = emp + terms["slack"]
    elif name == "heldout_bernstein":
        terms["var_assumed"] = check_variance(var, where)
        terms["slack"] = bernstein_slack(n, delta, var, family_size)
        value = emp + terms["slack"]
    elif name == "heldout_empirical_bernstein":
        terms["sample_var"] = zero_one_sample_var(n, k) if n >= 2 else 0.0
        terms["slack"] = empirical_bernstein_slack(n, delta, terms["sample_var"], family_size)
        value = emp + terms["slack"]
    elif name == "heldout_kl":
        value = heldout_kl_value(n, k, delta, family_size)
        terms["slack"] = value - emp
    else:
        check_choice(name, "name", "heldout_bound()", REFS)
        value = heldout_binomial_value(n, k, delta, family_size)
        terms["slack"] = value - emp
    return Bound(name, value, delta, QUANTITY, terms, REFS[name], ASSUMPTIONS)


# ---- model-level bound functions -------------------------------------------------------------------------

def count_errors(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int]:
    """(n, k): points and 0-1 errors (margin ≤ 0, ties are errors) of `model` on `data`."""
    x, y = data
    return int(y.shape[0]), int((margins(model, x, y) <= 0).sum())


def _model_bound(name: str, model: nn.Module, data: tuple, delta: float, family_size: int, loss: str,
                 var: float | None = None) -> Bound:
    check_choice(loss, "loss", f"{name}()", ("zero_one",))
    n, k = count_errors(model, data)
    return heldout_bound(name, n, k, delta=delta, family_size=family_size, var=var)


@BOUNDS.register("heldout_binomial", quantity=QUANTITY, reference=REFS["heldout_binomial"],
                 needs=("model", "data"))
def heldout_binomial(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1) -> Bound:
    """Bin⁻(n, k, δ/|F|) on the held-out `data`: the tightest valid bound here."""
    return _model_bound("heldout_binomial", model, data, delta, family_size, "zero_one")


@BOUNDS.register("heldout_kl", quantity=QUANTITY, reference=REFS["heldout_kl"], needs=("model", "data"))
def heldout_kl(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1) -> Bound:
    """kl⁻¹(R̂, ln(|F|/δ)/n) on the held-out `data`."""
    return _model_bound("heldout_kl", model, data, delta, family_size, "zero_one")


@BOUNDS.register("heldout_hoeffding", quantity=QUANTITY, reference=REFS["heldout_hoeffding"],
                 needs=("model", "data"))
def heldout_hoeffding(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                      loss: str = "zero_one") -> Bound:
    """R̂ + sqrt(ln(|F|/δ)/(2n)) on the held-out `data` (0-1 loss, C = 1)."""
    return _model_bound("heldout_hoeffding", model, data, delta, family_size, loss)


@BOUNDS.register("heldout_bernstein", quantity=QUANTITY, reference=REFS["heldout_bernstein"],
                 needs=("model", "data"))
def heldout_bernstein(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                      var: float | None = None, loss: str = "zero_one") -> Bound:
    """R̂ + 2·ln(|F|/δ)/(3n) + sqrt(2·var·ln(|F|/δ)/n); `var` (required) an assumed variance bound."""
    check_variance(var, "heldout_bernstein()")
    return _model_bound("heldout_bernstein", model, data, delta, family_size, loss, var)


@BOUNDS.register("heldout_empirical_bernstein", quantity=QUANTITY,
                 reference=REFS["heldout_empirical_bernstein"], needs=("model", "data"))
def heldout_empirical_bernstein(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                                loss: str = "zero_one") -> Bound:
    """R̂ + sqrt(2·V_n·ln(2|F|/δ)/n) + 7·ln(2|F|/δ)/(3(n − 1)), V_n the unbiased sample variance."""
    return _model_bound("heldout_empirical_bernstein", model, data, delta, family_size, loss)
