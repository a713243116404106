"""The closed-form linear examples against explicitly materialized data."""

import math

import numpy as np
import pytest
import torch

from gapbench.analysis.memorization import min_norm_interpolant, null_direction
from gapbench.analysis.nk_linear import CHUNK, nk_linear_gram, nk_linear_quantities
from gapbench.errors import GapbenchError


def _explicit_sample(m, dim, noise_var, seed):
    """Same generator order as nk_linear_gram when dim <= CHUNK: y, then one block of X2."""
    assert dim <= CHUNK
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (m,), generator=gen, dtype=torch.int64).double() * 2 - 1
    x2 = torch.randn(m, dim, generator=gen, dtype=torch.float64) * math.sqrt(noise_var)
    return y.numpy(), x2.numpy()


def test_quantities_match_explicit_vectors():
    m, dim, k = 12, 300, 5
    noise_var = 32.0 / dim
    y, gram = nk_linear_gram(m, dim, noise_var, seed=3)
    y_ref, x2 = _explicit_sample(m, dim, noise_var, seed=3)
    np.testing.assert_array_equal(y, y_ref)
    u = np.zeros(k)
    u[0] = 1 / math.sqrt(m)
    x = np.concatenate([2 * y[:, None] * u[None, :], x2], axis=1)
    w = (y[:, None] * x).sum(0)                       # one GD step from 0, lr 1, linear loss
    train_margins = y * (x @ w)
    x_sprime = np.concatenate([x[:, :k], -x2], axis=1)
    sprime_margins = y * (x_sprime @ w)
    got = nk_linear_quantities(y, gram, u_sq_norm=1 / m, noise_var=noise_var)
    assert math.isclose(got["w_norm"], np.linalg.norm(w), rel_tol=1e-10)
    assert math.isclose(got["min_train_margin"], train_margins.min(), rel_tol=1e-10)
    assert got["train_error"] == np.mean(train_margins <= 0)
    assert got["sprime_error"] == np.mean(sprime_margins <= 0)
    assert got["sprime_margin_error_1"] == np.mean(sprime_margins <= 1)


def test_closed_form_test_error_matches_monte_carlo():
    m, dim = 20, 40            # small D: noise large enough that the test error is far from 0
    noise_var = 32.0 / dim
    y, gram = nk_linear_gram(m, dim, noise_var, seed=0)
    _, x2 = _explicit_sample(m, dim, noise_var, seed=0)
    w2 = (y[:, None] * x2).sum(0)
    got = nk_linear_quantities(y, gram, u_sq_norm=1 / m, noise_var=noise_var)["test_error"]
    rng = np.random.default_rng(1)
    n = 200_000
    y_test = rng.choice([-1.0, 1.0], n)
    x2_test = rng.normal(0, math.sqrt(noise_var), (n, dim))
    margins = 4.0 + y_test * (x2_test @ w2)           # y·w1ᵀx1 = 4 for ‖u‖² = 1/m
    estimate = np.mean(margins <= 0)
    assert 0.01 < got < 0.5
    assert abs(estimate - got) < 4 * math.sqrt(got * (1 - got) / n)


def test_sprime_misclassified_at_paper_scale():
    m = 64
    dim = 1000 * m
    y, gram = nk_linear_gram(m, dim, 32.0 / dim, seed=0)
    got = nk_linear_quantities(y, gram, 1 / m, 32.0 / dim)
    assert got["sprime_error"] == 1.0 and got["train_error"] == 0.0 and got["test_error"] < 0.01


def test_min_norm_interpolant_and_null_direction():
    gen = torch.Generator().manual_seed(0)
    phi, phi_test = torch.randn(8, 50, generator=gen, dtype=torch.float64), torch.randn(10, 50, generator=gen,
                                                                                         dtype=torch.float64)
    targets = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    w = min_norm_interpolant(phi, targets)
    assert torch.allclose(phi @ w.T, targets, atol=1e-10)
    ref = torch.linalg.lstsq(phi, targets, driver="gelsd").solution.T   # numpy-style minimum-norm solution
    assert torch.allclose(w, ref, atol=1e-10)
    v = null_direction(phi, phi_test, seed=1)
    assert math.isclose(float(v.norm()), 1.0, rel_tol=1e-12)
    assert float(torch.cat([phi, phi_test]).matmul(v).abs().max()) < 1e-12


def test_null_direction_refuses_too_few_features():
    phi = torch.randn(12, 10, dtype=torch.float64)     # 12 points, 10 features
    with pytest.raises(GapbenchError, match="needs more features than training \\+ test points"):
        null_direction(phi[:4], phi[4:], seed=0)
    assert null_direction(phi[:4], phi[4:9], seed=0).shape == (10,)   # 9 points: one free direction


def test_memorization_experiment_refuses_too_few_features():
    from gapbench.experiments import get

    exp = get("kkb2017-linear-memorization")
    with pytest.raises(GapbenchError, match="'d_features' parameter of kkb2017-linear-memorization must exceed"):
        exp.points(exp.params("demo", {"d_features": "2000"}))
    for preset in exp.presets:                      # every shipped preset satisfies it
        exp.points(exp.params(preset))
