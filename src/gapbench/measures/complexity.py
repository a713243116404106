"""Norm-based complexities of fully connected ReLU nets: the data- and weight-dependent factors of published
margin bounds, *without* their constants and log factors (hence ``*_complexity``, never "bound").

Notation: W_l (out × in, PyTorch layout, BatchNorm folded, biases ignored), Z_l the initial weights, L the
number of weight layers, B = max_i ‖x_i‖₂ over the given data, ‖·‖₂ spectral, ‖·‖_F Frobenius.

    bartlett2017_complexity    = B · Π_l ‖W_l‖₂ · (Σ_l (‖(W_l − Z_l)ᵀ‖_{2,1} / ‖W_l‖₂)^{2/3})^{3/2}
        ‖Aᵀ‖_{2,1} = Σ_i ‖A[i, :]‖₂ for A = W − Z: the sum over OUTPUT units of the ℓ2 norms of their incoming
        weight vectors (Bartlett et al.'s ‖·‖_{2,1} of Aᵀ, columns of Aᵀ = rows of A).
    bartlett2017_complexity_nk = the same with Σ_j ‖A[:, j]‖₂, the sum over INPUT units: NK's released
        experiments.py computes ``np.sum(np.linalg.norm(W − Z, axis=1))`` on TensorFlow weights stored
        (in × out), i.e. the norms of the rows of the (in × out) matrix = of the columns of W.
    neyshabur2018_complexity   = B · d · √h · Π_l ‖W_l‖₂ · sqrt(Σ_l ‖W_l − Z_l‖_F² / ‖W_l‖₂²)
        d: depth_convention='L' (the paper: d = L, the number of layers) or 'hidden' (NK's code: FLAGS.depth,
        the number of hidden layers, L − 1). h: width_convention='outputs' (the paper's "upper bound on the
        number of output units in each layer" [verify]: max_l out(W_l)) or 'hidden' (NK's code: the hidden
        width, max over the hidden layers). For NK's nets (hidden width ≥ K) the two widths agree.
    neyshabur2018_complexity_nk     = depth 'hidden', width 'hidden' (NK's pac_spectral_bound_1).
    neyshabur2018_complexity_noinit = ‖W_l‖_F in place of ‖W_l − Z_l‖_F (the paper's Thm 1 as printed;
        NK's pac_spectral_bound_0).
    neyshabur2019_complexity   = B · ‖W_2‖_F · (‖W_1 − Z_1‖_F + ‖Z_1‖₂)   (one hidden layer only; the
        √h-free form NK plot, their unilayer_bound).

Normalization (``normalize='gamma_sqrt_m'``): value / (γ·√m) with m = len(data) and γ = the ``gamma``
parameter, a float (the target training margin γ*; NK train to γ* = 10) or 'median' (the median margin on
the data). That ratio is what NK plot.

References:
    Bartlett, Foster & Telgarsky 2017, "Spectrally-normalized margin bounds", Thm 1.1 (spectral complexity
    R_A).
    Neyshabur, Bhojanapalli & Srebro 2018, "A PAC-Bayesian approach to spectrally-normalized margin bounds",
    ICLR, Thm 1.
    Neyshabur, Li, Bhojanapalli, LeCun & Srebro 2019, "The role of over-parametrization in generalization",
    ICLR, Thm 1 (two-layer nets).
    Nagarajan & Kolter 2019, released experiments.py (covering_spectral_bound_1, pac_spectral_bound_0/1,
    unilayer_bound).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GapbenchError, check_choice, check_positive_float, param_error
from ..layers import WeightLayer
from ._base import MEASURES, XY, fc_layers, input_bound, paired_layers, where
from .conv import layer_operator_norm
from .margins import per_example_margins

NORMALIZATIONS = (None, "gamma_sqrt_m")
NK = "Nagarajan & Kolter 2019, released experiments.py"


def normalized(value: float, model: nn.Module, data: XY, normalize: str | None, gamma, caller: str) -> float:
    """value, or value / (γ·√m) for normalize='gamma_sqrt_m' (γ a float or 'median')."""
    check_choice(normalize, "normalize", caller, NORMALIZATIONS)
    if normalize is None:
        if gamma is not None:
            raise param_error("gamma", caller, "None unless normalize='gamma_sqrt_m'", gamma,
                              "Pass normalize='gamma_sqrt_m' to divide by γ·√m.")
        return value
    if gamma is None:
        raise param_error("gamma", caller, "a float > 0 (the target margin γ*, e.g. NK's 10) or 'median' "
                          "when normalize='gamma_sqrt_m'", gamma)
    if gamma == "median":
        gamma_value = float(torch.quantile(per_example_margins(model, data), 0.5))
        if gamma_value <= 0:
            raise GapbenchError(f"{caller}: the median margin is {gamma_value:.4g} <= 0, so value/(γ·√m) is "
                                f"undefined. Train the model further or pass a float gamma.")
    else:
        gamma_value = check_positive_float(gamma, "gamma", caller)
    return value / (gamma_value * math.sqrt(data[0].shape[0]))


def _spec(layers: list[WeightLayer]) -> list[float]:
    return [float(layer_operator_norm(layer)) for layer in layers]


def _bartlett(name: str, model, data, init, axis: int, normalize, gamma) -> float:
    caller = where(name)
    fc_layers(model, caller)
    pairs = paired_layers(model, init, caller)
    spec = _spec([w for w, _ in pairs])
    # axis=1: ℓ2 norm of each row (output unit) of W − Z; axis=0: of each column (input unit)
    l21 = [float((w.weight - z.weight).norm(dim=axis).sum()) for w, z in pairs]
    value = (input_bound(data[0]) * math.prod(spec)
             * sum((b / s) ** (2.0 / 3.0) for b, s in zip(l21, spec, strict=True)) ** 1.5)
    return normalized(value, model, data, normalize, gamma, caller)


@MEASURES.register("bartlett2017_complexity", kind="complexity", needs_data=True, needs_init=True,
          higher_is_better=False,
          reference="Bartlett, Foster & Telgarsky 2017, Thm 1.1 (spectral complexity R_A times B, reference "
                    "matrices M_l = Z_l)")
def bartlett2017_complexity(model: nn.Module, data: XY, init: nn.Module, *, normalize: str | None = None,
                            gamma=None) -> float:
    """B · Π_l ‖W_l‖₂ · (Σ_l (‖(W_l − Z_l)ᵀ‖_{2,1} / ‖W_l‖₂)^{2/3})^{3/2}, the (2,1) norm summed over output
    units."""
    return _bartlett("bartlett2017_complexity", model, data, init, 1, normalize, gamma)


@MEASURES.register("bartlett2017_complexity_nk", kind="complexity", needs_data=True, needs_init=True,
          higher_is_better=False,
          reference=f"{NK}, covering_spectral_bound_1 (Bartlett et al. 2017 Thm 1.1 with the (2,1) norm "
                    f"summed over input units)")
def bartlett2017_complexity_nk(model: nn.Module, data: XY, init: nn.Module, *, normalize: str | None = None,
                               gamma=None) -> float:
    """As bartlett2017_complexity but ‖W_l − Z_l‖_{2,1} = Σ_j ‖(W_l − Z_l)[:, j]‖₂ over input units (NK)."""
    return _bartlett("bartlett2017_complexity_nk", model, data, init, 0, normalize, gamma)


def _neyshabur2018(name: str, model, data, init, depth_convention, width_convention, normalize,
                   gamma) -> float:
    caller = where(name)
    check_choice(depth_convention, "depth_convention", caller, ("L", "hidden"))
    check_choice(width_convention, "width_convention", caller, ("outputs", "hidden"))
    layers = fc_layers(model, caller)
    if len(layers) < 2 and "hidden" in (depth_convention, width_convention):
        raise GapbenchError(f"{caller}: the 'hidden' depth/width convention needs at least one hidden layer; "
                            f"the model has {len(layers)} weight layer. Use the 'L'/'outputs' conventions.")
    depth = len(layers) if depth_convention == "L" else len(layers) - 1
    widths = [layer.out_features for layer in (layers if width_convention == "outputs" else layers[:-1])]
    spec = _spec(layers)
    if init is None:    # the un-referenced form: ‖W_l‖_F
        fro = [float(layer.weight.norm()) for layer in layers]
    else:
        fro = [float((w.weight - z.weight).norm()) for w, z in paired_layers(model, init, caller)]
    value = (input_bound(data[0]) * depth * math.sqrt(max(widths)) * math.prod(spec)
             * math.sqrt(sum((f / s) ** 2 for f, s in zip(fro, spec, strict=True))))
    return normalized(value, model, data, normalize, gamma, caller)


@MEASURES.register("neyshabur2018_complexity", kind="complexity", needs_data=True, needs_init=True,
          higher_is_better=False,
          reference="Neyshabur, Bhojanapalli & Srebro 2018, Thm 1, with ‖W_l − Z_l‖_F as in NK 2019 Fig. 1")
def neyshabur2018_complexity(model: nn.Module, data: XY, init: nn.Module, *, depth_convention: str = "L",
                             width_convention: str = "outputs", normalize: str | None = None,
                             gamma=None) -> float:
    """B · d · √h · Π_l ‖W_l‖₂ · sqrt(Σ_l ‖W_l − Z_l‖_F² / ‖W_l‖₂²) (paper conventions by default)."""
    return _neyshabur2018("neyshabur2018_complexity", model, data, init, depth_convention, width_convention,
                          normalize, gamma)


@MEASURES.register("neyshabur2018_complexity_nk", kind="complexity", needs_data=True, needs_init=True,
          higher_is_better=False, reference=f"{NK}, pac_spectral_bound_1 (d = L − 1, h = hidden width)")
def neyshabur2018_complexity_nk(model: nn.Module, data: XY, init: nn.Module, *,
                                normalize: str | None = None, gamma=None) -> float:
    """neyshabur2018_complexity with NK's conventions: d = L − 1 hidden layers, h = the hidden width."""
    return _neyshabur2018("neyshabur2018_complexity_nk", model, data, init, "hidden", "hidden", normalize,
                          gamma)


