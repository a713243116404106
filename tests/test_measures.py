"""Measures against slow references (tests/reference_measures.py) over shared settings, the conventions over
the whole registry, invariances, hand-worked numbers and error messages."""

from __future__ import annotations

import copy
import inspect
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import reference_measures as ref  # noqa: E402

from gapbench.errors import GapbenchError  # noqa: E402
from gapbench.layers import fold_batchnorm  # noqa: E402
from gapbench.measures import (  # noqa: E402
    MEASURES,
    accepted_params,
    conv_operator_norm_fft,
    conv_reshaped_spectral,
    list_measures,
    measure,
    per_example_margins,
    per_layer,
    sharpness_search,
)
from gapbench.measures.conv import spectral_norms  # noqa: E402

torch.set_num_threads(1)


# ---------------------------------------------------------------- settings


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.7)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


@dataclass
class Setting:
    name: str
    build: object            # seed -> model
    input_shape: tuple
    num_classes: int = 3

    def model(self, seed: int = 0) -> nn.Module:
        return _randomize(self.build(), seed)

    def data(self, n: int = 24, seed: int = 7):
        gen = torch.Generator().manual_seed(seed)
        return (torch.randn((n, *self.input_shape), generator=gen),
                torch.randint(0, self.num_classes, (n,), generator=gen))


SETTINGS = [
    Setting("tiny_mlp_bias", lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)),
            (4,)),
    Setting("tiny_mlp_nobias", lambda: nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(),
                                                     nn.Linear(3, 4, bias=False), nn.ReLU(),
                                                     nn.Linear(4, 3, bias=False)), (4,)),
    Setting("tiny_cnn", lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(2 * 5 * 5, 3)), (1, 5, 5)),
    Setting("mlp_with_bn", lambda: nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                                                 nn.Linear(6, 3)), (4,)),
]
IDS = [s.name for s in SETTINGS]
FC = [s for s in SETTINGS if s.name != "tiny_cnn"]
FC_IDS = [s.name for s in FC]

FAST_SEARCH = {"n_samples": 2, "iters": 4}   # keeps the sharpness searches tiny in the registry-wide tests
COMPLEXITIES = ("bartlett2017_complexity", "bartlett2017_complexity_nk", "neyshabur2018_complexity",
                "neyshabur2018_complexity_nk", "neyshabur2018_complexity_noinit", "neyshabur2019_complexity")
NOT_APPLICABLE = {   # (measure, setting) pairs that must raise a GapbenchError with this text
    **{(n, "tiny_cnn"): "fully connected" for n in COMPLEXITIES},
    ("neyshabur2019_complexity", "tiny_mlp_nobias"): "one hidden layer",
}


def _params(name: str, setting: Setting) -> dict:
    accepted = accepted_params(name)
    params = {k: v for k, v in FAST_SEARCH.items() if k in accepted}
    if "gamma" in accepted and accepted["gamma"].default is inspect.Parameter.empty:
        params["gamma"] = 0.3
    if "other" in accepted:
        params["other"] = setting.model(seed=5)
    return params


# ---------------------------------------------------------------- conventions over the registry


