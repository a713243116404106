"""Slow, obviously correct references for gapbench.analysis.slices: every point goes through the whole network in
float64, one radius at a time (the implementation `fitted_threshold` had before the ray factorization)."""

import copy

import torch

from gapbench.analysis.slices import predicted_label


def fitted_threshold_reference(model, dim, r_inner, r_outer, n_dirs=2000, n_radii=241, seed=0):
    """τ minimizing the disagreements of 1[‖x‖ > τ] with the network's labels at x = r·u (see
    gapbench.analysis.slices.fitted_threshold), every label from a full float64 forward pass of r·u."""
    model = copy.deepcopy(model).double()
    gen = torch.Generator().manual_seed(seed)
    gap = r_outer - r_inner
    dirs = torch.randn(n_dirs, dim, generator=gen, dtype=torch.float64)
    dirs /= dirs.norm(dim=1, keepdim=True)
    radii = torch.linspace(r_inner - gap, r_outer + gap, n_radii, dtype=torch.float64)
    ones = torch.stack([(predicted_label(model, r * dirs) == 1).double().sum() for r in radii])
    zeros = n_dirs - ones
    before = torch.cat([torch.zeros(1, dtype=ones.dtype), ones.cumsum(0)])
    after = torch.cat([zeros.flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=ones.dtype)])
    best = int(torch.argmin(before + after))
    cuts = torch.cat([radii[:1] - gap / n_radii, (radii[1:] + radii[:-1]) / 2, radii[-1:] + gap / n_radii])
    return float(cuts[best])
