import math

import numpy as np
import pytest
import torch
from reference_slices import fitted_threshold_reference
from scipy import stats
from torch import nn

from gapbench.analysis.slices import (
    fitted_threshold,
    local_disagreement,
    plane_basis,
    plane_labels,
    ray_labels,
    slice_image,
    spherical_label,
)
from gapbench.experiments.nk2019_slices import EXPERIMENT, paired_interval
from gapbench.experiments.table import Table
from gapbench.models import init_weights, mlp


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


class NormRule(nn.Module):
    """After an identity first layer: logits of 1[‖h‖ > mid] on the hidden vector h (= x)."""

    def __init__(self, mid):
        super().__init__()
        self.mid = mid

    def forward(self, h):
        r = h.norm(dim=1, keepdim=True)
        return torch.cat([self.mid - r, r - self.mid], dim=1)


def sphere_through_linear(dim, mid):
    """A Sequential whose first layer is an nn.Linear (the identity), so fitted_threshold takes its factored
    path, and whose boundary is the exact sphere ‖x‖ = mid."""
    first = nn.Linear(dim, dim)
    with torch.no_grad():
        first.weight.copy_(torch.eye(dim))
        first.bias.zero_()
    return nn.Sequential(nn.Flatten(), first, NormRule(mid))


def random_net(seed, depth, dim=12, width=40):
    """A random ReLU net whose output bias is shifted so that its boundary crosses the radii grid."""
    net = mlp(dim, 2, depth, width, bias=True)
    init_weights(net, "torch_default", seed)
    gen = torch.Generator().manual_seed(seed)
    dirs = torch.randn(200, dim, generator=gen)
    with torch.no_grad():
        diff = net(1.1 * dirs / dirs.norm(dim=1, keepdim=True))
        net[-1].bias[1] -= float((diff[:, 1] - diff[:, 0]).median())   # half of the r = 1.1 sphere is class 1
    return net


GRID_STEP = 0.6 / 240        # radii grid of fitted_threshold over [0.8, 1.4] with 241 radii


@pytest.mark.parametrize("mid", [0.93, 1.1, 1.27])
def test_fast_fitted_threshold_equals_the_reference_on_an_exact_sphere(mid):
    net = sphere_through_linear(10, mid)
    fast = fitted_threshold(net, 10, 1.0, 1.2, n_dirs=64)
    assert abs(fast - fitted_threshold_reference(net, 10, 1.0, 1.2, n_dirs=64)) <= GRID_STEP
    assert abs(fast - mid) <= GRID_STEP


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("depth", [1, 2])
def test_fast_fitted_threshold_equals_the_reference_on_random_nets(seed, depth):
    net = random_net(seed, depth)
    before = [p.detach().clone() for p in net.parameters()]
    fast = fitted_threshold(net, 12, 1.0, 1.2, n_dirs=300, seed=seed)
    assert abs(fast - fitted_threshold_reference(net, 12, 1.0, 1.2, n_dirs=300, seed=seed)) <= GRID_STEP
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))   # pure
    assert next(net.parameters()).dtype == torch.float32


def test_fast_fitted_threshold_equals_the_reference_on_a_trained_net():
    from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from gapbench.data import load_data
    from gapbench.train import fit

    cfg = RunConfig(data=DataConfig(name="hypersphere", n_train=256, n_test=64, subset_seed=0,
                                    options={"dim": 12, "r_inner": 1.0, "r_outer": 1.2}),
                    model=ModelConfig(arch="mlp", depth=1, width=64, bias=True, init="torch_default", init_seed=0),
                    train=TrainConfig(loss="sigmoid_ce", lr=0.1, batch_size=32, max_epochs=60, sgd_seed=0))
    run = fit(cfg, load_data(cfg.data))
    dirs = torch.randn(300, 12, generator=torch.Generator().manual_seed(0))
    ones = ray_labels(run.model, dirs / dirs.norm(dim=1, keepdim=True), torch.linspace(0.8, 1.4, 7)).float().mean()
    assert 0.05 < ones < 0.95                  # both labels occur along the rays: the comparison is not vacuous
    fast = fitted_threshold(run.model, 12, 1.0, 1.2, n_dirs=300)
    assert abs(fast - fitted_threshold_reference(run.model, 12, 1.0, 1.2, n_dirs=300)) <= GRID_STEP


