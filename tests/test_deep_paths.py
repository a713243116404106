import math

import numpy as np
import pytest
import reference_paths as ref
import torch
from torch import nn

from gapbench.analysis.deep_paths import (
    TwoPhaseNet,
    gram,
    log_num_paths,
    path_features,
    path_norms_per_output,
    path_weights,
)
from gapbench.analysis.theorem7 import gap_decomposition
from gapbench.bounds.theorem8 import CONSTANTS, kkb2017_theorem8, plugin_constants, theorem8_betas
from gapbench.errors import GapbenchError
from gapbench.models import mlp

torch.set_num_threads(1)

ARCHS = {"5-7-3": (5, 3, 1, 7), "4-3-3-2": (4, 2, 2, 3)}   # (input_dim, num_classes, depth, width)


def _net(arch, seed=0, bias=False):
    input_dim, num_classes, depth, width = ARCHS[arch]
    with torch.random.fork_rng(devices=[]):   # construction draws from the global RNG; weights are set below
        net = mlp(input_dim, num_classes, depth, width, bias)
    with torch.no_grad():
        for param in net.parameters():
            gen = torch.Generator().manual_seed(seed + param.numel())
            param.copy_(torch.randn(param.shape, generator=gen))
    return net


def _two_phase(arch):
    return TwoPhaseNet(_net(arch, seed=1), _net(arch, seed=2))


def _data(arch, n, seed, float_targets=False):
    input_dim, num_classes = ARCHS[arch][:2]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, input_dim, generator=gen, dtype=torch.float64).float()
    y = torch.rand(n, num_classes, generator=gen) if float_targets else torch.randint(0, num_classes, (n,),
                                                                                       generator=gen)
    return x, y


def _onehot(y, k):
    return np.eye(k)[y.numpy()] if y.dim() == 1 else y.double().numpy()


@pytest.mark.parametrize("arch", ARCHS)
def test_path_weights_match_enumeration_and_reproduce_outputs(arch):
    net = _net(arch)
    x, _ = _data(arch, 6, seed=3)
    wbar = ref.path_weights(ref.weights_of(net))
    np.testing.assert_allclose(path_weights(net).numpy(), wbar, rtol=1e-12, atol=1e-12)
    z = ref.path_features(ref.weights_of(net), x.double().numpy())
    np.testing.assert_allclose(path_features(net, x).numpy(), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(z @ wbar.T, net.double()(x.double()).detach().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("bias", [False, True])
def test_path_norms_match_enumeration(arch, p, bias):
    net = _net(arch, bias=bias)
    expected = ref.path_norms(ref.weights_of(net), ref.biases_of(net), p)
    got = path_norms_per_output(net, p)
    assert got.dtype == torch.float64 and got.shape == (ARCHS[arch][1],)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    if not bias:
        explicit = np.linalg.norm(ref.path_weights(ref.weights_of(net)), p, axis=1)
        np.testing.assert_allclose(got.numpy(), explicit, rtol=1e-10)


def test_path_norm_invariant_to_relu_rescaling():
    net = _net("4-3-3-2")
    scaled = _net("4-3-3-2")
    with torch.no_grad():   # unit j of hidden layer 1: incoming × 5, outgoing ÷ 5 (same function)
        scaled[1].weight[1] *= 5.0
        scaled[3].weight[:, 1] /= 5.0
    torch.testing.assert_close(path_norms_per_output(scaled, 2.0), path_norms_per_output(net, 2.0))
    torch.testing.assert_close(path_weights(scaled), path_weights(net))


def test_conv_path_norm_matches_unrolled_matrix():
    net = nn.Sequential(nn.Conv2d(1, 2, 2, stride=1, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(2 * 16, 3))
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())))
    conv = net[0]
    basis = torch.eye(9).reshape(9, 1, 3, 3)
    unrolled = nn.functional.conv2d(basis, conv.weight.detach(), padding=1).reshape(9, -1).T
    unrolled = unrolled.double().numpy()                             # (32, 9): the conv as a matrix
    conv_bias = conv.bias.detach().double().numpy().repeat(16)       # channel-major, like Flatten
    expected = ref.path_norms([unrolled, ref.weights_of(net)[1]], [conv_bias, ref.biases_of(net)[1]], 2.0)
    np.testing.assert_allclose(path_norms_per_output(net, 2.0, input_shape=(1, 3, 3)).numpy(), expected,
                               rtol=1e-10)


