"""Nagarajan & Kolter 2019's two tests of a measure or bound: the m-test and the S' test.

**m-test** (NK §3, Fig. 1), on the zoo ``nk-m-sweep``: the log-log slope against the training-set size m of
the per-m median of the quantity, next to that of the test error. For a margin complexity (a registered
measure of kind 'complexity', the numerator C of a bound C / (γ√m)) the slope of C / (γ√m) is the one that
decides, with γ the zoo's target margin γ* (NK divide by γ*·√m); for a bound or any other measure the slope
of the value itself. Verdict "grows while the error falls" when the test-error slope is < 0 and the deciding
slope > 0 (NK's failure mode); "falls with the error" when both are < 0; "inconclusive" when the test error
does not fall on this zoo.

**S' test** (NK §4, Lemma / the hypersphere experiment), on the zoo ``nk-hypersphere``: S' is S with every
point moved to the other sphere and its label flipped, so S' has the distribution of S. If a two-sided
uniform-convergence bound ε_unif held over the hypotheses the algorithm outputs, it would hold for h_S on
S' too, so ε_unif ≥ |L_{S'}(h_S) − L_D(h_S)| ≥ (error of h_S on S') − (test error), the *implied* ε_unif
(measured on the test set as NK do). The quantity's own ε: for a bound, its value on S minus the training
error (the gap it certifies); for a margin complexity, C / (γ√m); for any other measure there is none and
only its values on S and S' are reported. Verdict: ε ≥ the implied ε_unif on every model ("consistent
with uniform convergence: vacuous here, as NK predict") or below it on k of N models ("below NK's limit:
not a two-sided uniform-convergence bound over these models").

References:
    Nagarajan & Kolter 2019, Uniform convergence may be unable to explain generalization in deep learning,
    NeurIPS, §3 (Fig. 1) and §4 (the hypersphere experiment and its lemma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..experiments.table import loglog_slope
from ..quantity import Quantity
from .values import Value

GROWS = "grows while the error falls"
ROUNDING = 1e-9          # |slope| below this is a constant read through floating-point logs, not a trend


def margin_applies(quantity: Quantity) -> bool:
    """Whether the quantity is a margin complexity C of a bound C / (γ√m) (a registered 'complexity')."""
    return quantity.kind == "measure" and quantity.meta.get("kind") == "complexity"


def _medians(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    by_x: dict[float, list[float]] = {}
    for x, y in zip(xs, ys, strict=True):
        by_x.setdefault(x, []).append(y)
    keys = sorted(by_x)
    return keys, [float(np.median(by_x[k])) for k in keys]


@dataclass(frozen=True)
class MTest:
    """The m-test: per-m medians (the figure's data), the slopes and the verdict."""

    verdict: str
    m: list[float]                     # the training-set sizes with a value
    value: list[float]                 # per-m median of the quantity
    normalized: list[float] | None     # per-m median of value / (γ√m), for a margin complexity
    test_m: list[float]                # every training-set size of the zoo
    test_error: list[float]            # per-m median test error
    slope: float                       # log-log slope of the value
    slope_normalized: float | None
    slope_test_error: float
    gamma: float | None
    n_models: int
    n_failed: int

    @property
    def deciding_slope(self) -> float:
        return self.slope if self.slope_normalized is None else self.slope_normalized


def m_test(quantity: Quantity, models, values: dict[str, Value], gamma: float | None) -> MTest:
    """NK's m-test over the models of nk-m-sweep (module docstring); `gamma` is the zoo's target margin."""
    ok = [m for m in models if values[m.id].ok]
    ms = [float(m.m) for m in ok]
    raw = [values[m.id].value for m in ok]
    m_axis, value = _medians(ms, raw)
    test_axis, test = _medians([float(m.m) for m in models], [m.test_error for m in models])
    normalized = slope_normalized = None
    if margin_applies(quantity) and gamma:
        _, normalized = _medians(ms, [v / (gamma * math.sqrt(m)) for v, m in zip(raw, ms, strict=True)])
        slope_normalized = loglog_slope(np.array(m_axis), np.array(normalized))
    slope = loglog_slope(np.array(m_axis), np.array(value))
    test_slope = loglog_slope(np.array(test_axis), np.array(test))
    deciding = slope if slope_normalized is None else slope_normalized
    if len(m_axis) < 2 or math.isnan(deciding):
        verdict = "not computable: values at fewer than two training-set sizes"
    elif not test_slope < -ROUNDING:
        verdict = f"inconclusive: the test error does not fall with m on this zoo (slope {test_slope:.3g})"
    elif deciding > ROUNDING:
        verdict = GROWS
    else:
        verdict = "falls with the error"
    return MTest(verdict, m_axis, value, normalized, test_axis, test, slope, slope_normalized, test_slope, gamma,
                 len(models), len(models) - len(ok))


@dataclass(frozen=True)
class SPrimeTest:
    """The S' test: per model its value on S and S', its ε (or None) and the implied ε_unif."""

    verdict: str
    m: list[int]
    value_s: list[float | None]
    value_sprime: list[float | None]
    epsilon: list[float | None]           # the quantity's own ε on S (see the module docstring)
    implied_eps_unif: list[float]         # error of h_S on S' − test error
    below: int                            # models with ε < the implied ε_unif
    n_models: int
    n_failed: int
    epsilon_kind: str = ""                # how ε was formed
    notes: list[str] = field(default_factory=list)


def sprime_test(quantity: Quantity, models, on_s: dict[str, Value], on_sprime: dict[str, Value],
                gamma: float | None) -> SPrimeTest:
    """NK's S' test over the models of nk-hypersphere (module docstring)."""
    m_list, vs, vsp, eps, implied = [], [], [], [], []
    for model in models:
        s, sp = on_s[model.id], on_sprime[model.id]
        m_list.append(model.m)
        vs.append(s.value)
        vsp.append(sp.value)
        implied.append(float(model.values["sprime_error"]) - model.test_error)
        eps.append(_epsilon(quantity, s.value, model, gamma))
    if quantity.kind == "bound":
        kind = "bound on S − training error"
    elif margin_applies(quantity):
        kind = f"value on S / (γ√m), γ = {gamma:g}" if gamma else "none (no γ)"
    else:
        kind = "none: a measure that is not a margin complexity states no ε"
    pairs = [(e, i) for e, i in zip(eps, implied, strict=True) if e is not None]
    below = sum(e < i for e, i in pairs)
    failed = sum(v is None for v in vs)
    if not pairs:
        verdict = ("not applicable: no ε to compare (values on S and S' reported)" if failed < len(models)
                   else "not computable: the quantity failed on every model")
    elif below:
        verdict = (f"below NK's limit on {below} of {len(pairs)} models: not a two-sided uniform-convergence "
                   f"bound over these models")
    else:
        verdict = ("consistent with uniform convergence: ε ≥ (S' error − test error) on every model, so "
                   "vacuous here, as NK predict")
    return SPrimeTest(verdict, m_list, vs, vsp, eps, implied, below, len(models), failed, kind)


def _epsilon(quantity: Quantity, value: float | None, model, gamma: float | None) -> float | None:
    if value is None:
        return None
    if quantity.kind == "bound":
        return value - model.train_error
    if margin_applies(quantity) and gamma:
        return value / (gamma * math.sqrt(model.m))
    return None
