"""Norm measures of the weight matrices W_1 … W_L (BatchNorm folded), their distance from init Z_1 … Z_L,
and parameter counts.

    frobenius_product = Π_l ‖W_l‖_F          frobenius_sum = Σ_l ‖W_l‖_F
    spectral_product  = Π_l ‖W_l‖₂           spectral_sum  = Σ_l ‖W_l‖₂
    dist_from_init_fro = sqrt(Σ_l ‖W_l − Z_l‖_F²)   (the ℓ2 norm of the concatenation, not Σ_l ‖W_l − Z_l‖_F)
    dist_from_init_spec = Σ_l ‖W_l − Z_l‖₂          (a sum over layers, not a max)
    dist_between = sqrt(Σ_l ‖W_l − W̃_l‖_F²)         (NK's distance between two solutions from one init)
    fro_over_spec = Σ_l ‖W_l‖_F² / ‖W_l‖₂²           (Jiang et al. 2020, Eq. (33))
    param_norm = sqrt(Σ_θ θ²) over every weight and bias of the folded net
    num_params = number of scalar parameters of the model as given (BatchNorm affine included)

NK's released code stores ‖W_l − Z_l‖_F per layer and the paper plots the total ℓ2 distance, i.e. the norm
of the concatenated weights: that is ``dist_from_init_fro``; per-layer values come from
:func:`gapbench.measures.per_layer`. ‖W‖₂ of a Conv2d layer follows the ``conv`` parameter ('fft': exact
operator norm for circular padding; 'reshaped': an approximation), see :mod:`gapbench.measures.conv`.

References:
    Nagarajan & Kolter 2019, NeurIPS (released experiments.py: distance_from_initialization,
    distance_between_weights, spectral_norm, frobenius_norm).
    Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020, "Fantastic Generalization Measures", ICLR, App. C.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check_positive_int
from ..layers import WeightLayer, fold_batchnorm
from ._base import (
    MEASURES,
    XY,
    double_copy,
    input_shape_of,
    layers_of,
    paired_layers,
    resolve_init,
    weight_differences,
    where,
)
from .conv import POWER_ITERS, check_norm_params, layer_operator_norm

NK = "Nagarajan & Kolter 2019, released experiments.py"


def layer_frobenius(layers: list[WeightLayer]) -> list[float]:
    """‖W_l‖_F of every layer (the Frobenius norm of the kernel for Conv2d)."""
    return [float(layer.weight.norm()) for layer in layers]


def layer_spectral(layers: list[WeightLayer], *, conv: str = "fft", method: str = "exact",
                   iters: int = POWER_ITERS, seed: int = 0, caller: str = "layer_spectral()",
                   weights: list[torch.Tensor] | None = None) -> list[float]:
    """‖W_l‖₂ of every layer (or of `weights[l]` in the place of layer l's weight, e.g. W_l − Z_l)."""
    weights = weights or [None] * len(layers)
    return [float(layer_operator_norm(layer, w, conv=conv, method=method, iters=iters, seed=seed,
                                      caller=caller)) for layer, w in zip(layers, weights, strict=True)]


def _spectral(name: str, model: nn.Module, data: XY | None, conv: str, method: str, iters: int, seed: int,
              input_shape) -> list[float]:
    caller = where(name)
    check_norm_params(conv, method, iters, seed, caller)
    layers = layers_of(model, caller, input_shape_of(data, input_shape, caller))
    return layer_spectral(layers, conv=conv, method=method, iters=iters, seed=seed, caller=caller)


def _differences(name: str, model: nn.Module, other: nn.Module, data: XY | None = None, input_shape=None):
    caller = where(name)
    shape = input_shape_of(data, input_shape, caller)
    return [w for w, _ in paired_layers(model, other, caller, shape)], weight_differences(model, other, caller, shape)


@MEASURES.register("frobenius_product", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Neyshabur, Tomioka & Srebro 2015, Norm-based capacity control, §3 (Π_l ‖W_l‖_F)")
def frobenius_product(model: nn.Module, data: XY | None, init: nn.Module | None) -> float:
    """Π_l ‖W_l‖_F."""
    return math.prod(layer_frobenius(layers_of(model, where("frobenius_product"))))


@MEASURES.register("frobenius_sum", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Neyshabur, Tomioka & Srebro 2015, §3 (Σ_l ‖W_l‖_F)")
def frobenius_sum(model: nn.Module, data: XY | None, init: nn.Module | None) -> float:
    """Σ_l ‖W_l‖_F."""
    return sum(layer_frobenius(layers_of(model, where("frobenius_sum"))))


@MEASURES.register("spectral_product", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Bartlett, Foster & Telgarsky 2017, Thm 1.1 (the Lipschitz factor Π_l ‖W_l‖₂ of R_A)")
def spectral_product(model: nn.Module, data: XY | None, init: nn.Module | None, *, conv: str = "fft",
                     method: str = "exact", iters: int = POWER_ITERS, seed: int = 0,
                     input_shape=None) -> float:
    """Π_l ‖W_l‖₂: exact by SVD (method='exact'), or `iters` power iterations from a seeded start
    (method='power', a lower estimate). Conv layers: conv='fft' (exact, circular padding; needs data or
    input_shape) or conv='reshaped' (approximation)."""
    return math.prod(_spectral("spectral_product", model, data, conv, method, iters, seed, input_shape))


@MEASURES.register("spectral_sum", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Σ_l ‖W_l‖₂, the plain sum of the layers' operator norms (a baseline; not Jiang et al. 2020's "
                    "'log.sum.of.spec', Eq. (35), which is log(d·(Π_l ‖W_l‖₂²)^{1/d}), a geometric mean)")
def spectral_sum(model: nn.Module, data: XY | None, init: nn.Module | None, *, conv: str = "fft",
                 method: str = "exact", iters: int = POWER_ITERS, seed: int = 0, input_shape=None) -> float:
    """Σ_l ‖W_l‖₂ (same options as spectral_product)."""
    return sum(_spectral("spectral_sum", model, data, conv, method, iters, seed, input_shape))


@MEASURES.register("fro_over_spec", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Jiang et al. 2020, Fantastic generalization measures, Eq. (33) (fro/spec)")
def fro_over_spec(model: nn.Module, data: XY | None, init: nn.Module | None, *, conv: str = "fft",
                  input_shape=None) -> float:
    """Σ_l ‖W_l‖_F² / ‖W_l‖₂² (each term is the stable rank of W_l)."""
    caller = where("fro_over_spec")
    check_norm_params(conv, "exact", 1, 0, caller)
    layers = layers_of(model, caller, input_shape_of(data, input_shape, caller))
    spec = layer_spectral(layers, conv=conv, caller=caller)
    return sum(f ** 2 / s ** 2 for f, s in zip(layer_frobenius(layers), spec, strict=True))


@MEASURES.register("dist_from_init_fro", kind="norm", needs_data=False, needs_init=True, higher_is_better=False,
          reference="Nagarajan & Kolter 2019, Fig. 1 (distance from initialization); Jiang et al. 2020, "
                    "Eq. (40) before squaring")
def dist_from_init_fro(model: nn.Module, data: XY | None, init: nn.Module) -> float:
    """sqrt(Σ_l ‖W_l − Z_l‖_F²): the ℓ2 distance of all weights from the initial weights Z."""
    _, diffs = _differences("dist_from_init_fro", model, init)
    return math.sqrt(sum(float(d.norm()) ** 2 for d in diffs))


@MEASURES.register("dist_from_init_spec", kind="norm", needs_data=False, needs_init=True, higher_is_better=False,
          reference="Jiang et al. 2020, Fantastic generalization measures, Eq. (41) without the squares "
                    "(Σ_l ‖W_l − Z_l‖₂)")
def dist_from_init_spec(model: nn.Module, data: XY | None, init: nn.Module, *, conv: str = "fft",
                        input_shape=None) -> float:
    """Σ_l ‖W_l − Z_l‖₂ (sum over layers; for Conv2d the operator norm of the conv with kernel W_l − Z_l)."""
    caller = where("dist_from_init_spec")
    check_norm_params(conv, "exact", 1, 0, caller)
    layers, diffs = _differences("dist_from_init_spec", model, init, data, input_shape)
    return sum(layer_spectral(layers, conv=conv, caller=caller, weights=diffs))


@MEASURES.register("dist_between", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Nagarajan & Kolter 2019, Fig. 1 (distance between the solutions of two draws of the "
                    "training set from the same initialization; experiments.py distance_between_weights)")
def dist_between(model: nn.Module, data: XY | None, init: nn.Module | None, *, other) -> float:
    """sqrt(Σ_l ‖W_l − W̃_l‖_F²) between `model` and `other` (an nn.Module of the same architecture or its
    state_dict), e.g. the two networks trained from one init on two draws of the training set."""
    other_model = resolve_init(model, other, where("dist_between"), param="other")
    _, diffs = _differences("dist_between", model, other_model)
    return math.sqrt(sum(float(d.norm()) ** 2 for d in diffs))


@MEASURES.register("param_norm", kind="norm", needs_data=False, needs_init=False, higher_is_better=False,
          reference="ℓ2 norm of the parameter vector (weights and biases, BatchNorm folded); cf. Jiang et "
                    "al. 2020, Eq. (42), which squares it and drops biases (jiang2020_param_norm)")
def param_norm(model: nn.Module, data: XY | None, init: nn.Module | None) -> float:
    """sqrt(Σ_θ θ²) over every weight and bias of the BatchNorm-folded net."""
    folded = fold_batchnorm(double_copy(model), where("param_norm"))
    return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in folded.parameters()))


@MEASURES.register("num_params", kind="count", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Jiang et al. 2020, Fantastic generalization measures, Eq. (20) (number of parameters)")
def num_params(model: nn.Module, data: XY | None, init: nn.Module | None) -> float:
    """The number of scalar parameters of the model as given (BatchNorm affine parameters included)."""
    return float(sum(p.numel() for p in model.parameters()))


def per_layer_values(name: str, model: nn.Module, data: XY | None, init: nn.Module | None,
                     **params) -> list[float]:
    """Per-layer values behind the aggregate measures (see :func:`gapbench.measures.per_layer`)."""
    caller = f"per_layer('{name}')"
    if name == "frobenius":
        return layer_frobenius(layers_of(model, caller))
    if name == "spectral":
        conv, method = params.pop("conv", "fft"), params.pop("method", "exact")
        iters, seed = params.pop("iters", POWER_ITERS), params.pop("seed", 0)
        check_norm_params(conv, method, check_positive_int(iters, "iters", caller), seed, caller)
        layers = layers_of(model, caller, input_shape_of(data, params.pop("input_shape", None), caller))
        return layer_spectral(layers, conv=conv, method=method, iters=iters, seed=seed, caller=caller)
    if name in ("dist_from_init_fro", "dist_between"):
        other = (init if name == "dist_from_init_fro"
                 else resolve_init(model, params.pop("other"), caller, "other"))
        return [float(d.norm()) for d in _differences(name, model, other)[1]]
    if name == "dist_from_init_spec":
        conv = params.pop("conv", "fft")
        check_norm_params(conv, "exact", 1, 0, caller)
        layers, diffs = _differences(name, model, init, data, params.pop("input_shape", None))
        return layer_spectral(layers, conv=conv, caller=caller, weights=diffs)
    raise AssertionError(name)   # names are validated by per_layer()


PER_LAYER = {   # name -> (needs_init, accepted params)
    "frobenius": (False, ()),
    "spectral": (False, ("conv", "method", "iters", "seed", "input_shape")),
    "dist_from_init_fro": (True, ()),
    "dist_from_init_spec": (True, ("conv", "input_shape")),
    "dist_between": (False, ("other",)),
}