def test_registry_metadata_is_complete():
    kinds = {"norm", "margin", "sharpness", "path", "complexity", "count"}
    assert len(list_measures()) >= 40
    for entry in list_measures():
        assert entry.kind in kinds
        assert isinstance(entry.needs_data, bool) and isinstance(entry.needs_init, bool)
        assert isinstance(entry.higher_is_better, bool) and len(entry.reference) > 10
        assert "bound" not in entry.name and entry.obj.__doc__


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_every_measure_follows_the_conventions(setting, capsys):
    model, init, data = setting.model(0), setting.model(1), setting.data()
    model.train()
    snapshot = (copy.deepcopy(model.state_dict()), copy.deepcopy(init.state_dict()), data[0].clone(),
                data[1].clone())
    for entry in list_measures():
        params = _params(entry.name, setting)
        if (entry.name, setting.name) in NOT_APPLICABLE:
            with pytest.raises(GapbenchError, match=NOT_APPLICABLE[(entry.name, setting.name)]):
                measure(entry.name, model, data, init=init, **params)
            continue
        rng = torch.get_rng_state()
        first = measure(entry.name, model, data, init=init, **params)
        assert torch.equal(rng, torch.get_rng_state()), entry.name          # no global RNG
        assert math.isfinite(first), entry.name
        assert measure(entry.name, model, data, init=init, **params) == first, entry.name   # deterministic
        model.eval()
        in_eval = measure(entry.name, model, data, init=init, **params)
        assert in_eval == pytest.approx(first, rel=1e-12), entry.name        # same in train and eval mode
        assert not model.training                                           # mode left as it was
        model.train()
        assert model.training
    assert capsys.readouterr().out == ""                                     # no printing
    for before, after in zip(snapshot[:2], (model.state_dict(), init.state_dict()), strict=True):
        assert all(torch.equal(before[k], after[k]) for k in before)       # model and init untouched
    assert torch.equal(snapshot[2], data[0]) and torch.equal(snapshot[3], data[1])
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_every_measure_rejects_unknown_and_bad_params():
    setting = SETTINGS[0]
    model, init, data = setting.model(0), setting.model(1), setting.data()
    for entry in list_measures():
        accepted = accepted_params(entry.name)
        with _raises(r"The parameter\(s\) \['bogus_param'\] of measure\('[a-z0-9_]+'\) are not accepted\. Accepted"):
            measure(entry.name, model, data, init=init, bogus_param=1)
        for param, spec in accepted.items():
            bad = -3 if isinstance(spec.default, str) else "bogus"
            params = {**_params(entry.name, setting), param: bad}
            with _raises(rf"^The '{param}' parameter of measure\('{entry.name}'\) "
                                                    rf"must be .* Got .* instead\."):
                measure(entry.name, model, data, init=init, **params)


def test_measures_accept_a_state_dict_init_and_a_split():
    from gapbench.data.types import Split
    setting = SETTINGS[0]
    model, init, (x, y) = setting.model(0), setting.model(1), setting.data()
    split = Split(x=x, y=y, indices=torch.arange(len(y)), source="train")
    from_state = measure("dist_from_init_fro", model, init=init.state_dict())
    assert from_state == measure("dist_from_init_fro", model, init=init)
    assert measure("margin_quantile", model, split) == measure("margin_quantile", model, (x, y))


# ---------------------------------------------------------------- values against the references


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_norm_measures_match_numpy(setting):
    model, init, data = setting.model(0), setting.model(1), setting.data()
    weights = [w for w, _, _ in ref.folded_weights(model)]
    inits = [w for w, _, _ in ref.folded_weights(init)]
    conv_ok = [ref.spectral_norm(_operator(w, m, setting)) for (w, _, m) in ref.folded_weights(model)]
    fro = [ref.frobenius(w) for w in weights]
    assert measure("frobenius_product", model) == pytest.approx(math.prod(fro), rel=1e-10)
    assert measure("frobenius_sum", model) == pytest.approx(sum(fro), rel=1e-10)
    assert measure("spectral_product", model, data) == pytest.approx(math.prod(conv_ok), rel=1e-9)
    assert measure("spectral_sum", model, data) == pytest.approx(sum(conv_ok), rel=1e-9)
    assert measure("fro_over_spec", model, data) == pytest.approx(
        sum(f ** 2 / s ** 2 for f, s in zip(fro, conv_ok, strict=True)), rel=1e-9)
    dist = [ref.frobenius(w - z) for w, z in zip(weights, inits, strict=True)]
    total = math.sqrt(sum(d * d for d in dist))          # the norm of the concatenation, not Σ_l of norms
    assert measure("dist_from_init_fro", model, init=init) == pytest.approx(total)
    assert per_layer("dist_from_init_fro", model, init=init) == pytest.approx(dist, rel=1e-12)
    assert measure("dist_between", model, other=init) == measure("dist_from_init_fro", model, init=init)
    dist_spec = [ref.spectral_norm(_operator(w - z, m, setting))
                 for (w, _, m), z in zip(ref.folded_weights(model), inits, strict=True)]
    assert measure("dist_from_init_spec", model, data, init=init) == pytest.approx(sum(dist_spec), rel=1e-9)
    all_params = [v for w, b, _ in ref.folded_weights(model) for v in [w, b] if v is not None]
    assert measure("param_norm", model) == pytest.approx(math.sqrt(sum(ref.frobenius(p) ** 2
                                                                       for p in all_params)))
    assert measure("num_params", model) == sum(p.numel() for p in model.parameters())


