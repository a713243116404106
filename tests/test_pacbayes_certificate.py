"""The PAC-Bayes certificate: equal to an independent mpmath implementation, Monte Carlo coverage where R_Q is
known exactly (a Gaussian posterior over a threshold classifier), the δ split and ln|F|, and every refusal."""

import importlib
import math
import pkgutil

import mpmath
import pytest
import torch
from reference_probnets import GaussianLinear, GaussianThreshold, WithBatchNorm
from scipy import integrate, stats

import gapbench as gb
from gapbench.data.types import Split
from gapbench.errors import GapbenchError
from gapbench.pacbayes.certificate import pacbayes_certificate
from gapbench.pacbayes.train import TrainedPrior

torch.set_num_threads(1)
mpmath.mp.dps = 40
NOISE = 0.1                 # label noise of the threshold problem


def mp_binomial_inverse(n_draws, errors, delta):
    """max{p : P[Bin(N, p) ≤ k] ≥ δ} by bisection on the regularised incomplete beta (mpmath)."""
    if errors == n_draws:
        return 1.0
    lo, hi = mpmath.mpf(0), mpmath.mpf(1)
    for _ in range(120):
        mid = (lo + hi) / 2
        cdf = mpmath.betainc(n_draws - errors, errors + 1, 0, 1 - mid, regularized=True)
        lo, hi = (mid, hi) if cdf >= delta else (lo, mid)
    return float(hi)


def mp_kl_inverse(q, c):
    q = mpmath.mpf(q)
    def kl(p):
        first = 0 if q == 0 else q * mpmath.log(q / p)
        return first + (0 if q == 1 else (1 - q) * mpmath.log((1 - q) / (1 - p)))
    lo, hi = q, mpmath.mpf(1)
    for _ in range(120):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kl(mid) <= c else (lo, mid)
    return float(hi)


def blobs(n, seed):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) + torch.tensor([[2.0, 0], [-1, 1.7], [-1, -1.7]])[y]
    return Split(x.float(), y, torch.arange(n) + 1000, "train", "bound", "toy:train")


def test_certificate_equals_an_independent_implementation():
    net = GaussianLinear(2, 3, prior_std=0.5, posterior_std=0.3, seed=1)
    with torch.no_grad():
        net.mean.add_(torch.tensor([[1.0, 0, 0], [-0.5, 1, 0], [-0.5, -1, 0]], dtype=torch.float64))
    data = blobs(64, 0)
    cert = pacbayes_certificate(net, data, delta=0.05, delta_mc=0.01, passes=4, family_size=3, seed=2)
    t = cert.terms
    n_draws, errors = 64 * 4, round(t["r_hat_mc"] * 256)
    assert t["n_draws"] == n_draws and t["r_hat_mc"] * 256 == pytest.approx(errors, abs=1e-9)
    q, p = torch.distributions.Normal, net.prior_std
    kl = float(torch.distributions.kl_divergence(q(net.mean, net.std()), q(net.prior_mean, p)).sum().detach())
    assert t["kl"] == pytest.approx(kl, rel=1e-9)
    budget = (kl + math.log(2 * math.sqrt(64) / 0.04) + math.log(3)) / 64
    upper = mp_binomial_inverse(n_draws, errors, 0.01)
    assert t["r_hat_mc_upper"] == pytest.approx(upper, abs=1e-9)
    assert cert.risk == pytest.approx(mp_kl_inverse(upper, budget), abs=1e-9)
    assert (t["delta_pacbayes"], t["delta_mc"], cert.delta) == (pytest.approx(0.04), 0.01, 0.05)
    ce_upper = mp_kl_inverse(t["bounded_ce_mc"], math.log(1 / 0.01) / n_draws)
    assert cert.risk_bounded_ce == pytest.approx(mp_kl_inverse(ce_upper, budget), abs=1e-9)


def point_risks(net, x, y):
    """Exact Q-probability of an error at each point: P_w[w ≥ x] if y = 1, P_w[w ≤ x] if y = 0."""
    below = stats.norm.cdf((x - net.posterior_mean) / net.posterior_std)        # P[w < x] = P[predict 1]
    return (1 - below) * (y == 1) + below * (y == 0)


