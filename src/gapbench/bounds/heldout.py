"""Held-out ("generalization via validation") bounds on the 0-1 error of a model, from n fresh points.

KKB's Proposition: if a finite family F of models is fixed before the n held-out points are seen (every model
trained, every checkpoint and every hyper-parameter the validation set chooses among counts as a member), then
with probability ≥ 1 − δ, simultaneously for all f ∈ F (R the population risk, R̂ the held-out mean of a loss
in [0, C], resp. [a, b] with C = b − a; L = ln|F| − ln δ = ln(|F|/δ)):

    heldout_hoeffding             R ≤ R̂ + C·sqrt(L/(2n))
    heldout_bernstein             R ≤ max{p ∈ [0, 1] : p − R̂ ≤ 2L/(3n) + sqrt(2·p(1 − p)·L/n)}   (0-1 loss)
      with assume_var = v (KKB)   R ≤ R̂ + 2C·L/(3n) + sqrt(2·v·L/n)          (assumes Var[loss] ≤ v)
    heldout_empirical_bernstein   R ≤ R̂ + sqrt(2·V_n·(L + ln 2)/n) + 7C·(L + ln 2)/(3(n − 1))
    heldout_kl                    R ≤ kl⁻¹(R̂, L/n)
    heldout_binomial              R ≤ Bin⁻(n, k, e^(−L)) = Bin⁻(n, k, δ/|F|)   (0-1 loss, k = n·R̂ errors)

Each is a one-sided tail bound at level δ/|F| for one f plus a union bound over the |F| members, so it holds
at exactly the δ passed. Everything is computed from L in log space: |F| may be a Python int like 10**1000,
and δ/|F| need not be a representable float.

The Bernstein forms. Bernstein's inequality (one-sided) for i.i.d. Y_i = R − ℓ_i with E Y_i = 0,
Y_i ≤ C and Var Y_i = σ²: P[R − R̂ ≥ t] ≤ exp(−n t²/(2σ² + 2Ct/3)). Setting the right side to δ/|F| gives
n t² = L(2σ² + 2Ct/3), whose positive root t = CL/(3n) + sqrt((CL/(3n))² + 2σ²L/n) is at most
2CL/(3n) + sqrt(2σ²L/n) (sqrt(x + y) ≤ sqrt(x) + sqrt(y)); the union over F costs the ln|F| in L.
  * assumption-free (the default, assume_var=None): a 0-1 loss has σ² = R(1 − R) exactly, so with
    probability ≥ 1 − δ/|F| the true R satisfies R − R̂ ≤ 2L/(3n) + sqrt(2R(1 − R)L/n); R is then at most
    the largest p ∈ [0, 1] satisfying it. With a = R̂ + 2L/(3n) and b = 2L/n every p ≤ a qualifies, and for
    p > a squaring gives (1 + b)p² − (2a + b)p + a² ≤ 0, whose larger root is
        p₊ = (2a + b + sqrt(b² + 4ab(1 − a))) / (2(1 + b))        (a < 1; the bound is 1 when a ≥ 1).
    The quadratic is ≤ 0 at p = a (value ab(a − 1)) and ≥ 0 at p = 1 (value (1 − a)²), so a ≤ p₊ ≤ 1.
  * assume_var = v: KKB's form with σ² ≤ v ASSUMED. For a 0-1 loss Var = R(1 − R), so a small v is an
    assumption about R itself (v = 1e-6 at k = 480 of n = 1000 gives 0.482, below even Bin⁻ = 0.507); the
    Bound's assumptions then say "assumes Var ≤ v". v ≥ 1/4 always holds for a 0-1 loss.
V_n = Σ(ℓ_i − R̂)²/(n − 1) is the unbiased sample variance, for a 0-1 loss k(n − k)/(n(n − 1)); empirical
Bernstein unions two events, hence ln(2|F|/δ) = L + ln 2; it is +∞ (vacuous) at n = 1.
Only the 0-1 loss is offered at model level for now (C = 1); the numeric cores take any C.
Ordering: binomial ≤ kl ≤ hoeffding (Pinsker: kl(q‖p) ≥ 2(p − q)²; the Chernoff bound dominates the exact
tail), and binomial ≤ assumption-free Bernstein (Bernstein's tail, too, bounds the exact binomial tail).
Below k/n: every bound but the binomial one is ≥ k/n; Bin⁻(n, k, δ') < k/n can happen only when δ' > 1/2
(P[Bin(n, k/n) ≤ k] ≥ 1/2 since the median of Bin(n, k/n) is k). A Bound below k/n has
terms['below_empirical'] = 1.

References:
    Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning", arXiv:1710.05468 v5, §6 Proposition
    (generalization guarantee via validation) and its Bernstein form.
    Boucheron, Lugosi & Massart, "Concentration Inequalities", 2013, Thm 2.10 and Cor. 2.11 (Bernstein).
    Maurer & Pontil, "Empirical Bernstein bounds and sample variance penalization", COLT 2009, Theorem 4.
    Langford, "Tutorial on practical prediction theory for classification", JMLR 6, 2005, Thm 3.3, Cor 3.7.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..errors import check_choice, check_positive_float, check_positive_int, check_probability, param_error
from ..inference import margins
from . import BOUNDS
from .kl import binomial_inverse_log, check_counts, kl_inverse_upper
from .types import Bound

QUANTITY = "0-1 population error of f (one member of a family F fixed before the held-out points were seen)"
ASSUMPTIONS = ("the n held-out points are i.i.d. from the population and independent of f",
               "they were not used to train or select f beyond choosing among the |F| = family_size members "
               "of a family fixed in advance (every model, checkpoint and hyper-parameter compared counts)")
REFS = {
    "heldout_hoeffding": "Kawaguchi, Kaelbling & Bengio 2017, arXiv:1710.05468 v5, §6 Proposition (Hoeffding "
                         "+ union bound over F)",
    "heldout_bernstein": "Kawaguchi, Kaelbling & Bengio 2017, arXiv:1710.05468 v5, §6 Proposition (Bernstein "
                         "form; Var = R(1 − R) solved for R unless assume_var is given)",
    "heldout_empirical_bernstein": "Maurer & Pontil 2009, Empirical Bernstein bounds and sample variance "
                                   "penalization, Theorem 4 (+ union bound over F)",
    "heldout_kl": "Langford 2005, Tutorial on practical prediction theory, Cor. 3.7 (Chernoff / kl form)",
    "heldout_binomial": "Langford 2005, Tutorial on practical prediction theory, Thm 3.3 (binomial tail "
                        "inversion = Clopper–Pearson upper limit at level δ/|F|)",
}


# ---- numeric cores (no model) ---------------------------------------------------------------------------

def log_confidence(n: Any, delta: Any, family_size: Any, where: str) -> tuple[int, float]:
    """Validate (n, δ, |F|) and return (n, L) with L = ln|F| − ln δ > 0, exact for any Python int |F|."""
    n = check_positive_int(n, "n", where)
    delta = check_probability(delta, "delta", where)
    family_size = check_positive_int(family_size, "family_size", where)
    return n, math.log(family_size) - math.log(delta)


# Each public function checks its arguments once and calls the unchecked core (_name) with L = ln(|F|/δ);
# heldout_bound and certify check once and call only cores.

def hoeffding_slack(n: int, delta: float, family_size: int = 1, loss_range: float = 1.0) -> float:
    """C·sqrt(L/(2n)), L = ln(|F|/δ)."""
    n, log_term = log_confidence(n, delta, family_size, "hoeffding_slack()")
    return _hoeffding_slack(n, log_term, check_positive_float(loss_range, "loss_range", "hoeffding_slack()"))


def _hoeffding_slack(n: int, log_term: float, loss_range: float = 1.0) -> float:
    return loss_range * math.sqrt(log_term / (2 * n))


def bernstein_slack(n: int, delta: float, assume_var: float, family_size: int = 1,
                    loss_range: float = 1.0) -> float:
    """2C·L/(3n) + sqrt(2·assume_var·L/n), assume_var an ASSUMED bound on the loss variance (KKB's form)."""
    where = "bernstein_slack()"
    n, log_term = log_confidence(n, delta, family_size, where)
    assume_var = check_assumed_variance(assume_var, where, required=True)
    return _bernstein_slack(n, log_term, assume_var, check_positive_float(loss_range, "loss_range", where))


def _bernstein_slack(n: int, log_term: float, assume_var: float, loss_range: float = 1.0) -> float:
    return 2 * loss_range * log_term / (3 * n) + math.sqrt(2 * assume_var * log_term / n)


def heldout_bernstein_value(n: int, k: int, delta: float, family_size: int = 1) -> float:
    """The assumption-free Bernstein bound of a 0-1 loss: the larger root p₊ of (1 + b)p² − (2a + b)p + a²
    with a = k/n + 2L/(3n), b = 2L/n (derivation in the module docstring); 1 when a ≥ 1."""
    where = "heldout_bernstein_value()"
    n, log_term = log_confidence(n, delta, family_size, where)
    return _heldout_bernstein_value(*check_counts(n, k, where), log_term)


def _heldout_bernstein_value(n: int, k: int, log_term: float) -> float:
    a, b = k / n + 2 * log_term / (3 * n), 2 * log_term / n
    if a >= 1.0:
        return 1.0
    return min(1.0, (2 * a + b + math.sqrt(b * b + 4 * a * b * (1 - a))) / (2 * (1 + b)))


def empirical_bernstein_slack(n: int, delta: float, sample_var: float, family_size: int = 1,
                              loss_range: float = 1.0) -> float:
    """sqrt(2·V_n·(L + ln 2)/n) + 7(b − a)·(L + ln 2)/(3(n − 1)), V_n the unbiased sample variance; n ≥ 2."""
    where = "empirical_bernstein_slack()"
    _, log_term = log_confidence(n, delta, family_size, where)
    n = check_positive_int(n, "n", where, minimum=2)
    sample_var = check_positive_float(sample_var, "sample_var", where, allow_zero=True)
    return _empirical_bernstein_slack(n, log_term, sample_var, check_positive_float(loss_range, "loss_range", where))


def _empirical_bernstein_slack(n: int, log_term: float, sample_var: float, loss_range: float = 1.0) -> float:
    log_term += math.log(2)
    return math.sqrt(2 * sample_var * log_term / n) + 7 * loss_range * log_term / (3 * (n - 1))


def zero_one_sample_var(n: int, k: int) -> float:
    """Unbiased sample variance of n 0-1 losses with k ones: k(n − k)/(n(n − 1)); n ≥ 2."""
    n, k = check_counts(n, k, "zero_one_sample_var()")
    return _zero_one_sample_var(check_positive_int(n, "n", "zero_one_sample_var()", minimum=2), k)


def _zero_one_sample_var(n: int, k: int) -> float:
    return k * (n - k) / (n * (n - 1))


def heldout_binomial_value(n: int, k: int, delta: float, family_size: int = 1) -> float:
    """Bin⁻(n, k, δ/|F|): the exact test-set bound, at ln(δ/|F|) = −L (no underflow for any |F|)."""
    n, log_term = log_confidence(n, delta, family_size, "heldout_binomial_value()")
    return _heldout_binomial_value(*check_counts(n, k, "heldout_binomial_value()"), log_term)


def _heldout_binomial_value(n: int, k: int, log_term: float) -> float:
    return binomial_inverse_log(n, k, -log_term)


def heldout_kl_value(n: int, k: int, delta: float, family_size: int = 1) -> float:
    """kl⁻¹(k/n, L/n)."""
    n, log_term = log_confidence(n, delta, family_size, "heldout_kl_value()")
    return _heldout_kl_value(*check_counts(n, k, "heldout_kl_value()"), log_term)


def _heldout_kl_value(n: int, k: int, log_term: float) -> float:
    return kl_inverse_upper(k / n, log_term / n)


def check_assumed_variance(assume_var: Any, where: str, *, required: bool = False) -> float | None:
    """The assumed variance bound of KKB's Bernstein form: None (assumption-free) unless required, else a
    float > 0."""
    if assume_var is None and not required:
        return None
    if (assume_var is None or isinstance(assume_var, bool) or not isinstance(assume_var, (int, float))
            or not 0 < assume_var < math.inf):
        expected = ("a float > 0" if required else "None (the assumption-free form) or a float > 0")
        raise param_error("assume_var", where, f"{expected}: an ASSUMED upper bound on the variance of the "
                          "loss (never a plug-in estimate)", assume_var,
                          "Leave it out for the assumption-free Bernstein bound, or pass assume_var=0.25, the "
                          "largest variance a 0-1 loss can have.")
    return float(assume_var)


# ---- Bound objects from counts (used by the model-level functions and by certify) -----------------------

def heldout_bound(name: str, n: int, k: int, *, delta: float, family_size: int = 1,
                  assume_var: float | None = None) -> Bound:
    """The held-out bound `name` for k errors among n held-out points, as a Bound (0-1 loss, C = 1);
    `assume_var` only for heldout_bernstein (None: assumption-free)."""
    where = f"{name}()"
    check_choice(name, "name", "heldout_bound()", REFS)
    n, log_term = log_confidence(n, delta, family_size, where)
    n, k = check_counts(n, k, where)
    assume_var = check_assumed_variance(assume_var, where) if name == "heldout_bernstein" else None
    return bound_from_counts(name, n, k, log_term, delta, family_size, assume_var)


def bound_from_counts(name: str, n: int, k: int, log_term: float, delta: float, family_size: int,
                      assume_var: float | None) -> Bound:
    """heldout_bound on arguments its caller has checked (log_term = L = ln(|F|/δ)): no check repeated."""
    emp = k / n
    terms: dict[str, float] = {"n": float(n), "errors": float(k), "empirical_error": emp,
                               "log_family_size": math.log(family_size), "log_confidence": log_term}
    assumptions = ASSUMPTIONS
    if name == "heldout_hoeffding":
        value = emp + _hoeffding_slack(n, log_term)
    elif name == "heldout_bernstein" and assume_var is None:
        value = _heldout_bernstein_value(n, k, log_term)
    elif name == "heldout_bernstein":
        terms["var_assumed"] = assume_var
        value = emp + _bernstein_slack(n, log_term, assume_var)
        assumptions += (f"assumes Var ≤ {assume_var:g} for the 0-1 loss of f, i.e. R(1 − R) ≤ "
                        f"{assume_var:g}: an assumption about the population error R itself",)
    elif name == "heldout_empirical_bernstein":
        terms["sample_var"] = _zero_one_sample_var(n, k) if n >= 2 else 0.0
        # M&P's 7C·L/(3(n − 1)) is infinite at n = 1: the bound exists (vacuous), rather than an error
        value = emp + _empirical_bernstein_slack(n, log_term, terms["sample_var"]) if n >= 2 else math.inf
    elif name == "heldout_kl":
        value = _heldout_kl_value(n, k, log_term)
    else:
        value = _heldout_binomial_value(n, k, log_term)
    terms["slack"] = value - emp
    terms["below_empirical"] = float(value < emp)      # only Bin⁻ at δ/|F| > 1/2 (module docstring)
    return Bound(name, value, delta, QUANTITY, terms, REFS[name], assumptions)


# ---- model-level bound functions -------------------------------------------------------------------------

def count_errors(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[int, int]:
    """(n, k): points and 0-1 errors (margin ≤ 0, ties are errors) of `model` on `data`."""
    x, y = data
    return int(y.shape[0]), int((margins(model, x, y) <= 0).sum())


def _model_bound(name: str, model: nn.Module, data: tuple, delta: float, family_size: int, loss: str,
                 assume_var: float | None = None) -> Bound:
    check_choice(loss, "loss", f"{name}()", ("zero_one",))
    n, k = count_errors(model, data)
    return heldout_bound(name, n, k, delta=delta, family_size=family_size, assume_var=assume_var)


@BOUNDS.register("heldout_binomial", quantity=QUANTITY, reference=REFS["heldout_binomial"],
                 needs=("model", "data"), held_out=True)
def heldout_binomial(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1) -> Bound:
    """Bin⁻(n, k, δ/|F|) on the held-out `data`: the tightest valid bound here."""
    return _model_bound("heldout_binomial", model, data, delta, family_size, "zero_one")


@BOUNDS.register("heldout_kl", quantity=QUANTITY, reference=REFS["heldout_kl"], needs=("model", "data"),
                 held_out=True)
def heldout_kl(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1) -> Bound:
    """kl⁻¹(R̂, L/n), L = ln(|F|/δ), on the held-out `data`."""
    return _model_bound("heldout_kl", model, data, delta, family_size, "zero_one")


@BOUNDS.register("heldout_hoeffding", quantity=QUANTITY, reference=REFS["heldout_hoeffding"],
                 needs=("model", "data"), held_out=True)
def heldout_hoeffding(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                      loss: str = "zero_one") -> Bound:
    """R̂ + sqrt(ln(|F|/δ)/(2n)) on the held-out `data` (0-1 loss, C = 1)."""
    return _model_bound("heldout_hoeffding", model, data, delta, family_size, loss)


@BOUNDS.register("heldout_bernstein", quantity=QUANTITY, reference=REFS["heldout_bernstein"],
                 needs=("model", "data"), held_out=True)
def heldout_bernstein(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                      assume_var: float | None = None, loss: str = "zero_one") -> Bound:
    """Bernstein with Var = R(1 − R) solved for R (assumption-free), or KKB's R̂ + 2L/(3n) +
    sqrt(2·assume_var·L/n) when `assume_var` (an ASSUMED variance bound) is given."""
    check_assumed_variance(assume_var, "heldout_bernstein()")
    return _model_bound("heldout_bernstein", model, data, delta, family_size, loss, assume_var)


@BOUNDS.register("heldout_empirical_bernstein", quantity=QUANTITY,
                 reference=REFS["heldout_empirical_bernstein"], needs=("model", "data"), held_out=True)
def heldout_empirical_bernstein(model: nn.Module, data: tuple, *, delta: float, family_size: int = 1,
                                loss: str = "zero_one") -> Bound:
    """R̂ + sqrt(2·V_n·ln(2|F|/δ)/n) + 7·ln(2|F|/δ)/(3(n − 1)), V_n the unbiased sample variance."""
    return _model_bound("heldout_empirical_bernstein", model, data, delta, family_size, loss)
