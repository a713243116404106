"""PAC-Bayes-kl bound for an isotropic Gaussian posterior around the trained weights.

Posterior Q = N(w, posterior_std²·I) (w the trained parameters, one scalar std for every parameter), prior
P_j = N(w₀, prior_std_j²·I) centred at the initial weights w₀, for prior_std_j in a grid of G values fixed in
advance. Closed form, summed over the D parameters:

    KL(Q ‖ P) = Σ_i [ ln(std_P/std_Q) + (std_Q² + (w_i − w₀_i)²)/(2·std_P²) − 1/2 ].

The caller's δ is the TOTAL failure probability; it is split as δ = δ_PB + δ_MC (δ_MC = `delta_mc`, default
min(0.01, δ/2), must be < δ) and δ_PB over the G priors, δ_PB/G each. Derivation, constant by constant:

1. PAC-Bayes (Maurer 2004, Thm 5; a [0, 1] loss and n ≥ 8): for a prior P fixed before seeing the n i.i.d.
   training points, with probability ≥ 1 − δ₁, simultaneously for every Q,
   kl(R̂_Q ‖ R_Q) ≤ (KL(Q ‖ P) + ln(2√n/δ₁))/n. Taking δ₁ = δ_PB/G for each P_j, the union bound makes the
   G statements hold together with probability ≥ 1 − G·δ_PB/G = 1 − δ_PB: budget c_j = (KL(Q ‖ P_j) +
   ln(2√n·G/δ_PB))/n, and R_Q ≤ kl⁻¹(R̂_Q, c_j) for every j at once.
2. Monte Carlo (Langford & Caruana 2001): R̂_Q = E_{w'~Q} R̂(w') is not computable; R̂_MC is the mean of
   R̂(w'_1), …, R̂(w'_{n_mc}) for n_mc i.i.d. draws w'_k ~ Q (seeded generator, independent of the points).
   Given the sample, these are i.i.d. in [0, 1] with mean R̂_Q, and the one-sided Chernoff bound in kl form
   (Hoeffding 1963, Thm 1, for the mean of i.i.d. [0, 1] variables; Langford 2005, Thm 3.1 for Bernoulli)
   gives P[R̂_MC ≤ q] ≤ exp(−n_mc·kl(q ‖ R̂_Q)) for q ≤ R̂_Q. Hence, with probability ≥ 1 − δ_MC,
   R̂_Q ≤ kl⁻¹(R̂_MC, ln(1/δ_MC)/n_mc). Only the upper side is needed, so ln(1/δ_MC) (one-sided) replaces
   the ln(2/δ_MC) of the two-sided statement used by earlier versions of this code and by Pérez-Ortiz et al.
3. Union of the two events (failure ≤ δ_PB + δ_MC = δ), and kl⁻¹(q, c) is non-decreasing in q:

    R_Q ≤ min_j kl⁻¹( kl⁻¹(R̂_MC, ln(1/δ_MC)/n_mc), (KL(Q ‖ P_j) + ln(2√n·G/δ_PB))/n ),

   holding with probability ≥ 1 − δ over the training points and the weight draws. `Bound.delta` is the
   caller's δ; `terms` report delta_pacbayes = δ_PB, delta_mc = δ_MC and delta_per_prior = δ_PB/G.

The bounded quantity is the 0-1 error of the STOCHASTIC classifier Q (a fresh weight draw per prediction), not
of the trained net itself. The posterior is not optimized (Dziugaite & Roy 2017 and Pérez-Ortiz et al. 2021
do): posterior_std must be chosen without the training points for the guarantee to hold.

The prior mean must not depend on the n points. `init` may be a Run: its init_state is the prior mean and its
init_source says where that came from (:mod:`gapbench.trained`); a mean trained on other points (e.g. phase 1 of
two-phase training) is accepted only when `data` is a Split whose points (same source pool) are disjoint from
every point that produced it, and refused otherwise. A plain module or state_dict carries no record: the
result's assumptions then say that the prior mean is assumed data-independent. Floating-point buffers
(BatchNorm running statistics) that differ between model and init are refused: they are fitted to the data but
are not among the weights Q perturbs, so every prior would need its mass at those very values (KL = ∞). Fold
BatchNorm into the weights of copies of both first (gapbench.layers.fold_batchnorm).

References:
    Maurer, "A note on the PAC Bayesian theorem", arXiv:cs/0411099, 2004, Theorem 5.
    Hoeffding, "Probability inequalities for sums of bounded random variables", JASA 58, 1963, Theorem 1.
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

from ..data.types import Split, as_xy
from ..errors import GapbenchError, check_positive_float, check_positive_int, check_probability, param_error
from ..inference import EVAL_BATCH, eval_mode, margins_from_logits
from ..trained import Run, data_ancestry
from . import BOUNDS
from .kl import kl_inverse_upper
from .types import Bound

DEFAULT_POSTERIOR_STD = 0.01                                          # weight units; the same for every param
DEFAULT_PRIOR_STD_GRID = tuple(2.0 ** -j for j in range(1, 11))      # 0.5 … 2⁻¹⁰ ≈ 0.001, G = 10 priors
DEFAULT_N_MC = 1000                                                   # weight draws for R̂_MC
DELTA_MC_CAP = 0.01                 # default δ_MC = min(DELTA_MC_CAP, δ/2): at δ = 0.05, δ_PB = 0.04, δ_MC = 0.01
QUANTITY = "0-1 population error R_Q of the stochastic classifier Q = N(w, posterior_std²·I)"
REFERENCE = ("Maurer 2004 (PAC-Bayes-kl, Thm 5) with the Monte Carlo step of Langford & Caruana 2001, as in "
             "Dziugaite & Roy 2017 and Pérez-Ortiz et al. 2021")
ASSUMPTIONS = ("the n points are the i.i.d. training sample; the bound is on the stochastic classifier Q",
               "posterior_std and prior_std_grid were fixed without looking at the n points")


def kl_diag_gaussians(mean_q: torch.Tensor, std_q: torch.Tensor | float, mean_p: torch.Tensor,
                      std_p: torch.Tensor | float) -> float:
    """KL(N(mean_q, diag(std_q²)) ‖ N(mean_p, diag(std_p²))) in nats; stds broadcast against the means."""
    mean_q, mean_p = mean_q.double(), mean_p.double()
    std_q = torch.as_tensor(std_q, dtype=torch.float64, device=mean_q.device).expand_as(mean_q)
    std_p = torch.as_tensor(std_p, dtype=torch.float64, device=mean_q.device).expand_as(mean_q)
    per_coord = torch.log(std_p / std_q) + (std_q ** 2 + (mean_q - mean_p) ** 2) / (2 * std_p ** 2) - 0.5
    return float(per_coord.sum())


def _prior_mean(init: Any, where: str) -> tuple[Mapping[str, torch.Tensor], dict[str, Any] | None]:
    """The state_dict of the prior mean and its init_source record (None for a plain module or state_dict)."""
    if isinstance(init, Run):
        return init.init_state, init.init_source
    state = init.state_dict() if isinstance(init, nn.Module) else init
    if not isinstance(state, Mapping):
        raise param_error("init", where, "a Run, an nn.Module or a state_dict", type(init).__name__)
    return state, None


def _init_params(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The initial value of every parameter of `model`, by name, from the prior mean's state_dict."""
    out = {}
    for name, param in model.named_parameters():
        if name not in state or tuple(state[name].shape) != tuple(param.shape):
            got = None if name not in state else tuple(state[name].shape)
            raise GapbenchError(f"The 'init' parameter of {where} must hold every parameter of the model "
                                f"with the same shape; parameter '{name}' {tuple(param.shape)} has {got} in "
                                f"init. Pass the initial weights of this very architecture.")
        out[name] = state[name].detach().to(param.device, param.dtype)
    return out


