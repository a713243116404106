"""Probabilistic networks: a gapbench model with a Gaussian posterior Q and prior P over every parameter.

:func:`probabilistic` converts a plain ``nn.Sequential`` of Flatten / Linear / Conv2d / ReLU / MaxPool2d /
Dropout / Identity (what :mod:`gapbench.models` builds) into a :class:`ProbNet`, on copies: the model is never
modified. Linear and Conv2d become :class:`~gapbench.pacbayes.layers.ProbLinear` /
:class:`~gapbench.pacbayes.layers.ProbConv2d`; **Dropout becomes Identity** (the posterior's own noise
replaces it, and a certificate must be about one fixed stochastic classifier, so no extra dropout noise);
the other layers are copied. BatchNorm is refused: fold it first with ``gapbench.layers.fold_batchnorm``.

``net(x, mode, generator)`` evaluates the net in one of the modes of :mod:`gapbench.pacbayes.layers`
(``"per_example"``: an independent weight draw for every example, proved exact there; ``"shared"``; ``"mean"``);
the stochastic modes draw only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import GapbenchError, check_positive_float, check_positive_int, param_error
from ..models import build_model
from .layers import GaussianWeights, ProbConv2d, ProbLinear, check_generator, check_mode

PROB_TYPES = (ProbLinear, ProbConv2d)
COPIED_TYPES = (nn.ReLU, nn.Flatten, nn.MaxPool2d, nn.Identity)
SUPPORTED = (nn.Linear, nn.Conv2d, nn.Dropout) + COPIED_TYPES
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class ProbNet(nn.Module):
    """A sequence of probabilistic weight layers and deterministic layers; ``prior_std`` is the scalar prior
    std it was built with (a prior-scale grid reports it)."""

    def __init__(self, layers: list[nn.Module], prior_std: float):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.prior_std = float(prior_std)

    def forward(self, x: torch.Tensor, mode: str = "per_example",
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits of `x` under `mode` ('per_example' | 'shared' | 'mean'); draws only from `generator`."""
        check_mode(mode, "ProbNet.forward()")
        check_generator(mode, generator, "ProbNet.forward()")
        for layer in self.layers:
            x = layer(x, mode, generator) if isinstance(layer, PROB_TYPES) else layer(x)
        return x

    def prob_layers(self) -> list[ProbLinear | ProbConv2d]:
        return [layer for layer in self.layers if isinstance(layer, PROB_TYPES)]

    def gaussians(self) -> list[GaussianWeights]:
        return [g for layer in self.prob_layers() for g in (layer.weight, layer.bias) if g is not None]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[ProbNet]:
        """Within this context, forwards run without autograd use each std = softplus(rho) computed once on
        entry instead of once per forward (a Monte Carlo evaluation makes many passes with fixed mu and rho;
        softplus over every weight is a third of a per-example forward). Forwards with autograd on ignore
        it, so training inside stays exact; do not change rho inside without autograd."""
        for g in self.gaussians():
            g.freeze(True)
        try:
            yield self
        finally:
            for g in self.gaussians():
                g.freeze(False)

    def kl(self) -> torch.Tensor:
        """KL(Q‖P) summed over every weight and bias of every layer (differentiable in mu and rho)."""
        return torch.stack([layer.kl() for layer in self.prob_layers()]).sum()

    def num_params(self) -> int:
        """Number of network parameters (weights and biases), each carrying one Gaussian: the dimension of Q."""
        return sum(g.mu.numel() for g in self.gaussians())

    def mean_network(self) -> nn.Sequential:
        """A deterministic ``nn.Sequential`` copy with the posterior means (Dropout already Identity), in eval
        mode; every gapbench measure accepts it. Changing it does not change this net."""
        modules = [_deterministic(layer) for layer in self.layers]
        return nn.Sequential(*modules).eval()


