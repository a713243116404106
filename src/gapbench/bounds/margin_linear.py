"""Margin bound for a linear head on frozen features (Mohri et al., Thm 9.2 + Prop 9.3 / Cor 9.4; Thm 5.8).

Setting: f(x) = W'·φ'(x), where φ is a feature map chosen independently of the n points (e.g. frozen after
phase 1 of two-phase training, or fixed at init) and W' (K × d) is any head, trained on the n points or not.
A bias b of the head is handled by appending a constant feature 1: φ'(x) = (φ(x), 1), w'_k = (w_k, b_k).
Margin Γ(x, y) = f(x)_y − max_{j≠y} f(x)_j, ramp loss Φ_ρ(Γ) = min(1, max(0, 1 − Γ/ρ)) ≥ 1[Γ ≤ 0].

For fixed ρ > 0, Λ ≥ max_k ‖w'_k‖ and ‖φ'(x)‖ ≤ X almost surely, with probability ≥ 1 − δ:

    multiclass (K ≥ 2):  R_0-1 ≤ R̂_ρ + 4K·sqrt(X²Λ²/(ρ²n)) + sqrt(ln(1/δ)/(2n))   (Thm 9.2 + Prop 9.3)
    binary (K = 2):      R_0-1 ≤ R̂_ρ + 2·XΛ/(ρ√n) + sqrt(ln(1/δ)/(2n))            (Thm 5.8 + Thm 5.10)

with, in the binary form, the scorer w = w'_1 − w'_0 (its margin y·w·φ' equals the two-class Γ) and Λ ≥ ‖w‖.

Uniformity (union bound over a countable grid). ρ = 2^{j_ρ}, Λ = 2^{j_Λ} and X = 2^{j_X} range over integer
exponents; the cell (j_ρ, j_Λ, j_X) gets δ_cell = δ·w(j_ρ)·w(j_Λ)·w(j_X) with w(j) = 6/(π²·i(j)²), i(j) =
2|j| + [j ≤ 0], so Σ δ_cell = δ over ℤ³ (:func:`~gapbench.bounds.kl.grid_index_weight`). The measured
max‖w'_k‖ (or ‖w‖) is rounded up to its cell (a zero head is floored at 2^MIN_EXPONENT); the bound is
minimised over ρ (valid: it holds for every cell at once).
X: the theorem wants ‖φ'(x)‖ ≤ X for every x, which the sample cannot certify. Two ways, both valid:
  * ``feature_bound=X`` given: an assumed almost-sure bound, fixed in advance (no grid cost; an error is
    raised if a sample point already violates it);
  * default: X = 2^{j_X}, the grid value just above max_i ‖φ'(x_i)‖, paying w(j_X). This is valid because the
    classifier with features projected onto the ball of radius X, φ_X(x) = φ'(x)·min(1, X/‖φ'(x)‖), has the
    *same* 0-1 error everywhere (a positive rescaling of φ' keeps argmax_k w'_k·φ'), satisfies ‖φ_X‖ ≤ X
    surely, and equals φ' on the sample, so R̂_ρ is unchanged.

References:
    Mohri, Rostamizadeh & Talwalkar, Foundations of Machine Learning, 2nd ed., 2018: Theorem 9.2, Proposition
    9.3, Corollary 9.4 (multiclass); Theorem 5.8 and Theorem 5.10 (binary, kernel-based / linear class).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GapbenchError, check_choice, check_positive_float, check_probability
from ..inference import EVAL_BATCH, eval_mode, margins_from_logits
from . import BOUNDS
from .kl import grid_exponent_up, grid_index_weight
from .types import Bound

MIN_EXPONENT = -30        # a zero head norm is rounded up to 2⁻³⁰ (any fixed grid cell would do)
RHO_EXPONENTS = 40        # ρ is searched over the 40 grid values 2^j below the largest useful one, 2XΛ
QUANTITY = "0-1 population error of a linear head on features fixed independently of the n points"
REFERENCE = ("Mohri, Rostamizadeh & Talwalkar, Foundations of ML 2nd ed., Thm 9.2 + Prop 9.3 (Cor 9.4); "
             "binary form Thm 5.8 + Thm 5.10; union over geometric grids of ρ, Λ, X")
PASSTHROUGH_AFTER_HEAD = (nn.Identity, nn.Dropout)      # no-ops in eval mode


def split_head(model: nn.Module, where: str) -> tuple[nn.Module, nn.Linear]:
    """(feature map, head): the model minus its last nn.Linear, and that Linear. Needs a flat nn.Sequential
    whose last Linear is followed by no-op modules only; the returned feature map shares the model's modules
    (it is only ever evaluated, never changed)."""
    if not isinstance(model, nn.Sequential):
        raise GapbenchError(f"{where} splits the model into features and a linear head only for an "
                            f"nn.Sequential; got {type(model).__name__}. Pass features=<the feature map> "
                            f"explicitly.")
    children = list(model)
    linear = [i for i, m in enumerate(children) if isinstance(m, nn.Linear)]
    if not linear:
        raise GapbenchError(f"{where} found no nn.Linear head in the model. The last weight layer must be an "
                            f"nn.Linear.")
    last = linear[-1]
    after = [type(m).__name__ for m in children[last + 1:] if not isinstance(m, PASSTHROUGH_AFTER_HEAD)]
    if after:
        raise GapbenchError(f"{where} needs the last nn.Linear to be the model's output; it is followed by "
                            f"{after}. Pass features= and a model ending in its linear head.")
    return nn.Sequential(*children[:last]), children[last]


def head_features(features: nn.Module, head: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(φ'(x) with the constant-1 column when the head has a bias, W' = [W, b]), float64."""
    with eval_mode(features), torch.inference_mode():
        phi = torch.cat([features(x[i:i + EVAL_BATCH]).flatten(1)
                         for i in range(0, x.shape[0], EVAL_BATCH)]).double()
    weight = head.weight.detach().double()
    if head.bias is not None:
        phi = torch.cat([phi, phi.new_ones(phi.shape[0], 1)], dim=1)
        weight = torch.cat([weight, head.bias.detach().double()[:, None]], dim=1)
    return phi, weight


