"""pacbayes_kl: the δ split, the data-independence of the prior mean, the buffer refusal, and Monte Carlo
coverage on a problem where R_Q is known exactly."""

import copy
import dataclasses
import math

import pytest
import torch
from scipy import stats
from torch import nn

from gapbench.analysis.two_phase import first_points, gated_from, rest_points
from gapbench.bounds import bound
from gapbench.bounds.pacbayes import pacbayes_kl
from gapbench.config import ModelConfig, RunConfig, TrainConfig
from gapbench.data.types import Dataset, Split
from gapbench.errors import GapbenchError
from gapbench.layers import fold_batchnorm
from gapbench.train import fit
from gapbench.trained import Run, seeded_source, source_from_run

torch.set_num_threads(1)
FAST = dict(posterior_std=0.02, prior_std_grid=(0.1, 0.05), n_mc=8, seed=1)


def moved(model: nn.Module, by: float = 0.05) -> nn.Module:
    """A copy of `model` with every parameter shifted by `by` (as after training)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(by)
    return out


def tiny_net(seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
    return net


def split(indices, source: str = "train") -> Split:
    indices = torch.as_tensor(indices)
    x = torch.rand(len(indices), 2, generator=torch.Generator().manual_seed(int(indices[0])))
    return Split(x, x.argmax(1), indices, source, "train")


def run_of(model: nn.Module, init_state, train_indices, init_source) -> Run:
    return Run(model=model, init_state={k: v.clone() for k, v in init_state.items()}, config=RunConfig(),
               train_indices=torch.as_tensor(train_indices), init_source=init_source)


# ---- the δ split ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta, delta_mc, expected_mc", [(0.05, None, 0.01), (0.01, None, 0.005),
                                                          (0.2, 0.15, 0.15)])
def test_delta_is_the_total(delta, delta_mc, expected_mc):
    init = tiny_net()
    data = split(range(40))
    b = bound("pacbayes_kl", moved(init), data, delta=delta, init=init, delta_mc=delta_mc, **FAST)
    assert b.delta == delta
    t = b.terms
    assert t["delta_mc"] == pytest.approx(expected_mc) and t["delta_pacbayes"] + t["delta_mc"] == pytest.approx(delta)
    assert t["delta_per_prior"] == pytest.approx(t["delta_pacbayes"] / 2)
    # the Monte Carlo step at δ_MC, one-sided: kl(R̂_MC ‖ upper) = ln(1/δ_MC)/n_mc unless the upper end is 1
    kl = stats.entropy([t["r_hat_mc"], 1 - t["r_hat_mc"]], [t["r_hat_mc_upper"], 1 - t["r_hat_mc_upper"]])
    assert t["r_hat_mc_upper"] == 1.0 or kl == pytest.approx(math.log(1 / expected_mc) / 8, rel=1e-6)


def test_smaller_delta_gives_a_larger_bound():
    init = tiny_net()
    data = split(range(40))
    values = [pacbayes_kl(moved(init), data, delta=d, init=init, **FAST).value for d in (0.2, 0.05, 0.01)]
    assert values[0] <= values[1] <= values[2]


@pytest.mark.parametrize("delta_mc", [0.05, 0.2, 0.0, True])
def test_delta_mc_at_or_above_delta_is_refused(delta_mc):
    init = tiny_net()
    with pytest.raises(GapbenchError, match=r"The 'delta_mc' parameter of pacbayes_kl\(\) must be a float in "
                       rf"\(0, delta\) = \(0, 0.05\).*Got {delta_mc!r} instead\. The PAC-Bayes step gets"):
        pacbayes_kl(moved(init), split(range(40)), delta=0.05, init=init, delta_mc=delta_mc, **FAST)


# ---- data-independent prior mean ------------------------------------------------------------------------


def test_plain_module_prior_is_stated_as_assumed():
    init = tiny_net()
    b = pacbayes_kl(moved(init), split(range(40)), delta=0.05, init=init.state_dict(), **FAST)
    assert "ASSUMED data-independent" in b.assumptions[-1]


def test_seeded_run_prior_is_accepted_on_any_points():
    init = tiny_net()
    run = run_of(moved(init), init.state_dict(), range(40), seeded_source(3))
    b = bound("pacbayes_kl", run.model, split(range(40)), delta=0.05, init=run, **FAST)
    assert "seeded initialization (init_seed 3)" in b.assumptions[-1]
    plain = bound("pacbayes_kl", run.model, split(range(40)), delta=0.05, init=init, **FAST)
    assert b.value == plain.value                     # a Run and its init module give the same prior mean


def phase2_run() -> Run:
    """A run whose init is the trained weights of a parent that saw points 0..19 of pool 'train' (whose own
    init was the weights of a grandparent that saw points 100..109)."""
    seed_net = tiny_net()
    grandparent = run_of(moved(seed_net, 0.01), seed_net.state_dict(), range(100, 110), seeded_source(0))
    parent = run_of(moved(grandparent.model, 0.01), grandparent.model.state_dict(), range(20),
                    source_from_run(grandparent, "train"))
    return run_of(moved(parent.model), parent.model.state_dict(), range(60), source_from_run(parent, "train"))


def test_overlapping_data_dependent_prior_is_refused():
    run = phase2_run()
    with pytest.raises(GapbenchError, match=r"The prior mean \('init'\) of pacbayes_kl\(\) depends on 10 of the "
                       r"bound's 40 points: it comes from the training of run [0-9a-f]+, which saw 20 points of "
                       r"pool 'train', 10 of them among .* Bound on the points that run never saw"):
        bound("pacbayes_kl", run.model, split(range(10, 50)), delta=0.05, init=run, **FAST)
    with pytest.raises(GapbenchError, match=r"depends on 2 of the bound's 40 points: .* saw 10 points"):
        bound("pacbayes_kl", run.model, split(list(range(20, 58)) + [100, 101]), delta=0.05, init=run, **FAST)
    with pytest.raises(GapbenchError, match=r"The 'data' parameter of pacbayes_kl\(\) must be a Split .* Got "
                       r"'tuple' instead\. Without the indices"):
        bound("pacbayes_kl", run.model, split(range(20, 60)).as_tuple(), delta=0.05, init=run, **FAST)


def test_disjoint_data_dependent_prior_is_accepted():
    run = phase2_run()
    b = bound("pacbayes_kl", run.model, split(range(20, 60)), delta=0.05, init=run, **FAST)
    assert "checked disjoint from the bound's 40 points of pool 'train'" in b.assumptions[-1]
    assert "rooted in a seeded initialization" in b.assumptions[-1]
    other_pool = bound("pacbayes_kl", run.model, split(range(40), source="test"), delta=0.05, init=run, **FAST)
    assert 0.0 <= other_pool.value <= 1.0


def test_two_phase_prior_holds_on_the_rest_points_only():
    """Phase 2 starts from phase 1's weights (trained on S_αm): the bound is accepted on S ∖ S_αm only."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=gen)
    train = Split(x, (x[:, 0] > 0).long(), torch.arange(200, 240), "train", "train")
    data = Dataset("blobs", train, dataclasses.replace(train, source="test", name="test"), 2, (4,))
    cfg = RunConfig(model=ModelConfig(depth=1, width=6, bias=False),
                    train=TrainConfig(lr=0.05, batch_size=8, max_epochs=2, stop="epochs"))
    phase1 = fit(cfg, first_points(data, 10))
    phase2 = fit(cfg, data, model=gated_from(phase1.model), init_source=source_from_run(phase1, "train"))
    b = bound("pacbayes_kl", phase2.model, rest_points(data, 10), delta=0.05, init=phase2, **FAST)
    assert "10 points of pool 'train'" in b.assumptions[-1] and b.terms["n"] == 30
    with pytest.raises(GapbenchError, match=r"depends on 10 of the bound's 40 points"):
        bound("pacbayes_kl", phase2.model, data.train, delta=0.05, init=phase2, **FAST)


