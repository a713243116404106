"""Jiang et al. 2020 ("Fantastic Generalization Measures", arXiv:1912.02178, App. C) measures that are exact
re-expressions of quantities defined here, named ``jiang2020_<their name>`` and referenced by equation.

Their definitions (checked against the released code of Dziugaite et al. 2020, robust-generalization-measures,
``data/generation/measures.py``, which annotates each with Jiang et al.'s equation number):

- W_l are the weight matrices only (biases excluded) after BatchNorm folding; d = L, the number of them.
- γ = |Γ_(k)|, the absolute value of the k-th smallest training margin, k = ⌊m/10⌋ (``kthvalue(m // 10)``):
  ``margin_quantile`` with q = 0.1, then |·|. A γ of 0 is refused (every measure divides by it).
- ‖W_l‖₂ of a Conv2d layer follows ``conv``: 'fft' (exact, circular padding; their "_fft" measures) or
  'reshaped' (their default measures).
- The values are the equations as printed, *before* the released code's per-sample-size adjustment
  (sqrt(μ/m), or (μ − ln m)/2 for the log measures), which is not applied.

PAC-Bayes forms use σ from :func:`gapbench.measures.sharpness.sharpness_search` (search parameters as there),
w, w_0 the concatenated weight matrices (biases excluded, as in their code), ω = the number of those weights,
ε = magnitude_eps = 1e-3:

    (48) pacbayes_init     = ‖w − w_0‖²/(4σ²) + ln(m/σ) + 10          (49) pacbayes_orig: ‖w‖² in place
    (53) pacbayes_flatness = 1/σ²                                    (61) pacbayes_mag_flatness = 1/σ'²
    (56) pacbayes_mag_init = ¼ Σ_i ln((ε² + (σ'² + 1)‖w − w_0‖²/ω) / (ε² + σ'²(w_i − w0_i)²)) + ln(m/σ') + 10
    (57) pacbayes_mag_orig = the same with ‖w‖² in the numerator (the released code keeps (w_i − w0_i)² in
         the denominator of both, and so do we)

References:
    Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic Generalization Measures and Where to Find Them",
    ICLR 2020, App. C, Eqs. (22)-(61).
    Dziugaite, Drouin et al., "In search of robust measures of generalization", NeurIPS 2020 (released code).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

import torch
from torch import nn

from ..errors import GapbenchError
from ._base import MEASURES, XY, input_shape_of, layers_of, paired_layers, weight_differences, where
from .conv import check_norm_params, layer_operator_norm
from .margins import order_statistic_quantile, per_example_margins
from .path_norms import path_norms
from .sharpness import MAG_STD_HIGH, MAGNITUDE_EPS, STD_HIGH, STD_RTOL, TOLERANCE, sharpness_search

JIANG = "Jiang et al. 2020, Fantastic generalization measures, Eq."


class _Quantities:
    """The per-layer squared norms and the margin γ of one (model, data, init), computed on first use."""

    def __init__(self, name: str, model: nn.Module, data: XY | None, init: nn.Module | None,
                 conv: str = "fft", input_shape=None):
        self.caller, self.model, self.data, self.init, self.conv = where(name), model, data, init, conv
        check_norm_params(conv, "exact", 1, 0, self.caller)
        self.layers = layers_of(model, self.caller, input_shape_of(data, input_shape, self.caller))
        self.d = len(self.layers)
        self.input_shape = input_shape

    def _spec2(self, weights=None) -> list[float]:
        weights = weights or [None] * self.d
        return [float(layer_operator_norm(layer, w, conv=self.conv, caller=self.caller)) ** 2
                for layer, w in zip(self.layers, weights, strict=True)]

    @cached_property
    def spec2(self) -> list[float]:
        return self._spec2()

    @cached_property
    def fro2(self) -> list[float]:
        return [float(layer.weight.norm()) ** 2 for layer in self.layers]

    @cached_property
    def diffs(self) -> list[torch.Tensor]:
        return weight_differences(self.model, self.init, self.caller,
                                  input_shape_of(self.data, self.input_shape, self.caller))

    @cached_property
    def log_gamma(self) -> float:
        gamma = abs(order_statistic_quantile(per_example_margins(self.model, self.data), 0.1))
        if gamma == 0:
            raise GapbenchError(f"{self.caller}: the 10th-percentile margin γ is 0, so the measure (which "
                                f"divides by γ²) is undefined. Measure a trained model.")
        return math.log(gamma)


def _log_prod(values: list[float]) -> float:
    return sum(math.log(v) for v in values)


SPECTRAL = {   # name: (equation, needs_data, needs_init, formula)
    "log_prod_of_spec": ("(32)", False, False, lambda q: _log_prod(q.spec2)),
    "log_prod_of_spec_over_margin": ("(31)", True, False, lambda q: _log_prod(q.spec2) - 2 * q.log_gamma),
    "log_spec_init_main": ("(29)", True, True, lambda q: _log_prod(q.spec2) - 2 * q.log_gamma + math.log(
        sum(float(d.norm()) ** 2 / s for d, s in zip(q.diffs, q.spec2, strict=True)))),
    "log_spec_orig_main": ("(30)", True, False, lambda q: _log_prod(q.spec2) - 2 * q.log_gamma + math.log(
        sum(f / s for f, s in zip(q.fro2, q.spec2, strict=True)))),
    "log_sum_of_spec_over_margin": ("(34)", True, False,
                                    lambda q: math.log(q.d) + (_log_prod(q.spec2) - 2 * q.log_gamma) / q.d),
    "log_sum_of_spec": ("(35)", False, False, lambda q: math.log(q.d) + _log_prod(q.spec2) / q.d),
    "dist_spec_init": ("(41)", False, True, lambda q: sum(q._spec2(q.diffs))),
}
PLAIN = {
    "inverse_margin": ("(22)", True, False, lambda q: math.exp(-2 * q.log_gamma)),
    "log_prod_of_fro": ("(37)", False, False, lambda q: _log_prod(q.fro2)),
    "log_prod_of_fro_over_margin": ("(36)", True, False, lambda q: _log_prod(q.fro2) - 2 * q.log_gamma),
    "log_sum_of_fro_over_margin": ("(38)", True, False,
                                   lambda q: math.log(q.d) + (_log_prod(q.fro2) - 2 * q.log_gamma) / q.d),
    "log_sum_of_fro": ("(39)", False, False, lambda q: math.log(q.d) + _log_prod(q.fro2) / q.d),
    "fro_dist": ("(40)", False, True, lambda q: sum(float(d.norm()) ** 2 for d in q.diffs)),
    "param_norm": ("(42)", False, False, lambda q: sum(q.fro2)),
    "path_norm": ("(44)", False, False,
                  lambda q: float(path_norms(q.model, 2.0, q.data, None, q.caller).pow(2).sum())),
    "path_norm_over_margin": ("(43)", True, False, lambda q: float(
        path_norms(q.model, 2.0, q.data, None, q.caller).pow(2).sum()) * math.exp(-2 * q.log_gamma)),
}


def _add(name: str, equation: str, needs_data: bool, needs_init: bool,
         formula: Callable[[_Quantities], float], spectral: bool) -> None:
    full = f"jiang2020_{name}"
    if spectral:
        def fn(model: nn.Module, data: XY | None, init: nn.Module | None, *, conv: str = "fft",
               input_shape=None) -> float:
            return formula(_Quantities(full, model, data, init, conv, input_shape))
    else:
        def fn(model: nn.Module, data: XY | None, init: nn.Module | None) -> float:
            return formula(_Quantities(full, model, data, init))
    fn.__name__ = fn.__qualname__ = full
    fn.__doc__ = f"Jiang et al. 2020's {name}, Eq. {equation} (see the module docstring for the formula)."
    MEASURES.register(full, fn, kind="norm" if "path" not in name else "path", needs_data=needs_data,
                      needs_init=needs_init, higher_is_better=False,
                      reference=f"{JIANG} {equation} ({name.replace('_', '.')})")


for _name, (_eq, _data, _init, _formula) in SPECTRAL.items():
    _add(_name, _eq, _data, _init, _formula, spectral=True)
for _name, (_eq, _data, _init, _formula) in PLAIN.items():
    _add(_name, _eq, _data, _init, _formula, spectral=False)


def _weight_vectors(model: nn.Module, init: nn.Module, caller: str) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = paired_layers(model, init, caller)
    return (torch.cat([w.weight.reshape(-1) for w, _ in pairs]),
            torch.cat([(w.weight - z.weight).reshape(-1) for w, z in pairs]))


def _pacbayes(name: str, model, data, init, magnitude: bool, reference: str, **search) -> float:
    caller = where(name)
    std = sharpness_search(model, data, magnitude=magnitude, caller=caller, **search).std
    m = data[0].shape[0]
    if reference == "flatness":
        return 1.0 / std ** 2
    if not magnitude and reference == "orig":     # (49) needs no init
        return float(sum(layer.weight.pow(2).sum() for layer in layers_of(model, caller))) / (4 * std ** 2) \
            + math.log(m / std) + 10
    w, dist = _weight_vectors(model, init, caller)
    ref = dist if reference == "init" else w
    if not magnitude:
        return float(ref.pow(2).sum()) / (4 * std ** 2) + math.log(m / std) + 10
    eps2 = search.get("magnitude_eps", MAGNITUDE_EPS) ** 2
    numerator = eps2 + (std ** 2 + 1) * float(ref.pow(2).sum()) / w.numel()
    return 0.25 * float(torch.log(numerator / (eps2 + std ** 2 * dist ** 2)).sum()) + math.log(m / std) + 10


def _add_pacbayes(name: str, equation: str, magnitude: bool, reference: str) -> None:
    full = f"jiang2020_{name}"
    needs_init = reference == "init" or (magnitude and reference == "orig")
    if magnitude:
        def fn(model, data, init, *, target: float = 0.1, n_samples: int = 10, iters: int = 20,
               std_low: float = 1e-6, std_high: float = MAG_STD_HIGH, magnitude_eps: float = MAGNITUDE_EPS,
               seed: int = 0, tolerance: float = TOLERANCE, std_rtol: float = STD_RTOL) -> float:
            return _pacbayes(full, model, data, init, True, reference, target=target, n_samples=n_samples,
                             iters=iters, std_low=std_low, std_high=std_high, magnitude_eps=magnitude_eps,
                             seed=seed, tolerance=tolerance, std_rtol=std_rtol)
    else:
        def fn(model, data, init, *, target: float = 0.1, n_samples: int = 10, iters: int = 20,
               std_low: float = 1e-6, std_high: float = STD_HIGH, seed: int = 0, tolerance: float = TOLERANCE,
               std_rtol: float = STD_RTOL) -> float:
            return _pacbayes(full, model, data, init, False, reference, target=target, n_samples=n_samples,
                             iters=iters, std_low=std_low, std_high=std_high, seed=seed, tolerance=tolerance,
                             std_rtol=std_rtol)
    fn.__name__ = fn.__qualname__ = full
    fn.__doc__ = f"Jiang et al. 2020's {name}, Eq. {equation} (see the module docstring for the formula)."
    MEASURES.register(full, fn, kind="sharpness", needs_data=True, needs_init=needs_init, higher_is_better=False,
                      reference=f"{JIANG} {equation} ({name.replace('_', '.')})")


for _name, _eq, _mag, _ref in (("pacbayes_init", "(48)", False, "init"),
                               ("pacbayes_orig", "(49)", False, "orig"),
                               ("pacbayes_flatness", "(53)", False, "flatness"),
                               ("pacbayes_mag_init", "(56)", True, "init"),
                               ("pacbayes_mag_orig", "(57)", True, "orig"),
                               ("pacbayes_mag_flatness", "(61)", True, "flatness")):
    _add_pacbayes(_name, _eq, _mag, _ref)
