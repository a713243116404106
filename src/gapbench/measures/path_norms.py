"""Path norms, aggregated over the K outputs.

Per output k, ‖w̄_k‖_p = (Σ_{paths to output k} Π_{edges} |w|^p)^{1/p}, where a bias is an edge from a
constant-1 unit (so paths that start at a bias are counted). The per-output vector comes from one forward pass
of the |W|^p network on an all-ones input: :func:`gapbench.analysis.deep_paths.path_norms_per_output`. The
registered measures aggregate it:

    path_norm_l2 = sqrt(Σ_k ‖w̄_k‖₂²)   (the ℓ2 norm of all path weights of all outputs)
    path_norm_l1 = Σ_k ‖w̄_k‖₁          (the ℓ1 norm of all path weights of all outputs)

Jiang et al. 2020's "path.norm", Eq. (44), is Σ_k ‖w̄_k‖₂² = path_norm_l2² (``jiang2020_path_norm``).
Nets with pooling between weight layers are refused by the deep-path code; conv nets need data or
``input_shape``.

References:
    Neyshabur, Tomioka & Srebro 2015, "Norm-based capacity control", §4 (ℓ_p path regularizer).
    Kawaguchi, Kaelbling & Bengio, arXiv:1710.05468 v5, §5 (‖w̄_k‖₁, ‖w̄_k‖₂).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..analysis.deep_paths import path_norms_per_output
from ._base import MEASURES, XY, double_copy, input_shape_of, where
from .shared import shared


@shared
def path_norms(model: nn.Module, p: float, data: XY | None = None, input_shape=None,
               caller: str = "path_norms()") -> torch.Tensor:
    """Per-output path norms (‖w̄_1‖_p, …, ‖w̄_K‖_p), float64 (K,)."""
    # fold BatchNorm in float64 too: the deep-path code folds the model as given
    return path_norms_per_output(double_copy(model), p, input_shape=input_shape_of(data, input_shape, caller))


@MEASURES.register("path_norm_l2", kind="path", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Neyshabur, Tomioka & Srebro 2015, §4 (ℓ2 path norm); Kawaguchi, Kaelbling & Bengio "
                    "2017/2020, §5 (‖w̄_k‖₂), aggregated as sqrt(Σ_k ‖w̄_k‖₂²)")
def path_norm_l2(model: nn.Module, data: XY | None, init: nn.Module | None, *, input_shape=None) -> float:
    """sqrt(Σ_k ‖w̄_k‖₂²), ‖w̄_k‖₂² = Σ_{paths to k} Π_edges w²."""
    norms = path_norms(model, 2.0, data, input_shape, where("path_norm_l2"))
    return math.sqrt(float(norms.pow(2).sum()))


@MEASURES.register("path_norm_l1", kind="path", needs_data=False, needs_init=False, higher_is_better=False,
          reference="Neyshabur, Tomioka & Srebro 2015, §4 (ℓ1 path norm); Kawaguchi, Kaelbling & Bengio "
                    "2017/2020, Thm 8 (Σ_k ‖w̄_k‖₁)")
def path_norm_l1(model: nn.Module, data: XY | None, init: nn.Module | None, *, input_shape=None) -> float:
    """Σ_k ‖w̄_k‖₁, ‖w̄_k‖₁ = Σ_{paths to k} Π_edges |w|."""
    return float(path_norms(model, 1.0, data, input_shape, where("path_norm_l1")).sum())
