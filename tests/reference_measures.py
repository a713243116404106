"""Slow, obviously correct references for the measures: numpy SVD, python loops, explicit circular-convolution
matrices built column by column, explicit path enumeration. Tiny nets only.

A net is described as a list of dense numpy layers (W, b) by :func:`dense_layers`: BatchNorm folded by its
textbook formula and every Conv2d unrolled into the matrix of the map it computes (built by applying it to
each basis vector), so every reference below only needs matrices.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def folded_weights(model: nn.Sequential) -> list[tuple[np.ndarray, np.ndarray | None, nn.Module]]:
    """(W, b, module) per Linear/Conv2d in PyTorch layout, BatchNorm folded: W ← diag(s) W, b ← s(b − μ) + β,
    s = γ / sqrt(var + eps)."""
    out = []
    for module in model:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            out.append([np64(module.weight), None if module.bias is None else np64(module.bias), module])
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            w, b, layer = out[-1]
            s = np64(module.weight) / np.sqrt(np64(module.running_var) + module.eps)
            b = np.zeros(w.shape[0]) if b is None else b
            out[-1] = [w * s.reshape((-1,) + (1,) * (w.ndim - 1)), s * (b - np64(module.running_mean))
                       + np64(module.bias), layer]
    return [tuple(item) for item in out]


def conv_matrix(weight: np.ndarray, input_shape: tuple[int, int, int], padding: int | tuple,
                circular: bool) -> np.ndarray:
    """The matrix of x ↦ conv2d(x) on a C×H×W input (stride 1), one column per basis vector; circular
    padding by `padding` = (left, right, top, bottom) when `circular`, else zero padding `padding`."""
    n_in = int(np.prod(input_shape))
    kernel = torch.tensor(weight)
    columns = []
    for j in range(n_in):
        basis = torch.zeros(n_in, dtype=torch.float64)
        basis[j] = 1.0
        x = basis.reshape(1, *input_shape)
        if circular:
            y = F.conv2d(F.pad(x, padding, mode="circular"), kernel)
        else:
            y = F.conv2d(x, kernel, padding=padding)
        columns.append(y.reshape(-1).numpy())
    return np.stack(columns, axis=1)


def dense_layers(model: nn.Sequential,
                 input_shape: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every weight layer as a dense (W, b): Linear as is, Conv2d unrolled (its zero padding), BN folded."""
    layers, shape = [], input_shape
    for w, b, module in folded_weights(model):
        if isinstance(module, nn.Conv2d):
            matrix = conv_matrix(w, shape, module.padding, circular=False)
            out_hw = (shape[1] + 2 * module.padding[0] - w.shape[2] + 1,
                      shape[2] + 2 * module.padding[1] - w.shape[3] + 1)
            bias = None if b is None else np.repeat(b, out_hw[0] * out_hw[1])
            layers.append((matrix, bias))
            shape = (w.shape[0], *out_hw)
        else:
            layers.append((w, b))
    return layers


def spectral_norm(a: np.ndarray) -> float:
    return float(np.linalg.svd(a, compute_uv=False)[0])


def frobenius(a: np.ndarray) -> float:
    return math.sqrt(sum(float(v) ** 2 for v in a.reshape(-1)))


def l21_rows(a: np.ndarray) -> float:
    """Σ over rows (output units) of the row's ℓ2 norm, by loops."""
    return sum(math.sqrt(sum(a[i, j] ** 2 for j in range(a.shape[1]))) for i in range(a.shape[0]))


def l21_columns(a: np.ndarray) -> float:
    """Σ over columns (input units) of the column's ℓ2 norm, by loops."""
    return l21_rows(a.T)


def margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Γ_i = f_y − max_{j≠y} f_j by a python loop over examples and classes (outputs of a float64 copy)."""
    import copy
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        out = net(x.double()).numpy()
    result = []
    for i in range(out.shape[0]):
        others = [out[i, j] for j in range(out.shape[1]) if j != int(y[i])]
        result.append(float(out[i, int(y[i])] - max(others)))
    return result


def kth_smallest(values: list[float], k: int) -> float:
    return sorted(values)[k - 1]


def median(values: list[float]) -> float:
    s, n = sorted(values), len(values)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def path_norms(layers: list[tuple[np.ndarray, np.ndarray | None]], p: float) -> np.ndarray:
    """(Σ over every path to output k — from an input unit or from any layer's bias unit — of
    Π |edge|^p)^{1/p}, by enumerating the paths with itertools.product."""
    sizes = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
    num_out = sizes[-1]
    total = np.zeros(num_out)
    for start in range(len(layers) + 1):            # 0: paths from input units; s > 0: from layer s's bias
        if start > 0 and layers[start - 1][1] is None:
            continue
        for units in itertools.product(*[range(s) for s in sizes[start:-1]]):
            for k in range(num_out):
                chain = (*units, k)
                value = 1.0 if start == 0 else abs(layers[start - 1][1][chain[0]]) ** p
                for offset in range(len(chain) - 1):
                    value *= abs(layers[start + offset][0][chain[offset + 1], chain[offset]]) ** p
                total[k] += value
    return total ** (1.0 / p)


def bartlett(weights: list[np.ndarray], inits: list[np.ndarray], bound: float, over: str) -> float:
    l21 = l21_rows if over == "outputs" else l21_columns
    spec = [spectral_norm(w) for w in weights]
    ratio = sum((l21(w - z) / s) ** (2 / 3) for w, z, s in zip(weights, inits, spec, strict=True))
    return bound * math.prod(spec) * ratio ** 1.5


def neyshabur2018(weights: list[np.ndarray], refs: list[np.ndarray], bound: float, depth: int,
                  width: int) -> float:
    spec = [spectral_norm(w) for w in weights]
    ratio = sum((frobenius(w - z) / s) ** 2 for w, z, s in zip(weights, refs, spec, strict=True))
    return bound * depth * math.sqrt(width) * math.prod(spec) * math.sqrt(ratio)


def input_bound(x: torch.Tensor) -> float:
    return max(math.sqrt(sum(float(v) ** 2 for v in row.reshape(-1))) for row in x)


def perturbed_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, std: float, n_samples: int, seed: int,
                    magnitude: bool = False, magnitude_eps: float = 1e-3) -> float:
    """Mean 0-1 error over n_samples draws of θ + std_i·ε (ε drawn parameter by parameter in named_parameters
    order from a generator seeded by `seed`), with an explicit loop over the draws."""
    import copy

    from gapbench.layers import fold_batchnorm
    net = fold_batchnorm(model).double()
    base = {n: p.detach().clone() for n, p in net.named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    errors = []
    for _ in range(n_samples):
        noisy = copy.deepcopy(net)
        with torch.no_grad():
            for name, param in noisy.named_parameters():
                w = base[name]
                eps = torch.randn(w.shape, generator=gen, dtype=torch.float64)
                scale = torch.sqrt(std ** 2 * w ** 2 + magnitude_eps ** 2) if magnitude else std
                param.copy_(w + scale * eps)
        gammas = margins(noisy, x, y)
        errors.append(sum(g <= 0 for g in gammas) / len(gammas))
    return sum(errors) / n_samples


def sigma_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, magnitude: bool = False,
                 target: float = 0.1, n_samples: int = 10, iters: int = 20, std_low: float = 1e-6,
                 std_high: float = 1.0, seed: int = 0, tolerance: float = 0.0, std_rtol: float = 0.0,
                 magnitude_eps: float = 1e-3) -> tuple[float, float, list[float]]:
    """The PAC-Bayes σ search written out: (σ found, its error increase, every σ evaluated in order).

    increase(σ) = perturbed_error(σ) − the unperturbed error; σ passes when increase(σ) ≤ target. std_high
    passing or std_low failing ends the search there. Otherwise a bisection at the midpoint of log σ between
    the largest σ seen to pass and the smallest seen to fail, for at most `iters` midpoints; before each one,
    stop if tolerance > 0 and the passing σ's increase is at least target − tolerance, or if std_rtol > 0 and
    fail/pass ≤ 1 + std_rtol. Returns the largest σ seen to pass."""
    from gapbench.layers import fold_batchnorm
    x = x.double()
    base_margins = margins(fold_batchnorm(model).double(), x, y)
    base = sum(g <= 0 for g in base_margins) / len(base_margins)
    evaluated = []

    def increase(std: float) -> float:
        evaluated.append(std)
        return perturbed_error(model, x, y, std, n_samples, seed, magnitude=magnitude,
                               magnitude_eps=magnitude_eps) - base

    top = increase(std_high)
    if top <= target:
        return std_high, top, evaluated
    bottom = increase(std_low)
    if bottom > target:
        return std_low, bottom, evaluated
    passing, failing, passing_increase = std_low, std_high, bottom
    for _ in range(iters):
        if tolerance > 0 and passing_increase >= target - tolerance:
            break
        if std_rtol > 0 and failing / passing <= 1 + std_rtol:
            break
        middle = math.exp((math.log(passing) + math.log(failing)) / 2)
        found = increase(middle)
        if found <= target:
            passing, passing_increase = middle, found
        else:
            failing = middle
    return passing, passing_increase, evaluated
