"""PAC-Bayes-kl bound for an isotropic Gaussian posterior around the trained weights.

Posterior Q = N(w, posterior_std²·I) (w the trained parameters, one scalar std for every parameter), prior
P_j = N(w₀, prior_std_j²·I) centred at the initial weights w₀ (independent of the data), for prior_std_j in a
grid of G values fixed in advance. Closed form, summed over the D parameters:

    KL(Q ‖ P) = Σ_i [ ln(std_P/std_Q) + (std_Q² + (w_i − w₀_i)²)/(2·std_P²) − 1/2 ].

Maurer–Langford–Seeger (n ≥ 8): with probability ≥ 1 − δ/G over the n training points, for every Q,
kl(R̂_Q ‖ R_Q) ≤ (KL(Q ‖ P_j) + ln(2√n·G/δ))/n; by the union bound this holds for all G priors at once with
probability ≥ 1 − δ. R̂_Q (the stochastic classifier's training error) is not computable exactly: it is
estimated by R̂_MC, the mean 0-1 training error of n_mc weight draws from Q (seeded generator), and bounded by
the Chernoff/kl bound for the mean of n_mc i.i.d. [0, 1] variables (Langford & Caruana 2001): with probability
≥ 1 − δ', R̂_Q ≤ kl⁻¹(R̂_MC, ln(2/δ')/n_mc). Together, with probability ≥ 1 − δ − δ':

    R_Q ≤ min_j kl⁻¹( kl⁻¹(R̂_MC, ln(2/δ')/n_mc), (KL(Q ‖ P_j) + ln(2√n·G/δ))/n ).

The bounded quantity is the 0-1 error of the STOCHASTIC classifier Q (a fresh weight draw per prediction), not
of the trained net itself. `Bound.delta` reports the total failure probability δ + δ'. The posterior is not
optimized (Dziugaite & Roy 2017 and Pérez-Ortiz et al. 2021 do): posterior_std must be chosen without the
training points for the guarantee to hold.

References:
    Maurer, "A note on the PAC Bayesian theorem", arXiv:cs/0411099, 2004, Theorem 5.
    Langford & Caruana, "(Not) bounding the true error", NeurIPS 2001 (Monte Carlo estimate of R̂_Q).
    Dziugaite & Roy, "Computing nonvacuous generalization bounds ...", UAI 2017 (prior at init, union over a
    grid of prior variances).
    Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári, "Tighter risk certificates for neural networks", JMLR
    2021 (same two-step kl inversion; public code mperezortiz/PBB).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..errors import GapbenchError, check_positive_float, check_positive_int, check_probability, param_error
from ..evaluate import EVAL_BATCH, eval_mode, margins_from_logits
from . import BOUNDS
from .kl import kl_inverse_upper
from .types import Bound

DEFAULT_POSTERIOR_STD = 0.01                                          # weight units; the same for every param
DEFAULT_PRIOR_STD_GRID = tuple(2.0 ** -j for j in range(1, 11))      # 0.5 … 2⁻¹⁰ ≈ 0.001, G = 10 priors
DEFAULT_N_MC = 1000                                                   # weight draws for R̂_MC
DEFAULT_DELTA_MC = 0.01                                               # δ' of the Monte Carlo step
QUANTITY = "0-1 population error R_Q of the stochastic classifier Q = N(w, posterior_std²·I)"
REFERENCE = ("Maurer 2004 (PAC-Bayes-kl, Thm 5) with the Monte Carlo step of Langford & Caruana 2001, as in "
             "Dziugaite & Roy 2017 and Pérez-Ortiz et al. 2021")
ASSUMPTIONS = ("the n points are the i.i.d. training sample; the bound is on the stochastic classifier Q",
               "init (the prior mean), posterior_std and prior_std_grid were fixed without looking at the n "
               "points (init: the weights before training)")


def kl_diag_gaussians(mean_q: torch.Tensor, std_q: torch.Tensor | float, mean_p: torch.Tensor,
                      std_p: torch.Tensor | float) -> float:
    """KL(N(mean_q, diag(std_q²)) ‖ N(mean_p, diag(std_p²))) in nats; stds broadcast against the means."""
    mean_q, mean_p = mean_q.double(), mean_p.double()
    std_q = torch.as_tensor(std_q, dtype=torch.float64, device=mean_q.device).expand_as(mean_q)
    std_p = torch.as_tensor(std_p, dtype=torch.float64, device=mean_q.device).expand_as(mean_q)
    per_coord = torch.log(std_p / std_q) + (std_q ** 2 + (mean_q - mean_p) ** 2) / (2 * std_p ** 2) - 0.5
    return float(per_coord.sum())


def _init_params(model: nn.Module, init: Any, where: str) -> dict[str, torch.Tensor]:
    """The initial value of every parameter of `model`, by name, from an nn.Module or a state_dict."""
    if init is None:
        raise param_error("init", where, "an nn.Module or a state_dict with the initial weights (the prior "
                          "mean)", None, "Pass init=run.init_model() (bound(..., init=...)).")
    state = init.state_dict() if isinstance(init, nn.Module) else init
    if not isinstance(state, Mapping):
        raise param_error("init", where, "an nn.Module or a state_dict", type(init).__name__)
    out = {}
    for name, param in model.named_parameters():
        if name not in state or tuple(state[name].shape) != tuple(param.shape):
            got = None if name not in state else tuple(state[name].shape)
            raise GapbenchError(f"The 'init' parameter of {where} must hold every parameter of the model "
                                f"with the same shape; parameter '{name}' {tuple(param.shape)} has {got} in "
                                f"init. Pass the initial weights of this very architecture.")
        out[name] = state[name].detach().to(param.device, param.dtype)
    return out


def _check_grid(grid: Any, where: str) -> tuple[float, ...]:
    if (not isinstance(grid, Sequence) or len(grid) == 0
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < math.inf
                       for s in grid)):
        raise param_error("prior_std_grid", where, "a non-empty sequence of floats > 0 fixed in advance",
                          grid, "e.g. prior_std_grid=(0.1, 0.05, 0.025).")
    return tuple(float(s) for s in grid)


def monte_carlo_error(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, posterior_std: float,
                      n_mc: int, seed: int) -> float:
    """R̂_MC: mean over n_mc draws w' ~ N(w, posterior_std²·I) of the 0-1 error of w' on `data`.

    Each draw evaluates the model functionally (``torch.func.functional_call``): the model is never changed.
    """
    x, y = data
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v for k, v in model.named_buffers()}
    device = next(iter(params.values())).device
    gen = torch.Generator(device=device).manual_seed(seed)
    y = y.to(x.device)
    errors = 0
    with eval_mode(model), torch.inference_mode():
        for _ in range(n_mc):
            draw = {k: v + posterior_std * torch.randn(v.shape, generator=gen, device=device, dtype=v.dtype)
                    for k, v in params.items()}
            for i in range(0, x.shape[0], EVAL_BATCH):
                out = functional_call(model, {**draw, **buffers}, (x[i:i + EVAL_BATCH],))
                errors += int((margins_from_logits(out, y[i:i + EVAL_BATCH]) <= 0).sum())
    return errors / (n_mc * x.shape[0])


@BOUNDS.register("pacbayes_kl", quantity=QUANTITY, reference=REFERENCE, needs=("model", "data", "init"))
def pacbayes_kl(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, delta: float, init: Any = None,
                posterior_std: float = DEFAULT_POSTERIOR_STD,
                prior_std_grid: Sequence[float] = DEFAULT_PRIOR_STD_GRID, n_mc: int = DEFAULT_N_MC,
                delta_mc: float = DEFAULT_DELTA_MC, seed: int = 0) -> Bound:
    """PAC-Bayes-kl bound on R_Q for Q = N(w, posterior_std²·I), prior N(init, prior_std²·I) on a grid
    (module docstring). `data` = the n training points; the result holds with probability ≥ 1 − δ − δ'."""
    where = "pacbayes_kl()"
    delta = check_probability(delta, "delta", where)
    w0 = _init_params(model, init, where)
    posterior_std = check_positive_float(posterior_std, "posterior_std", where)
    grid = _check_grid(prior_std_grid, where)
    n_mc = check_positive_int(n_mc, "n_mc", where)
    if isinstance(delta_mc, bool) or not isinstance(delta_mc, (int, float)) or not 0 < delta_mc < 1 - delta:
        raise param_error("delta_mc", where, f"a float in (0, 1 − delta) = (0, {1 - delta:g})", delta_mc,
                          "The total failure probability delta + delta_mc must stay below 1.")
    n = check_positive_int(int(data[1].shape[0]), "data", where, minimum=8)   # Maurer's theorem needs n ≥ 8
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    w_init = torch.cat([w0[k].reshape(-1) for k, _ in model.named_parameters()])
    r_mc = monte_carlo_error(model, data, posterior_std=posterior_std, n_mc=n_mc, seed=seed)
    r_mc_upper = kl_inverse_upper(r_mc, math.log(2 / delta_mc) / n_mc)
    log_confidence = math.log(2 * math.sqrt(n) * len(grid) / delta)
    best = None
    for prior_std in grid:
        kl = kl_diag_gaussians(w, posterior_std, w_init, prior_std)
        value = kl_inverse_upper(r_mc_upper, (kl + log_confidence) / n)
        if best is None or value < best[0]:
            best = (value, prior_std, kl)
    value, prior_std, kl = best
    terms = {"r_hat_mc": r_mc, "r_hat_mc_upper": r_mc_upper, "kl": kl, "prior_std": prior_std,
             "posterior_std": posterior_std, "grid_size": float(len(grid)), "n": float(n),
             "n_mc": float(n_mc), "delta_pacbayes": delta, "delta_mc": float(delta_mc),
             "kl_budget": (kl + log_confidence) / n, "num_params": float(w.numel())}
    return Bound("pacbayes_kl", value, delta + float(delta_mc), QUANTITY, terms, REFERENCE, ASSUMPTIONS)