def test_pooling_and_missing_input_shape_are_refused():
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                           nn.Linear(8, 2))
    with pytest.raises(GapbenchError, match=r"between '0' and '4' change the shape \(2, 4, 4\) to \(8,\) "
                                            r"\(a pooling layer\)"):
        path_norms_per_output(pooled, input_shape=(1, 4, 4))
    with pytest.raises(GapbenchError, match=r"'input_shape' parameter of path_norms_per_output\(\) must be"):
        path_norms_per_output(pooled)


@pytest.mark.parametrize("arch", ARCHS)
def test_gram_matches_explicit_features_and_two_phase(arch):
    for net in (_net(arch), _two_phase(arch)):
        gate_net = net.gate if isinstance(net, TwoPhaseNet) else net
        x1, _ = _data(arch, 5, seed=4)
        x2, _ = _data(arch, 3, seed=5)
        z1 = ref.path_features(ref.weights_of(gate_net), x1.double().numpy())
        z2 = ref.path_features(ref.weights_of(gate_net), x2.double().numpy())
        np.testing.assert_allclose(gram(net, x1, x2).numpy(), z1 @ z2.T, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gram(net, x1).numpy(), z1 @ z1.T, rtol=1e-10, atol=1e-10)


def test_two_phase_output_is_linear_in_value_path_weights():
    net = _two_phase("4-3-3-2")
    x, _ = _data("4-3-3-2", 7, seed=6)
    z = ref.path_features(ref.weights_of(net.gate), x.double().numpy())
    wbar = ref.path_weights(ref.weights_of(net.value))
    np.testing.assert_allclose(net(x).detach().double().numpy(), z @ wbar.T, rtol=1e-5, atol=1e-5)
    tied = TwoPhaseNet.from_model(_net("4-3-3-2"))
    torch.testing.assert_close(tied(x), _net("4-3-3-2")(x))
    with pytest.raises(GapbenchError, match="The 'value' parameter of TwoPhaseNet"):
        TwoPhaseNet(_net("4-3-3-2"), _net("5-7-3")[:2])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("two_phase", [False, True])