# ---- buffers learned from data --------------------------------------------------------------------------


def bn_net() -> nn.Module:
    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return net.eval()


def test_batchnorm_statistics_learned_from_data_are_refused():
    init = bn_net()
    model = moved(init).train()
    data = split(range(40))
    with torch.no_grad():
        model(data.x)                                  # running statistics now fitted to the points
    model.eval()
    with pytest.raises(GapbenchError, match=r"The 'model' parameter of pacbayes_kl\(\) must not carry "
                       r"floating-point buffers learned from data; buffer '1.running_mean' differs from its "
                       r"value in init\. .*gapbench\.layers\.fold_batchnorm"):
        pacbayes_kl(model, data, delta=0.05, init=init, **FAST)
    without = {k: v for k, v in init.state_dict().items() if "running" not in k}
    with pytest.raises(GapbenchError, match=r"buffer '1.running_mean' is absent from init"):
        pacbayes_kl(moved(init), data, delta=0.05, init=without, **FAST)
    # untouched statistics (those of the init) are data-free; folding both copies removes the buffers
    assert 0.0 <= pacbayes_kl(moved(init), data, delta=0.05, init=init, **FAST).value <= 1.0
    folded = pacbayes_kl(fold_batchnorm(model), data, delta=0.05, init=fold_batchnorm(init), **FAST)
    assert 0.0 <= folded.value <= 1.0


