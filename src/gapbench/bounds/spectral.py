"""Spectrally-normalized margin bound of Bartlett, Foster & Telgarsky (2017), with every constant.

Network f(x) = W_L σ(W_{L−1} ⋯ σ(W_1 x)) with ReLU σ (1-Lipschitz, σ(0) = 0), no biases, weight matrices W_i
(d_i × d_{i−1}) and fixed reference matrices Z_i (zero, or the initial weights: both are independent of the
data). For fixed γ > 0 and fixed s_i ≥ ‖W_i‖₂, b_i ≥ ‖(W_i − Z_i)ᵀ‖_{2,1} = Σ_rows ‖(W_i − Z_i)_r‖₂, with
probability ≥ 1 − δ over the n training points (Lemma A.8 via the empirical-Rademacher Lemma A.4):

    R_0-1 ≤ R̂_γ + 8/n + 72·‖X‖_F·ln(2W)·ln(n)/(γ·n) · Π_i s_i · (Σ_i (b_i/s_i)^{2/3})^{3/2}
                + 3·sqrt(ln(2/δ)/(2n)),

R̂_γ = fraction of training points with margin ≤ γ, ‖X‖_F = sqrt(Σ_i ‖x_i‖²) over the n training points,
W = the largest layer width, input and output included. The last term uses ln(2/δ): it is the confidence term
of the empirical-Rademacher bound (Bartlett et al. Lemma A.4; Mohri et al. Thm 3.3), which the paper's Lemma
A.8 (and SPEC §3.2) prints as ln(1/δ); ln(2/δ) is the larger, so the result is valid either way. The 8/n and
72 come from the Dudley integral at α = 1/n and the 2-Lipschitz margin operator; they agree with the
Rademacher bound of the code rkwitt/excess_capacity, R ≤ 4/n + 9·ln n/√n·sqrt(ln 2W)·(Σ C_i^{2/3})^{3/2},
C_i = (4/γ)(‖X‖/√n)·Π s·b_i/s_i, doubled by Lemma A.4, except that the paper (and SPEC) write ln(2W) where
that code has sqrt(ln 2W); ln(2W) is the larger once 2W ≥ e, so the form used here is the conservative one.

Uniformity (union bound over a countable grid, :func:`~gapbench.bounds.kl.grid_index_weight`): γ = 2^{j_γ},
s_i = 2^{j_{s,i}}, b_i = 2^{j_{b,i}}; the cell gets δ_cell = δ·w(j_γ)·Π_i w(j_{s,i})·w(j_{b,i}), w(j) = 6/(π²·
i(j)²), i(j) = 2|j| + [j ≤ 0], which sums to δ over all cells. Each measured ‖W_i‖₂ and ‖(W_i − Z_i)ᵀ‖_{2,1}
is rounded up to its cell (a zero b_i is floored at 2^MIN_EXPONENT), and the bound is minimised over γ on the
grid (valid: it holds for every cell at once).

Neyshabur, Bhojanapalli & Srebro (2018), Lemma 1 / Theorem 1 is NOT registered as a bound: its constants
(the 4 of Lemma 1, ln(6m/δ), σ = γ/(42·d·B·β̃^{d−1}·sqrt(h·ln(4hd)))) could not be confirmed against the paper
(arXiv:1707.09564) or its public code from the material available offline; it stays a measure
(`neyshabur2018_complexity`, "up to constants").

References:
    Bartlett, Foster & Telgarsky, "Spectrally-normalized margin bounds for neural networks", NeurIPS 2017,
    arXiv:1706.08498, Lemma A.4, Lemma A.8 (fixed parameters), Theorem 1.1 (uniform version).
    Graf, Zeng, Rieck, Niethammer & Kwitt, "Measuring excess capacity in neural networks", NeurIPS 2022
    (code rkwitt/excess_capacity, bounds/rademacher_bounds.py: `bartlett`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import GapbenchError, check_probability, param_error
from ..inference import margins
from ..layers import weight_layers
from . import BOUNDS
from .kl import grid_exponent_up, grid_index_weight
from .types import Bound

MIN_EXPONENT = -30          # zero norms are rounded up to the grid cell 2⁻³⁰
GAMMA_EXPONENTS = 40        # γ searched over the 40 grid values 2^j at and below the largest margin
ALLOWED = (nn.Linear, nn.ReLU, nn.Flatten, nn.Identity, nn.Dropout)
QUANTITY = "0-1 population error of the bias-free ReLU network f"
REFERENCE = ("Bartlett, Foster & Telgarsky 2017, arXiv:1706.08498, Lemma A.8 with Lemma A.4 (explicit "
             "constants), uniform over geometric grids of γ, s_i, b_i by a union bound")
ASSUMPTIONS = ("the n points are the i.i.d. training sample",
               "the reference matrices Z_i (zero or init) were fixed before seeing the data",
               "fully connected bias-free ReLU network (Dropout is the identity at evaluation)")


def _check_architecture(model: nn.Module, where: str) -> None:
    for name, module in model.named_modules():
        if not list(module.children()) and not isinstance(module, ALLOWED):
            allowed = ", ".join(t.__name__ for t in ALLOWED)
            raise GapbenchError(f"{where} applies to fully connected ReLU networks only; module '{name}' is "
                                f"a {type(module).__name__}. Supported: {allowed}. Use a bias-free MLP with "
                                f"ReLU activations.")
        if isinstance(module, nn.Linear) and module.bias is not None:
            raise GapbenchError(f"{where} applies to bias-free networks (the theorem has no biases); "
                                f"layer '{name}' has a bias. Train with bias=False, or fold the bias into a "
                                f"constant input coordinate.")


def _reference_matrices(model: nn.Module, init: Any, where: str) -> list[torch.Tensor] | None:
    if init is None:
        return None
    if isinstance(init, Mapping):
        module = copy.deepcopy(model)
        module.load_state_dict(init)
    elif isinstance(init, nn.Module):
        module = init
    else:
        raise param_error("init", where, "None (Z_i = 0), an nn.Module or a state_dict", type(init).__name__)
    return [layer.matrix.double() for layer in weight_layers(module, caller=where)]


def bartlett2017_value(margins: torch.Tensor, *, x_fro: float, max_width: int, spectral: list[float],
                       l21: list[float], gamma: float, delta: float) -> dict[str, float]:
    """The fixed-(γ, s, b) bound at confidence δ, term by term (module docstring)."""
    n = margins.shape[0]
    ratio_sum = sum((b / s) ** (2.0 / 3.0) for b, s in zip(l21, spectral, strict=False))
    complexity = (72.0 * x_fro * math.log(2 * max_width) * math.log(n) / (gamma * n)
                  * math.prod(spectral) * ratio_sum ** 1.5)
    terms = {"margin_loss": float((margins <= gamma).double().mean()), "dudley_offset": 8.0 / n,
             "complexity": complexity, "confidence": 3.0 * math.sqrt(math.log(2.0 / delta) / (2 * n))}
    terms["value"] = sum(terms.values())
    return terms


@BOUNDS.register("bartlett2017", quantity=QUANTITY, reference=REFERENCE, needs=("model", "data"))
def bartlett2017(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, delta: float,
                 init: Any = None) -> Bound:
    """Bartlett et al. 2017 on the n training points `data`; reference matrices Z_i = 0, or the weights of
    `init` (nn.Module or state_dict) when given."""
    where = "bartlett2017()"
    delta = check_probability(delta, "delta", where)
    _check_architecture(model, where)
    x, y = data
    n = int(y.shape[0])
    if n < 2:
        raise param_error("data", where, "at least 2 points (the bound has ln n)", n)
    matrices = [layer.matrix.double() for layer in weight_layers(model, caller=where)]
    refs = _reference_matrices(model, init, where) or [torch.zeros_like(m) for m in matrices]
    if [m.shape for m in refs] != [m.shape for m in matrices]:
        raise GapbenchError(f"The 'init' parameter of {where} must have the model's layer shapes "
                            f"{[tuple(m.shape) for m in matrices]}. "
                            f"Got {[tuple(m.shape) for m in refs]} instead.")
    spectral = [float(torch.linalg.matrix_norm(m, ord=2)) for m in matrices]
    l21 = [float((m - z).norm(dim=1).sum()) for m, z in zip(matrices, refs, strict=False)]
    j_s = [grid_exponent_up(max(s, 2.0 ** MIN_EXPONENT)) for s in spectral]
    j_b = [grid_exponent_up(max(b, 2.0 ** MIN_EXPONENT)) for b in l21]
    weight_cells = math.prod(grid_index_weight(j) for j in j_s + j_b)
    x_fro = float(x.detach().reshape(n, -1).double().norm())
    max_width = max([matrices[0].shape[1]] + [m.shape[0] for m in matrices])
    gammas = margins(model, x, y).double()
    j_top = grid_exponent_up(max(float(gammas.max()), 2.0 ** MIN_EXPONENT))
    best: dict[str, float] | None = None
    for j_gamma in range(j_top - GAMMA_EXPONENTS + 1, j_top + 1):
        delta_cell = delta * weight_cells * grid_index_weight(j_gamma)
        terms = bartlett2017_value(gammas, x_fro=x_fro, max_width=max_width, spectral=[2.0 ** j for j in j_s],
                                   l21=[2.0 ** j for j in j_b], gamma=2.0 ** j_gamma, delta=delta_cell)
        if best is None or terms["value"] < best["value"]:
            best = {**terms, "gamma": 2.0 ** j_gamma, "delta_cell": delta_cell}
    assert best is not None
    value = best.pop("value")
    best.update({"x_fro": x_fro, "max_width": float(max_width), "n": float(n),
                 "spectral_product": math.prod(spectral),
                 "spectral_product_grid": math.prod(2.0 ** j for j in j_s),
                 **{f"spectral_{i}": s for i, s in enumerate(spectral)},
                 **{f"l21_{i}": b for i, b in enumerate(l21)}})
    return Bound("bartlett2017", value, delta, QUANTITY, best, REFERENCE, ASSUMPTIONS)
