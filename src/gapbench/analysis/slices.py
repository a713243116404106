"""Two-dimensional slices of a trained hypersphere classifier (NK 2019 §4, "microscopically complex,
macroscopically simple"; SPEC §4.4).

A slice is the plane through the origin spanned by two points a, b (two training points, or two test
points). The macroscopic rule of the task is spherical: label 1 iff ‖x‖ > (r_inner + r_outer)/2. The
microscopic complexity near a point c is the fraction of the disc of radius `radius` around c *in its plane*
where the network's label differs from a spherical rule 1[‖x‖ > τ]. Two rules are measured:

- the task's, τ = (r_inner + r_outer)/2 (``near_*_disagreement``);
- the network's own large-scale rule, τ = :func:`fitted_threshold` (``near_*_disagreement_fitted``): the
  radius that best separates the network's labels along rays in random directions. A network whose boundary
  is a sphere of another radius disagrees with the task's rule near *every* point; against its own fitted
  sphere only the local bends count, which is what "macroscopically simple, microscopically complex"
  (NK 2019 §4) is about. The claim uses this one (a reconstructed reading of SPEC §4.4 [verify]).
 The radius is ``radius_fraction`` times the gap
r_outer − r_inner between the spheres, default 1.0: SPEC §4.4's "radius ≈ spacing", read as the spacing of the
spheres, which is also the distance from a training point to its mirror in S'. A reconstructed choice
[verify]: NK show pictures, not a number. At 0.5 the disc around a point stops at the midpoint sphere, so it
cannot see the bend that puts S' on the training point's side (measured: 0.0 near training points).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..evaluate import logits


def plane_basis(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthonormal (2, d) basis of span{a, b} by Gram-Schmidt; e1 is along a."""
    e1 = a / a.norm()
    rest = b - (b @ e1) * e1
    return torch.stack([e1, rest / rest.norm()])


def spherical_label(points: torch.Tensor, r_inner: float, r_outer: float,
                    threshold: float | None = None) -> torch.Tensor:
    """1[‖x‖ > τ], τ = `threshold`, by default the midpoint (r_inner + r_outer)/2 (the task's rule)."""
    tau = (r_inner + r_outer) / 2 if threshold is None else threshold
    return (points.norm(dim=-1) > tau).long()


def fitted_threshold(model, dim: int, r_inner: float, r_outer: float, n_dirs: int = 2000, n_radii: int = 241,
                     seed: int = 0, dtype=torch.float64) -> float:
    """The radius τ of the spherical rule 1[‖x‖ > τ] closest to `model` at large scale: the network labels
    x = r·u for `n_dirs` random directions u and `n_radii` radii r evenly spaced over
    [r_inner − gap, r_outer + gap] (gap = r_outer − r_inner), and τ minimizes the number of those labels
    that differ from the rule (τ ranges over the radii grid and its midpoints; ties: the smallest τ)."""
    gen = torch.Generator().manual_seed(seed)
    gap = r_outer - r_inner
    dirs = torch.randn(n_dirs, dim, generator=gen, dtype=dtype)
    dirs /= dirs.norm(dim=1, keepdim=True)
    radii = torch.linspace(r_inner - gap, r_outer + gap, n_radii, dtype=dtype)
    ones = torch.stack([(predicted_label(model, r * dirs) == 1).double().sum() for r in radii])  # per radius
    # rule with τ between radii[i-1] and radii[i] labels radii[i:] as 1: errors = ones before + zeros after
    zeros = n_dirs - ones
    before = torch.cat([torch.zeros(1, dtype=ones.dtype), ones.cumsum(0)])          # ones at radii[:i]
    after = torch.cat([zeros.flip(0).cumsum(0).flip(0), torch.zeros(1, dtype=ones.dtype)])  # zeros at radii[i:]
    best = int(torch.argmin(before + after))
    cuts = torch.cat([radii[:1] - gap / n_radii, (radii[1:] + radii[:-1]) / 2, radii[-1:] + gap / n_radii])
    return float(cuts[best])


def predicted_label(model, points: torch.Tensor) -> torch.Tensor:
    return logits(model, points).argmax(dim=1)


def slice_image(model, a, b, extent: float, resolution: int, r_inner: float, r_outer: float):
    """Network and spherical labels on a resolution² grid over [−extent, extent]² of the plane of a, b.
    Returns (net_labels, sphere_labels, coords of a, coords of b), the labels as (res, res) uint8 arrays."""
    basis = plane_basis(a, b)
    ticks = torch.linspace(-extent, extent, resolution, dtype=a.dtype)
    grid_a, grid_b = torch.meshgrid(ticks, ticks, indexing="xy")
    coeffs = torch.stack([grid_a.reshape(-1), grid_b.reshape(-1)], dim=1)
    points = coeffs @ basis
    net = predicted_label(model, points).reshape(resolution, resolution)
    sphere = spherical_label(points, r_inner, r_outer).reshape(resolution, resolution)
    return (net.to(torch.uint8).numpy(), sphere.to(torch.uint8).numpy(), (basis @ a).numpy(),
            (basis @ b).numpy())


def local_disagreement(model, centers: torch.Tensor, partners: torch.Tensor, radius: float, n_samples: int,
                       r_inner: float, r_outer: float, seed: int, threshold: float | None = None) -> float:
    """Mean over centers c of the fraction of the disc of radius `radius` around c, in the plane of (c, partner),
    where the network's label differs from the spherical rule 1[‖x‖ > `threshold`] (default: the midpoint;
    uniform samples in the disc, seeded)."""
    gen = torch.Generator().manual_seed(seed)
    fractions = []
    for center, partner in zip(centers, partners, strict=True):
        basis = plane_basis(center, partner).to(center.dtype)
        angle = torch.rand(n_samples, generator=gen, dtype=center.dtype) * 2 * math.pi
        rad = radius * torch.rand(n_samples, generator=gen, dtype=center.dtype).sqrt()   # uniform in the disc
        offsets = torch.stack([rad * angle.cos(), rad * angle.sin()], dim=1) @ basis
        points = center[None, :] + offsets
        disagree = predicted_label(model, points) != spherical_label(points, r_inner, r_outer, threshold)
        fractions.append(float(disagree.double().mean()))
    return float(np.mean(fractions))
