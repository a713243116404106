import math

import torch
from torch import nn

from gapbench.analysis.slices import fitted_threshold, local_disagreement, plane_basis, slice_image, spherical_label


class SphereRule(nn.Module):
    """Logits of the exact spherical rule: class 1 iff ‖x‖ > mid."""

    def __init__(self, mid):
        super().__init__()
        self.mid = mid
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        r = x.norm(dim=1, keepdim=True)
        return torch.cat([self.mid - r, r - self.mid], dim=1)


def test_plane_basis_is_orthonormal_and_spans_both_points():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, generator=gen, dtype=torch.float64), torch.randn(30, generator=gen, dtype=torch.float64)
    basis = plane_basis(a, b)
    assert torch.allclose(basis @ basis.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    for v in (a, b):
        assert torch.allclose((v @ basis.T) @ basis, v, atol=1e-12)


def test_exact_rule_has_no_disagreement_and_flipped_rule_has_all():
    gen = torch.Generator().manual_seed(1)
    centers = torch.randn(5, 10, generator=gen, dtype=torch.float64)
    partners = torch.randn(5, 10, generator=gen, dtype=torch.float64)
    rule = SphereRule(1.1).double()
    assert local_disagreement(rule, centers, partners, 0.3, 200, 1.0, 1.2, seed=0) == 0.0
    flipped = SphereRule(-1.0).double()      # always class 1: disagrees exactly where the rule says 0
    frac = local_disagreement(flipped, centers, partners, 0.3, 200, 1.0, 1.2, seed=0)
    inside = []
    g2 = torch.Generator().manual_seed(0)
    for c, p in zip(centers, partners, strict=True):   # the same samples, recomputed by hand
        basis = plane_basis(c, p)
        angle = torch.rand(200, generator=g2, dtype=torch.float64) * 2 * math.pi
        rad = 0.3 * torch.rand(200, generator=g2, dtype=torch.float64).sqrt()
        pts = c + torch.stack([rad * angle.cos(), rad * angle.sin()], 1) @ basis
        inside.append(float((spherical_label(pts, 1.0, 1.2) == 0).double().mean()))
    assert math.isclose(frac, sum(inside) / len(inside), rel_tol=1e-12)


def test_slice_image_matches_rule():
    rule = SphereRule(1.1).double()
    a, b = torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 1.2, 0], dtype=torch.float64)
    net, sphere, ca, cb = slice_image(rule, a, b, 1.8, 41, 1.0, 1.2)
    assert (net == sphere).all() and net.shape == (41, 41)
    assert abs(ca[0] - 1.0) < 1e-12 and abs(cb[1] - 1.2) < 1e-12


def test_fitted_threshold_recovers_a_shifted_sphere_and_removes_its_disagreement():
    """A net whose boundary is the sphere of radius 1.15 (not the task's midpoint 1.1): the fitted threshold
    lands within one grid step of 1.15, and against it the disagreement (nearly) vanishes near any point."""
    shifted = SphereRule(1.15).double()
    tau = fitted_threshold(shifted, 10, 1.0, 1.2, n_dirs=50, n_radii=241)
    assert abs(tau - 1.15) <= 0.6 / 240
    gen = torch.Generator().manual_seed(2)
    centers = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    centers = 1.2 * centers / centers.norm(dim=1, keepdim=True)      # on the outer sphere
    partners = torch.randn(6, 10, generator=gen, dtype=torch.float64)
    # only the sliver between 1.15 and τ (< one grid step, 0.0025) can disagree with the fitted rule ...
    assert local_disagreement(shifted, centers, partners, 0.2, 300, 1.0, 1.2, seed=0, threshold=tau) < 0.01
    # ... while the band 1.1 < r < 1.15 (a quarter of the discs' radial extent) disagrees with the task's
    assert local_disagreement(shifted, centers, partners, 0.2, 300, 1.0, 1.2, seed=0) > 0.1


def test_fitted_threshold_against_brute_force():
    """The cumulative-sum search equals trying every cut of the radii grid by hand on a bumpy 1-D rule."""

    class Bumpy(nn.Module):   # class 1 iff r > 1.12, except a band 1.02 < r < 1.05 also labelled 1
        def forward(self, x):
            r = x.norm(dim=1, keepdim=True)
            one = ((r > 1.12) | ((r > 1.02) & (r < 1.05))).double()
            return torch.cat([1 - one, one], dim=1)

    radii = torch.linspace(0.8, 1.4, 61, dtype=torch.float64)
    labels = [int(Bumpy()(torch.tensor([[float(r), 0.0]], dtype=torch.float64)).argmax()) for r in radii]
    errors = [sum(lab != (i >= cut) for i, lab in enumerate(labels)) for cut in range(62)]
    best = min(range(62), key=lambda c: (errors[c], c))
    expected = (radii[best - 1] + radii[best]) / 2 if 0 < best < 61 else None
    tau = fitted_threshold(Bumpy(), 2, 1.0, 1.2, n_dirs=7, n_radii=61)
    assert expected is not None and abs(tau - float(expected)) < 1e-12