def ramp_loss(margins: torch.Tensor, rho: float) -> float:
    """R̂_ρ = mean of min(1, max(0, 1 − Γ/ρ))."""
    return float((1.0 - margins / rho).clamp(0.0, 1.0).mean())


def linear_margin_value(margins: torch.Tensor, *, num_classes: int, feature_bound: float, head_norm: float,
                        rho: float, delta: float, binary: bool) -> dict[str, float]:
    """The fixed-(ρ, Λ, X) bound at confidence δ, term by term (module docstring)."""
    n = margins.shape[0]
    factor = 2.0 if binary else 4.0 * num_classes
    terms = {"ramp_loss": ramp_loss(margins, rho),
             "complexity": factor * math.sqrt(feature_bound ** 2 * head_norm ** 2 / (rho ** 2 * n)),
             "confidence": math.sqrt(math.log(1.0 / delta) / (2 * n))}
    terms["value"] = terms["ramp_loss"] + terms["complexity"] + terms["confidence"]
    return terms


@BOUNDS.register("linear_margin", quantity=QUANTITY, reference=REFERENCE, needs=("model", "data"))
def linear_margin(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, delta: float,
                  features: nn.Module | None = None, feature_bound: float | None = None,
                  form: str = "auto") -> Bound:
    """Margin bound for the model's last nn.Linear on the features computed by the rest of the model (or by
    `features`), uniform over grids of ρ, Λ (and X unless `feature_bound` is given). `form`: 'auto'
    (binary when K = 2), 'multiclass' or 'binary' (K = 2 only)."""
    where = "linear_margin()"
    delta = check_probability(delta, "delta", where)
    form = check_choice(form, "form", where, ("auto", "multiclass", "binary"))
    default_features, head = split_head(model, where)
    features = default_features if features is None else features
    x, y = data
    phi, weight = head_features(features, head, x)
    num_classes = int(weight.shape[0])
    binary = form == "binary" or (form == "auto" and num_classes == 2)
    if binary and num_classes != 2:
        raise GapbenchError(f"The 'form' parameter of {where} can be 'binary' only for a 2-class head; this "
                            f"head has K = {num_classes} outputs. Got 'binary' instead. Use "
                            f"form='multiclass'.")
    margins = margins_from_logits(phi @ weight.T, y.to(phi.device))
    norm_max = float(phi.norm(dim=1).max())
    head_norm = float((weight[1] - weight[0]).norm()) if binary else float(weight.norm(dim=1).max())

    weight_cells = 1.0
    if feature_bound is None:
        j_x = grid_exponent_up(max(norm_max, 2.0 ** MIN_EXPONENT))
        x_bound = 2.0 ** j_x
        weight_cells *= grid_index_weight(j_x)
    else:
        x_bound = check_positive_float(feature_bound, "feature_bound", where)
        if norm_max > x_bound:
            raise GapbenchError(f"The 'feature_bound' parameter of {where} must be an almost-sure bound on "
                                f"‖φ'(x)‖ (constant-1 bias feature included). Got {x_bound!r} instead, but a "
                                f"sample point has ‖φ'(x)‖ = {norm_max:.6g}. Pass a valid bound or leave it "
                                f"unset to use the grid.")
    j_lambda = grid_exponent_up(max(head_norm, 2.0 ** MIN_EXPONENT))
    lam = 2.0 ** j_lambda
    weight_cells *= grid_index_weight(j_lambda)
    j_top = grid_exponent_up(2.0 * x_bound * lam)
    best: dict[str, float] | None = None
    for j_rho in range(j_top - RHO_EXPONENTS + 1, j_top + 1):
        delta_cell = delta * weight_cells * grid_index_weight(j_rho)
        terms = linear_margin_value(margins, num_classes=num_classes, feature_bound=x_bound, head_norm=lam,
                                    rho=2.0 ** j_rho, delta=delta_cell, binary=binary)
        if best is None or terms["value"] < best["value"]:
            best = {**terms, "rho": 2.0 ** j_rho, "delta_cell": delta_cell}
    assert best is not None
    value = best.pop("value")
    best.update({"feature_bound": x_bound, "feature_norm_max": norm_max, "head_norm_bound": lam,
                 "head_norm": head_norm, "num_classes": float(num_classes), "binary_form": float(binary),
                 "x_gridded": float(feature_bound is None), "n": float(margins.shape[0]),
                 "zero_one_error": float((margins <= 0).double().mean())})
    form_text = ("binary form (Thm 5.8): complexity 2XΛ/(ρ√n), Λ ≥ ‖w₁ − w₀‖" if binary
                 else f"multiclass form (Thm 9.2): complexity 4K·XΛ/(ρ√n), K = {num_classes}")
    assumptions = ("the feature map was fixed independently of the n points, which are i.i.d.", form_text,
                   "X assumed: ‖φ'(x)‖ ≤ feature_bound almost surely" if feature_bound is not None
                   else "X from the grid above the sample's max ‖φ'(x)‖ (valid by the projection argument)")
    return Bound("linear_margin", value, delta, QUANTITY, best, REFERENCE, assumptions)