def exact_risk(net):
    """R_Q for x ~ N(0, 1), y = 1[x > 0] flipped with probability NOISE."""
    def integrand(x, clean):
        err1, err0 = point_risks(net, x, 1), point_risks(net, x, 0)
        right, wrong = (err1, err0) if clean == 1 else (err0, err1)
        return stats.norm.pdf(x) * ((1 - NOISE) * right + NOISE * wrong)
    return integrate.quad(integrand, 0, 12, args=(1,))[0] + integrate.quad(integrand, -12, 0, args=(0,))[0]


def threshold_sample(n, gen):
    x = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    flip = torch.rand(n, generator=gen) < NOISE
    return x, ((x[:, 0] > 0) ^ flip).long()


def test_monte_carlo_estimate_is_unbiased_for_the_empirical_gibbs_risk():
    net = GaussianThreshold(0.3, 0.4)
    x, y = threshold_sample(200, torch.Generator().manual_seed(0))
    cert = pacbayes_certificate(net, (x, y), delta=0.05, passes=50, seed=1)
    p = point_risks(net, x[:, 0].numpy(), y.numpy())
    sd = math.sqrt((p * (1 - p)).sum() * 50) / 10_000
    assert abs(cert.terms["r_hat_mc"] - p.mean()) < 4 * sd


def test_coverage_where_r_q_is_exact():
    """Over fresh samples S_bound and fresh weight draws, R_Q ≤ certificate fails with frequency ≤ δ; the
    Monte Carlo step alone fails with frequency ≤ δ_MC (measurable at δ_MC = 0.25), while the raw estimate
    R̂_MC, with no Monte Carlo bound, falls below R̂_Q about half the time: the check can fail."""
    net = GaussianThreshold(0.2, 0.3)
    r_q = exact_risk(net)
    gen = torch.Generator().manual_seed(7)
    reps, full_fail, mc_fail, raw_fail = 300, 0, 0, 0
    for rep in range(reps):
        x, y = threshold_sample(40, gen)
        cert = pacbayes_certificate(net, (x, y), delta=0.5, delta_mc=0.25, passes=3, seed=rep)
        gibbs = point_risks(net, x[:, 0].numpy(), y.numpy()).mean()
        full_fail += r_q > cert.risk
        mc_fail += gibbs > cert.terms["r_hat_mc_upper"]
        raw_fail += gibbs > cert.terms["r_hat_mc"]
    slack = 3 * math.sqrt(0.25 * 0.75 / reps)
    assert full_fail / reps <= 0.5 and mc_fail / reps <= 0.25 + slack
    assert raw_fail / reps > 0.25 + slack


def test_delta_split_and_family_are_paid_for():
    data = blobs(64, 1)
    net = GaussianLinear(2, 3, prior_std=0.3, seed=0)
    def risk(**kw):
        args = dict(delta=0.05, delta_mc=0.01, passes=2, seed=0) | kw
        return pacbayes_certificate(net, data, **args).risk
    assert risk(family_size=10) > risk(family_size=1)
    huge = pacbayes_certificate(net, data, delta=0.05, passes=2, family_size=10 ** 1000, seed=0)
    assert huge.terms["log_family_size"] == pytest.approx(1000 * math.log(10)) and huge.risk <= 1.0
    assert risk(delta=0.2) < risk(delta=0.05)          # the PAC-Bayes share δ − δ_MC grows
    assert risk(delta_mc=0.001) > risk(delta_mc=0.01) or risk(delta_mc=0.001) == 1.0
    default = pacbayes_certificate(net, data, delta=0.05, passes=2, seed=0)
    assert (default.terms["delta_mc"], default.terms["delta_pacbayes"]) == (0.01, pytest.approx(0.04))


