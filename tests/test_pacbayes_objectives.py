"""PAC-Bayes training objectives: values by hand from the paper's formulas, the Pinsker orderings, the implicit
gradient of kl⁻¹ against finite differences, and the training loops on toy problems."""

import math

import pytest
import torch
from reference_probnets import GaussianLinear
from torch import nn

from gapbench.data.types import Split
from gapbench.errors import GapbenchError
from gapbench.pacbayes import objectives as obj
from gapbench.pacbayes.train import train_prior, train_probabilistic

torch.set_num_threads(1)


def kl_binary(q, p):
    """kl(q ‖ p), written out here (not the library's)."""
    out = 0.0 if q == 0 else q * math.log(q / p)
    return out + (0.0 if q == 1 else (1 - q) * math.log((1 - q) / (1 - p)))


def kl_inverse_by_bisection(q, c):
    lo, hi = q, 1.0
    if kl_binary(q, 1 - 1e-15) <= c:
        return 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kl_binary(q, mid) <= c else (lo, mid)
    return (lo + hi) / 2


def test_bounded_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, -100.0], [5.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    p_min = 1e-4
    got = obj.bounded_cross_entropy(logits, y, p_min=p_min)
    p_top = math.exp(5) / (math.exp(5) + 1)
    want = [math.log(2) / math.log(1e4), 1.0, -math.log(p_top) / math.log(1e4)]   # p_y = e⁻¹⁰⁰ < p_min: clamped
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert ((got >= 0) & (got <= 1)).all()


def test_bounded_cross_entropy_matches_pbb_form():
    """PBB: nll of log_softmax clamped at ln p_min, times 1/ln(1/p_min) (pbb/models.py L1113-1116, bounds.py L60-62)."""
    gen = torch.Generator().manual_seed(0)
    logits, y = 8 * torch.randn(64, 10, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    pbb = nn.functional.nll_loss(torch.clamp(torch.log_softmax(logits, 1), math.log(1e-5)), y) / math.log(1e5)
    assert float(obj.bounded_cross_entropy(logits, y, p_min=1e-5).mean()) == pytest.approx(float(pbb), rel=1e-6)


CASES = [(0.1, 5.0, 100, 0.025, 1.0), (0.02, 3000.0, 30000, 0.025, 0.1), (0.4, 0.0, 8, 0.5, 1.0)]


@pytest.mark.parametrize("risk,kl,n,delta,penalty", CASES)
def test_objective_values_by_hand(risk, kl, n, delta, penalty):
    c = (penalty * kl + math.log(2 * math.sqrt(n) / delta)) / n           # Maurer's budget, with λ on KL
    args = dict(n=n, delta=delta, kl_penalty=penalty)
    r, k = torch.tensor(risk, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64)
    assert float(obj.f_classic(r, k, **args)) == pytest.approx(risk + math.sqrt(c / 2), rel=1e-12)
    assert float(obj.f_quad(r, k, **args)) == pytest.approx((math.sqrt(risk + c / 2) + math.sqrt(c / 2)) ** 2,
                                                           rel=1e-12)
    assert float(obj.f_kl_inverse(r, k, **args)) == pytest.approx(kl_inverse_by_bisection(risk, c), abs=1e-9)


@pytest.mark.parametrize("risk", [0.0, 0.01, 0.1, 0.3, 0.6])
@pytest.mark.parametrize("kl", [0.0, 10.0, 500.0])
def test_kl_inverse_is_the_tightest_objective(risk, kl):
    """Both Pinsker inequalities make f_classic and f_quad upper bounds on kl⁻¹ (the bound they relax)."""
    r, k = torch.tensor(risk, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64)
    args = dict(n=1000, delta=0.025)
    tight = float(obj.f_kl_inverse(r, k, **args))
    assert tight <= float(obj.f_quad(r, k, **args)) + 1e-9
    assert tight <= float(obj.f_classic(r, k, **args)) + 1e-9
    assert tight >= risk


def test_kl_penalty_multiplies_kl_only():
    r, k = torch.tensor(0.2, dtype=torch.float64), torch.tensor(40.0, dtype=torch.float64)
    for name in obj.OBJECTIVES.names():
        f = obj.objective(name)
        assert float(f(r, k, n=500, delta=0.05, kl_penalty=0.1)) == pytest.approx(
            float(f(r, 0.1 * k, n=500, delta=0.05)), rel=1e-12)


@pytest.mark.parametrize("q,c", [(0.05, 0.01), (0.3, 0.2), (0.7, 0.001), (0.001, 0.05), (0.5, 1e-4)])
def test_kl_inverse_gradient_matches_finite_differences(q, c):
    qt = torch.tensor(q, dtype=torch.float64, requires_grad=True)
    ct = torch.tensor(c, dtype=torch.float64, requires_grad=True)
    obj.kl_inverse(qt, ct).backward()
    h = 1e-6 * min(q, c, 1e-2)
    dq = (kl_inverse_by_bisection(q + h, c) - kl_inverse_by_bisection(q - h, c)) / (2 * h)
    dc = (kl_inverse_by_bisection(q, c + h) - kl_inverse_by_bisection(q, c - h)) / (2 * h)
    assert float(qt.grad) == pytest.approx(dq, rel=1e-4)
    assert float(ct.grad) == pytest.approx(dc, rel=1e-4)


def test_kl_inverse_gradient_is_zero_where_saturated():
    """kl(q ‖ 1) = ∞ for q < 1, so the inverse reaches 1 only at q = 1, where it is constant."""
    qt = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    ct = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    value = obj.kl_inverse(qt, ct)
    value.backward()
    assert float(value.detach()) == 1.0 and float(qt.grad) == 0.0 and float(ct.grad) == 0.0


def test_unknown_objective_lists_the_known_ones():
    with pytest.raises(GapbenchError, match="Unknown objective 'f_qaud'. Did you mean 'f_quad'"):
        obj.objective("f_qaud")


def blobs(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64) + 2.0 * (2 * y[:, None] - 1)
    return x, y


def test_training_decreases_the_objective_and_leaves_the_net_alone():
    net = GaussianLinear(2, 2, prior_std=0.1, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = blobs(400, 1)
    out = train_probabilistic(net, (x, y), objective="f_quad", n_bound=400, lr=0.05, momentum=0.9, epochs=8,
                              batch_size=50, p_min=1e-4, seed=3)
    first, last = out.history[0], out.history[-1]
    assert last["objective"] < first["objective"] and last["bounded_ce"] < first["bounded_ce"]
    assert set(first) == {"epoch", "objective", "bounded_ce", "error", "kl"}
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    again = train_probabilistic(net, (x, y), objective="f_quad", n_bound=400, lr=0.05, momentum=0.9, epochs=8,
                                batch_size=50, p_min=1e-4, seed=3)
    assert again.history == out.history                                    # seeded: reproducible


@pytest.mark.parametrize("name", ["f_classic", "f_kl_inverse"])
def test_every_objective_trains(name):
    x, y = blobs(300, 2)
    out = train_probabilistic(GaussianLinear(2, 2, prior_std=0.1), (x, y), objective=name, n_bound=300, lr=0.01,
                              momentum=0.9, epochs=5, batch_size=50, seed=0)
    objective = [h["objective"] for h in out.history]
    assert objective == sorted(objective, reverse=True) and objective[-1] < 0.95 * objective[0]


def test_training_bad_input():
    x, y = blobs(20, 0)
    net = GaussianLinear(2, 2, prior_std=0.1)
    with pytest.raises(GapbenchError, match="The 'mode' parameter of train_probabilistic"):
        train_probabilistic(net, (x, y), n_bound=20, mode="mean")
    with pytest.raises(GapbenchError, match="The 'n_bound' parameter of train_probabilistic"):
        train_probabilistic(net, (x, y), n_bound=0)
    with pytest.raises(GapbenchError, match="The 'kl_penalty' parameter"):
        train_probabilistic(net, (x, y), n_bound=20, kl_penalty=-1.0)
    with pytest.raises(GapbenchError, match="The 'prior_data' parameter of train_prior.. must be a Split"):
        train_prior(nn.Linear(2, 2), (x, y))


def test_train_prior_learns_on_s_prior_and_keeps_the_record():
    x, y = blobs(300, 4)
    split = Split(x.float(), y, torch.arange(100, 400), "train", "prior", "toy:train")
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.clone() for p in model.parameters()]
    prior = train_prior(model, split, lr=0.05, momentum=0.9, epochs=6, dropout=0.2, batch_size=50, seed=0)
    assert prior.history[-1]["loss"] < prior.history[0]["loss"]
    assert torch.equal(prior.train_indices, torch.arange(100, 400)) and prior.pool == "toy:train"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(not m._forward_pre_hooks for m in prior.model.modules())   # dropout hooks removed
    assert not prior.model.training
