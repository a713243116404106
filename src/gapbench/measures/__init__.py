"""Generalization measures: scalars compared by rank or slope, never called bounds (SPEC §3.1).

    import gapbench as gb
    gb.measure("spectral_product", model)
    gb.measure("bartlett2017_complexity", model, data.train, init=run.init_state,
               normalize="gamma_sqrt_m", gamma=10.0)
    gb.measure("margin_quantile", model, data.train, q=0.1)
    [e.name for e in gb.list_measures()]

Every measure is pure (the model, init and data are never modified), computed in float64 on the model's
device, deterministic for a given ``seed`` and never uses the global RNG. Per-layer values:
:func:`per_layer`; per-example margins: :func:`per_example_margins`; per-output path norms:
:func:`gapbench.analysis.deep_paths.path_norms_per_output`.

Modules: :mod:`.norms` (Frobenius, spectral, distance from init, counts), :mod:`.conv` (operator norms of
conv layers), :mod:`.margins`, :mod:`.path_norms`, :mod:`.complexity` (Bartlett 2017, Neyshabur
2018/2019), :mod:`.sharpness` (PAC-Bayes flatness), :mod:`.jiang` (Jiang et al. 2020's forms). The whole
registry on one model: :func:`evaluate_all` (quantities shared between measures computed once, :mod:`.shared`)
and :func:`measure_costs` (seconds of each measure alone), in :mod:`.bulk`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ..data.types import as_xy
from ..errors import param_error, unknown_name
from ..registry import Entry, check_params, keyword_params
from . import complexity, jiang, margins, norms, path_norms, sharpness  # noqa: F401  (register the measures)
from ._base import KINDS, MEASURES, resolve_init, where
from .bulk import Evaluation, evaluate_all, measure_costs
from .conv import conv_operator_norm_fft, conv_reshaped_spectral
from .norms import PER_LAYER, per_layer_values
from .sharpness import SharpnessResult, sharpness_search

__all__ = ["KINDS", "MEASURES", "Evaluation", "SharpnessResult", "accepted_params", "conv_operator_norm_fft",
           "conv_reshaped_spectral", "evaluate_all", "list_measures", "measure", "measure_costs",
           "per_example_margins", "per_layer", "sharpness_search"]


def list_measures() -> list[Entry]:
    """Every registered measure, sorted by name, with its metadata (kind, needs_data, needs_init,
    higher_is_better, reference)."""
    return list(MEASURES)


def accepted_params(name: str) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of measure `name` (what ``**params`` may hold)."""
    return keyword_params(MEASURES.get(name).obj)


def _check_model(model: Any, caller: str) -> None:
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise param_error("model", caller, "an nn.Module with parameters", type(model).__name__)


def measure(name: str, model: nn.Module, data: Any = None, *, init: Any = None, **params: Any) -> float:
    """The value of measure `name` for `model`.

    `data`: a :class:`~gapbench.data.types.Split` or an (x, y) tensor pair (the training set for margins and
    complexities). `init`: the reference weights Z (an nn.Module of the model's architecture or its
    state_dict), needed by the distance-from-init measures and the complexities. `params`: the measure's own
    keyword parameters (see ``gapbench list measures`` or :func:`accepted_params`).
    """
    entry = MEASURES.get(name)
    caller = where(name)
    _check_model(model, caller)
    accepted = keyword_params(entry.obj)
    check_params(params, accepted, caller,
                 required=[p for p, spec in accepted.items() if spec.default is inspect.Parameter.empty])
    if entry.needs_data and data is None:
        raise param_error("data", caller, "a Split or an (x, y) pair of tensors", None,
                          f"'{name}' is computed on data: pass e.g. dataset.train.")
    if entry.needs_init and init is None:
        raise param_error("init", caller, "the initial weights (an nn.Module or a state_dict)", None,
                          f"'{name}' measures against the initialization: pass init=run.init_state.")
    xy = None if data is None else as_xy(data, caller)
    init_model = None if init is None else resolve_init(model, init, caller)
    return float(entry.obj(model, xy, init_model, **params))


def per_layer(name: str, model: nn.Module, data: Any = None, *, init: Any = None,
              **params: Any) -> list[float]:
    """Per-layer values, one per weight layer in forward order (BatchNorm folded, float64):

    - 'frobenius': ‖W_l‖_F
    - 'spectral': ‖W_l‖₂ (params conv, method, iters, seed, input_shape as in spectral_product)
    - 'dist_from_init_fro': ‖W_l − Z_l‖_F (needs init)
    - 'dist_from_init_spec': ‖W_l − Z_l‖₂ (needs init; params conv, input_shape)
    - 'dist_between': ‖W_l − W̃_l‖_F (param other: the second model or its state_dict)
    """
    caller = f"per_layer('{name}')"
    if name not in PER_LAYER:
        raise unknown_name("per-layer quantity", name, PER_LAYER)
    _check_model(model, caller)
    needs_init, accepted = PER_LAYER[name]
    check_params(params, dict.fromkeys(accepted), caller, required=["other"] if name == "dist_between" else [])
    if needs_init and init is None:
        raise param_error("init", caller, "the initial weights (an nn.Module or a state_dict)", None,
                          "Pass init=run.init_state.")
    xy = None if data is None else as_xy(data, caller)
    init_model = None if init is None else resolve_init(model, init, caller)
    return per_layer_values(name, model, xy, init_model, **params)


def per_example_margins(model: nn.Module, data: Any) -> torch.Tensor:
    """Γ_i = f(x_i)_{y_i} − max_{j≠y_i} f(x_i)_j for every example of `data`, float64, on the model's
    device."""
    caller = "per_example_margins()"
    _check_model(model, caller)
    return margins.per_example_margins(model, as_xy(data, caller))
