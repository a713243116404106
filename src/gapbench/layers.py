"""The one place that walks an ``nn.Module``: weight layers, BatchNorm folding, input shapes.

Measures, bounds and deep paths never inspect modules themselves; they call :func:`weight_layers`, which maps
each leaf module class to a handler through a plain dict (BackPACK's pattern) and raises an error that names
the module class, the caller and the supported classes for anything else.

Assumption: leaf modules are registered in the order they are applied (true for ``nn.Sequential`` and for
the usual hand-written ``__init__``). BatchNorm is folded into the Linear/Conv2d registered just before it,
on a copy: the caller's model is never modified.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .errors import GapbenchError

WEIGHT_TYPES = (nn.Linear, nn.Conv2d)
PASSTHROUGH_TYPES = (nn.ReLU, nn.Flatten, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
CONTAINER_TYPES = (nn.Sequential,)
SUPPORTED = WEIGHT_TYPES + PASSTHROUGH_TYPES + BATCHNORM_TYPES


@dataclass(frozen=True)
class WeightLayer:
    """One weight layer, with BatchNorm already folded in. Tensors are detached copies."""

    name: str                          # qualified module name in the (unfolded) model
    kind: str                          # 'linear' | 'conv'
    weight: torch.Tensor               # (out, in) or (out, in, kh, kw), PyTorch layout
    bias: torch.Tensor | None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    input_shape: tuple[int, ...] | None = None   # (C, H, W) for conv when known (needed by the FFT norm)

    @property
    def matrix(self) -> torch.Tensor:
        """The weight as a 2-D matrix: (out, in) for linear, (out, in·kh·kw) reshaped for conv."""
        return self.weight.reshape(self.weight.shape[0], -1)

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])


def _leaf_modules(model: nn.Module, caller: str) -> list[tuple[str, nn.Module]]:
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    for name, module in leaves:
        if not isinstance(module, SUPPORTED):
            supported = ", ".join(sorted(t.__name__ for t in SUPPORTED))
            raise GapbenchError(
                f"{caller} cannot handle module '{name}' of class {type(module).__name__}. Supported module "
                f"classes: {supported}. Rewrite the model with these layers (BatchNorm is folded "
                f"automatically) or measure a supported sub-module.")
    return leaves


def fold_batchnorm(model: nn.Module, caller: str = "fold_batchnorm()") -> nn.Module:
    """A copy of `model` in which every BatchNorm (eval statistics) is folded into the preceding weight layer
    and replaced by Identity. The copy computes the same function as ``model.eval()``.

    For y = γ·(Wx + b − μ)/sqrt(var + eps) + β: W' = diag(s)·W, b' = s·(b − μ) + β with s = γ/sqrt(var + eps).
    """
    folded = copy.deepcopy(model).eval()
    previous: nn.Module | None = None
    for name, module in _leaf_modules(folded, caller):
        if isinstance(module, WEIGHT_TYPES):
            previous = module
        elif isinstance(module, BATCHNORM_TYPES):
            if previous is None:
                raise GapbenchError(f"{caller}: BatchNorm '{name}' has no preceding Linear/Conv2d to fold "
                                    f"into. Put a weight layer before every BatchNorm.")
            _fold_into(previous, module)
            _replace_module(folded, name, nn.Identity())
            previous = None
    return folded


def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    with torch.no_grad():
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros(bn.num_features)
        var = bn.running_var if bn.running_var is not None else torch.ones(bn.num_features)
        gamma = bn.weight if bn.weight is not None else torch.ones(bn.num_features)
        beta = bn.bias if bn.bias is not None else torch.zeros(bn.num_features)
        scale = gamma / torch.sqrt(var + bn.eps)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        layer.weight.mul_(scale.reshape(shape))
        old_bias = layer.bias if layer.bias is not None else torch.zeros_like(mean)
        new_bias = scale * (old_bias - mean) + beta
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias.clone())
        else:
            layer.bias.copy_(new_bias)


def _replace_module(root: nn.Module, qualified: str, new: nn.Module) -> None:
    parent_name, _, child = qualified.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def layer_input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape (without batch dim) of every weight layer, from one forward pass on zeros."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(inp[0].shape[1:])))
             for n, m in model.named_modules() if isinstance(m, WEIGHT_TYPES)]
    try:
        param = next(model.parameters())
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def weight_layers(model: nn.Module, *, caller: str = "weight_layers()",
                  input_shape: tuple[int, ...] | None = None) -> list[WeightLayer]:
    """The weight layers of `model` in forward order, BatchNorm folded, as detached tensor copies.

    `input_shape` (without batch dim) fills in each conv layer's input shape, needed by the exact FFT
    operator norm. `caller` names the measure or bound in error messages.
    """
    folded = fold_batchnorm(model, caller)
    shapes = layer_input_shapes(folded, input_shape) if input_shape is not None else {}
    layers = []
    for name, module in _leaf_modules(folded, caller):
        if isinstance(module, nn.Linear):
            layers.append(WeightLayer(name, "linear", module.weight.detach().clone(),
                                      None if module.bias is None else module.bias.detach().clone(),
                                      input_shape=shapes.get(name)))
        elif isinstance(module, nn.Conv2d):
            if module.groups != 1 or module.dilation != (1, 1) or isinstance(module.padding, str):
                raise GapbenchError(f"{caller} supports Conv2d with groups=1, dilation=1 and integer padding; "
                                    f"module '{name}' has groups={module.groups}, dilation={module.dilation}, "
                                    f"padding={module.padding!r}.")
            layers.append(WeightLayer(name, "conv", module.weight.detach().clone(),
                                      None if module.bias is None else module.bias.detach().clone(),
                                      stride=tuple(module.stride), padding=tuple(module.padding),
                                      input_shape=shapes.get(name)))
    if not layers:
        raise GapbenchError(f"{caller} found no Linear or Conv2d layer in the model.")
    return layers


def has_bias(model: nn.Module) -> bool:
    """Whether any weight layer of `model` has a bias (after BN folding)."""
    return any(layer.bias is not None for layer in weight_layers(model))
