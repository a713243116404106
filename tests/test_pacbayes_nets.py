"""Probabilistic networks: the per-example estimator against explicit per-example weight sampling (a slow,
obviously correct loop), independence inside a batch, the KL against torch.distributions, the mean network,
errors and determinism. Every statistical check runs at fixed seeds, so the suite is deterministic."""

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

import gapbench as gb
from gapbench.errors import GapbenchError
from gapbench.layers import weight_layers
from gapbench.models import cnn, mlp
from gapbench.pacbayes import (
    GaussianWeights,
    ProbConv2d,
    ProbLinear,
    ProbNet,
    pbb_cnn,
    pbb_fcn,
    predict_errors,
    probabilistic,
)
from gapbench.pacbayes.layers import VAR_FLOOR

torch.set_num_threads(1)
SAMPLES = 4000          # draws of the logits per side of a distribution check


def seeded_model(build, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def tiny_mlp():  # 2 hidden layers: 5-4-4-3
    return mlp(5, 3, depth=2, width=4, bias=True)


def tiny_cnn():  # conv(1→2, 3×3) on 6×6 → max-pool 2 → ReLU → Flatten(8) → Linear(8, 3)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))


def tiny_net(kind):
    """A net whose posterior differs from its prior in mean and std, with a std the size of the weights."""
    build, shape = {"mlp": (tiny_mlp, (5,)), "cnn": (tiny_cnn, (1, 6, 6))}[kind]
    prior, posterior = seeded_model(build, 0), seeded_model(build, 1)
    net = probabilistic(prior, prior_std=0.3, posterior_mean=posterior, posterior_std=0.4)
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(2))
    return net, x


