"""Architectures built from a :class:`~gapbench.config.ModelConfig`.

Every model is a plain ``nn.Sequential`` of Flatten / Linear / Conv2d / ReLU / MaxPool2d / Dropout, so the
layer adapter (:mod:`gapbench.layers`) and the deep-path code can walk it. Initialization draws from a
``torch.Generator`` seeded by ``ModelConfig.init_seed``: never from the global RNG.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import ModelConfig
from .errors import check_choice, check_positive_int, param_error, unknown_name

INITS = ("torch_default", "glorot_uniform")


def mlp(input_dim: int, num_classes: int, depth: int, width: int, bias: bool) -> nn.Sequential:
    """Fully connected ReLU net: input_dim -> depth x width -> num_classes (L = depth + 1 weight layers)."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = input_dim
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes, bias=bias))
    return nn.Sequential(*layers)


def cnn(input_shape: tuple[int, ...], num_classes: int, width: int, bias: bool, fc_width: int,
        dropout: float, kernel: int = 5, conv2_width: int | None = None, padding: str = "same") -> nn.Sequential:
    """KKB's MNIST net scaled by `width`: (conv width@5x5 -> maxpool 2 -> ReLU) then (conv conv2_width@5x5 ->
    maxpool 2 -> ReLU) -> FC fc_width (dropout) -> FC num_classes. KKB v5 App. B: 32 filters in *both* convs,
    FC 1024, dropout 0.5, padding not stated. Defaults (conv2_width = 2·width, 'same' padding: 28 -> 14 -> 7)
    are the TF tutorial's reading; 'valid' padding is PyTorch's MNIST example (28 -> 24 -> 12 -> 8 -> 4)."""
    check_choice(padding, "padding", "cnn() (ModelConfig.options['padding'])", ("same", "valid"))
    channels, height, width_px = input_shape
    conv2_width = 2 * width if conv2_width is None else conv2_width
    check_positive_int(conv2_width, "conv2_width", "cnn() (ModelConfig.options['conv2_width'])")
    pad = kernel // 2 if padding == "same" else 0

    def side(n: int) -> int:           # one conv (stride 1) then a 2x2 max-pool
        return (n + 2 * pad - kernel + 1) // 2

    feat = conv2_width * side(side(height)) * side(side(width_px))
    layers: list[nn.Module] = [
        nn.Conv2d(channels, width, kernel, padding=pad, bias=bias), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(width, conv2_width, kernel, padding=pad, bias=bias), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(feat, fc_width, bias=bias), nn.ReLU(),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(fc_width, num_classes, bias=bias))
    return nn.Sequential(*layers)


def pbb_cnn(input_shape: tuple[int, ...], num_classes: int, width: int, bias: bool, fc_width: int,
            conv2_width: int) -> nn.Sequential:
    """Pérez-Ortiz et al.'s MNIST CNN (PBB pbb/models.py L528-548, CNNet4l): conv width@3x3 -> ReLU -> conv
    conv2_width@3x3 -> ReLU -> maxpool 2 -> FC fc_width -> ReLU -> FC num_classes, 'valid' padding
    (28 -> 26 -> 24 -> 12; PBB: 32, 64, 9216 -> 128 -> 10). Its dropout is the prior's training only."""
    channels, height, width_px = input_shape
    feat = conv2_width * ((height - 4) // 2) * ((width_px - 4) // 2)
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, bias=bias), nn.ReLU(), nn.Conv2d(width, conv2_width, 3, bias=bias), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(feat, fc_width, bias=bias), nn.ReLU(),
        nn.Linear(fc_width, num_classes, bias=bias))


def init_weights(model: nn.Module, scheme: str, seed: int) -> None:
    """Re-initialize every Linear/Conv2d of `model` in place from a generator seeded by `seed`.

    'glorot_uniform': W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), biases 0 (Keras' default; NK's code).
    'torch_default': PyTorch's own Linear/Conv2d rule, W and b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    check_choice(scheme, "init", "ModelConfig", INITS)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        weight = module.weight
        receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
        fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
        if scheme == "glorot_uniform":
            bound, bias_bound = math.sqrt(6.0 / (fan_in + fan_out)), 0.0
        else:
            bound = bias_bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            weight.copy_(torch.empty(weight.shape).uniform_(-bound, bound, generator=gen))
            if module.bias is not None:
                module.bias.copy_(torch.empty(module.bias.shape).uniform_(-bias_bound, bias_bound,
                                                                          generator=gen)
                                  if bias_bound > 0 else torch.zeros(module.bias.shape))


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Build and initialize the model `cfg` describes for inputs of `input_shape` (without the batch dim)."""
    check_positive_int(cfg.width, "width", "ModelConfig")
    check_positive_int(num_classes, "num_classes", "build_model()", minimum=2)
    # nn.Linear/Conv2d constructors draw default weights from the global RNG; fork it so building a model
    # leaves the caller's random state untouched (the real init comes from init_weights' own generator).
    with torch.random.fork_rng(devices=[]):
        model = _construct(cfg, input_shape, num_classes)
    init_weights(model, cfg.init, cfg.init_seed)
    return model


def _construct(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    if cfg.arch == "mlp":
        check_positive_int(cfg.depth, "depth", "ModelConfig", minimum=0)
        model = mlp(math.prod(input_shape), num_classes, cfg.depth, cfg.width, cfg.bias)
    elif cfg.arch == "cnn":
        if len(input_shape) != 3:
            raise param_error("arch", "ModelConfig", "'mlp' for flat inputs ('cnn' needs (C, H, W) inputs)",
                              cfg.arch)
        if cfg.options.get("layout", "kkb") == "pbb":          # options['layout']: 'kkb' (default) or 'pbb'
            return pbb_cnn(input_shape, num_classes, cfg.width, cfg.bias,
                           fc_width=int(cfg.options.get("fc_width", 128)),
                           conv2_width=int(cfg.options.get("conv2_width", 2 * cfg.width)))
        model = cnn(input_shape, num_classes, cfg.width, cfg.bias,
                    fc_width=int(cfg.options.get("fc_width", 1024)),
                    dropout=float(cfg.options.get("dropout", 0.0)),
                    conv2_width=cfg.options.get("conv2_width"), padding=cfg.options.get("padding", "same"))
    else:
        raise unknown_name("architecture", cfg.arch, ["mlp", "cnn"])
    return model