def _deterministic(layer: nn.Module) -> nn.Module:
    if not isinstance(layer, PROB_TYPES):
        return copy.deepcopy(layer)
    mu = layer.weight.mu.detach()
    has_bias = layer.bias is not None
    with torch.random.fork_rng(devices=[]):     # the constructors' default init draws from the global RNG
        if isinstance(layer, ProbLinear):
            module = nn.Linear(mu.shape[1], mu.shape[0], bias=has_bias)
        else:
            module = nn.Conv2d(mu.shape[1], mu.shape[0], tuple(mu.shape[2:]), stride=layer.stride,
                               padding=layer.padding, dilation=layer.dilation, bias=has_bias)
    module = module.to(device=mu.device, dtype=mu.dtype)
    with torch.no_grad():
        module.weight.copy_(mu)
        if has_bias:
            module.bias.copy_(layer.bias.mu.detach())
    return module


def _leaves(model: nn.Module, where: str) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise param_error("model", where, "an nn.Sequential (as gapbench.models builds)", type(model).__name__,
                          "Its layers are converted in order, which only a Sequential guarantees.")
    leaves = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            continue
        if isinstance(module, BATCHNORM_TYPES):
            raise GapbenchError(f"{where} cannot convert BatchNorm layer '{name}' ({type(module).__name__}): its "
                                f"running statistics are learned buffers outside the posterior. Fold it into the "
                                f"preceding weight layer first: model = gapbench.layers.fold_batchnorm(model).")
        if not isinstance(module, SUPPORTED):
            supported = ", ".join(sorted(t.__name__ for t in SUPPORTED))
            raise GapbenchError(f"{where} cannot convert module '{name}' of class {type(module).__name__}. "
                                f"Supported module classes: {supported} (BatchNorm: fold it first with "
                                f"gapbench.layers.fold_batchnorm).")
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.padding_mode != "zeros"):
            raise GapbenchError(f"{where} supports Conv2d with groups=1 and padding_mode='zeros'; module "
                                f"'{name}' has groups={module.groups}, padding_mode={module.padding_mode!r}.")
        leaves.append((name, module))
    return leaves


def _means(source: nn.Module | Mapping | None, model: nn.Module, param: str, where: str
           ) -> dict[str, torch.Tensor]:
    """Parameter tensors by name from a module or state_dict, checked against `model`'s names and shapes."""
    expected = {name: p.shape for name, p in model.named_parameters()}
    if source is None:
        state = dict(model.named_parameters())
    elif isinstance(source, nn.Module):
        state = dict(source.state_dict())
    elif isinstance(source, Mapping):
        state = dict(source)
    else:
        raise param_error(param, where, "an nn.Module or a state_dict with model's parameter names",
                          type(source).__name__)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise param_error(param, where, f"a module or state_dict with exactly model's parameter names "
                          f"{sorted(expected)}", f"keys missing {missing}, unexpected {unexpected}",
                          "Pass a module of the same architecture as model, or its state_dict().")
    for name, shape in expected.items():
        got = tuple(torch.as_tensor(state[name]).shape)
        if got != tuple(shape):
            raise param_error(param, where, f"a tensor of shape {tuple(shape)} for '{name}'", f"shape {got}",
                              "Pass a module of the same architecture as model, or its state_dict().")
    return {name: torch.as_tensor(state[name]).detach() for name in expected}


def _gaussian(name: str, posterior: dict, prior: dict, posterior_std: float, prior_std: float
              ) -> GaussianWeights | None:
    if name not in posterior:
        return None
    return GaussianWeights(posterior[name], posterior_std, prior[name], prior_std)


def _convert(name: str, module: nn.Module, posterior: dict, prior: dict, posterior_std: float,
             prior_std: float) -> nn.Module:
    prefix = f"{name}." if name else ""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        weight, bias = (_gaussian(prefix + p, posterior, prior, posterior_std, prior_std) for p in ("weight", "bias"))
        if isinstance(module, nn.Linear):
            return ProbLinear(weight, bias)
        return ProbConv2d(weight, bias, stride=module.stride, padding=module.padding, dilation=module.dilation)
    if isinstance(module, nn.Dropout):
        return nn.Identity()
    return copy.deepcopy(module)