def test_theorem7_identity_and_every_factor(arch, two_phase):
    net = _two_phase(arch) if two_phase else _net(arch)
    gate_net, value_net = (net.gate, net.value) if two_phase else (net, net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train, population = _data(arch, 12, seed=7), _data(arch, 80, seed=8)
    got = gap_decomposition(net, train, population, top_k=4)
    k = ARCHS[arch][1]
    z_tr = ref.path_features(ref.weights_of(gate_net), train[0].double().numpy())
    z_pop = ref.path_features(ref.weights_of(gate_net), population[0].double().numpy())
    wbar = ref.path_weights(ref.weights_of(value_net))
    want = ref.theorem7(z_pop, _onehot(population[1], k), z_tr, _onehot(train[1], k), wbar)
    risk = [((z @ wbar.T - _onehot(y, k)) ** 2).sum(1).mean() for z, y in ((z_pop, population[1]),
                                                                            (z_tr, train[1]))]
    assert got.lhs == pytest.approx(risk[0] - risk[1], rel=1e-9)
    assert got.rhs == pytest.approx(got.lhs, rel=1e-6) and want["rhs"] == pytest.approx(got.lhs, rel=1e-6)
    assert got.c_y == pytest.approx(want["c_y"], abs=1e-12)
    for name in ("path_norms", "v_norms", "cosines"):
        np.testing.assert_allclose(getattr(got, name).numpy(), want[name], rtol=1e-8, err_msg=name)
    nonzero = np.abs(want["eigenvalues"]) > 1e-9 * np.abs(want["eigenvalues"]).max()
    np.testing.assert_allclose(got.eigenvalues[:nonzero.sum()].numpy(), want["eigenvalues"][nonzero],
                               rtol=1e-8)
    assert np.abs(got.eigenvalues[nonzero.sum():].numpy()).max(initial=0.0) < 1e-9
    np.testing.assert_allclose(got.top_mass.numpy(), want["mass"][:, :4], rtol=1e-6, atol=1e-10)
    assert all(torch.equal(before[key], v) for key, v in net.state_dict().items())


def test_gap_decomposition_refuses_biases_and_large_samples():
    with pytest.raises(GapbenchError, match=r"has a bias\. Train with ModelConfig\(bias=False\)"):
        gap_decomposition(_net("5-7-3", bias=True), _data("5-7-3", 4, 0), _data("5-7-3", 8, 1))
    with pytest.raises(GapbenchError, match=r"The 'population' parameter of gap_decomposition\(\) must be a "
                                            r"sample with N \+ m <= max_points=10"):
        gap_decomposition(_net("5-7-3"), _data("5-7-3", 4, 0), _data("5-7-3", 8, 1), max_points=10)
    with pytest.raises(GapbenchError, match=r"The 'model' parameter of path_weights\(\) must be a net "
                                            r"with at most max_paths=10 paths"):
        path_weights(_net("5-7-3"), max_paths=10)


def test_theorem8_betas_by_hand():
    constants = dict(c_zz=2.0, gamma2_zz=3.0, c_yz=0.5, gamma2_yz=0.25, c_y=1.0, gamma2_y=0.1)
    m_sigma, d_z, d_y, delta = 100, 35, 3, 0.05
    beta1 = 2 * 2.0 * math.log(3 * 35 / 0.05) / 300 + math.sqrt(2 * 3.0 * math.log(3 * 35 / 0.05) / 100)
    beta2 = 2 * 0.5 * math.log(6 * 3 * 35 / 0.05) / 300 + math.sqrt(2 * 0.25 * math.log(6 * 3 * 35 / 0.05) / 100)
    beta3 = 2 * 1.0 * math.log(3 / 0.05) / 300 + math.sqrt(2 * 0.1 * math.log(3 / 0.05) / 100)
    got = theorem8_betas(constants, m_sigma=m_sigma, log_dz=math.log(d_z), d_y=d_y, delta=delta)
    assert got == pytest.approx((beta1, beta2, beta3), rel=1e-12)
    net = _two_phase("5-7-3")
    assert log_num_paths(net) == pytest.approx(math.log(35))
    x, y = _data("5-7-3", m_sigma, seed=9)
    bound = kkb2017_theorem8(net, (x, y), delta=delta, **constants)
    wbar = ref.path_weights(ref.weights_of(net.value))
    expected = beta1 * (wbar ** 2).sum() + 2 * beta2 * np.abs(wbar).sum() + beta3
    assert bound.value == pytest.approx(expected, rel=1e-10)
    assert not bound.is_estimate and bound.name == "kkb2017_theorem8" and len(bound.assumptions) == 4
    assert "R[f] − R_{S∖S_αm}[f]" in bound.quantity


@pytest.mark.parametrize("arch", ARCHS)
def test_theorem8_plugin_constants_match_explicit(arch):
    net = _two_phase(arch)
    heldout = _data(arch, 10, seed=10, float_targets=True)
    population = _data(arch, 60, seed=11, float_targets=True)
    got = plugin_constants(net, heldout, population)
    z_pop = ref.path_features(ref.weights_of(net.gate), population[0].double().numpy())
    z_held = ref.path_features(ref.weights_of(net.gate), heldout[0].double().numpy())
    want = ref.theorem8_constants(z_pop, population[1].double().numpy(), z_held, heldout[1].double().numpy())
    for name in CONSTANTS:
        assert got[name] == pytest.approx(want[name], rel=1e-7, abs=1e-12), name
    assert got["yz_exact"] == 1.0
    coarse = plugin_constants(net, heldout, population, max_paths=2)     # too many paths: upper bounds
    assert coarse["yz_exact"] == 0.0
    assert coarse["c_yz"] >= got["c_yz"] and coarse["gamma2_yz"] >= got["gamma2_yz"]


def test_theorem8_plugin_is_labelled_and_monotone_in_delta():
    net = _two_phase("4-3-3-2")
    data, population = _data("4-3-3-2", 20, seed=12), _data("4-3-3-2", 50, seed=13)
    values = [kkb2017_theorem8(net, data, delta=d, population=population).value for d in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2] > 0
    bound = kkb2017_theorem8(net, data, delta=0.05, population=population)
    assert bound.is_estimate and "plug-in estimate, not a bound" in bound.name
    assert bound.terms["c_y"] == 0.0 and bound.terms["beta3"] == 0.0      # one-hot labels: ‖y‖² = 1


def test_theorem8_parameter_errors():
    net, data = _two_phase("4-3-3-2"), _data("4-3-3-2", 5, seed=0)
    with pytest.raises(GapbenchError, match="needs all six constants"):
        kkb2017_theorem8(net, data, delta=0.05, c_zz=1.0)
    with pytest.raises(GapbenchError, match="not both"):
        kkb2017_theorem8(net, data, delta=0.05, population=data, c_zz=1.0)
    with pytest.raises(GapbenchError, match=r"unknown parameter\(s\) \['czz'\]"):
        kkb2017_theorem8(net, data, delta=0.05, czz=1.0)
    with pytest.raises(GapbenchError, match=r"The 'delta' parameter of kkb2017_theorem8\(\) must be"):
        kkb2017_theorem8(net, data, delta=1.5, population=data)


def test_registered_in_bound_registry():
    from gapbench.bounds import BOUNDS
    entry = BOUNDS.get("kkb2017_theorem8")
    assert entry.obj is kkb2017_theorem8 and "Theorem 8" in entry.reference
