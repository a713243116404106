import math

import torch
from torch import nn

from gapbench.slices import local_disagreement, plane_basis, slice_image, spherical_label


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