# ---- Monte Carlo coverage on a problem with an exact R_Q -----------------------------------------------


def linear_population(size: int = 400, dim: int = 5, noise: float = 0.15):
    """A finite population (uniform over `size` points): labels 1[u·x > 0], a `noise` fraction flipped."""
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(size, dim, generator=gen, dtype=torch.float64)
    u = torch.randn(dim, generator=gen, dtype=torch.float64)
    y = (x @ u > 0).long()
    flip = torch.rand(size, generator=gen) < noise
    return x, torch.where(flip, 1 - y, y)


def exact_stochastic_error(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor, posterior_std: float):
    """Mean over (x, y) of P_{W' ~ N(W, std²I)}[margin ≤ 0] for f(x) = W'x, W' ∈ R^{2×d}: the margin
    (w'_y − w'_{1−y})·x is N(s·v·x, 2·std²·‖x‖²) with v = w_1 − w_0 and s = ±1, so the error is
    Φ(−s·v·x / (std·√2·‖x‖)), averaged over the points."""
    v = (weight[1] - weight[0]).double()
    s = 2.0 * y.double() - 1.0
    z = -s * (x @ v) / (posterior_std * math.sqrt(2.0) * x.norm(dim=1))
    return float(torch.tensor(stats.norm.cdf(z.numpy())).mean())