def explicit_draws(net, x, samples, seed):
    """Reference: `samples` logits of x, each from its own weight draw W ~ Q made explicitly, one at a time."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for _ in range(samples):
            h = x
            for layer in net.layers:
                if not isinstance(layer, (ProbLinear, ProbConv2d)):
                    h = layer(h)
                    continue
                w = torch.normal(layer.weight.mu, layer.weight.std(), generator=gen)
                b = None if layer.bias is None else torch.normal(layer.bias.mu, layer.bias.std(), generator=gen)
                h = h @ w.T + b if isinstance(layer, ProbLinear) else F.conv2d(h, w, b)
            out.append(h[0])
    return torch.stack(out).numpy()


@functools.cache
def reference_draws(kind, seed):
    """explicit_draws of tiny_net(kind), computed once per session (the loop is the slow part)."""
    net, x = tiny_net(kind)
    draws = explicit_draws(net, x, SAMPLES, seed)
    draws.flags.writeable = False
    return draws


def batch_draws(net, x, samples, seed, mode="per_example"):
    """`samples` logits of x from ONE forward on a batch of `samples` copies of x."""
    with torch.no_grad():
        return net(x.expand(samples, *x.shape[1:]), mode, torch.Generator().manual_seed(seed)).numpy()


def law_mismatches(a, b):
    """The checks that reject 'a and b are samples of one law': per-coordinate means (5 standard errors),
    covariances across output units (5 standard errors), two-sample KS (p < 1e-4), and the frequency of
    argmax ≠ 0 (two-proportion z > 5). Returns the failed checks; [] means the laws agree."""
    n, failed = len(a), []
    se_mean = np.sqrt(a.var(0) / n + b.var(0) / n)
    if np.any(np.abs(a.mean(0) - b.mean(0)) > 5 * se_mean):
        failed.append("mean")
    cov_a, cov_b = np.cov(a.T), np.cov(b.T)
    var = np.diag(cov_b)
    se_cov = np.sqrt(2 * (np.outer(var, var) + cov_b**2) / n)
    if np.any(np.abs(cov_a - cov_b) > 5 * se_cov):
        failed.append("covariance")
    if any(stats.ks_2samp(a[:, j], b[:, j]).pvalue < 1e-4 for j in range(a.shape[1])):
        failed.append("ks")
    err_a, err_b = (a.argmax(1) != 0).mean(), (b.argmax(1) != 0).mean()
    pooled = (err_a + err_b) / 2
    if abs(err_a - err_b) > 5 * math.sqrt(max(pooled * (1 - pooled), 1e-12) * 2 / n):
        failed.append("error frequency")
    return failed


class PerPositionConv(ProbConv2d):
    """A WRONG per-example conv: local reparameterisation of every output position on its own (independent
    noise per position), as if the kernel were not shared across positions."""

    def forward(self, x, mode="per_example", generator=None):
        mean = F.conv2d(x, self.weight.mu, self.bias.mu)
        var = F.conv2d(x.square(), self.weight.var(), self.bias.var())
        eps = torch.randn(mean.shape, generator=generator)
        return mean + var.sqrt() * eps


# (a) the per-example estimator's law against explicit per-example weight draws
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_example_logits_have_the_law_of_explicit_weight_draws(kind):
    net, x = tiny_net(kind)
    reference = reference_draws(kind, 10)
    assert law_mismatches(batch_draws(net, x, SAMPLES, seed=11), reference) == []
    assert law_mismatches(reference_draws(kind, 12), reference) == []   # the check's own level


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_law_check_rejects_one_draw_shared_by_the_batch(kind):
    net, x = tiny_net(kind)
    assert law_mismatches(batch_draws(net, x, SAMPLES, seed=11, mode="shared"),
                          reference_draws(kind, 10)) != []


def test_the_law_check_rejects_per_position_local_reparameterisation_of_a_conv():
    net, x = tiny_net("cnn")
    reference = reference_draws("cnn", 10)
    conv = net.layers[0]
    net.layers[0] = PerPositionConv(conv.weight, conv.bias)
    wrong = batch_draws(net, x, SAMPLES, seed=11)
    assert "ks" in law_mismatches(wrong, reference)          # the max-pool of independent positions is larger
    assert wrong[:, 0].mean() != pytest.approx(reference[:, 0].mean(), abs=0.01)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_example_error_frequency_is_the_explicit_gibbs_risk(kind):
    net, x = tiny_net(kind)
    gen = torch.Generator().manual_seed(5)
    errors = torch.cat([predict_errors(net, x.expand(500, *x.shape[1:]), torch.zeros(500, dtype=torch.long),
                                       mode="per_example", generator=gen, batch_size=128) for _ in range(8)])
    gibbs = (reference_draws(kind, 10).argmax(1) != 0).mean()
    freq = errors.double().mean().item()
    assert errors.dtype == torch.bool and errors.shape == (4000,)
    assert abs(freq - gibbs) < 5 * math.sqrt(gibbs * (1 - gibbs) * (1 / 4000 + 1 / SAMPLES))


# (b) independence across the examples of one batch
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_the_same_input_twice_in_a_batch_gets_independent_draws(kind):
    net, x = tiny_net(kind)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        pairs = np.stack([net(torch.cat([x, x]), "per_example", gen).numpy() for _ in range(1000)])
        shared = net(torch.cat([x, x]), "shared", gen)
    assert np.all(pairs[:, 0] != pairs[:, 1])
    for j in range(pairs.shape[2]):
        assert abs(np.corrcoef(pairs[:, 0, j], pairs[:, 1, j])[0, 1]) < 4.5 / math.sqrt(1000), j
    torch.testing.assert_close(shared[0], shared[1])          # the contrast: one draw for the batch


# (c) the KL divergence
def kl_reference(net):
    """Σ KL(N(μ, σ²) ‖ N(m, s²)) by torch.distributions, entry by entry."""
    total = torch.zeros((), dtype=torch.float64)
    for layer in net.prob_layers():
        for g in (layer.weight, layer.bias):
            q = torch.distributions.Normal(g.mu.double(), F.softplus(g.rho.double()))
            p = torch.distributions.Normal(g.prior_mean.double(), g.prior_std.double())
            total += torch.distributions.kl_divergence(q, p).sum()
    return total


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_kl_matches_torch_distributions(kind):
    net, _ = tiny_net(kind)
    assert net.kl().item() == pytest.approx(kl_reference(net).item(), rel=1e-5)
    assert net.kl().item() > 0


def test_kl_hand_worked_one_parameter():
    # Q = N(1, 0.5²), P = N(0, 1): ln 2 + (0.25 + 1)/2 − 1/2 = ln 2 + 0.125
    g = GaussianWeights(torch.tensor([1.0]), 0.5, torch.tensor([0.0]), 1.0)
    assert g.kl().item() == pytest.approx(math.log(2) + 0.125, rel=1e-6)
    assert g.std().item() == pytest.approx(0.5, rel=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_kl_is_zero_when_the_posterior_is_the_prior(kind):
    model = seeded_model(tiny_mlp if kind == "mlp" else tiny_cnn, 0)
    assert probabilistic(model, prior_std=0.03).kl().item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_gradients_reach_every_mu_and_rho_through_kl_and_the_per_example_forward(kind):
    net, x = tiny_net(kind)
    net.kl().backward()
    assert all(g.mu.grad.abs().sum() > 0 and g.rho.grad.abs().sum() > 0 for g in net.gaussians())
    net.zero_grad()
    net(x.expand(64, *x.shape[1:]), "per_example", torch.Generator().manual_seed(0)).square().sum().backward()
    assert all(torch.isfinite(g.rho.grad).all() and g.rho.grad.abs().sum() > 0 for g in net.gaussians())


def test_a_bias_free_unit_on_a_zero_input_has_finite_gradients():
    net = probabilistic(nn.Sequential(nn.Linear(3, 2, bias=False)), prior_std=0.1)
    out = net(torch.zeros(4, 3), "per_example", torch.Generator().manual_seed(0))
    out.sum().backward()
    assert out.abs().max() <= 10 * math.sqrt(VAR_FLOOR) and torch.isfinite(net.layers[0].weight.rho.grad).all()


# (d) the mean network
def test_mean_mode_equals_the_mean_network_equals_the_model():
    model = seeded_model(lambda: cnn((1, 12, 12), 10, width=2, bias=True, fc_width=8, dropout=0.5), 0).eval()
    x = torch.rand(7, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    net = probabilistic(model, prior_std=0.1)
    mean_net = net.mean_network()
    torch.testing.assert_close(net(x, "mean"), model(x))
    torch.testing.assert_close(mean_net(x), model(x))
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())          # Dropout became Identity
    for ours, theirs in zip(weight_layers(mean_net), weight_layers(model), strict=True):
        torch.testing.assert_close(ours.weight, theirs.weight)
    assert gb.measure("frobenius_product", mean_net) == pytest.approx(gb.measure("frobenius_product", model))
    with torch.no_grad():
        mean_net[0].weight.add_(1.0)
    torch.testing.assert_close(net(x, "mean"), model(x))                      # a copy


def test_conv_stride_padding_and_dilation_carry_over():
    conv = seeded_model(lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=2)), 0)
    x = torch.rand(4, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    net = probabilistic(conv, prior_std=1e-3)
    torch.testing.assert_close(net(x, "mean"), conv(x))
    assert net(x, "per_example", torch.Generator().manual_seed(0)).shape == conv(x).shape


def test_num_params_and_prior_std():
    net = probabilistic(tiny_mlp(), prior_std=0.03)
    assert net.num_params() == (5 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3) and net.prior_std == 0.03


def test_pbb_architectures_have_the_papers_parameter_counts():
    fcn, cnn_model = pbb_fcn(seed=0), pbb_cnn(seed=0)
    # 784-600-600-600-10 with biases; conv 1→32 and 32→64 at 3×3, FC 9216→128→10 (pbb/models.py NNet4l, CNNet4l)
    assert probabilistic(fcn, prior_std=0.03).num_params() == 785 * 600 + 2 * 601 * 600 + 601 * 10
    assert probabilistic(cnn_model, prior_std=0.03).num_params() == (10 * 32 + (32 * 9 + 1) * 64 + 9217 * 128
                                                                      + 129 * 10)
    assert cnn_model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    torch.testing.assert_close(pbb_cnn(seed=0)[0].weight, cnn_model[0].weight)      # seeded, no global RNG


# (e) bad input
def test_batchnorm_is_refused_naming_fold_batchnorm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(GapbenchError, match=r"BatchNorm layer '1' \(BatchNorm1d\).*gapbench\.layers\.fold_batchnorm"):
        probabilistic(model, prior_std=0.1)


def test_an_unknown_layer_is_refused_naming_the_supported_ones():
    with pytest.raises(GapbenchError, match=r"cannot convert module '1' of class Tanh\. Supported module classes: "
                                            r"Conv2d, Dropout, Flatten, Identity, Linear, MaxPool2d, ReLU"):
        probabilistic(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), prior_std=0.1)
    with pytest.raises(GapbenchError, match=r"'model' parameter of probabilistic\(\) must be an nn\.Sequential"):
        probabilistic(nn.Linear(3, 4), prior_std=0.1)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "0.1"])
def test_prior_std_must_be_positive(bad):
    with pytest.raises(GapbenchError, match=r"The 'prior_std' parameter of probabilistic\(\) must be a finite "
                                            r"float > 0\. Got"):
        probabilistic(tiny_mlp(), prior_std=bad)
    with pytest.raises(GapbenchError, match=r"The 'posterior_std' parameter of probabilistic\(\)"):
        probabilistic(tiny_mlp(), prior_std=0.1, posterior_std=bad)


def test_prior_mean_keys_and_shapes_must_match_the_model():
    model = tiny_mlp()
    with pytest.raises(GapbenchError, match=r"'prior_mean' parameter of probabilistic\(\) must be a module or "
                                            r"state_dict with exactly model's parameter names .*keys missing "
                                            r"\['5.bias'\], unexpected \[\]"):
        probabilistic(model, prior_mean={k: v for k, v in model.state_dict().items() if k != "5.bias"},
                      prior_std=0.1)
    with pytest.raises(GapbenchError, match=r"'posterior_mean' .* a tensor of shape \(4, 5\) for '1.weight'"):
        probabilistic(model, prior_std=0.1, posterior_mean=mlp(6, 3, depth=2, width=4, bias=True))


def test_modes_generators_and_lengths_are_checked():
    net, x = tiny_net("mlp")
    with pytest.raises(GapbenchError, match=r"'mode' parameter of ProbNet\.forward\(\) must be one of "
                                            r"\['per_example', 'shared', 'mean'\]\. Got 'gibbs'"):
        net(x, "gibbs")
    with pytest.raises(GapbenchError, match=r"'generator' parameter of ProbNet\.forward\(\) must be a "
                                            r"torch\.Generator in mode 'per_example'.*mode='mean'"):
        net(x)
    with pytest.raises(GapbenchError, match=r"'y' parameter of predict_errors\(\) must be a label tensor of the "
                                            r"same length as x \(1\)"):
        predict_errors(net, x, torch.zeros(2, dtype=torch.long), mode="mean", generator=None, batch_size=4)
    with pytest.raises(GapbenchError, match=r"'posterior_std' parameter of GaussianWeights must be finite and > 0"):
        GaussianWeights(torch.zeros(3), torch.tensor([0.1, 0.0, 0.1]), torch.zeros(3), 1.0)


# (f) determinism, purity
@pytest.mark.parametrize("mode", ["per_example", "shared"])
def test_same_seed_same_output_and_the_global_rng_is_untouched(mode):
    net, x = tiny_net("cnn")
    batch = x.expand(5, *x.shape[1:])
    state = torch.get_rng_state()
    a = net(batch, mode, torch.Generator().manual_seed(7))
    b = net(batch, mode, torch.Generator().manual_seed(7))
    c = net(batch, mode, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(torch.get_rng_state(), state)
    net.mean_network()
    assert torch.equal(torch.get_rng_state(), state)


def test_probabilistic_leaves_the_model_unchanged_and_shares_no_storage():
    model = tiny_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = probabilistic(model, prior_std=0.1)
    with torch.no_grad():
        for g in net.gaussians():
            g.mu.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_frozen_reuses_the_std_without_autograd_and_ignores_it_with_autograd():
    net, x = tiny_net("mlp")
    batch = x.expand(6, 5)
    with torch.no_grad():
        plain = net(batch, "per_example", torch.Generator().manual_seed(1))
    with net.frozen():
        with torch.no_grad():
            torch.testing.assert_close(net(batch, "per_example", torch.Generator().manual_seed(1)), plain)
        net(batch, "per_example", torch.Generator().manual_seed(1)).sum().backward()
    assert all(g.rho.grad is not None and g.frozen is None for g in net.gaussians())


def test_predict_errors_in_mean_mode_is_the_mean_networks_errors():
    net, _ = tiny_net("mlp")
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(50, 5, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    expected = net.mean_network()(x).argmax(1) != y
    assert torch.equal(predict_errors(net, x, y, mode="mean", generator=None, batch_size=7), expected)
    assert isinstance(net, ProbNet)