def _operator(w: np.ndarray, module: nn.Module, setting: Setting) -> np.ndarray:
    """The operator behind conv='fft': the circular convolution matrix for conv layers, W for Linear."""
    if isinstance(module, nn.Conv2d):
        p = module.padding[0]
        return ref.conv_matrix(w, (w.shape[1], *setting.input_shape[1:]), (p, p, p, p), circular=True)
    return w


def test_power_iteration_approaches_the_exact_spectral_norm():
    setting = SETTINGS[2]
    model, data = setting.model(0), setting.data()
    exact = measure("spectral_product", model, data)
    power = measure("spectral_product", model, data, method="power", iters=500)
    assert power == pytest.approx(exact, rel=1e-6)
    assert measure("spectral_product", model, data, method="power", iters=1) <= exact * (1 + 1e-12)


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_margin_measures_match_loops(setting):
    model, (x, y) = setting.model(0), setting.data(n=23)
    gammas = ref.margins(model, x, y)
    assert per_example_margins(model, (x, y)).tolist() == pytest.approx(gammas, rel=1e-12, abs=1e-12)
    assert measure("margin_quantile", model, (x, y)) == pytest.approx(ref.kth_smallest(gammas, 2))   # ⌊2.3⌋
    assert measure("margin_quantile", model, (x, y), q=0.5) == pytest.approx(ref.kth_smallest(gammas, 11))
    assert measure("median_margin", model, (x, y)) == pytest.approx(ref.median(gammas))
    assert measure("min_margin", model, (x, y)) == pytest.approx(min(gammas))
    assert measure("error", model, (x, y)) == sum(g <= 0 for g in gammas) / 23
    threshold = sorted(gammas)[5]                                  # a tie: Γ = γ counts as a margin loss
    assert measure("margin_loss", model, (x, y), gamma=threshold) == 6 / 23


def test_margin_ties_count_as_errors():
    model = nn.Sequential(nn.Linear(2, 3, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    x, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 2])
    assert per_example_margins(model, (x, y)).tolist() == [0.0, 2.0]
    assert measure("error", model, (x, y)) == 0.5
    assert measure("margin_loss", model, (x, y), gamma=2.0) == 1.0


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_path_norms_match_explicit_enumeration(setting):
    model, data = setting.model(0), setting.data()
    layers = ref.dense_layers(model, setting.input_shape)
    l2, l1 = ref.path_norms(layers, 2.0), ref.path_norms(layers, 1.0)
    assert measure("path_norm_l2", model, data) == pytest.approx(math.sqrt((l2 ** 2).sum()), rel=1e-10)
    assert measure("path_norm_l1", model, data) == pytest.approx(l1.sum(), rel=1e-10)
    assert measure("jiang2020_path_norm", model, data) == pytest.approx((l2 ** 2).sum(), rel=1e-10)


@pytest.mark.parametrize("setting", FC, ids=FC_IDS)
def test_complexities_match_numpy(setting):
    model, init, (x, y) = setting.model(0), setting.model(1), setting.data()
    w = [a for a, _, _ in ref.folded_weights(model)]
    z = [a for a, _, _ in ref.folded_weights(init)]
    bound, depth = ref.input_bound(x), len(w)
    outputs, hidden = max(a.shape[0] for a in w), max(a.shape[0] for a in w[:-1])
    data = (x, y)
    assert measure("bartlett2017_complexity", model, data, init=init) == pytest.approx(
        ref.bartlett(w, z, bound, "outputs"), rel=1e-9)
    assert measure("bartlett2017_complexity_nk", model, data, init=init) == pytest.approx(
        ref.bartlett(w, z, bound, "inputs"), rel=1e-9)
    assert measure("neyshabur2018_complexity", model, data, init=init) == pytest.approx(
        ref.neyshabur2018(w, z, bound, depth, outputs), rel=1e-9)
    assert measure("neyshabur2018_complexity_nk", model, data, init=init) == pytest.approx(
        ref.neyshabur2018(w, z, bound, depth - 1, hidden), rel=1e-9)
    zeros = [np.zeros_like(a) for a in w]
    assert measure("neyshabur2018_complexity_noinit", model, data) == pytest.approx(
        ref.neyshabur2018(w, zeros, bound, depth, outputs), rel=1e-9)
    median = ref.median(ref.margins(model, x, y))
    if median > 0:
        assert measure("bartlett2017_complexity", model, data, init=init, normalize="gamma_sqrt_m",
                       gamma="median") == pytest.approx(ref.bartlett(w, z, bound, "outputs")
                                                        / (median * math.sqrt(len(y))), rel=1e-9)