def test_plane_labels_equal_full_forward_passes():
    net = random_net(5, depth=2)
    gen = torch.Generator().manual_seed(6)
    origins, bases = torch.randn(3, 12, generator=gen), torch.randn(3, 2, 12, generator=gen)
    coeffs = torch.randn(3, 150, 2, generator=gen)
    points = origins[:, None, :] + coeffs @ bases
    expected = torch.stack([net(p).argmax(dim=1) for p in points])
    with torch.no_grad():
        margin = torch.stack([(net(p)[:, 1] - net(p)[:, 0]).abs() for p in points])
    agree = plane_labels(net, origins, bases, coeffs) == expected
    assert agree[margin > 1e-4].all()       # only exact float ties may differ


def claim_table(near_train, near_test, fitted=True):
    suffix = "_fitted" if fitted else ""
    return Table.of({"hp.seed": s, f"near_train_disagreement{suffix}": a, f"near_test_disagreement{suffix}": b,
                     "fitted_radius": 1.1, "status": "done"}
                    for s, (a, b) in enumerate(zip(near_train, near_test, strict=True)))


SLICES_PARAMS = {"radius_fraction": 1.0}


def test_paired_interval_matches_scipy_paired_t_test():
    gen = np.random.default_rng(0)
    train, test = gen.uniform(0.1, 0.3, 10), gen.uniform(0.1, 0.3, 10)
    mean, low, high, n = paired_interval(train, test)
    expected = stats.ttest_rel(train, test).confidence_interval(0.95)
    assert n == 10 and math.isclose(mean, float(np.mean(train - test)), rel_tol=1e-12)
    assert math.isclose(low, expected.low, rel_tol=1e-9) and math.isclose(high, expected.high, rel_tol=1e-9)
    half = 2.2621571627 * np.std(train - test, ddof=1) / math.sqrt(10)    # t_{0.975, 9} from a table
    assert math.isclose(high - mean, half, rel_tol=1e-8)


def test_claim_holds_when_every_seed_is_clearly_higher_near_training_points():
    result = EXPERIMENT.claims[0].evaluate(claim_table([0.18, 0.2, 0.19, 0.21, 0.2], [0.16, 0.15, 0.17, 0.16, 0.15]),
                                           SLICES_PARAMS)
    assert result.held and math.isclose(result.value, 0.038, rel_tol=1e-9)
    assert "paired t interval [" in result.detail and "over 5 seeds (excludes 0)" in result.detail
    assert "medians: near training points 0.2000, near test points 0.1600" in result.detail


def test_claim_fails_when_the_differences_change_sign():
    table = claim_table([0.18, 0.15, 0.2, 0.14], [0.16, 0.17, 0.16, 0.16])
    result = EXPERIMENT.claims[0].evaluate(table, SLICES_PARAMS)
    assert not result.held and result.value > 0         # positive mean, but the interval straddles 0
    assert "does not exclude 0 from below" in result.detail


def test_claim_cannot_hold_on_one_seed_and_says_why():
    result = EXPERIMENT.claims[0].evaluate(claim_table([0.3], [0.1]), SLICES_PARAMS)
    assert not result.held and math.isclose(result.value, 0.2)
    assert "1 seed(s), and a paired t interval needs ≥ 2" in result.detail


def test_task_sphere_claim_reads_the_midpoint_columns():
    claim = {c.name: c for c in EXPERIMENT.claims}["complex_near_training_points_task_sphere"]
    result = claim.evaluate(claim_table([0.3, 0.32, 0.31], [0.1, 0.11, 0.1], fitted=False), SLICES_PARAMS)
    assert result.held and "the task's midpoint sphere" in result.detail
