import copy
import math

import numpy as np
import pytest
import reference_bounds as ref
import torch
from scipy import stats
from torch import nn

from gapbench.bounds import BOUNDS, bound, list_bounds
from gapbench.bounds import heldout as ho
from gapbench.bounds.kl import (
    binomial_inverse_beta,
    binomial_inverse_upper,
    grid_exponent_up,
    grid_index_weight,
    kl_bernoulli,
    kl_inverse_upper,
)
from gapbench.bounds.margin_linear import linear_margin
from gapbench.bounds.pacbayes import kl_diag_gaussians, pacbayes_kl
from gapbench.bounds.spectral import bartlett2017
from gapbench.data.types import Split
from gapbench.errors import GapbenchError

torch.set_num_threads(1)
HELDOUT = (
    "heldout_binomial",
    "heldout_kl",
    "heldout_hoeffding",
    "heldout_bernstein",
    "heldout_empirical_bernstein",
)


def labelled(n: int, flipped: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n points labelled by argmax(x), the first `flipped` labels wrong: exactly `flipped` errors."""
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))
    y = x.argmax(1)
    y[:flipped] = 1 - y[:flipped]
    return x, y


def heldout_value(name, n, k, delta, family_size=1):
    return ho.heldout_bound(name, n, k, delta=delta, family_size=family_size).value


# ---- SPEC check numbers ---------------------------------------------------------------------------------


def test_spec_check_numbers():
    assert ho.bernstein_slack(10_000, 0.1, 1.0, 10**9) == pytest.approx(0.0694, abs=5e-5)
    assert ho.bernstein_slack(10_000, 0.1, 0.05**2, 10**9) == pytest.approx(0.0049, abs=5e-5)
    assert ho.hoeffding_slack(10_000, 0.05, 10**9) == pytest.approx(0.0344, abs=5e-5)
    assert ho.bernstein_slack(10_000, 0.05, 0.25, 10**9) == pytest.approx(0.0360, abs=5e-5)
    assert ho.hoeffding_slack(10_000, 0.05, 1) == pytest.approx(0.0122, abs=5e-5)
    assert binomial_inverse_upper(100, 3, 0.05) == pytest.approx(0.07571, abs=5e-6)
    assert ho.heldout_binomial_value(100, 3, 0.05 * 7, family_size=7) == binomial_inverse_upper(100, 3, 0.05)


def test_hand_worked_formulas():
    log_term = math.log(2 * 3 / 0.05)  # ln(2|F|/δ), |F| = 3
    expected = math.sqrt(2 * 0.09 * log_term / 50) + 7 * 2.0 * log_term / (3 * 49)
    assert ho.empirical_bernstein_slack(50, 0.05, 0.09, 3, loss_range=2.0) == pytest.approx(
        expected, rel=1e-12
    )
    assert ho.zero_one_sample_var(10, 3) == pytest.approx(np.var([1] * 3 + [0] * 7, ddof=1))
    assert ho.heldout_kl_value(200, 10, 0.05, 4) == pytest.approx(
        ref.kl_inverse(0.05, math.log(80) / 200), abs=1e-8
    )


# ---- numeric cores vs slow references -------------------------------------------------------------------


@pytest.mark.parametrize("n,k", [(1, 0), (1, 1), (5, 2), (20, 0), (20, 19), (100, 3), (150, 40)])
@pytest.mark.parametrize("delta", [0.01, 0.05, 0.3])
def test_binomial_inverse_matches_beta_and_brute_force(n, k, delta):
    value = binomial_inverse_upper(n, k, delta)
    assert value == pytest.approx(binomial_inverse_beta(n, k, delta), abs=1e-9)
    assert value == pytest.approx(ref.binomial_inverse(n, k, delta), abs=1e-9)
    if k < n:
        assert stats.binom.cdf(k, n, value) <= delta + 1e-9 <= stats.binom.cdf(k, n, value - 1e-8) + 2e-9


@pytest.mark.parametrize(
    "q,c", [(0.0, 0.01), (0.03, 0.05), (0.5, 0.2), (0.9, 0.001), (0.2, 0.0), (0.99, 5.0)]
)
def test_kl_inverse_matches_reference(q, c):
    value = kl_inverse_upper(q, c)
    assert value == pytest.approx(ref.kl_inverse(q, c), abs=1e-8)
    assert value >= q and (value == 1.0 or kl_bernoulli(q, value) >= c - 1e-9)


def test_kl_bernoulli_matches_reference():
    for q, p in [(0.0, 0.3), (1.0, 0.4), (0.2, 0.7), (0.5, 0.5)]:
        assert kl_bernoulli(q, p) == pytest.approx(ref.kl(q, p), abs=1e-14)


@pytest.mark.parametrize("n", [10, 50, 200, 1000])
@pytest.mark.parametrize("family_size", [1, 100])
def test_binomial_le_kl_le_hoeffding(n, family_size):
    for k in sorted({0, 1, n // 20, n // 4, n // 2, n - 1, n}):
        binomial, kl, hoeff = (
            heldout_value(name, n, k, 0.05, family_size)
            for name in ("heldout_binomial", "heldout_kl", "heldout_hoeffding")
        )
        assert binomial <= kl + 1e-9 <= hoeff + 2e-9


@pytest.mark.parametrize("name", HELDOUT)
def test_monotone_in_delta_n_and_family(name):
    deltas = [0.5, 0.1, 0.05, 0.01, 0.001]
    values = [heldout_value(name, 400, 40, d) for d in deltas]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    values = [heldout_value(name, n, n // 10, 0.05) for n in (100, 200, 400, 800, 1600)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    values = [heldout_value(name, 400, 40, 0.05, f) for f in (1, 10, 1000, 10**9)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize("p", [0.03, 0.2, 0.5])
def test_failure_rate_of_heldout_bounds_is_at_most_delta(p):
    """20,000 simulated held-out sets of n = 200 Bernoulli(p) losses: each bound fails (value < p) with
    frequency ≤ δ up to 3 Monte Carlo standard errors of a rate δ."""
    n, trials, delta = 200, 20_000, 0.1
    ks = np.random.default_rng(12345).binomial(n, p, size=trials)
    tolerance = 3 * math.sqrt(delta * (1 - delta) / trials)
    # every bound, plus KKB's Bernstein form with the true variance p(1 − p): a valid assumption
    for name, assume_var in [(name, None) for name in HELDOUT] + [("heldout_bernstein", p * (1 - p))]:
        table = {
            k: ho.heldout_bound(name, n, int(k), delta=delta, assume_var=assume_var).value
            for k in np.unique(ks)
        }
        failures = np.mean([table[k] < p for k in ks])
        assert failures <= delta + tolerance, (name, assume_var, failures)
    # power: the binomial bound with half its slack removed fails far more often than δ
    half = {k: ho.heldout_bound("heldout_binomial", n, int(k), delta=delta) for k in np.unique(ks)}
    assert np.mean([half[k].value - half[k].terms["slack"] / 2 < p for k in ks]) > delta + 10 * tolerance


def test_union_weights_sum_to_at_most_one():
    assert [grid_index_weight(j) for j in range(-6, 7)] == pytest.approx(
        [ref.union_weight(j) for j in range(-6, 7)]
    )
    total = math.fsum(grid_index_weight(j) for j in range(-100_000, 100_001))
    assert 1 - 1e-5 < total <= 1.0
    assert grid_exponent_up(4.0) == 2 and grid_exponent_up(4.1) == 3 and grid_exponent_up(0.3) == -1


# ---- model-level held-out bounds and the registry ----------------------------------------------------------


def test_model_level_heldout_bounds_count_errors():
    x, y = labelled(100, 7)
    split = Split(x, y, torch.arange(100), "test", "test")
    for name in HELDOUT:
        params = {"family_size": 3}
        result = bound(name, ref.argmax_model(), split, delta=0.05, **params)
        assert result.terms["errors"] == 7 and result.terms["n"] == 100
        assert result.value == pytest.approx(heldout_value(name, 100, 7, 0.05, 3), abs=1e-15)
        assert bound(name, ref.argmax_model(), (x, y), delta=0.05, **params).value == result.value


def test_registry_metadata():
    names = [e.name for e in list_bounds()]
    assert set(HELDOUT) | {"pacbayes_kl", "linear_margin", "bartlett2017"} <= set(names)
    assert "neyshabur2018" not in names  # constants not confirmed
    for entry in BOUNDS:
        assert entry.quantity and entry.reference and isinstance(entry.needs, tuple)


def test_error_messages():
    x, y = labelled(20, 2)
    model = ref.argmax_model()
    with pytest.raises(
        GapbenchError,
        match=r"The 'delta' parameter of heldout_binomial\(\) must be a float in \(0, 1\)\. "
        r"Got 1\.5 instead\.",
    ):
        bound("heldout_binomial", model, (x, y), delta=1.5)
    with pytest.raises(
        GapbenchError,
        match=r"The 'family_size' parameter of heldout_binomial\(\) must be an int "
        r">= 1\. Got 0 instead\.",
    ):
        bound("heldout_binomial", model, (x, y), delta=0.05, family_size=0)
    for assume_var in (0.0, -1.0, math.inf, "0.25"):
        with pytest.raises(
            GapbenchError,
            match=r"The 'assume_var' parameter of heldout_bernstein\(\) must be None \(the "
            r"assumption-free form\) or a float > 0.*assume_var=0\.25",
        ):
            bound("heldout_bernstein", model, (x, y), delta=0.05, assume_var=assume_var)
    with pytest.raises(
        GapbenchError, match=r"The 'assume_var' parameter of bernstein_slack\(\) must be a float"
    ):
        ho.bernstein_slack(100, 0.05, None)
    with pytest.raises(
        GapbenchError, match=r"\['var'\] of bound\('heldout_bernstein'\) are not accepted\. .*assume_var"
    ):
        bound("heldout_bernstein", model, (x, y), delta=0.05, var=0.25)
    with pytest.raises(
        GapbenchError, match=r"The 'k' parameter of .* must be an int in \[0, n\] = \[0, 10\]"
    ):
        ho.heldout_binomial_value(10, 11, 0.05)
    with pytest.raises(
        GapbenchError,
        match=r"\['famly_size'\] .* not accepted\. Accepted parameters: "
        r"family_size, run, train_indices, train_source\.",
    ):
        bound("heldout_binomial", model, (x, y), delta=0.05, famly_size=2)
    with pytest.raises(
        GapbenchError, match=r"Unknown bound 'heldout_binomal'\. Did you mean 'heldout_binomial'\?"
    ):
        bound("heldout_binomal", model, (x, y), delta=0.05)
    with pytest.raises(GapbenchError, match=r"The 'loss' parameter of heldout_hoeffding\(\)"):
        bound("heldout_hoeffding", model, (x, y), delta=0.05, loss="hinge")


# ---- PAC-Bayes ------------------------------------------------------------------------------------------


def test_kl_diag_gaussians_vs_loop_and_torch_distributions():
    g = torch.Generator().manual_seed(3)
    mean_q, mean_p = torch.randn(50, generator=g), torch.randn(50, generator=g)
    std_q, std_p = torch.rand(50, generator=g) + 0.1, torch.rand(50, generator=g) + 0.1
    expected = ref.kl_diag_gaussians(mean_q.tolist(), std_q.tolist(), mean_p.tolist(), std_p.tolist())
    assert kl_diag_gaussians(mean_q, std_q, mean_p, std_p) == pytest.approx(expected, rel=1e-12)
    dist = torch.distributions
    via_torch = dist.kl_divergence(
        dist.Normal(mean_q.double(), std_q.double()), dist.Normal(mean_p.double(), std_p.double())
    ).sum()
    assert kl_diag_gaussians(mean_q, std_q, mean_p, std_p) == pytest.approx(float(via_torch), rel=1e-12)
    scalar = ref.kl_diag_gaussians(mean_q.tolist(), [0.3] * 50, mean_p.tolist(), [0.7] * 50)
    assert kl_diag_gaussians(mean_q, 0.3, mean_p, 0.7) == pytest.approx(scalar, rel=1e-12)


def test_pacbayes_kl_is_deterministic_pure_and_consistent():
    torch.manual_seed(0)  # only to build the tiny test net; the bound itself uses its own seeded generator
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    init = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = labelled(40, 4)
    kwargs = dict(
        init=init, posterior_std=0.02, prior_std_grid=(0.1, 0.05, 0.025), n_mc=64, delta_mc=0.01, seed=7
    )
    first = bound("pacbayes_kl", model, (x, y), delta=0.05, **kwargs)
    second = pacbayes_kl(model, (x, y), delta=0.05, **kwargs)
    assert first.value == second.value and first.terms == second.terms
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert first.terms["r_hat_mc"] <= first.terms["r_hat_mc_upper"] <= first.value <= 1.0
    assert first.delta == 0.05  # the caller's δ is the total: δ_PB = 0.04, δ_MC = 0.01
    assert (first.terms["delta_pacbayes"], first.terms["delta_mc"]) == pytest.approx((0.04, 0.01))
    assert first.terms["delta_per_prior"] == pytest.approx(0.04 / 3)
    t = first.terms
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).tolist()
    w0 = torch.cat([p.detach().reshape(-1) for p in init.parameters()]).tolist()
    kls = [ref.kl_diag_gaussians(w, [0.02] * len(w), w0, [s] * len(w)) for s in (0.1, 0.05, 0.025)]
    upper = ref.kl_inverse(t["r_hat_mc"], math.log(1 / 0.01) / 64)  # one-sided Chernoff at δ_MC
    values = [ref.kl_inverse(upper, (kl + math.log(2 * math.sqrt(40) / (0.04 / 3))) / 40) for kl in kls]
    assert first.value == pytest.approx(min(values), abs=1e-7)
    assert t["kl"] == pytest.approx(kls[int(np.argmin(values))], rel=1e-10)
    assert pacbayes_kl(model, (x, y), delta=0.05, **{**kwargs, "seed": 8}).terms["r_hat_mc"] >= 0.0


def test_pacbayes_errors():
    model = ref.argmax_model()
    x, y = labelled(20, 2)
    with pytest.raises(GapbenchError, match=r"The 'init' parameter of bound\('pacbayes_kl'\) must be the initial "
                       r"weights .* Got None instead\. 'pacbayes_kl' is computed against the initialization"):
        bound("pacbayes_kl", model, (x, y), delta=0.05)          # its registry needs say 'init'
    with pytest.raises(GapbenchError, match=r"The 'init' parameter of pacbayes_kl\(\) must be a Run, an nn.Module "
                       r"or a state_dict\. Got 'NoneType' instead"):
        pacbayes_kl(model, (x, y), delta=0.05, init=None)       # called directly
    with pytest.raises(GapbenchError, match=r"The 'delta_mc' parameter of pacbayes_kl\(\) must be a float in "
                       r"\(0, delta\) = \(0, 0.05\).*Got 0.05 instead\. The PAC-Bayes step gets delta − delta_mc"):
        bound("pacbayes_kl", model, (x, y), delta=0.05, init=model, delta_mc=0.05)
    with pytest.raises(GapbenchError, match=r"The 'prior_std_grid' parameter of pacbayes_kl\(\)"):
        bound("pacbayes_kl", model, (x, y), delta=0.05, init=model, prior_std_grid=())


# ---- linear margin --------------------------------------------------------------------------------------


def linear_reference(margins, *, K, x_raw, lam_raw, binary, delta, x_given=None):
    """Min over the ρ window of the hand formula, grid cells from the reference weights."""
    n = len(margins)
    jx = math.ceil(math.log2(x_raw)) if x_given is None else None
    jl = math.ceil(math.log2(lam_raw))
    x_bound, lam = (2.0**jx if x_given is None else x_given), 2.0**jl
    w_cells = ref.union_weight(jl) * (ref.union_weight(jx) if x_given is None else 1.0)
    factor = 2 if binary else 4 * K
    j_top = math.ceil(math.log2(2 * x_bound * lam))
    best = math.inf
    for j in range(j_top - 39, j_top + 1):
        rho = 2.0**j
        ramp = np.mean([min(1.0, max(0.0, 1 - m / rho)) for m in margins])
        value = (
            ramp
            + factor * math.sqrt(x_bound**2 * lam**2 / (rho**2 * n))
            + math.sqrt(math.log(1 / (delta * w_cells * ref.union_weight(j))) / (2 * n))
        )
        best = min(best, value)
    return best


def test_linear_margin_multiclass_hand_example():
    head = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0]]))
    model = nn.Sequential(head)
    base = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.5, -0.5]])
    x, y = base.repeat(100, 1), torch.tensor([0, 1, 2]).repeat(100)
    result = linear_margin(model, (x, y), delta=0.05)
    # margins by hand: (2,0,−2)→2, (0,2,−2)→2, (−1,−1,2)→3; max‖x‖ = 1 → X = 1; max‖w_k‖ = 2√2 → Λ = 4
    expected = linear_reference(
        [2.0, 2.0, 3.0] * 100, K=3, x_raw=1.0, lam_raw=2 * math.sqrt(2), binary=False, delta=0.05
    )
    assert result.value == pytest.approx(expected, rel=1e-12)
    t = result.terms
    assert (t["feature_bound"], t["head_norm_bound"], t["binary_form"]) == (1.0, 4.0, 0.0)
    assert t["complexity"] == pytest.approx(4 * 3 * 1.0 * 4.0 / (t["rho"] * math.sqrt(300)))
    assert t["delta_cell"] == pytest.approx(
        0.05 * ref.union_weight(0) * ref.union_weight(2) * ref.union_weight(int(math.log2(t["rho"])))
    )
    assert t["delta_cell"] <= 0.05


def test_linear_margin_binary_form_bias_and_feature_bound():
    head = nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        head.bias.copy_(torch.tensor([0.5, -0.5]))
    model = nn.Sequential(nn.Identity(), head)
    x = torch.tensor([[2.0], [-2.0]]).repeat(200, 1)
    y = torch.tensor([1, 0]).repeat(200)
    result = linear_margin(model, (x, y), delta=0.1)
    # φ' = (x, 1): ‖φ'‖ = √5 → X = 4; w = w₁ − w₀ = (2, −1): Λ = √5 → 4; margins y·(2x − 1) = 3 and 5
    expected = linear_reference(
        [3.0, 5.0] * 200, K=2, x_raw=math.sqrt(5), lam_raw=math.sqrt(5), binary=True, delta=0.1
    )
    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.terms["binary_form"] == 1.0 and result.terms["feature_norm_max"] == pytest.approx(
        math.sqrt(5)
    )
    given = linear_margin(model, (x, y), delta=0.1, feature_bound=3.0)
    assert given.value == pytest.approx(
        linear_reference(
            [3.0, 5.0] * 200, K=2, x_raw=0, lam_raw=math.sqrt(5), binary=True, delta=0.1, x_given=3.0
        ),
        rel=1e-12,
    )
    multi = linear_margin(model, (x, y), delta=0.1, form="multiclass")
    assert multi.terms["binary_form"] == 0.0 and multi.value > result.value
    with pytest.raises(
        GapbenchError,
        match=r"The 'feature_bound' parameter of linear_margin\(\) must be an "
        r"almost-sure bound",
    ):
        linear_margin(model, (x, y), delta=0.1, feature_bound=1.0)


# ---- Bartlett et al. 2017 -------------------------------------------------------------------------------


def test_bartlett2017_vs_hand_evaluation():
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
    init = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(60, 3, generator=g)
    y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 3
    weights = [model[1].weight.detach().double().numpy(), model[3].weight.detach().double().numpy()]
    refs = [init[1].weight.detach().double().numpy(), init[3].weight.detach().double().numpy()]
    for z, result in (
        (None, bartlett2017(model, (x, y), delta=0.05)),
        (refs, bound("bartlett2017", model, (x, y), delta=0.05, init=init)),
    ):
        z = z or [np.zeros_like(w) for w in weights]
        s = [np.linalg.svd(w, compute_uv=False)[0] for w in weights]
        b = [ref.l21_rows(w - zi) for w, zi in zip(weights, z, strict=False)]
        assert [result.terms[f"spectral_{i}"] for i in range(2)] == pytest.approx(s, rel=1e-10)
        assert [result.terms[f"l21_{i}"] for i in range(2)] == pytest.approx(b, rel=1e-10)
        js, jb = [math.ceil(math.log2(v)) for v in s], [math.ceil(math.log2(v)) for v in b]
        w_cells = math.prod(ref.union_weight(j) for j in js + jb)
        logits = x.double().numpy() @ weights[0].T
        margins = ref.margins(np.maximum(logits, 0) @ weights[1].T, y.numpy())
        j_top = math.ceil(math.log2(margins.max()))
        expected = min(
            ref.bartlett2017(
                weights,
                x.double().numpy(),
                y.numpy(),
                gamma=2.0**j,
                delta=0.05 * w_cells * ref.union_weight(j),
                spectral=[2.0**j for j in js],
                l21=[2.0**j for j in jb],
            )
            for j in range(j_top - 39, j_top + 1)
        )
        assert result.value == pytest.approx(expected, rel=1e-10)
        assert result.terms["max_width"] == 4.0 and result.terms["x_fro"] == pytest.approx(float(x.norm()))


def test_bartlett2017_refuses_other_architectures():
    x, y = labelled(10, 0)
    with pytest.raises(GapbenchError, match=r"bias-free networks .* layer '0' has a bias"):
        bartlett2017(ref.argmax_model(), (x, y), delta=0.05)
    tanh_net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Tanh(), nn.Linear(3, 2, bias=False))
    with pytest.raises(GapbenchError, match=r"fully connected ReLU networks only; module '1' is a Tanh"):
        bartlett2017(tanh_net, (x, y), delta=0.05)


@pytest.mark.parametrize("name", BOUNDS.names())
def test_every_bound_checks_delta_itself(name):
    """bound() leaves δ to the bound function (checked once): each must refuse a δ outside (0, 1)."""
    from gapbench.analysis.deep_paths import TwoPhaseNet
    from gapbench.models import mlp
    x, y = labelled(20, 2)
    split = Split(x, y, torch.arange(20), "train", "val", pool="p")
    net = TwoPhaseNet.from_model(mlp(x.shape[1], 2, 1, 3, bias=False))
    model = net if name == "kkb2017_theorem8" else ref.argmax_model()
    extra = {"init": model} if "init" in BOUNDS.get(name).needs else {}
    with pytest.raises(GapbenchError, match=r"The 'delta' parameter of .* must be a float in \(0, 1\)\. Got 1\.5"):
        bound(name, model, split, delta=1.5, **extra)
