"""Operator (spectral) norms of weight layers: exact SVD, power iteration, and the two conv-layer forms.

For a Linear layer the operator norm is ‖W‖₂ = σ_max(W). For a Conv2d layer two quantities are offered, and
named apart because only one of them is the operator norm:

- :func:`conv_operator_norm_fft` (exact for circular padding, Sedghi, Gupta & Long 2019, Thm 6): the linear
  map x ↦ K ⋆ x on a c_in × H × W input with circular padding and stride 1 is block-diagonalized by the 2-D
  DFT; its singular values are those of the c_out × c_in matrices

      P(u, v) = Σ_{a,b} K[:, :, a, b] · exp(−2πi (a·u/H + b·v/W)),   u < H, v < W,

  (the 2-D DFT of the kernel zero-padded to H × W), so ‖conv‖₂ = max_{u,v} σ_max(P(u, v)). With zero
  padding (PyTorch's default) the same number is the standard approximation (exact only for circular
  padding); strides other than 1 are refused.
- :func:`conv_reshaped_spectral`: σ_max of the (c_out, c_in·kh·kw) reshaped kernel, the cheap approximation
  used by Yoshida & Miyato 2017 and by Jiang et al. 2020's non-FFT measures. It is *not* the operator norm.

Power iteration (``method='power'``) runs a stated number of iterations from a seeded random start; it
approaches σ_max from below.

References:
    Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019, Theorem 6.
    Yoshida & Miyato, "Spectral Norm Regularization ...", arXiv:1705.10941, §3.2.
"""

from __future__ import annotations

import torch

from ..errors import GapbenchError, check_choice, check_positive_int, param_error
from ..layers import WeightLayer
from .shared import shared

CONV_MODES = ("fft", "reshaped")
METHODS = ("exact", "power")
POWER_ITERS = 100   # default power-iteration count: enough for ~1e-6 relative accuracy on typical nets


def spectral_norms(matrices: torch.Tensor, method: str = "exact", iters: int = POWER_ITERS,
                   seed: int = 0) -> torch.Tensor:
    """σ_max of each matrix in a (..., m, n) real or complex batch, by SVD ('exact') or power iteration."""
    if method == "exact":
        return torch.linalg.matrix_norm(matrices, ord=2)
    gen = torch.Generator(device=matrices.device).manual_seed(seed)
    real_dtype = torch.float64 if matrices.dtype in (torch.float64, torch.complex128) else torch.float32
    v = torch.randn(matrices.shape[:-2] + (matrices.shape[-1],), generator=gen, dtype=real_dtype,
                    device=matrices.device).to(matrices.dtype)
    for _ in range(iters):                   # v ← AᴴA v / ‖AᴴA v‖
        v = (matrices.mH @ (matrices @ v[..., None]))[..., 0]
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(real_dtype).tiny)
    return (matrices @ v[..., None])[..., 0].norm(dim=-1)


def conv_frequency_matrices(weight: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    """The (H·W, c_out, c_in) complex matrices P(u, v) of Sedghi et al. (the 2-D DFT of the kernel
    zero-padded to H×W)."""
    height, width = input_hw
    if weight.shape[-2] > height or weight.shape[-1] > width:
        raise param_error("input_shape", "conv_operator_norm_fft()",
                          f"a spatial size at least the kernel size {tuple(weight.shape[-2:])}",
                          tuple(input_hw))
    transform = torch.fft.fft2(weight, s=(height, width))          # (c_out, c_in, H, W)
    return transform.permute(2, 3, 0, 1).reshape(height * width, weight.shape[0], weight.shape[1])


def conv_operator_norm_fft(weight: torch.Tensor, input_hw: tuple[int, int], *, method: str = "exact",
                           iters: int = POWER_ITERS, seed: int = 0) -> torch.Tensor:
    """‖x ↦ K ⋆ x‖₂ for a stride-1 convolution with circular padding on an H×W input: max over the H·W
    frequencies of σ_max(P(u, v)) (Sedghi, Gupta & Long 2019, Thm 6). A 0-dim float64 tensor."""
    return spectral_norms(conv_frequency_matrices(weight.double(), input_hw), method, iters, seed).max()


def conv_reshaped_spectral(weight: torch.Tensor, *, method: str = "exact", iters: int = POWER_ITERS,
                           seed: int = 0) -> torch.Tensor:
    """σ_max of the (c_out, c_in·kh·kw) reshaped kernel: an approximation, not the operator norm of the conv
    (Yoshida & Miyato 2017, §3.2). A 0-dim float64 tensor."""
    return spectral_norms(weight.double().reshape(weight.shape[0], -1), method, iters, seed)


@shared
def layer_operator_norm(layer: WeightLayer, weight: torch.Tensor | None = None, *, conv: str = "fft",
                        method: str = "exact", iters: int = POWER_ITERS, seed: int = 0,
                        caller: str = "layer_operator_norm()") -> torch.Tensor:
    """The operator norm of `layer` (or of the map with kernel `weight` in place of the layer's, e.g. W − Z):
    σ_max(W) for Linear; for Conv2d, :func:`conv_operator_norm_fft` (conv='fft', needs the layer's input
    shape) or :func:`conv_reshaped_spectral` (conv='reshaped')."""
    weight = layer.weight if weight is None else weight
    if layer.kind == "linear":
        return spectral_norms(weight, method, iters, seed)
    if conv == "reshaped":
        return conv_reshaped_spectral(weight, method=method, iters=iters, seed=seed)
    if layer.stride != (1, 1):
        raise GapbenchError(f"{caller} with conv='fft' needs stride-1 convolutions; layer '{layer.name}' has "
                            f"stride {layer.stride}. Pass conv='reshaped' (an approximation) instead.")
    if layer.input_shape is None:
        raise param_error("input_shape", caller, "the (C, H, W) input shape (or data to infer it from) for a "
                          "net with Conv2d layers and conv='fft'", None,
                          "Pass input_shape=(C, H, W), or data, or conv='reshaped' (an approximation).")
    return conv_operator_norm_fft(weight, layer.input_shape[-2:], method=method, iters=iters, seed=seed)


def check_norm_params(conv: str, method: str, iters: int, seed: int, caller: str) -> None:
    """Validate the shared operator-norm parameters of a measure."""
    check_choice(conv, "conv", caller, CONV_MODES)
    check_choice(method, "method", caller, METHODS)
    check_positive_int(iters, "iters", caller)
    check_positive_int(seed, "seed", caller, minimum=0)
