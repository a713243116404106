"""The benchmark-only port of Dziugaite et al.'s get_all_measures (benchmarks/peer_measures.py) agrees with
gapbench's own measures wherever the two compute the same quantity: the peer's float32 values (after undoing
their per-sample-size adjustment) against gapbench's float64 ones, on a trained MLP with biases and on a
stride-1 conv net with BatchNorm named as their NiN names its modules.

Not compared: PARAMS (theirs counts weights without biases, gapbench's num_params every parameter) and the six
PAC-Bayes measures (their σ search differs from gapbench's on purpose: σ² passed as a std, bisection over
[0, 2] on accuracy; see gapbench.measures.sharpness). Their formulas given σ are checked against each other.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gapbench.bench_measures import cost_model, load_peer_port
from gapbench.errors import GapbenchError
from gapbench.measures import measure

torch.set_num_threads(1)
peer = load_peer_port()
CT = peer.CT

SAME = {   # their name: (gapbench measure, its params, map from gapbench's value to theirs before adjustment)
    "L2": ("jiang2020_param_norm", {}, math.sqrt),
    "L2_DIST": ("dist_from_init_fro", {}, None),
    "INVERSE_MARGIN": ("jiang2020_inverse_margin", {}, None),
    "FRO_OVER_SPEC": ("fro_over_spec", {"conv": "reshaped"}, None),
    "FRO_OVER_SPEC_FFT": ("fro_over_spec", {"conv": "fft"}, None),
    "FRO_DIST": ("jiang2020_fro_dist", {}, None),
    "PARAM_NORM": ("jiang2020_param_norm", {}, None),
    "PATH_NORM": ("jiang2020_path_norm", {}, None),
    "PATH_NORM_OVER_MARGIN": ("jiang2020_path_norm_over_margin", {}, None),
    **{f"LOG_{n.upper()}": (f"jiang2020_log_{n}", {}, None)
       for n in ("prod_of_fro", "prod_of_fro_over_margin", "sum_of_fro", "sum_of_fro_over_margin")},
    **{f"{n.upper()}{suffix}": (f"jiang2020_{n}", {"conv": conv}, None)
       for n in ("log_spec_init_main", "log_spec_orig_main", "log_prod_of_spec_over_margin", "log_prod_of_spec",
                 "log_sum_of_spec_over_margin", "log_sum_of_spec", "dist_spec_init")
       for suffix, conv in (("", "reshaped"), ("_FFT", "fft"))},
}


def unadjusted(name: str, value: float, m: int) -> float:
    """Undo their final adjust_measure: (v − ln m)/2 for LOG_ names, sqrt(v/m) for the others."""
    return 2 * value + math.log(m) if name.startswith("LOG_") else value ** 2 * m


def conv_nin_like(seed: int) -> nn.Sequential:
    """Conv-only, stride 1, BatchNorm after each conv, modules named like their NiN (conv*/bn*), global average
    pooling as AvgPool2d over the whole 8×8 map (their AdaptiveAvgPool2d((1, 1)) on this input)."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(2, 6, 3, padding=1), bn1=nn.BatchNorm2d(6), relu1=nn.ReLU(),
        conv2=nn.Conv2d(6, 4, 1), bn2=nn.BatchNorm2d(4), relu2=nn.ReLU(),
        pool=nn.AvgPool2d(8), flatten=nn.Flatten()))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.6 + (0.3 if p.dim() == 1 else 0.0))
        for bn in (net.bn1, net.bn2):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen) * 0.2)
            bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def mlp_case():
    model, init, (x, y) = cost_model(depth=2, width=16, n_train=100, epochs=20)
    return model, init, (x, y), (1, 28, 28), 10


@pytest.fixture(scope="module")
def conv_case():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(60, 2, 8, 8, generator=gen)
    model = conv_nin_like(0)
    with torch.no_grad():
        y = model(x).argmax(dim=1)        # labels the model fits: margins are positive, γ is not 0
    return model, conv_nin_like(1), (x, y), (2, 8, 8), 4


def _peer_values(case):
    model, init, (x, y), shape, classes = case
    wrapped, wrapped_init = peer.PeerModel(model, shape, classes), peer.PeerModel(init, shape, classes)
    loader = peer.eval_loader(x, y)
    return peer.get_all_measures(wrapped, wrapped_init, loader, peer.accuracy(wrapped, loader), 0)


@pytest.mark.parametrize("case_name", ["mlp_case", "conv_case"])
def test_port_agrees_with_gapbench_where_the_quantity_is_the_same(case_name, request):
    case = request.getfixturevalue(case_name)
    model, init, data = case[:3]
    theirs = _peer_values(case)
    m = data[0].shape[0]
    compared = []
    for name, (ours_name, params, transform) in SAME.items():
        if case_name == "mlp_case":
            params = {}                   # a dense layer has one operator norm: no conv option applies
        if ours_name in ("jiang2020_path_norm", "jiang2020_path_norm_over_margin") and case_name == "conv_case":
            continue                      # gapbench's path norms refuse pooling between weight layers
        ours = measure(ours_name, model, data, init=init, **params)
        ours = transform(ours) if transform else ours
        got = unadjusted(name, theirs[CT[name]], m)
        # theirs is float32: on the conv net its 1/γ² (γ ≈ 0.056) is off by 2e-4 relative (measured)
        tolerance = 2e-4 if case_name == "mlp_case" else 1e-3
        assert got == pytest.approx(ours, rel=tolerance, abs=tolerance), (name, ours_name)
        compared.append(name)
    assert len(compared) == (27 if case_name == "mlp_case" else 25)


def test_port_pacbayes_formulas_given_its_sigma(mlp_case):
    model, init, data = mlp_case[:3]
    theirs = _peer_values(mlp_case)
    m = data[0].shape[0]
    std = 1 / math.sqrt(unadjusted("PACBAYES_FLATNESS", theirs[CT.PACBAYES_FLATNESS], m))
    dist2 = measure("jiang2020_fro_dist", model, data, init=init)
    assert unadjusted("PACBAYES_INIT", theirs[CT.PACBAYES_INIT], m) == pytest.approx(
        dist2 / (4 * std ** 2) + math.log(m / std) + 10, rel=1e-4)
    assert 0 < std <= 2                   # their bisection lives in [0, 2]


def test_missing_port_is_a_clear_error(tmp_path):
    with pytest.raises(GapbenchError, match=r"The peer port .*missing\.py is not there \(it lives in the "
                                            r"repository's benchmarks/ folder"):
        load_peer_port(tmp_path / "missing.py")