def _check_buffers(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse floating-point buffers (BatchNorm running statistics) that differ from init's (module doc)."""
    for name, buf in model.named_buffers():
        if not buf.is_floating_point():
            continue                                   # e.g. num_batches_tracked: not used by the forward
        ref = state.get(name)
        if ref is None or tuple(ref.shape) != tuple(buf.shape) or not torch.equal(ref.to(buf), buf.detach()):
            how = "is absent from init" if ref is None else "differs from its value in init"
            raise GapbenchError(f"The 'model' parameter of {where} must not carry floating-point buffers "
                                f"learned from data; buffer '{name}' {how}. BatchNorm running statistics are "
                                f"fitted to the training points but are not weights that Q perturbs, so the "
                                f"bound cannot pay for them. Fold BatchNorm into the weights of copies of both "
                                f"model and init first (gapbench.layers.fold_batchnorm), or use a model "
                                f"without BatchNorm.")


def _prior_assumption(source: dict[str, Any] | None, data: Any, where: str) -> str:
    """What the result assumes about the prior mean; raises when it was trained on any of the bound's points
    (or when that cannot be checked because `data` is not a Split)."""
    if source is None:
        return ("init came without a record of its origin (a plain module or state_dict): the prior mean is "
                "ASSUMED data-independent (e.g. a seeded initialization); pass init=run to have it checked")
    parents, root = data_ancestry(source)
    root_text = ("rooted in a seeded initialization" if root == "seeded" else
                 "rooted in an initialization with no record (kind 'unknown'), ASSUMED data-independent")
    if not parents:
        return (f"prior mean: the seeded initialization (init_seed {source.get('seed')}), data-independent"
                if root == "seeded" else "the Run records no origin of its initial weights (kind 'unknown', "
                "e.g. an old checkpoint): the prior mean is ASSUMED data-independent")
    if not isinstance(data, Split):
        raise param_error("data", where, "a Split (with .indices and .source) when init comes from another "
                          f"run's training (run {parents[0][0]}, {len(parents[0][2])} points of pool "
                          f"'{parents[0][1]}')", type(data).__name__,
                          "Without the indices the bound cannot check that its points are disjoint from those "
                          "that produced the prior mean. Pass dataset.split(...) or a Split of the points.")
    for signature, pool, indices in parents:
        if pool != data.source:
            continue
        overlap = int(torch.isin(data.indices.cpu(), indices.cpu()).sum())
        if overlap:
            raise GapbenchError(f"The prior mean ('init') of {where} depends on {overlap} of the bound's "
                                f"{len(data)} points: it comes from the training of run {signature}, which saw "
                                f"{len(indices)} points of pool '{pool}', {overlap} of them among the bound's "
                                f"points. A data-dependent prior holds only on points disjoint from those "
                                f"that produced it. Bound on the points that run never saw (e.g. "
                                f"two_phase.rest_points), or use a seeded initialization as the prior mean.")
    seen = ", ".join(f"{len(i)} points of pool '{p}' (run {sig})" for sig, p, i in parents)
    return (f"prior mean trained on {seen}, checked disjoint from the bound's {len(data)} points of pool "
            f"'{data.source}'; {root_text}")


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


def _check_delta_mc(delta_mc: Any, delta: float, where: str) -> float:
    """δ_MC: default min(DELTA_MC_CAP, δ/2); must lie in (0, δ) so that δ_PB = δ − δ_MC > 0."""
    if delta_mc is None:
        return min(DELTA_MC_CAP, delta / 2)
    if isinstance(delta_mc, bool) or not isinstance(delta_mc, (int, float)) or not 0 < delta_mc < delta:
        raise param_error("delta_mc", where, f"a float in (0, delta) = (0, {delta:g}), the Monte Carlo step's "
                          f"share of the total failure probability delta", delta_mc,
                          f"The PAC-Bayes step gets delta − delta_mc; leave delta_mc unset for the default "
                          f"min({DELTA_MC_CAP:g}, delta/2).")
    return float(delta_mc)


@BOUNDS.register("pacbayes_kl", quantity=QUANTITY, reference=REFERENCE, needs=("model", "data", "init", "split"))
def pacbayes_kl(model: nn.Module, data: Split | tuple[torch.Tensor, torch.Tensor], *, delta: float,
                init: Any = None, posterior_std: float = DEFAULT_POSTERIOR_STD,
                prior_std_grid: Sequence[float] = DEFAULT_PRIOR_STD_GRID, n_mc: int = DEFAULT_N_MC,
                delta_mc: float | None = None, seed: int = 0) -> Bound:
    """PAC-Bayes-kl bound on R_Q for Q = N(w, posterior_std²·I), prior N(init, prior_std²·I) on a grid
    (module docstring). `data` = the n training points (a Split lets a data-dependent prior mean be checked);
    `init` = a Run, nn.Module or state_dict; the result holds with probability ≥ 1 − delta, delta_mc of it
    spent on the Monte Carlo step."""
    where = "pacbayes_kl()"
    delta = check_probability(delta, "delta", where)
    delta_mc = _check_delta_mc(delta_mc, delta, where)
    state, source = _prior_mean(init, where)
    w0 = _init_params(model, state, where)
    _check_buffers(model, state, where)
    prior_text = _prior_assumption(source, data, where)
    pair = as_xy(data, where)
    posterior_std = check_positive_float(posterior_std, "posterior_std", where)
    grid = _check_grid(prior_std_grid, where)
    n_mc = check_positive_int(n_mc, "n_mc", where)
    n = check_positive_int(int(pair[1].shape[0]), "data", where, minimum=8)   # Maurer's theorem needs n ≥ 8
    delta_pacbayes = delta - delta_mc
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    w_init = torch.cat([w0[k].reshape(-1) for k, _ in model.named_parameters()])
    r_mc = monte_carlo_error(model, pair, posterior_std=posterior_std, n_mc=n_mc, seed=seed)
    r_mc_upper = kl_inverse_upper(r_mc, math.log(1 / delta_mc) / n_mc)
    log_confidence = math.log(2 * math.sqrt(n) * len(grid) / delta_pacbayes)
    best = None
    for prior_std in grid:
        kl = kl_diag_gaussians(w, posterior_std, w_init, prior_std)
        value = kl_inverse_upper(r_mc_upper, (kl + log_confidence) / n)
        if best is None or value < best[0]:
            best = (value, prior_std, kl)
    value, prior_std, kl = best
    terms = {"r_hat_mc": r_mc, "r_hat_mc_upper": r_mc_upper, "kl": kl, "prior_std": prior_std,
             "posterior_std": posterior_std, "grid_size": float(len(grid)), "n": float(n),
             "n_mc": float(n_mc), "delta_pacbayes": delta_pacbayes, "delta_mc": delta_mc,
             "delta_per_prior": delta_pacbayes / len(grid), "kl_budget": (kl + log_confidence) / n,
             "num_params": float(w.numel())}
    return Bound("pacbayes_kl", value, delta, QUANTITY, terms, REFERENCE, (*ASSUMPTIONS, prior_text))