@MEASURES.register("neyshabur2018_complexity_noinit", kind="complexity", needs_data=True, needs_init=False,
          higher_is_better=False,
          reference="Neyshabur, Bhojanapalli & Srebro 2018, Thm 1 (‖W_l‖_F); NK experiments.py "
                    "pac_spectral_bound_0")
def neyshabur2018_complexity_noinit(model: nn.Module, data: XY, init: nn.Module | None, *,
                                    depth_convention: str = "L", width_convention: str = "outputs",
                                    normalize: str | None = None, gamma=None) -> float:
    """B · d · √h · Π_l ‖W_l‖₂ · sqrt(Σ_l ‖W_l‖_F² / ‖W_l‖₂²) (no reference weights)."""
    return _neyshabur2018("neyshabur2018_complexity_noinit", model, data, None, depth_convention,
                          width_convention, normalize, gamma)


@MEASURES.register("neyshabur2019_complexity", kind="complexity", needs_data=True, needs_init=True,
          higher_is_better=False,
          reference="Neyshabur et al. 2019, The role of over-parametrization, Thm 1 (two-layer nets), "
                    "without √h as in NK experiments.py unilayer_bound")
def neyshabur2019_complexity(model: nn.Module, data: XY, init: nn.Module, *, normalize: str | None = None,
                             gamma=None) -> float:
    """B · ‖W_2‖_F · (‖W_1 − Z_1‖_F + ‖Z_1‖₂) for a net with exactly one hidden layer."""
    caller = where("neyshabur2019_complexity")
    layers = fc_layers(model, caller)
    if len(layers) != 2:
        raise param_error("model", caller, "a net with one hidden layer (2 weight layers)",
                          f"a net with {len(layers)} weight layers", "Use e.g. ModelConfig(depth=1).")
    (w1, z1), (w2, _) = paired_layers(model, init, caller)
    value = input_bound(data[0]) * float(w2.weight.norm()) * (float((w1.weight - z1.weight).norm())
                                                                + float(layer_operator_norm(z1)))
    return normalized(value, model, data, normalize, gamma, caller)
