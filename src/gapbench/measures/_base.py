"""The measure registry and the helpers every measure shares: data and init resolution, float64 layers.

Every measure is a pure function ``fn(model, data, init, *, params...) -> float`` registered in
:data:`MEASURES` with its metadata. ``data`` arrives as an (x, y) pair (or None), ``init`` as an nn.Module of
the same architecture (or None); :func:`gapbench.measures.measure` does that resolution and the validation.

Metadata: ``kind`` (one of :data:`KINDS`), ``needs_data``, ``needs_init``, ``higher_is_better`` (True when a
larger value predicts *better* generalization: margins, flatness; False for norms and complexities) and
``reference`` (paper and equation).

Conventions shared by all measures: weight matrices are taken after BatchNorm folding
(:func:`gapbench.layers.weight_layers`) and cast to float64 on the model's device; biases enter only the
measures that say so (path norms, ``param_norm``, the sharpness search); the caller's model, init and data are
never modified.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import GapbenchError, param_error
from ..layers import WeightLayer, weight_layers
from ..registry import Registry
from .shared import shared

KINDS = ("norm", "margin", "sharpness", "path", "complexity", "count")
MEASURES: Registry[Callable[..., float]] = Registry(
    "measure", required=("kind", "needs_data", "needs_init", "higher_is_better", "reference"),
    choices={"kind": KINDS})

XY = tuple[torch.Tensor, torch.Tensor]


def where(name: str) -> str:
    """The `where` of error messages for measure `name`: "measure('name')"."""
    return f"measure('{name}')"


def device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def double_copy(model: nn.Module) -> nn.Module:
    """A float64 copy of `model` (the caller's model keeps its dtype and mode)."""
    return copy.deepcopy(model).double()


def resolve_init(model: nn.Module, init: Any, caller: str, param: str = "init") -> nn.Module:
    """`init` as an nn.Module with the architecture of `model`: a module is checked (same parameter names and
    shapes) and returned as is; a state_dict is loaded into a copy of `model`."""
    if isinstance(init, nn.Module):
        state = init.state_dict()
    elif isinstance(init, dict):
        state = init
    else:
        raise param_error(param, caller, "an nn.Module of the model's architecture or its state_dict",
                          type(init).__name__, "Pass e.g. run.init_model() or run.init_state.")
    own = model.state_dict()
    mismatch = (sorted(set(own) ^ set(state))
                or [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)])
    if mismatch:
        raise param_error(param, caller, "weights of the same architecture as the model",
                          f"weights differing in {mismatch[:5]}",
                          "Use the initial weights of this very model (e.g. run.init_state).")
    if isinstance(init, nn.Module):
        return init
    other = copy.deepcopy(model)
    other.load_state_dict(state)
    return other


def input_shape_of(data: XY | None, input_shape: Any, caller: str) -> tuple[int, ...] | None:
    """The per-example input shape: the `input_shape` param if given, else x.shape[1:] of the data."""
    if input_shape is not None:
        if (not isinstance(input_shape, (tuple, list)) or not input_shape
                or not all(isinstance(s, int) and s > 0 for s in input_shape)):
            raise param_error("input_shape", caller, "a tuple of positive ints without the batch dimension, "
                              "e.g. (1, 28, 28)", input_shape)
        return tuple(input_shape)
    return None if data is None else tuple(data[0].shape[1:])


@shared
def layers_of(model: nn.Module, caller: str, input_shape: tuple[int, ...] | None = None) -> list[WeightLayer]:
    """The weight layers of `model` (BatchNorm folded in float64) with weights and biases in float64."""
    layers = weight_layers(double_copy(model), caller=caller, input_shape=input_shape)
    return [dataclasses.replace(layer, weight=layer.weight.double(),
                                bias=None if layer.bias is None else layer.bias.double()) for layer in layers]


@shared
def paired_layers(model: nn.Module, other: nn.Module, caller: str,
                  input_shape: tuple[int, ...] | None = None) -> list[tuple[WeightLayer, WeightLayer]]:
    """Matching float64 weight layers (W_l, Z_l) of two models of one architecture."""
    mine = layers_of(model, caller, input_shape)
    theirs = layers_of(other, caller, input_shape)
    if [m.weight.shape for m in mine] != [t.weight.shape for t in theirs]:
        raise GapbenchError(f"{caller}: the two models have different weight layers "
                            f"({[tuple(m.weight.shape) for m in mine]} vs "
                            f"{[tuple(t.weight.shape) for t in theirs]}). Pass weights of the same "
                            f"architecture.")
    return [(m, dataclasses.replace(t, weight=t.weight.to(m.weight.device)))
            for m, t in zip(mine, theirs, strict=True)]


@shared
def weight_differences(model: nn.Module, other: nn.Module, caller: str,
                       input_shape: tuple[int, ...] | None = None) -> list[torch.Tensor]:
    """W_l − Z_l of every weight layer (float64, BatchNorm folded) of two models of one architecture."""
    return [w.weight - z.weight for w, z in paired_layers(model, other, caller, input_shape)]


def fc_layers(model: nn.Module, caller: str) -> list[WeightLayer]:
    """float64 weight layers of a fully connected net; Conv2d layers are refused (the formulas are for FC
    nets)."""
    layers = layers_of(model, caller)
    for layer in layers:
        if layer.kind != "linear":
            raise GapbenchError(f"{caller} is defined for fully connected nets (Linear layers) only; layer "
                                f"'{layer.name}' is a Conv2d. Use an MLP, or the norm measures with conv=.")
    return layers


def input_bound(x: torch.Tensor) -> float:
    """B = max_i ‖x_i‖₂ over the rows of x (each example flattened), in float64."""
    return float(x.reshape(x.shape[0], -1).double().norm(dim=1).max())


def check_finite_float(value: Any, param: str, caller: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise param_error(param, caller, "a finite float", value)
    return float(value)