def _integer_net():
    """x = (3, 4) so B = 5; W1 = [[3, 0], [4, 0]] (‖·‖₂ = 5, row norms 3 + 4 = 7, column norms 5 + 0 = 5);
    W2 = diag(1, 2) (‖·‖₂ = 2, ‖·‖_F = √5, row and column norms 1 + 2 = 3)."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0], [4.0, 0.0]]))
        model[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    zero = copy.deepcopy(model)
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    return model, zero, (torch.tensor([[3.0, 4.0]]), torch.tensor([0]))


def test_complexities_hand_worked_on_an_integer_net():
    model, zero, data = _integer_net()
    # B · Π‖W‖₂ · (Σ (‖(W−Z)ᵀ‖_{2,1}/‖W‖₂)^{2/3})^{3/2} = 5 · 10 · ((7/5)^{2/3} + (3/2)^{2/3})^{3/2}
    assert measure("bartlett2017_complexity", model, data, init=zero) == pytest.approx(
        50 * ((7 / 5) ** (2 / 3) + (3 / 2) ** (2 / 3)) ** 1.5, rel=1e-12)
    assert measure("bartlett2017_complexity_nk", model, data, init=zero) == pytest.approx(
        50 * (1 + (3 / 2) ** (2 / 3)) ** 1.5, rel=1e-12)
    # B · d · √h · Π‖W‖₂ · sqrt(Σ ‖W−Z‖_F²/‖W‖₂²) = 5 · 2 · √2 · 10 · sqrt(25/25 + 5/4) = 150√2; NK: d = 1
    assert measure("neyshabur2018_complexity", model, data, init=zero) == pytest.approx(150 * math.sqrt(2))
    assert measure("neyshabur2018_complexity_nk", model, data, init=zero) == pytest.approx(75 * math.sqrt(2))
    assert measure("neyshabur2018_complexity_noinit", model, data) == pytest.approx(150 * math.sqrt(2))
    assert measure("neyshabur2018_complexity", model, data, init=zero, normalize="gamma_sqrt_m",
                   gamma=10.0) == pytest.approx(15 * math.sqrt(2))           # ÷ (γ √m) = ÷ (10 · 1)
    # Z1 = [[1, 0], [0, 0]]: B · ‖W2‖_F · (‖W1 − Z1‖_F + ‖Z1‖₂) = 5 · √5 · (√20 + 1) = 50 + 5√5
    init = copy.deepcopy(zero)
    with torch.no_grad():
        init[0].weight[0, 0] = 1.0
    assert measure("neyshabur2019_complexity", model, data, init=init) == pytest.approx(50 + 5 * math.sqrt(5))


@pytest.mark.parametrize("setting", SETTINGS, ids=IDS)
def test_jiang_measures_match_numpy(setting):
    model, init, (x, y) = setting.model(0), setting.model(1), setting.data(n=30)
    weights = [w for w, _, _ in ref.folded_weights(model)]
    inits = [w for w, _, _ in ref.folded_weights(init)]
    spec2 = [ref.spectral_norm(_operator(w, m, setting)) ** 2 for w, _, m in ref.folded_weights(model)]
    fro2 = [ref.frobenius(w) ** 2 for w in weights]
    dist2 = [ref.frobenius(w - z) ** 2 for w, z in zip(weights, inits, strict=True)]
    gamma = abs(ref.kth_smallest(ref.margins(model, x, y), 30 // 10))
    d, data = len(weights), (x, y)
    expected = {
        "inverse_margin": 1 / gamma ** 2,
        "log_prod_of_spec": sum(map(math.log, spec2)),
        "log_prod_of_spec_over_margin": sum(map(math.log, spec2)) - 2 * math.log(gamma),
        "log_spec_init_main": sum(map(math.log, spec2)) - 2 * math.log(gamma)
        + math.log(sum(a / s for a, s in zip(dist2, spec2, strict=True))),
        "log_spec_orig_main": sum(map(math.log, spec2)) - 2 * math.log(gamma)
        + math.log(sum(f / s for f, s in zip(fro2, spec2, strict=True))),
        "log_sum_of_spec": math.log(d) + sum(map(math.log, spec2)) / d,
        "log_sum_of_fro_over_margin": math.log(d) + (sum(map(math.log, fro2)) - 2 * math.log(gamma)) / d,
        "fro_dist": sum(dist2),
        "param_norm": sum(fro2),
        "dist_spec_init": sum(ref.spectral_norm(_operator(w - z, m, setting)) ** 2
                              for (w, _, m), z in zip(ref.folded_weights(model), inits, strict=True)),
    }
    for name, value in expected.items():
        assert measure(f"jiang2020_{name}", model, data, init=init) == pytest.approx(value, rel=1e-9), name


# ---------------------------------------------------------------- conv operator norms


@pytest.mark.parametrize("c_out,c_in,k,h,w", [(2, 3, 3, 4, 4), (3, 1, 2, 5, 3), (1, 2, 3, 3, 5)])
def test_conv_fft_norm_equals_the_circular_convolution_matrix(c_out, c_in, k, h, w):
    gen = torch.Generator().manual_seed(k + h)
    weight = torch.randn(c_out, c_in, k, k, generator=gen, dtype=torch.float64)
    pad = (k // 2, k - 1 - k // 2, k // 2, k - 1 - k // 2)               # keeps the H×W grid
    matrix = ref.conv_matrix(weight.numpy(), (c_in, h, w), pad, circular=True)
    exact = ref.spectral_norm(matrix)
    assert float(conv_operator_norm_fft(weight, (h, w))) == pytest.approx(exact, rel=1e-10)
    assert float(conv_operator_norm_fft(weight, (h, w), method="power", iters=2000)) == pytest.approx(
        ref.spectral_norm(matrix), rel=1e-6)
    reshaped = ref.spectral_norm(weight.numpy().reshape(c_out, -1))
    assert float(conv_reshaped_spectral(weight)) == pytest.approx(reshaped, rel=1e-12)


def test_conv_option_selects_the_reshaped_approximation():
    setting = SETTINGS[2]
    model, data = setting.model(0), setting.data()
    (w, _, _), (w2, _, _) = ref.folded_weights(model)
    expected = ref.spectral_norm(w.reshape(w.shape[0], -1)) * ref.spectral_norm(w2)
    assert measure("spectral_product", model, conv="reshaped") == pytest.approx(expected, rel=1e-10)
    first = per_layer("spectral", model, data, conv="reshaped")[0]
    assert first == pytest.approx(expected / ref.spectral_norm(w2))


def test_spectral_norms_of_a_batch_match_numpy():
    batch = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert spectral_norms(batch).tolist() == pytest.approx([ref.spectral_norm(a.numpy()) for a in batch])


# ---------------------------------------------------------------- sharpness


def test_sharpness_search_brackets_the_target_and_reports_the_kl():
    setting = SETTINGS[0]
    model, init, (x, y) = setting.model(0), setting.model(1), setting.data(n=40)
    result = sharpness_search(model, (x, y), init=init, n_samples=3, iters=8, std_low=1e-3, std_high=10.0,
                              seed=3, tolerance=0, std_rtol=0)          # every step: the bracket is 2^-8 wide
    assert result.saturated == ""
    base = sum(g <= 0 for g in ref.margins(model, x, y)) / 40
    assert result.base_error == pytest.approx(base)
    at = ref.perturbed_error(model, x, y, result.std, 3, 3)
    assert at == pytest.approx(result.perturbed_error) and at - base <= 0.1
    step = math.exp(math.log(10.0 / 1e-3) / 2 ** 8)                       # the bisection's resolution
    assert ref.perturbed_error(model, x, y, result.std * step, 3, 3) - base > 0.1
    params = [p for w, b, _ in ref.folded_weights(model) for p in (w, b)]
    params0 = [p for w, b, _ in ref.folded_weights(init) for p in (w, b)]
    kl = sum(ref.frobenius(p - q) ** 2 for p, q in zip(params, params0, strict=True)) / (2 * result.std ** 2)
    assert result.kl == pytest.approx(kl, rel=1e-10)
    assert measure("pacbayes_sharpness", model, (x, y), n_samples=3, iters=8, std_low=1e-3, std_high=10.0,
                   seed=3, tolerance=0, std_rtol=0) == result.std
    assert measure("jiang2020_pacbayes_flatness", model, (x, y), n_samples=3, iters=8, std_low=1e-3,
                   std_high=10.0, seed=3, tolerance=0, std_rtol=0) == pytest.approx(1 / result.std ** 2)


def test_magnitude_aware_search_uses_noise_var_sigma2_w2_plus_eps2():
    setting = SETTINGS[0]
    model, (x, y) = setting.model(0), setting.data(n=40)
    result = sharpness_search(model, (x, y), magnitude=True, n_samples=2, iters=6, std_low=1e-3,
                              std_high=10.0)
    at = ref.perturbed_error(model, x, y, result.std, 2, 0, magnitude=True)
    assert at == pytest.approx(result.perturbed_error) and at - result.base_error <= 0.1


def test_sharpness_saturates_at_std_high_when_the_error_cannot_rise():
    model = nn.Sequential(nn.Linear(2, 2))
    x, y = torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)
    result = sharpness_search(model, (x, y), target=1.0, n_samples=1, iters=2)
    assert result.saturated == "high" and result.std == 1.0
    mag = sharpness_search(model, (x, y), magnitude=True, target=1.0, n_samples=1, iters=2)
    assert mag.saturated == "high" and mag.std == 2.0         # the magnitude-aware range: σ' up to 2


# ---------------------------------------------------------------- invariances


def _rescaled(model: nn.Sequential, first: int, second: int, scale: torch.Tensor) -> nn.Sequential:
    """Multiply layer `first`'s rows (and bias) by scale > 0 and layer `second`'s columns by 1/scale."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        out[first].weight.mul_(scale[:, None])
        if out[first].bias is not None:
            out[first].bias.mul_(scale)
        out[second].weight.div_(scale[None, :])
    return out