def coverage(repeats: int, n: int, n_mc: int, delta: float, delta_mc: float):
    """Per repeat: draw n points i.i.d. from the population, fit the posterior mean on them (the normalised
    mean of y·x), bound R_Q with a data-independent prior (zero mean), compare with the exact R_Q and R̂_Q."""
    pop_x, pop_y = linear_population()
    std, grid = 0.3, (0.3, 0.6, 1.2)
    init = {"weight": torch.zeros(2, pop_x.shape[1], dtype=torch.float64)}
    fails_bound = fails_mc = 0
    mc_minus_exact = []
    for r in range(repeats):
        idx = torch.randint(0, len(pop_y), (n,), generator=torch.Generator().manual_seed(1000 + r))
        x, y = pop_x[idx], pop_y[idx]
        direction = ((2.0 * y.double() - 1.0)[:, None] * x).mean(0)
        direction = direction / direction.norm()
        model = nn.Linear(x.shape[1], 2, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(torch.stack([-direction / 2, direction / 2]))
        b = pacbayes_kl(model, (x, y), delta=delta, delta_mc=delta_mc, init=init, posterior_std=std,
                        prior_std_grid=grid, n_mc=n_mc, seed=r)
        r_q = exact_stochastic_error(model.weight.detach(), pop_x, pop_y, std)
        r_hat_q = exact_stochastic_error(model.weight.detach(), x, y, std)
        fails_bound += r_q > b.value
        fails_mc += r_hat_q > b.terms["r_hat_mc_upper"]
        mc_minus_exact.append(b.terms["r_hat_mc"] - r_hat_q)
    return fails_bound, fails_mc, torch.tensor(mc_minus_exact)


def monte_carlo_step_failures(repeats: int, n_mc: int, delta_mc: float) -> tuple[int, float]:
    """The Monte Carlo step alone, where it is nearly tight: the sample is 8 copies of one point, so each
    draw's training error is Bernoulli(R̂_Q) with R̂_Q exact; count R̂_Q > r_hat_mc_upper over MC seeds."""
    pop_x, pop_y = linear_population()
    x, y = pop_x[:1].repeat(8, 1), pop_y[:1].repeat(8)
    model = nn.Linear(x.shape[1], 2, bias=False).double()
    with torch.no_grad():   # a margin of 0.5·std·√2·‖x‖: R̂_Q = Φ(−0.5) ≈ 0.31 whatever the label
        v = (2.0 * y[0] - 1.0) * 0.5 * 0.3 * math.sqrt(2.0) * x[0] / x[0].norm()
        model.weight.copy_(torch.stack([-v / 2, v / 2]))
    r_hat_q = exact_stochastic_error(model.weight.detach(), x, y, 0.3)
    init = {"weight": torch.zeros_like(model.weight)}
    fails = sum(r_hat_q > pacbayes_kl(model, (x, y), delta=2 * delta_mc, delta_mc=delta_mc, init=init,
                                      posterior_std=0.3, prior_std_grid=(0.3,), n_mc=n_mc,
                                      seed=r).terms["r_hat_mc_upper"] for r in range(repeats))
    return fails, r_hat_q


def test_monte_carlo_step_coverage():
    fails, r_hat_q = monte_carlo_step_failures(repeats=300, n_mc=10, delta_mc=0.25)
    assert r_hat_q == pytest.approx(stats.norm.cdf(-0.5))
    assert 0 < fails <= stats.binom.ppf(0.999, 300, 0.25)   # 0 < : the check has power (Φ(−0.5), n_mc = 10)


def assert_coverage(repeats: int, n: int, n_mc: int):
    delta, delta_mc = 0.5, 0.25           # large δ's make failures frequent enough to test the constants
    fails_bound, fails_mc, diff = coverage(repeats, n, n_mc, delta, delta_mc)
    # a failure count above the 0.999 quantile of Binomial(repeats, δ) rejects "P[fail] ≤ δ" at level 1e-3
    assert fails_bound <= stats.binom.ppf(0.999, repeats, delta)
    assert fails_mc <= stats.binom.ppf(0.999, repeats, delta_mc)
    # R̂_MC is an unbiased estimate of the exact R̂_Q: its mean error is within 4 standard errors of 0
    assert abs(float(diff.mean())) <= 4 * float(diff.std()) / math.sqrt(repeats) + 1e-12


def test_pacbayes_monte_carlo_coverage():
    assert_coverage(repeats=150, n=40, n_mc=4)


@pytest.mark.slow
def test_pacbayes_monte_carlo_coverage_large():
    assert_coverage(repeats=2000, n=100, n_mc=20)
    fails, _ = monte_carlo_step_failures(repeats=3000, n_mc=40, delta_mc=0.25)
    assert fails <= stats.binom.ppf(0.999, 3000, 0.25)
