"""The mean 0-1 error of a net under Gaussian weight noise, over a fixed set of draws: the inner loop of the
PAC-Bayes σ search (:mod:`gapbench.measures.sharpness`).

For noise std σ and draw k = 1..n, every parameter θ_i of the (folded, float64) net becomes

    θ_i + s_i(σ)·ε_ik,   s_i(σ) = σ (isotropic)   or   sqrt(σ²θ_i² + eps²) (magnitude-aware),

and the error at σ is (1/n) Σ_k err_k(σ), err_k = the fraction of points with margin ≤ 0 under draw k.

:class:`PerturbedErrors` evaluates that function of σ for many σ (a search calls it at most 2 + min(iters, 11)
= 13 times with its default stops, 22 with them off; 5-12 times on the bench's and the zoo's MLPs) without
repeating what does not depend on σ, and with few, large tensor operations:

1. **The draws are made once.** ε_k is the same for every σ (common random numbers: the generator is seeded
   with `seed` and draws parameter by parameter in ``named_parameters`` order, draw after draw), so the
   (σ's evaluated)·n·(number of parameters) ``randn`` calls of a search become n·(number of parameters). The tensors
   are bit for bit those that re-seeding for every σ gives.
2. **The n draws go through the net together** (one batched matmul per Linear layer with the biases added
   by the same call, a parameter-free layer on the n·rows outputs at once, in place for a ReLU, any other
   layer through ``torch.func.vmap``; the perturbed parameters formed once per σ; as many points per pass
   as :data:`PASS_BYTES` allows, all of them for an MLP on a few thousand points). The work is the same;
   the number of operations is n times smaller, which is what matters on a loaded multi-core CPU, where
   every parallel operation waits for its slowest thread (measured on the 2-core bench machine under load:
   ~50 ms per operation at 2 threads against ~1.5 ms at 1 thread for a 1000×64×64 matmul).
3. **The first weight layer is evaluated once per draw (isotropic noise).** When the net is an
   ``nn.Sequential`` whose first children have no parameters (a Flatten) and whose first parameterised child
   is a Linear or ConvNd, that layer is linear in (weight, bias) jointly for a fixed input h:
   f(h; W + σE_k, b + σe_k) = f(h; W, b) + σ·f(h; E_k, e_k). Both terms are computed once per search
   (1 + n layer evaluations instead of n per σ); each σ then costs one multiply-add per output element. The
   magnitude-aware s_i(σ) is not proportional to σ, so that search evaluates the first layer for every σ;
   so does a net whose n stored terms would exceed :data:`FIRST_LAYER_BYTES`.
4. **A σ that fails is abandoned early, likeliest errors first.** The search only asks whether the mean
   error passes a monotone test (``fails``: mean − base > target). The count of wrong (draw, point) pairs
   over some of the points is at most the count over all of them, and the mean (each draw's count ÷ m,
   summed in draw order, ÷ n: the same float operations either way) only grows with the counts, so once
   the mean over the points evaluated so far fails, the full mean fails too. Each pair's margin at the
   last σ that evaluated it is kept. When those last margins predict at least :data:`ABANDON_PREDICTED` of
   the fewest wrong pairs that fail the test, the points go in two parts: first every point with a
   predicted error (most draws wrong first) and :data:`ABANDON_EXTRA` of the points more (the smallest
   margins), then the rest; a σ whose first part fails is decided there. Otherwise the points go in one
   part, as without a test. Measured on the bench's MLP (1000 points, 10 draws): near the σ each search
   converges to, a failing σ is decided after 55-60 % of the points (the ~1000 wrong pairs are spread over
   ~530 points, one or two draws each). With the search's stops off (22 σ's) the two searches evaluate 19.4
   and 18.7 σ's worth of points; with its default stops they end before the bisection is close to the
   target from above, and evaluate 9.0 and 9.8 σ's worth of points for 9 and 10 σ's. A σ that passes is
   evaluated on every point, in at most two passes.

2 and 3 compute the same real numbers in another order, so the logits agree with the one-draw-at-a-time
evaluation to float64 rounding (relative ~1e-15) and the 0-1 errors, signs of margins far larger than that,
are identical. 4 changes which points are computed for a failing σ, never a mean that passes (the only
means the search keeps: it uses a failing mean only to know that it fails).
``tests/test_measures_perturb.py`` checks every error, every σ found and every registered measure against
the explicit loop of ``tests/reference_measures.py``, and the early stop against the full evaluation.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..inference import EVAL_BATCH, margins, margins_from_logits

FIRST_LAYER_BYTES = 256 * 2 ** 20   # memory cap on the n stored first-layer terms σ·f(h; E_k, e_k) (bytes)
PASS_BYTES = 64 * 2 ** 20           # memory cap on one batched pass's widest activation over the draws (bytes)
AFFINE_IN_PARAMS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)   # outputs linear in (weight, bias) jointly
ABANDON_PREDICTED = 0.8  # split an evaluation in two when the last margins predict this fraction of the fewest
                         # wrong pairs that fail the test (see 4.)
ABANDON_EXTRA = 0.05     # points added to the first part beyond those with a predicted error (the pairs that
                         # turn wrong between one σ and the next are mostly among them)


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
    (n_samples, *output shape). A Linear layer on (rows, in) inputs is one matmul against the n weight
    matrices side by side, with the biases added by the same call."""
    if not isinstance(layer, nn.Linear):
        return vmap(lambda p: functional_call(layer, p, (h,)))(params)
    weight = params["weight"]                                          # (n_samples, out, in)
    n_samples, width = weight.shape[0], weight.shape[1]
    side_by_side = weight.reshape(n_samples * width, -1).T
    if h.dim() == 2 and "bias" in params:
        out = torch.addmm(params["bias"].reshape(-1), h, side_by_side)
    else:
        out = h @ side_by_side
        out = out + params["bias"].reshape(-1) if "bias" in params else out
    return out.reshape(*h.shape[:-1], n_samples, width).movedim(-2, 0)