def test_relu_rescaling_keeps_outputs_path_norms_and_spectral_product():
    setting = SETTINGS[1]
    model, (x, y) = setting.model(0), setting.data()
    unit = _rescaled(model, 2, 4, torch.tensor([2.0, 0.5, 3.0, 0.25]))       # per-unit: path norms invariant
    assert torch.allclose(unit(x), model(x), atol=1e-5)
    for name in ("path_norm_l2", "path_norm_l1", "median_margin", "error"):
        assert measure(name, unit, (x, y)) == pytest.approx(measure(name, model, (x, y)), rel=1e-6), name
    layer = _rescaled(model, 0, 2, torch.full((3,), 4.0))                      # whole layer: Π‖W‖₂ invariant
    assert measure("spectral_product", layer) == pytest.approx(measure("spectral_product", model), rel=1e-10)
    expected = measure("frobenius_product", model)
    assert measure("frobenius_product", layer) == pytest.approx(expected, rel=1e-10)


def test_batchnorm_folding_preserves_every_measure():
    setting = SETTINGS[3]
    model, init, data = setting.model(0), setting.model(1), setting.data()
    folded, folded_init = fold_batchnorm(model), fold_batchnorm(init)
    assert torch.allclose(folded(data[0]), model.eval()(data[0]), atol=1e-5)
    for entry in list_measures():
        if entry.name == "num_params" or entry.kind == "sharpness":
            continue
        params = _params(entry.name, setting)
        if "other" in params:
            params["other"] = fold_batchnorm(params["other"])
        assert measure(entry.name, folded, data, init=folded_init, **params) == pytest.approx(
            measure(entry.name, model, data, init=init, **_params(entry.name, setting)), rel=1e-6), entry.name