def probabilistic(model: nn.Module, *, prior_mean: nn.Module | Mapping | None = None, prior_std: float,
                  posterior_mean: nn.Module | Mapping | None = None, posterior_std: float | None = None
                  ) -> ProbNet:
    """A :class:`ProbNet` of `model`'s architecture with prior N(prior_mean, prior_std²) and posterior
    N(posterior_mean, posterior_std²) per parameter.

    `prior_mean` / `posterior_mean`: an nn.Module or state_dict with `model`'s parameter names; the prior
    mean defaults to `model`'s own weights (a data-free prior: model at its seeded init; a data-dependent
    one: a net trained on S_prior only), the posterior mean to the prior mean. `posterior_std` defaults to
    `prior_std` (PBB initialises the posterior at the prior, so KL = 0 at the start). Stds, not variances.
    `model` is not modified.
    """
    where = "probabilistic()"
    prior_std = check_positive_float(prior_std, "prior_std", where)
    posterior_std = prior_std if posterior_std is None else check_positive_float(posterior_std, "posterior_std",
                                                                                 where)
    leaves = _leaves(model, where)
    prior = _means(prior_mean, model, "prior_mean", where)
    posterior = prior if posterior_mean is None else _means(posterior_mean, model, "posterior_mean", where)
    layers = [_convert(name, module, posterior, prior, posterior_std, prior_std) for name, module in leaves]
    return ProbNet(layers, prior_std)


def pbb_fcn(seed: int) -> nn.Sequential:
    """PBB's MNIST FCN (pbb/models.py NNet4l): 784-600-600-600-10 with biases and ReLU, initialised as
    PyTorch's default rule from a generator seeded by `seed` (PBB draws truncated normals; set the weights
    you need before converting)."""
    return build_model(ModelConfig(depth=3, width=600, bias=True, init_seed=seed), (784,), 10)


def pbb_cnn(seed: int) -> nn.Sequential:
    """PBB's MNIST CNN (pbb/models.py CNNet4l) for 1×28×28 inputs: conv 32@3×3, ReLU, conv 64@3×3, ReLU,
    max-pool 2, FC 9216→128, ReLU, FC 128→10, with biases; initialised as :func:`pbb_fcn`. It is
    :func:`gapbench.models.pbb_cnn`, the CNN of ``ModelConfig(arch='cnn', options={'layout': 'pbb', ...})``."""
    cfg = ModelConfig(arch="cnn", width=32, bias=True, init_seed=seed,
                      options={"layout": "pbb", "conv2_width": 64, "fc_width": 128})
    return build_model(cfg, (1, 28, 28), 10)


def predict_errors(net: ProbNet, x: torch.Tensor, y: torch.Tensor, *, mode: str,
                   generator: torch.Generator | None, batch_size: int) -> torch.Tensor:
    """Per-example 0-1 errors (argmax of the logits ≠ y) of `net` in `mode`, as a bool tensor of len(x),
    computed in batches of `batch_size` under ``torch.no_grad()``. In 'per_example' mode every example gets
    its own weight draw, so one call gives len(x) independent indicators and K calls give K·len(x)."""
    where = "predict_errors()"
    check_positive_int(batch_size, "batch_size", where)
    check_mode(mode, where)
    check_generator(mode, generator, where)
    if len(x) != len(y):
        raise param_error("y", where, f"a label tensor of the same length as x ({len(x)})", f"length {len(y)}")
    with torch.no_grad(), net.frozen():
        errors = [net(x[i:i + batch_size], mode, generator).argmax(dim=1) != y[i:i + batch_size]
                  for i in range(0, len(x), batch_size)]
    return torch.cat(errors) if errors else torch.zeros(0, dtype=torch.bool, device=y.device)
