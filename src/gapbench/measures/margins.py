"""Margin measures: the distribution of Γ_i = f(x_i)_{y_i} − max_{j≠y_i} f(x_i)_j over the given data.

    margin_quantile(q) = Γ_(k), the k-th smallest margin, k = max(1, ⌊q·m⌋)
    median_margin      = the median of Γ (mean of the two middle values when m is even)
    min_margin         = min_i Γ_i
    margin_loss(γ)     = (1/m)·#{i : Γ_i ≤ γ}   (a tie Γ_i = γ counts as a loss)
    error              = (1/m)·#{i : Γ_i ≤ 0}   (the 0-1 error; a tie between the true and another class
                                                 counts as an error)

The quantile is an order statistic, not an interpolation: with q = 0.1 it is the ⌊m/10⌋-th smallest margin,
Jiang et al. 2020's γ (their released code takes ``kthvalue(m // 10)``). Outputs are computed by a float64
copy of the model in eval mode (:mod:`gapbench.inference`); the caller's model keeps its dtype and mode.

References:
    Bartlett, Foster & Telgarsky 2017, "Spectrally-normalized margin bounds", §2 (margin operator, L̂_γ).
    Jiang et al. 2020, "Fantastic Generalization Measures", §C.1 (γ = 10th percentile of the margins).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check_probability
from ..inference import margins
from ._base import MEASURES, XY, check_finite_float, device_of, double_copy, where
from .shared import shared


@shared
def per_example_margins(model: nn.Module, data: XY) -> torch.Tensor:
    """Γ_i for every example, float64, on the model's device (computed by a float64 copy in eval mode)."""
    x, y = data
    device = device_of(model)
    return margins(double_copy(model), x.to(device=device, dtype=torch.float64), y.to(device))


def order_statistic_quantile(values: torch.Tensor, q: float) -> float:
    """The k-th smallest of the m values, k = max(1, ⌊q·m⌋) (rounded to 9 decimals first, so that
    q·m = 2.9999999999999996 counts as 3)."""
    k = max(1, math.floor(round(q * values.numel(), 9)))
    return float(torch.kthvalue(values.cpu(), k).values)


@MEASURES.register("margin_quantile", kind="margin", needs_data=True, needs_init=False, higher_is_better=True,
          reference="Jiang et al. 2020, Fantastic generalization measures, §C.1 (γ = 10th percentile of the "
                    "margins); Bartlett et al. 2017, §5 (margin percentiles)")
def margin_quantile(model: nn.Module, data: XY, init: nn.Module | None, *, q: float = 0.1) -> float:
    """The k-th smallest margin, k = max(1, ⌊q·m⌋); q = 0.1 by default (Jiang et al.'s 10th percentile)."""
    q = check_probability(q, "q", where("margin_quantile"))
    return order_statistic_quantile(per_example_margins(model, data), q)


@MEASURES.register("median_margin", kind="margin", needs_data=True, needs_init=False, higher_is_better=True,
          reference="Nagarajan & Kolter 2019, Fig. 1 variant (γ = the median training margin)")
def median_margin(model: nn.Module, data: XY, init: nn.Module | None) -> float:
    """The median of the margins (average of the two middle ones for even m)."""
    return float(torch.quantile(per_example_margins(model, data), 0.5))


@MEASURES.register("min_margin", kind="margin", needs_data=True, needs_init=False, higher_is_better=True,
          reference="Bartlett, Foster & Telgarsky 2017, §2 (margin Γ); the hard margin min_i Γ_i")
def min_margin(model: nn.Module, data: XY, init: nn.Module | None) -> float:
    """min_i Γ_i."""
    return float(per_example_margins(model, data).min())


@MEASURES.register("margin_loss", kind="margin", needs_data=True, needs_init=False, higher_is_better=False,
          reference="Bartlett, Foster & Telgarsky 2017, §2 (ramp-free margin loss L̂_γ with Γ ≤ γ)")
def margin_loss(model: nn.Module, data: XY, init: nn.Module | None, *, gamma: float) -> float:
    """L̂_γ = (1/m)·#{i : Γ_i ≤ γ}; a tie Γ_i = γ counts."""
    gamma = check_finite_float(gamma, "gamma", where("margin_loss"))
    return float((per_example_margins(model, data) <= gamma).double().mean())


@MEASURES.register("error", kind="margin", needs_data=True, needs_init=False, higher_is_better=False,
          reference="0-1 error (1/m)·#{i : Γ_i ≤ 0}; ties count as errors (gapbench.inference)")
def error(model: nn.Module, data: XY, init: nn.Module | None) -> float:
    """The 0-1 error on the given data (train error on the training set)."""
    return float((per_example_margins(model, data) <= 0).double().mean())