# ---------------------------------------------------------------- error messages


def _raises(pattern: str):
    return pytest.raises(GapbenchError, match=pattern)


def test_error_messages():
    setting = SETTINGS[0]
    model, init, data = setting.model(0), setting.model(1), setting.data()
    with _raises(r"Unknown measure 'spectral_prod'\. Did you mean 'spectral_product'"):
        measure("spectral_prod", model)
    with _raises(r"The 'data' parameter of measure\('median_margin'\) must be a Split or an \(x, y\) "
                 r"pair of tensors\. Got None instead\. 'median_margin' is computed on data"):
        measure("median_margin", model)
    with _raises(r"The 'init' parameter of measure\('dist_from_init_fro'\) .* Got None"):
        measure("dist_from_init_fro", model)
    with _raises(r"measure\('margin_loss'\) needs the parameter\(s\) \['gamma'\]"):
        measure("margin_loss", model, data)
    with _raises(r"The 'init' parameter .* must be weights of the same architecture"):
        measure("dist_from_init_fro", model, init=SETTINGS[1].model())
    with _raises(r"The 'data' parameter of measure\('error'\) must be a Split or an \(x, y\) pair of tensors\. "
                 r"Got 'list' instead"):
        measure("error", model, [1, 2, 3])
    with _raises(r"The 'gamma' parameter of measure\('bartlett2017_complexity'\) must "
                 r"be a float > 0 \(the target margin"):
        measure("bartlett2017_complexity", model, data, init=init, normalize="gamma_sqrt_m")
    with _raises(r"The 'model' parameter of measure\('neyshabur2019_complexity'\) must "
                 r"be a net with one hidden layer"):
        measure("neyshabur2019_complexity", SETTINGS[1].model(), data, init=SETTINGS[1].model(1))
    cnn = SETTINGS[2].model()
    with _raises(r"The 'input_shape' parameter of measure\('spectral_product'\) must "
                 r"be the \(C, H, W\) input shape"):
        measure("spectral_product", cnn)
    strided = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(8, 3))
    with _raises(r"conv='fft' needs stride-1 convolutions.*conv='reshaped'"):
        measure("spectral_product", strided, input_shape=(1, 5, 5))
    with _raises(r"Unknown per-layer quantity 'spec'"):
        per_layer("spec", model)
    with _raises(r"cannot handle module '1' of class Tanh"):
        measure("spectral_product", nn.Sequential(nn.Linear(2, 2), nn.Tanh()))
    with _raises(r"The 'model' parameter of measure\('num_params'\) must be an "
                 r"nn.Module"):
        measure("num_params", "not a model")
    with _raises(r"The 'std_high' parameter of measure\('pacbayes_sharpness'\) must be a float > std_low"):
        measure("pacbayes_sharpness", model, data, std_low=1.0, std_high=0.5)
    with _raises(r"The 'other' parameter of per_layer\('dist_between'\) must be an nn.Module"):
        per_layer("dist_between", model, other=3)
    with _raises(r"per_layer\('dist_between'\) needs the parameter\(s\) \['other'\]"):
        per_layer("dist_between", model)


def test_per_layer_values_match_numpy():
    setting = SETTINGS[2]
    model, other, data = setting.model(0), setting.model(2), setting.data()
    layers = ref.folded_weights(model)
    others = [w for w, _, _ in ref.folded_weights(other)]
    assert per_layer("frobenius", model) == pytest.approx([ref.frobenius(w) for w, _, _ in layers])
    assert per_layer("spectral", model, data) == pytest.approx(
        [ref.spectral_norm(_operator(w, m, setting)) for w, _, m in layers], rel=1e-10)
    assert per_layer("dist_between", model, other=other.state_dict()) == pytest.approx(
        [ref.frobenius(w - z) for (w, _, _), z in zip(layers, others, strict=True)])
    assert per_layer("dist_from_init_spec", model, data, init=other) == pytest.approx(
        [ref.spectral_norm(_operator(w - z, m, setting))
         for (w, _, m), z in zip(layers, others, strict=True)])
    assert "spectral_product" in MEASURES
