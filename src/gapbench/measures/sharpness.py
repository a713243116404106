"""PAC-Bayes flatness: the largest weight-noise standard deviation the training error tolerates.

For noise std σ, every parameter θ_i of the (BatchNorm-folded, float64) net is perturbed as

    isotropic:        θ_i + σ·ε_i                          (noise var σ²)
    magnitude-aware:  θ_i + sqrt(σ²·θ_i² + eps²)·ε_i        (noise var σ²θ_i² + eps², eps = magnitude_eps)

with ε ~ N(0, I) drawn from a ``torch.Generator`` seeded by ``seed``; the perturbed error is the mean 0-1
error on the data over ``n_samples`` draws. The search returns the largest σ in [std_low, std_high] with

    mean perturbed error − error of the unperturbed net ≤ target        (target = 0.1 by default),

found by ``iters`` bisection steps over log σ. The same ε draws are reused for every σ (common random
numbers), so the criterion is a deterministic function of σ (evaluated by
:class:`gapbench.measures.perturb.PerturbedErrors`: the draws are made once and pass through the net
together, the first layer's noise term is computed once per draw, and a σ that fails is abandoned as soon
as the points evaluated so far decide it; identical errors and σ, see that module).
If std_high already satisfies it, std_high is returned; if std_low does not, std_low is returned
(``SharpnessResult.saturated`` says which).

The KL term of a Gaussian posterior Q = N(w, S) around the trained weights w against the prior
P = N(w_0, S) centred at the initialization w_0, with the same diagonal covariance S, is
KL(Q‖P) = Σ_i (w_i − w0_i)²/(2 S_ii):

    pacbayes_kl     = ‖w − w_0‖² / (2σ²)                     (S = σ²I)
    pacbayes_mag_kl = Σ_i (w_i − w0_i)² / (2(σ²w_i² + eps²))   (S = the magnitude-aware variances)

over every parameter that the search perturbs (weights and biases of the folded net).

Jiang et al.'s released code (Dziugaite et al. 2020's ``_perturbed_model``) passes σ² (and σ²|w|² + eps²)
where torch.normal expects a *std*; here std and var are kept apart as written above. Their bisection is
over σ in [0, 2] with 15 steps against a 0.1 change in accuracy; ours is over log σ against a 0.1 increase
in error.

References:
    Jiang et al. 2020, "Fantastic Generalization Measures", §C.3 (pacbayes.flatness, Eq. (53); magnitude-aware
    perturbation, Eqs. (56)-(61)).
    Dziugaite & Roy 2017; McAllester 1999 (KL between Gaussians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import check_positive_float, check_positive_int, check_probability, param_error
from ..inference import zero_one_error
from ..layers import fold_batchnorm
from ._base import MEASURES, XY, device_of, double_copy, where
from .perturb import PerturbedErrors, noise_std
from .shared import shared

MAGNITUDE_EPS = 1e-3    # Jiang et al. 2020's ε of the magnitude-aware perturbation


@dataclass(frozen=True)
class SharpnessResult:
    """Outcome of :func:`sharpness_search`."""

    std: float                    # the largest noise std σ found
    base_error: float             # 0-1 error of the unperturbed net on the data
    perturbed_error: float        # mean 0-1 error over n_samples draws at std
    saturated: str                # '' | 'high' (std_high passed) | 'low' (even std_low failed)
    kl: float | None = None       # KL(Q‖P) with prior centred at init (None without init)


def _folded_params(model: nn.Module, caller: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    net = fold_batchnorm(double_copy(model), caller)
    return net, {n: p.detach().clone() for n, p in net.named_parameters()}


def sharpness_search(model: nn.Module, data: XY, *, init: nn.Module | None = None, magnitude: bool = False,
                     target: float = 0.1, n_samples: int = 10, iters: int = 20, std_low: float = 1e-6,
                     std_high: float = 1.0, magnitude_eps: float = MAGNITUDE_EPS, seed: int = 0,
                     caller: str = "sharpness_search()") -> SharpnessResult:
    """The largest noise std σ whose mean perturbed error exceeds the unperturbed error by at most `target`
    (bisection over log σ, see the module docstring), and the KL term against a prior centred at `init`."""
    check_probability(target, "target", caller, open_high=False)
    check_positive_int(n_samples, "n_samples", caller)
    check_positive_int(iters, "iters", caller)
    check_positive_int(seed, "seed", caller, minimum=0)
    check_positive_float(magnitude_eps, "magnitude_eps", caller, allow_zero=not magnitude)
    low = check_positive_float(std_low, "std_low", caller)
    high = check_positive_float(std_high, "std_high", caller)
    if low >= high:
        raise param_error("std_high", caller, f"a float > std_low={low}", high)
    std, base_error, err, saturated = _bisect(model, data, magnitude, target, n_samples, iters, low, high,
                                              magnitude_eps, seed, caller)
    kl = None if init is None else _kl(model, init, std, magnitude, magnitude_eps, caller)
    return SharpnessResult(std=std, base_error=base_error, perturbed_error=err, saturated=saturated, kl=kl)


@shared
def _bisect(model: nn.Module, data: XY, magnitude: bool, target: float, n_samples: int, iters: int, low: float,
            high: float, magnitude_eps: float, seed: int, caller: str) -> tuple[float, float, float, str]:
    """The search of :func:`sharpness_search` on checked parameters: (std, base error, perturbed error,
    saturated). One search serves every measure that needs it inside a sharing block."""
    net, base = _folded_params(model, caller)
    x, y = data[0].to(device=device_of(model), dtype=torch.float64), data[1].to(device_of(model))
    base_error = zero_one_error(net, x, y)       # batched like the perturbed passes
    error_at = PerturbedErrors(net, base, x, y, magnitude=magnitude, magnitude_eps=magnitude_eps,
                               n_samples=n_samples, seed=seed)

    def fails(error: float) -> bool:             # monotone in the error: PerturbedErrors may stop early
        return error - base_error > target

    saturated, log_low, log_high = "", math.log(low), math.log(high)
    err_high = error_at(high, fails)
    if err_high - base_error <= target:
        std, err, saturated = high, err_high, "high"
    else:
        err = error_at(low)
        if err - base_error > target:
            std, saturated = low, "low"
        else:
            for _ in range(iters):
                mid = 0.5 * (log_low + log_high)
                err_mid = error_at(math.exp(mid), fails)
                if err_mid - base_error <= target:
                    log_low, err = mid, err_mid
                else:
                    log_high = mid
            std = math.exp(log_low)
    return std, base_error, err, saturated


def _kl(model: nn.Module, init: nn.Module, std: float, magnitude: bool, magnitude_eps: float,
        caller: str) -> float:
    """Σ_i (w_i − w0_i)² / (2·var_i), var_i = σ² or σ²w_i² + eps² (parameters of the folded nets)."""
    _, trained = _folded_params(model, caller)
    _, initial = _folded_params(init, caller)
    total = 0.0
    for name, w in trained.items():
        var = noise_std(w, std, magnitude, magnitude_eps) ** 2
        total += float(((w - initial[name].to(w.device)) ** 2 / (2 * var)).sum())
    return total


def _search(name: str, model, data, init, magnitude: bool, **params) -> SharpnessResult:
    return sharpness_search(model, data, init=init, magnitude=magnitude, caller=where(name), **params)


@MEASURES.register("pacbayes_sharpness", kind="sharpness", needs_data=True, needs_init=False, higher_is_better=True,
          reference="Jiang et al. 2020, Fantastic generalization measures, §C.3, σ' of Eqs. (48)-(53)")
def pacbayes_sharpness(model: nn.Module, data: XY, init: nn.Module | None, *, target: float = 0.1,
                       n_samples: int = 10, iters: int = 20, std_low: float = 1e-6, std_high: float = 1.0,
                       seed: int = 0) -> float:
    """The largest isotropic noise std σ raising the training error by at most `target`."""
    return _search("pacbayes_sharpness", model, data, None, False, target=target, n_samples=n_samples,
                   iters=iters, std_low=std_low, std_high=std_high, seed=seed).std


@MEASURES.register("pacbayes_mag_sharpness", kind="sharpness", needs_data=True, needs_init=False,
          higher_is_better=True,
          reference="Jiang et al. 2020, Fantastic generalization measures, §C.3, σ' of Eqs. (56)-(61) "
                    "(magnitude-aware, noise var σ²w² + ε²)")
def pacbayes_mag_sharpness(model: nn.Module, data: XY, init: nn.Module | None, *, target: float = 0.1,
                           n_samples: int = 10, iters: int = 20, std_low: float = 1e-6, std_high: float = 1.0,
                           magnitude_eps: float = MAGNITUDE_EPS, seed: int = 0) -> float:
    """The largest σ such that noise of var σ²w_i² + eps² raises the training error by at most `target`."""
    return _search("pacbayes_mag_sharpness", model, data, None, True, target=target, n_samples=n_samples,
                   iters=iters, std_low=std_low, std_high=std_high, magnitude_eps=magnitude_eps,
                   seed=seed).std


@MEASURES.register("pacbayes_kl", kind="sharpness", needs_data=True, needs_init=True, higher_is_better=False,
          reference="KL(N(w, σ²I) ‖ N(w_0, σ²I)) = ‖w − w_0‖²/(2σ²) at σ of pacbayes_sharpness; cf. Jiang et "
                    "al. 2020, Eq. (48) (which has 4σ² and + ln(m/σ) + 10)")
def pacbayes_kl(model: nn.Module, data: XY, init: nn.Module, *, target: float = 0.1, n_samples: int = 10,
                iters: int = 20, std_low: float = 1e-6, std_high: float = 1.0, seed: int = 0) -> float:
    """‖w − w_0‖² / (2σ²) with σ from the isotropic search (all parameters of the folded net)."""
    return _search("pacbayes_kl", model, data, init, False, target=target, n_samples=n_samples, iters=iters,
                   std_low=std_low, std_high=std_high, seed=seed).kl


@MEASURES.register("pacbayes_mag_kl", kind="sharpness", needs_data=True, needs_init=True, higher_is_better=False,
          reference="KL between N(w, S) and N(w_0, S), S = diag(σ²w² + ε²), at σ of pacbayes_mag_sharpness; "
                    "cf. Jiang et al. 2020, Eq. (56)")
def pacbayes_mag_kl(model: nn.Module, data: XY, init: nn.Module, *, target: float = 0.1, n_samples: int = 10,
                    iters: int = 20, std_low: float = 1e-6, std_high: float = 1.0,
                    magnitude_eps: float = MAGNITUDE_EPS, seed: int = 0) -> float:
    """Σ_i (w_i − w0_i)² / (2(σ²w_i² + eps²)) with σ from the magnitude-aware search."""
    return _search("pacbayes_mag_kl", model, data, init, True, target=target, n_samples=n_samples,
                   iters=iters, std_low=std_low, std_high=std_high, magnitude_eps=magnitude_eps, seed=seed).kl
