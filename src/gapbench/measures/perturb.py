"""The mean 0-1 error of a net under Gaussian weight noise, over a fixed set of draws: the inner loop of the
PAC-Bayes σ search (:mod:`gapbench.measures.sharpness`).

For noise std σ and draw k = 1..n, every parameter θ_i of the (folded, float64) net becomes

    θ_i + s_i(σ)·ε_ik,   s_i(σ) = σ (isotropic)   or   sqrt(σ²θ_i² + eps²) (magnitude-aware),

and the error at σ is (1/n) Σ_k err_k(σ), err_k = the fraction of points with margin ≤ 0 under draw k.

:class:`PerturbedErrors` evaluates that function of σ for many σ (a search calls it ~22 times) without
repeating what does not depend on σ, and with few, large tensor operations:

1. **The draws are made once.** ε_k is the same for every σ (common random numbers: the generator is seeded
   with `seed` and draws parameter by parameter in ``named_parameters`` order, draw after draw), so the
   ~22·n·(number of parameters) ``randn`` calls of a search become n·(number of parameters). The tensors
   are bit for bit those that re-seeding for every σ gives.
2. **The n draws go through the net together** (``torch.func.vmap`` over the stacked parameters: one batched
   matmul or convolution per layer instead of n). The work is the same; the number of operations is n
   times smaller, which is what matters on a loaded multi-core CPU, where every parallel operation waits
   for its slowest thread (measured on the 2-core bench machine under load: ~50 ms per operation at 2
   threads against ~1.5 ms at 1 thread for a 1000×64×64 matmul).
3. **The first weight layer is evaluated once per draw (isotropic noise).** When the net is an
   ``nn.Sequential`` whose first children have no parameters (a Flatten) and whose first parameterised child
   is a Linear or ConvNd, that layer is linear in (weight, bias) jointly for a fixed input h:
   f(h; W + σE_k, b + σe_k) = f(h; W, b) + σ·f(h; E_k, e_k). Both terms are computed once per search
   (1 + n layer evaluations instead of ~22·n); each σ then costs one multiply-add per output element. The
   magnitude-aware s_i(σ) is not proportional to σ, so that search evaluates the first layer for every σ;
   so does a net whose n stored terms would exceed :data:`FIRST_LAYER_BYTES`.

2 and 3 compute the same real numbers in another order, so the logits agree with the one-draw-at-a-time
evaluation to float64 rounding (relative ~1e-15) and the 0-1 errors, signs of margins far larger than that,
are identical: ``tests/test_measures_perturb.py`` checks every error, every σ found and every registered
measure against the explicit loop of ``tests/reference_measures.py``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..inference import EVAL_BATCH, margins_from_logits

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


def _batched_layer(layer: nn.Module, params: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """f(h; θ_k) for every draw k of the stacked parameters `params` of `layer` (Linear or ConvNd), h shared:
    (n_samples, *output shape). A Linear layer is one matmul against the n weight matrices side by side."""
    if not isinstance(layer, nn.Linear):
        return vmap(lambda p: functional_call(layer, p, (h,)))(params)
    weight = params["weight"]                                          # (n_samples, out, in)
    n_samples, width = weight.shape[0], weight.shape[1]
    out = (h @ weight.reshape(n_samples * width, -1).T).reshape(h.shape[0], n_samples, width).transpose(0, 1)
    return out + params["bias"][:, None, :] if "bias" in params else out


class PerturbedErrors:
    """error(σ) of the module docstring for one net, one data set and one set of n draws."""

    def __init__(self, net: nn.Module, base: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 magnitude: bool, magnitude_eps: float, n_samples: int, seed: int):
        self.net, self.base, self.x, self.y = net, base, x, y
        self.magnitude, self.magnitude_eps, self.n_samples = magnitude, magnitude_eps, n_samples
        draws = draw_noise(base, n_samples, seed)
        self.noise = {n: torch.stack([draw[n] for draw in draws]) for n in base}   # (n_samples, *shape)
        self.rows = max(1, EVAL_BATCH // n_samples)       # points per batched pass: n_samples·rows outputs
        self.split = self._split_first_layer()

    def _split_first_layer(self):
        """(the first weight layer, its input h, its parameters' prefix, the rest of the net, and for saving 3:
        f(h; W, b) and the stacked f(h; E_k, e_k), or None) when the net splits there, else None."""
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
            if self.magnitude:
                return layer, h, prefix, rest, None
            one = layer(h[:1])                        # one point's output: the size of the stored terms
            if one.numel() * one.element_size() * h.shape[0] * self.n_samples > FIRST_LAYER_BYTES:
                return layer, h, prefix, rest, None
            clean = layer(h)
            noise = {n[len(prefix):]: e for n, e in self.noise.items() if n.startswith(prefix)}
            return layer, h, prefix, rest, (clean, _batched_layer(layer, noise, h))

    def _params(self, std: float, skip: str | None = None) -> dict[str, torch.Tensor]:
        """θ + s(σ)·ε_k stacked over the draws, for the parameters whose names do not start with `skip`."""
        return {n: w + noise_std(w, std, self.magnitude, self.magnitude_eps) * self.noise[n]
                for n, w in self.base.items() if skip is None or not n.startswith(skip)}

    def _logits(self, std: float, start: int, stop: int) -> torch.Tensor:
        """(n_samples, stop − start, classes): the perturbed outputs of points start..stop, every draw."""
        if self.split is None:
            return vmap(lambda p: functional_call(self.net, p, (self.x[start:stop],)))(self._params(std))
        layer, h, prefix, rest, saved = self.split
        if saved is None:
            params = self._params(std)
            first = _batched_layer(layer, {n[len(prefix):]: p for n, p in params.items() if n.startswith(prefix)},
                                   h[start:stop])
            params = {n: p for n, p in params.items() if not n.startswith(prefix)}
        else:                                         # saving 3: the first layer's parameters are not needed
            params = self._params(std, skip=prefix)
            first = saved[0][start:stop] + std * saved[1][:, start:stop]
        return vmap(lambda p, z: functional_call(rest, p, (z,)))(params, first)

    def __call__(self, std: float) -> float:
        """The mean error over the n draws at noise std `std`."""
        m = self.x.shape[0]
        wrong = torch.zeros(self.n_samples, dtype=torch.float64, device=self.x.device)
        with torch.inference_mode():
            for start in range(0, m, self.rows):
                out = self._logits(std, start, min(m, start + self.rows))
                y = self.y[start:start + self.rows].repeat(self.n_samples)
                margins = margins_from_logits(out.reshape(-1, out.shape[-1]), y)
                wrong += (margins <= 0).double().reshape(self.n_samples, -1).sum(dim=1)   # exact counts
        total = 0.0
        for error in (wrong / m).tolist():               # each draw's mean error, summed in draw order
            total += error
        return total / self.n_samples
