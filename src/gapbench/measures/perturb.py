"""The mean 0-1 error of a net under Gaussian weight noise, over a fixed set of draws: the inner loop of the
PAC-Bayes σ search (:mod:`gapbench.measures.sharpness`).

For noise std σ and draw k = 1..n, every parameter θ_i of the (folded, float64) net becomes

    θ_i + s_i(σ)·ε_ik,   s_i(σ) = σ (isotropic)   or   sqrt(σ²θ_i² + eps²) (magnitude-aware),

and the error at σ is (1/n) Σ_k err_k(σ), err_k = the fraction of points with margin ≤ 0 under draw k.

:class:`PerturbedErrors` evaluates that function of σ for many σ (a search calls it ~22 times) without
repeating what does not depend on σ. Three savings, none of which changes a stored value:

1. **The draws are made once.** ε_k is the same for every σ (common random numbers: the generator is seeded
   with `seed` and draws parameter by parameter in ``named_parameters`` order, draw after draw), so the
   ~22 × n × (number of parameters) ``randn`` calls of a search become n × (number of parameters). The
   tensors are bit-for-bit those that re-seeding for every σ gives.
2. **The first weight layer is evaluated once per draw (isotropic noise).** When the net is an
   ``nn.Sequential`` whose first children have no parameters (a Flatten) and whose first parameterised child
   is a Linear or ConvNd, that layer's output is affine in its input and *linear in (weight, bias) jointly*:
   f(h; W + σE_k, b + σe_k) = f(h; W, b) + σ·f(h; E_k, e_k), with h the unperturbed input. Both terms are
   computed once per search (1 + n layer evaluations instead of ~22·n); each σ then costs one multiply-add
   per output element. This is the same real number computed in a different order, so the logits agree with
   the direct evaluation to float64 rounding (relative ~1e-15), and the 0-1 errors (signs of margins far
   larger than that) are identical: ``tests/test_measures_perturb.py`` checks every error and every σ found
   against the direct evaluation of ``tests/reference_measures.py``. The magnitude-aware s_i(σ) is not
   proportional to σ, so that search evaluates the first layer for every σ; so does any net whose first
   layer output would need more than :data:`FIRST_LAYER_BYTES` for the n stored terms.
3. **A σ that fails is abandoned early.** The search only asks whether mean error − base ≤ target. The
   running sum of the errors (nonnegative floats, added in the same order as the full mean) only grows, so
   once (partial sum)/n − base > target the full mean fails too; the remaining draws are skipped and the
   partial mean (which also fails) is returned. ``give_up=False`` always computes the full mean.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call

from ..evaluate import EVAL_BATCH, margins_from_logits

FIRST_LAYER_BYTES = 256 * 2 ** 20   # memory cap on the n stored first-layer terms σ·f(h; E_k, e_k) (bytes)
AFFINE_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)   # outputs linear in (weight, bias) jointly


def noise_std(weight: torch.Tensor, std: float, magnitude: bool, magnitude_eps: float) -> torch.Tensor | float:
    """s(σ) of the module docstring: σ, or sqrt(σ²θ² + eps²) elementwise."""
    return torch.sqrt(std ** 2 * weight ** 2 + magnitude_eps ** 2) if magnitude else std


def draw_noise(base: dict[str, torch.Tensor], n_samples: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """ε_k for k = 1..n: standard normals shaped like each parameter, drawn from one generator seeded by
    `seed`, parameter by parameter within a draw, draw after draw."""
    device = next(iter(base.values())).device
    gen = torch.Generator(device=device).manual_seed(seed)
    return [{n: torch.randn(w.shape, generator=gen, dtype=w.dtype, device=w.device) for n, w in base.items()}
            for _ in range(n_samples)]


def _first_layer(net: nn.Module) -> tuple[int, str] | None:
    """(position, name) of the first parameterised child of a Sequential `net` when it is affine in its
    parameters and every child before it has none; None otherwise."""
    if not isinstance(net, nn.Sequential):
        return None
    for position, (name, child) in enumerate(net.named_children()):
        if next(child.parameters(), None) is None:
            continue
        names = {n for n, _ in child.named_parameters()}
        return (position, name) if isinstance(child, AFFINE_IN_PARAMS) and names <= {"weight", "bias"} else None
    return None


class PerturbedErrors:
    """error(σ) of the module docstring for one net, one data set and one set of n draws."""

    def __init__(self, net: nn.Module, base: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 magnitude: bool, magnitude_eps: float, n_samples: int, seed: int):
        self.net, self.base, self.x, self.y = net, base, x, y
        self.magnitude, self.magnitude_eps, self.n_samples = magnitude, magnitude_eps, n_samples
        self.noise = draw_noise(base, n_samples, seed)
        self.split = None if magnitude else self._split_first_layer()

    def _split_first_layer(self):
        """(rest of the net, prefix of the first layer's parameter names, f(h; W, b), [f(h; E_k, e_k)]) when
        saving 2 applies, else None."""
        found = _first_layer(self.net)
        if found is None:
            return None
        position, name = found
        children = list(self.net.named_children())
        layer = children[position][1]
        rest = nn.Sequential(OrderedDict(children[position + 1:]))    # same names: the parameters' keys hold
        prefix = f"{name}."
        with torch.inference_mode():
            h = nn.Sequential(OrderedDict(children[:position]))(self.x)
            clean = layer(h)
            if clean.numel() * clean.element_size() * self.n_samples > FIRST_LAYER_BYTES:
                return None
            terms = [functional_call(layer, {n[len(prefix):]: e for n, e in eps.items() if n.startswith(prefix)},
                                     (h,)) for eps in self.noise]
        return rest, prefix, clean, terms

    def _params(self, eps: dict[str, torch.Tensor], std: float, skip: str | None) -> dict[str, torch.Tensor]:
        return {n: w + noise_std(w, std, self.magnitude, self.magnitude_eps) * eps[n]
                for n, w in self.base.items() if skip is None or not n.startswith(skip)}

    def _logits(self, k: int, std: float) -> torch.Tensor:
        eps = self.noise[k]
        if self.split is None:
            params = self._params(eps, std, None)
            return torch.cat([functional_call(self.net, params, (self.x[i:i + EVAL_BATCH],))
                              for i in range(0, self.x.shape[0], EVAL_BATCH)])
        rest, prefix, clean, terms = self.split
        params = self._params(eps, std, prefix)
        return torch.cat([functional_call(rest, params, (clean[i:i + EVAL_BATCH] + std * terms[k][i:i + EVAL_BATCH],))
                          for i in range(0, self.x.shape[0], EVAL_BATCH)])

    def __call__(self, std: float, *, fails: Callable[[float], bool] | None = None) -> float:
        """The mean error over the n draws at noise std `std`. With `fails` (a test of a mean error that is
        monotone: once true for a mean, true for every larger one), stop as soon as the running mean
        (partial sum / n) fails it and return that partial mean, which fails as the full mean would."""
        total = 0.0
        with torch.inference_mode():
            for k in range(self.n_samples):
                total += float((margins_from_logits(self._logits(k, std), self.y) <= 0).double().mean())
                if fails is not None and fails(total / self.n_samples):
                    break
        return total / self.n_samples
