"""Two-dimensional slices of a trained hypersphere classifier (NK 2019 §4, "microscopically complex,
macroscopically simple"; SPEC §4.4).

A slice is the plane through the origin spanned by two points a, b (two training points, or two test
points). The macroscopic rule of the task is spherical: label 1 iff ‖x‖ > (r_inner + r_outer)/2. The
microscopic complexity near a point c is the fraction of the disc of radius `radius` around c *in its plane*
where the network's label differs from the spherical rule. The radius is ``radius_fraction`` times the gap
r_outer − r_inner between the spheres, default 1.0: SPEC §4.4's "radius ≈ spacing", read as the spacing of the
spheres, which is also the distance from a training point to its mirror in S'. A reconstructed choice
[verify]: NK show pictures, not a number. At 0.5 the disc around a point stops at the midpoint sphere, so it
cannot see the bend that puts S' on the training point's side (measured: 0.0 near training points).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Runtime
from .evaluate import logits


def plane_basis(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Orthonormal (2, d) basis of span{a, b} by Gram-Schmidt; e1 is along a."""
    e1 = a / a.norm()
    rest = b - (b @ e1) * e1
    return torch.stack([e1, rest / rest.norm()])


def spherical_label(points: torch.Tensor, r_inner: float, r_outer: float) -> torch.Tensor:
    return (points.norm(dim=-1) > (r_inner + r_outer) / 2).long()


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
                       r_inner: float, r_outer: float, seed: int) -> float:
    """Mean over centers c of the fraction of the disc of radius `radius` around c, in the plane of (c, partner),
    where the network's label differs from the spherical rule (uniform samples in the disc, seeded)."""
    gen = torch.Generator().manual_seed(seed)
    fractions = []
    for center, partner in zip(centers, partners, strict=True):
        basis = plane_basis(center, partner).to(center.dtype)
        angle = torch.rand(n_samples, generator=gen, dtype=center.dtype) * 2 * math.pi
        rad = radius * torch.rand(n_samples, generator=gen, dtype=center.dtype).sqrt()   # uniform in the disc
        offsets = torch.stack([rad * angle.cos(), rad * angle.sin()], dim=1) @ basis
        points = center[None, :] + offsets
        disagree = predicted_label(model, points) != spherical_label(points, r_inner, r_outer)
        fractions.append(float(disagree.double().mean()))
    return float(np.mean(fractions))


def slices_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `nk2019-slices`: train a hypersphere net (or reuse its checkpoint), measure the local
    disagreement near training vs test points, and save one slice image of each kind next to the checkpoint."""
    from .config import RunConfig, from_dict
    from .jobs import _load, _train_or_reuse, basic_values
    from .sweep import JobResult
    torch.set_num_threads(runtime.threads)
    cfg = from_dict(RunConfig, config["run"])
    p = config["hp"]
    data = _load(cfg, runtime)
    run, path = _train_or_reuse(cfg, data, runtime, out_dir)
    if run.status == "failed":
        return JobResult({}, status="failed", reason=run.reason, checkpoint=str(path))
    r_in, r_out = float(cfg.data.options["r_inner"]), float(cfg.data.options["r_outer"])
    radius = float(p["radius_fraction"]) * (r_out - r_in)
    k = int(p["n_centers"])
    x_tr, x_te = data.train.x.double(), data.test.x.double()
    values = basic_values(run, data)
    model = copy.deepcopy(run.model).double()       # planes are computed in float64; the run keeps its model
    values["near_train_disagreement"] = local_disagreement(model, x_tr[:k], x_tr[k:2 * k], radius,
                                                           int(p["n_samples"]), r_in, r_out, seed=1)
    values["near_test_disagreement"] = local_disagreement(model, x_te[:k], x_te[k:2 * k], radius,
                                                          int(p["n_samples"]), r_in, r_out, seed=2)
    images = {}
    for kind, pts in (("train", x_tr), ("test", x_te)):
        net, sphere, ca, cb = slice_image(model, pts[0], pts[1], 1.5 * r_out, int(p["resolution"]), r_in, r_out)
        images.update({f"{kind}_net": net, f"{kind}_sphere": sphere, f"{kind}_a": ca, f"{kind}_b": cb})
    image_path = Path(str(path) + ".slices.npz")
    tmp = image_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **images)
    tmp.replace(image_path)
    return JobResult(values, status="done", reason=run.reason, checkpoint=str(path))