def _each_draw(layer: nn.Module, params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """f(z_k; θ_k) for every draw k, z (n_samples, rows, *shape) holding each draw's own inputs (owned by
    the caller: a ReLU overwrites it). A Linear layer is one batched matmul with the biases added by the same
    call, a parameter-free layer runs on the n·rows inputs at once, any other layer through vmap."""
    if not params:
        if type(layer) is nn.ReLU:
            return z.relu_()
        out = layer(z.reshape(-1, *z.shape[2:]))
        return out.reshape(*z.shape[:2], *out.shape[1:])
    if isinstance(layer, nn.Linear) and z.dim() == 3 and set(params) <= {"weight", "bias"}:
        weight = params["weight"].transpose(1, 2)                     # (n_samples, in, out)
        return torch.baddbmm(params["bias"][:, None, :], z, weight) if "bias" in params else torch.bmm(z, weight)
    return vmap(lambda p, x: functional_call(layer, p, (x,)))(params, z)


class PerturbedErrors:
    """error(σ) of the module docstring for one net, one data set and one set of n draws."""

    def __init__(self, net: nn.Module, base: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 magnitude: bool, magnitude_eps: float, n_samples: int, seed: int):
        self.net, self.base, self.x, self.y = net, base, x, y
        self.magnitude, self.magnitude_eps, self.n_samples = magnitude, magnitude_eps, n_samples
        draws = draw_noise(base, n_samples, seed)
        self.noise = {n: torch.stack([draw[n] for draw in draws]) for n in base}   # (n_samples, *shape)
        self.split = self._split_first_layer()
        self.rows = self._pass_rows()                     # points per batched pass, every draw
        self.last: torch.Tensor | None = None             # (n_samples, m) margins last found: see _order

    def _split_first_layer(self):
        """(the first weight layer, its input h, its parameters' prefix, the (name, child) pairs after it, and
        for saving 3: f(h; W, b) and the stacked f(h; E_k, e_k), or None) when the net splits there, else
        None."""
        found = _first_layer(self.net)
        if found is None:
            return None
        position, name = found
        children = list(self.net.named_children())
        layer, rest = children[position][1], children[position + 1:]
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

    def _pass_rows(self) -> int:
        """Points per batched pass: EVAL_BATCH outputs over the draws, or more for a net that splits at its
        first layer when the widest activation of all draws for that many points stays under PASS_BYTES (an MLP
        then evaluates all its points in one pass: fewer operations, each a thread hand-off under load)."""
        rows = max(1, EVAL_BATCH // self.n_samples)
        if self.split is None:
            return rows
        layer, h, _, rest, _ = self.split
        with torch.inference_mode():
            z = h[:1]
            widest = z.numel() * z.element_size()
            for child in [layer] + [child for _, child in rest]:
                z = child(z)
                widest = max(widest, z.numel() * z.element_size())
        return max(rows, PASS_BYTES // (self.n_samples * widest))

    def _params(self, std: float) -> dict[str, torch.Tensor]:
        """θ + s(σ)·ε_k stacked over the draws (not the first layer's when its outputs are stored: saving 3)."""
        skip = None if self.split is None or self.split[4] is None else self.split[2]
        return {n: w + noise_std(w, std, self.magnitude, self.magnitude_eps) * self.noise[n]
                for n, w in self.base.items() if skip is None or not n.startswith(skip)}

    def _logits(self, params: dict[str, torch.Tensor], std: float, points: slice | torch.Tensor) -> torch.Tensor:
        """(n_samples, rows, classes): the outputs of the points `points` (a slice or an index) under every
        draw, `params` from :meth:`_params`."""
        if self.split is None:
            return vmap(lambda p: functional_call(self.net, p, (self.x[points],)))(params)
        layer, h, prefix, rest, saved = self.split
        if saved is not None:                         # saving 3: f(h; W, b) + σ·f(h; E_k, e_k), stored
            z = saved[0][points] + std * saved[1][:, points]
        else:
            z = _batched_layer(layer, {n[len(prefix):]: p for n, p in params.items() if n.startswith(prefix)},
                               h[points])
        for name, child in rest:
            z = _each_draw(child, {n[len(name) + 1:]: p for n, p in params.items() if n.startswith(f"{name}.")}, z)
        return z

    def _order(self) -> torch.Tensor:
        """The points, likeliest to be misclassified first: most draws with margin ≤ 0 when last evaluated,
        then the smallest such margin (the unperturbed margins before the first evaluation)."""
        if self.last is None:
            self.last = margins(self.net, self.x, self.y).expand(self.n_samples, -1).clone()
        by_margin = torch.argsort(self.last.min(dim=0).values, stable=True)
        return by_margin[torch.argsort((self.last <= 0).sum(dim=0)[by_margin], descending=True, stable=True)]

    def _mean(self, wrong: torch.Tensor) -> float:
        """(1/n) Σ_k wrong_k / m, the draws' errors summed in draw order: monotone in every count."""
        total = 0.0
        for error in (wrong / self.x.shape[0]).tolist():
            total += error
        return total / self.n_samples

    def _parts(self, fails: Callable[[float], bool] | None) -> list[slice | torch.Tensor]:
        """The points of one evaluation, in passes of at most `rows` points. With `fails`: the likeliest errors
        first, in two parts when the last margins predict at least ABANDON_PREDICTED of the fewest wrong pairs
        that fail (the first part: every point with a predicted error and ABANDON_EXTRA of the points more)."""
        m = self.x.shape[0]
        if fails is None:
            return [slice(start, start + self.rows) for start in range(0, m, self.rows)]
        order = self._order()
        predicted = (self.last[:, order] <= 0).sum(dim=0)               # per point, most first
        if int(predicted.sum()) < ABANDON_PREDICTED * self.n_samples * self._fewest_failing(fails):
            return self._parts(None)                  # not predicted to fail: in order, no gathering
        first = min(m, int((predicted > 0).sum()) + math.ceil(ABANDON_EXTRA * m))
        return [order[start:min(end, start + self.rows)] for begin, end in ((0, first), (first, m))
                for start in range(begin, end, self.rows)]

    def _fewest_failing(self, fails: Callable[[float], bool]) -> int:
        """The smallest count c such that c wrong points in every draw fail the test (m + 1 if none does)."""
        m = self.x.shape[0]
        low, high = 0, m + 1
        while low < high:
            mid = (low + high) // 2
            if mid <= m and fails(self._mean(torch.full((self.n_samples,), float(mid), dtype=torch.float64))):
                high = mid
            else:
                low = mid + 1
        return low

    def __call__(self, std: float, fails: Callable[[float], bool] | None = None) -> float:
        """The mean error over the n draws at noise std `std`. With `fails`, a monotone test of a mean error
        (true for a mean ⇒ true for every larger one), the points are evaluated likeliest errors first and
        the evaluation stops as soon as the partial mean fails the test, returning that partial mean (see 4.
        of the module docstring); a mean that passes is always the full one."""
        wrong = torch.zeros(self.n_samples, dtype=torch.float64, device=self.x.device)
        with torch.inference_mode():
            params = self._params(std)
            for points in self._parts(fails):
                out = self._logits(params, std, points)
                y = self.y[points].repeat(self.n_samples)
                found = margins_from_logits(out.reshape(-1, out.shape[-1]), y).reshape(self.n_samples, -1)
                if self.last is not None:
                    self.last[:, points] = found
                wrong += (found <= 0).double().sum(dim=1)             # exact counts
                if fails is not None and fails(self._mean(wrong)):
                    break
        return self._mean(wrong)