def test_report_names_what_is_certified_and_leaves_inputs_alone():
    net = GaussianLinear(2, 3, prior_std=0.3, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.random.get_rng_state()
    cert = pacbayes_certificate(net, blobs(40, 2), delta=0.05, passes=2, test_data=blobs(30, 3), seed=0)
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert 0 <= cert.test_error_stochastic <= 1 and 0 <= cert.test_error_mean <= 1
    text = str(cert)
    assert "never the deterministic mean network" in text and "stochastic classifier Q" in text
    assert "ASSUMED independent of S_bound" in text and "δ_PB" in text
    assert cert.as_dict()["terms"]["passes"] == 2.0


def prior_at(indices, pool="toy:train", init_source=None):
    return TrainedPrior(torch.nn.Identity(), torch.as_tensor(indices), pool, "train",
                        init_source or {"kind": "seeded", "seed": 0})


def test_disjoint_prior_is_accepted_and_stated():
    cert = pacbayes_certificate(GaussianLinear(2, 3, prior_std=0.3), blobs(40, 0), delta=0.05, passes=1,
                                prior_record=prior_at(range(0, 1000)))
    assert "checked disjoint from the 40 points of S_bound" in cert.statements[0]
    other_pool = pacbayes_certificate(GaussianLinear(2, 3, prior_std=0.3), blobs(40, 0), delta=0.05,
                                      passes=1, prior_record=(torch.arange(1000, 1040), "toy:test"))
    assert "checked disjoint" in other_pool.statements[0]


BAD = [
    (dict(delta=0.05, delta_mc=0.05), "The 'delta_mc' parameter of pacbayes_certificate() must be a float in (0, "
                                      "delta)"),
    (dict(delta=0.9, delta_mc=0.6), "The 'delta_mc' parameter of pacbayes_certificate() must be at most 0.5"),
    (dict(delta=0.05, passes=0), "The 'passes' parameter of pacbayes_certificate() must be an int >= 1. Got 0"),
    (dict(delta=1.5), "The 'delta' parameter of pacbayes_certificate() must be a float in (0, 1). Got 1.5"),
    (dict(delta=0.05, family_size=0), "The 'family_size' parameter of pacbayes_certificate() must be an int ≥ 1"),
    (dict(delta=0.05, prior_record=(torch.arange(1030, 1100), "toy:train")),
     "depends on 10 of the 40 points of S_bound ('bound_data'): its training saw 70 points of pool 'toy:train'"),
    (dict(delta=0.05, prior_record=prior_at([1005], init_source={
        "kind": "run", "signature": "abc123", "source": "train", "train_indices": torch.arange(1000, 1004),
        "init_source": {"kind": "seeded", "seed": 0}})),
     "depends on 1 of the 40 points"),
    (dict(delta=0.05, prior_record=prior_at([0], init_source={
        "kind": "run", "signature": "abc123", "source": "train", "train_indices": torch.arange(1000, 1004),
        "init_source": {"kind": "seeded", "seed": 0}})),
     "run abc123, whose weights initialised the prior, saw 4 points of pool 'train', 4 of them in S_bound"),
    (dict(delta=0.05, prior_record="prior.pt"), "The 'prior_record' parameter of pacbayes_certificate() must be a "
                                                "Run, a TrainedPrior"),
]


@pytest.mark.parametrize("kwargs,message", BAD)
def test_bad_input_is_refused_with_the_fix(kwargs, message):
    with pytest.raises(GapbenchError) as err:
        pacbayes_certificate(GaussianLinear(2, 3, prior_std=0.3), blobs(40, 0), **kwargs)
    assert message in str(err.value)


def test_bad_data_and_nets_are_refused():
    net, data = GaussianLinear(2, 3, prior_std=0.3), blobs(40, 0)
    with pytest.raises(GapbenchError, match=r"'bound_data' parameter .* at least 8 points .* Got '7 points'"):
        pacbayes_certificate(net, (data.x[:7], data.y[:7]), delta=0.05)
    with pytest.raises(GapbenchError, match="The 'bound_data' parameter .* a Split that knows its pool"):
        pacbayes_certificate(net, (data.x, data.y), delta=0.05, prior_record=prior_at([0]))
    with pytest.raises(GapbenchError, match="buffer '1.running_mean' learned from data .*layers.fold_batchnorm"):
        pacbayes_certificate(WithBatchNorm(2, 3, prior_std=0.3), data, delta=0.05)


def test_public_api_names_are_callable_and_never_submodules():
    for info in pkgutil.walk_packages(gb.pacbayes.__path__, "gapbench.pacbayes."):
        importlib.import_module(info.name)
    submodules = {info.name.rsplit(".", 1)[-1] for info in pkgutil.walk_packages(gb.pacbayes.__path__)}
    assert {"certificate", "objectives", "train"} <= submodules
    assert sorted(set(gb.pacbayes._LAZY) & submodules) == []
    assert gb.pacbayes.certify is pacbayes_certificate
    assert callable(gb.pacbayes.train_probabilistic) and callable(gb.pacbayes.train_prior)


def test_a_run_as_prior_record_is_checked_against_its_training_points():
    from gapbench.config import RunConfig
    from gapbench.data.registry import pool_id
    from gapbench.trained import Run
    cfg = RunConfig()
    run = Run(model=torch.nn.Identity(), init_state={}, config=cfg, train_indices=torch.arange(0, 1010),
              init_source={"kind": "seeded", "seed": 0})
    data = blobs(40, 0)
    data = Split(data.x, data.y, data.indices, "train", "bound", pool_id(cfg.data, "train"))
    with pytest.raises(GapbenchError, match="depends on 10 of the 40 points of S_bound"):
        pacbayes_certificate(GaussianLinear(2, 3, prior_std=0.3), data, delta=0.05, passes=1, prior_record=run)
    run.train_indices = torch.arange(0, 1000)
    cert = pacbayes_certificate(GaussianLinear(2, 3, prior_std=0.3), data, delta=0.05, passes=1, prior_record=run)
    assert "trained on 1000 points of pool" in cert.statements[0] and "seeded initialization" in cert.statements[0]


def test_selection_on_s_bound_is_paid_for_with_log_family_size():
    """Pick, among |F| = 1000 members with true risk exactly 1/2, the one with the fewest errors on S_bound
    (n = 16): its certificate with ln|F| fails with frequency ≤ δ; the broken variant that drops ln|F|
    (family_size=1) fails most of the time (measured: 2 of 150 with ln|F|, 130 of 150 without)."""
    from reference_probnets import HashMember, hash_bits
    members, n, reps = 1000, 16, 150
    gen = torch.Generator().manual_seed(11)
    paid_fail = free_fail = 0
    for rep in range(reps):
        x = torch.rand(n, 1, generator=gen, dtype=torch.float64) * 100
        y = (torch.rand(n, generator=gen) < 0.5).long()
        errors = (hash_bits(torch.arange(members)[:, None], x[None, :, 0]).long() != y).sum(dim=1)
        best = HashMember(int(errors.argmin()))
        args = dict(delta=0.5, delta_mc=0.25, passes=200, seed=rep)
        paid = pacbayes_certificate(best, (x, y), family_size=members, **args)
        assert paid.terms["r_hat_mc"] == int(errors.min()) / n          # a point mass: every draw agrees
        paid_fail += paid.risk < 0.5
        free_fail += pacbayes_certificate(best, (x, y), family_size=1, **args).risk < 0.5
    assert paid_fail / reps <= 0.5
    assert free_fail / reps > 0.5 + 3 * math.sqrt(0.25 / reps)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delta_mc", [0.01, 0.1, 0.25, 0.5])
def test_binomial_inversion_holds_for_unequal_point_risks(seed, delta_mc):
    """The Monte Carlo step's lemma, exactly: for S a sum of independent Bernoulli(p_i) with unequal p_i (a
    Poisson-binomial, computed by convolution), P[mean p > Bin⁻(N, S, δ_MC)] ≤ δ_MC (Bin⁻ via scipy's beta)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 2.0, size=60) * (rng.random(60) < 0.7)        # many exact zeros, a few large risks
    pmf = np.array([1.0])
    for p_i in p:
        pmf = np.convolve(pmf, [1 - p_i, p_i])
    upper = np.array([1.0 if s == len(p) else stats.beta.isf(delta_mc, s + 1, len(p) - s) for s in range(len(p) + 1)])
    assert pmf[upper < p.mean()].sum() <= delta_mc
