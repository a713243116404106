"""The σ search's perturbed errors (gapbench.measures.perturb) against the direct evaluation they replace:
every error at every σ, every σ found and every registered measure identical to what the explicit loop of
tests/reference_measures.py (a fresh draw, a deep copy and a full forward per sample) gives, on an MLP, a conv
net and a net with two conv layers; the first-layer shortcut and the batched layers within float64 rounding of the
one-draw-at-a-time forward; a σ abandoned early fails exactly when the full mean fails, a passing mean is the
full one, whatever was evaluated before."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import reference_measures as ref  # noqa: E402
from test_measures_shared import conv_bn_net  # noqa: E402

from gapbench.bench_measures import cost_model  # noqa: E402
from gapbench.measures import evaluate_all, sharpness_search  # noqa: E402
from gapbench.measures import perturb as perturb_module  # noqa: E402
from gapbench.measures import sharpness as sharpness_module  # noqa: E402
from gapbench.measures.perturb import PerturbedErrors  # noqa: E402

torch.set_num_threads(1)
STDS = (1e-4, 0.01, 0.05, 0.2, 1.0)


@pytest.fixture(scope="module")
def mlp():
    """Flatten → Linear → ReLU → Linear, trained on 80 points (training error 0.26: some margins are
    negative, so the base error and the perturbed errors are both informative)."""
    return cost_model(depth=1, width=16, n_train=80, epochs=20)


@pytest.fixture(scope="module")
def conv():
    """Conv2d → BatchNorm (folded by the search) → ReLU → Flatten → Linear, and its init."""
    gen = torch.Generator().manual_seed(3)
    data = (torch.rand(40, 1, 8, 8, generator=gen), torch.randint(0, 3, (40,), generator=gen))
    return conv_bn_net(0), conv_bn_net(1), data


def _errors(model, x, y, magnitude, n_samples=4, seed=5):
    net, base = sharpness_module._folded_params(model, "test")
    return net, PerturbedErrors(net, base, x.double(), y, magnitude=magnitude, magnitude_eps=1e-3,
                                n_samples=n_samples, seed=seed)


@pytest.mark.parametrize("setting", ["mlp", "conv"])
@pytest.mark.parametrize("magnitude", [False, True])
def test_errors_equal_the_direct_evaluation_at_every_std(setting, magnitude, mlp, conv, request):
    model, _, (x, y) = mlp if setting == "mlp" else conv
    net, errors = _errors(model, x, y, magnitude)
    assert errors.split is not None and (errors.split[4] is None) == magnitude   # the shortcut: isotropic only
    for std in STDS:
        expected = ref.perturbed_error(net, x, y, std, 4, 5, magnitude=magnitude)
        assert errors(std) == expected                  # exact: same draws, same signs of the margins
    assert 0 < errors(1.0) < 1                          # the σ range crosses the interesting region


def _logits(errors, std, points):
    return errors._logits(errors._params(std), std, points)


@pytest.mark.parametrize("magnitude", [False, True])
def test_first_layer_shortcut_and_batched_layers_agree_with_the_vmapped_forward(magnitude, mlp):
    model, _, (x, y) = mlp
    _, errors = _errors(model, x, y, magnitude=magnitude)
    everything = slice(0, x.shape[0])
    for std in STDS:
        split = _logits(errors, std, everything)                 # stored first layer (isotropic), bmm layers
        saved, errors.split = errors.split, None
        direct = _logits(errors, std, everything)                # vmap of functional_call over the whole net
        errors.split = saved
        assert torch.allclose(split, direct, rtol=1e-12, atol=1e-12 * float(direct.abs().max()))
        picked = torch.tensor([7, 3, 41, 0])                     # an index of points, as the early stop uses
        assert torch.allclose(_logits(errors, std, picked), split[:, picked], rtol=1e-12,
                              atol=1e-12 * float(direct.abs().max()))


def test_shortcut_is_refused_past_the_memory_cap_and_for_nets_it_cannot_split(mlp, monkeypatch):
    model, _, (x, y) = mlp
    monkeypatch.setattr(perturb_module, "FIRST_LAYER_BYTES", 8)
    net, errors = _errors(model, x, y, magnitude=False)
    assert errors.split[4] is None and errors(0.05) == ref.perturbed_error(net, x, y, 0.05, 4, 5)
    wrapped = torch.nn.ModuleDict({"net": net})
    wrapped.forward = lambda inputs: wrapped["net"](inputs)          # not a Sequential: the plain vmap path
    base = {n: p.detach().clone() for n, p in wrapped.named_parameters()}
    plain = PerturbedErrors(wrapped, base, x.double(), y, magnitude=True, magnitude_eps=1e-3, n_samples=4, seed=5)
    assert plain.split is None and plain(0.05) == ref.perturbed_error(net, x, y, 0.05, 4, 5, magnitude=True)
    assert perturb_module._first_layer(torch.nn.Linear(3, 2)) is None                 # not a Sequential
    assert perturb_module._first_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))) == (1, "1")
    nested = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.nn.ReLU())
    assert perturb_module._first_layer(nested) is None


def _two_conv_net(seed: int = 0) -> torch.nn.Sequential:
    """Conv → ReLU → MaxPool → Conv → ReLU → Flatten → Linear: after the first layer, a parameterised child
    that is not a Linear layer (the batched layers hand it to vmap) and parameter-free ones that are not ReLU."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(16, 3)).eval()


@pytest.mark.parametrize("magnitude", [False, True])
def test_layers_after_the_first_that_are_not_linear_go_through_vmap(magnitude):
    gen = torch.Generator().manual_seed(4)
    x, y = torch.rand(60, 1, 4, 4, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    net, errors = _errors(_two_conv_net(), x, y, magnitude)
    assert errors.split is not None and type(errors.split[3][2][1]) is torch.nn.Conv2d
    for std in STDS:
        assert errors(std) == ref.perturbed_error(net, x, y, std, 4, 5, magnitude=magnitude)


def _fails_above(base: float, target: float):
    return lambda error: error - base > target


@pytest.mark.parametrize("setting", ["mlp", "conv"])
@pytest.mark.parametrize("magnitude", [False, True])
def test_a_sigma_abandoned_early_fails_exactly_when_the_full_mean_fails(setting, magnitude, mlp, conv):
    model, _, (x, y) = mlp if setting == "mlp" else conv
    net, errors = _errors(model, x, y, magnitude)
    _, fresh = _errors(model, x, y, magnitude)
    stds = [1.0, 0.2, 0.05, 0.1, 0.07, 0.09, 0.08, 0.085, 0.083, 0.3, 0.01]     # a bisection-like history
    evaluated, stopped = [], 0
    original = errors._logits
    errors._logits = lambda params, std, points: evaluated.append(len(errors.y[points])) or original(params, std,
                                                                                                        points)
    for std in stds:
        full = ref.perturbed_error(net, x, y, std, 4, 5, magnitude=magnitude)
        for target in (0.0, 0.05, 0.1, 0.3):
            fails = _fails_above(0.25, target)
            evaluated.clear()
            found = errors(std, fails)
            assert fails(found) == fails(full)                   # the decision the search takes
            if not fails(full):
                assert found == full                             # a passing mean is the full one
            stopped += sum(evaluated) < x.shape[0]
        assert errors(std) == full == fresh(std)                 # without a test: the full mean, any history
    assert stopped > 0                                           # the early stop is exercised
    assert errors._fewest_failing(_fails_above(0.25, 0.1)) == next(
        c for c in range(x.shape[0] + 1) if errors._mean(torch.full((4,), float(c), dtype=torch.float64))
        - 0.25 > 0.1)
    assert errors._fewest_failing(lambda error: False) == x.shape[0] + 1


def test_the_order_puts_the_points_misclassified_most_often_first(mlp):
    model, _, (x, y) = mlp
    _, errors = _errors(model, x, y, magnitude=False)
    errors(0.2)
    order = errors._order()
    counts = (errors.last <= 0).sum(dim=0)[order]
    assert sorted(order.tolist()) == list(range(x.shape[0])) and bool((counts[:-1] >= counts[1:]).all())
    assert 0 < int(counts[0]) and int(counts[-1]) == 0           # the σ misclassifies some pairs, not all


class _Reference:
    """PerturbedErrors replaced by the explicit loop (no shared draws, no shortcut, no early stop)."""

    def __init__(self, net, base, x, y, *, magnitude, magnitude_eps, n_samples, seed):
        self.args = (net, x, y, n_samples, seed, magnitude, magnitude_eps)

    def __call__(self, std, fails=None):
        net, x, y, n_samples, seed, magnitude, magnitude_eps = self.args
        return ref.perturbed_error(net, x, y, std, n_samples, seed, magnitude=magnitude, magnitude_eps=magnitude_eps)


@pytest.mark.parametrize("magnitude", [False, True])
def test_search_finds_the_std_of_the_explicit_loop(magnitude, mlp, monkeypatch):
    model, init, data = mlp
    fast = sharpness_search(model, data, init=init, magnitude=magnitude, n_samples=3, iters=10, std_high=50.0)
    monkeypatch.setattr(sharpness_module, "PerturbedErrors", _Reference)
    slow = sharpness_search(model, data, init=init, magnitude=magnitude, n_samples=3, iters=10, std_high=50.0)
    assert fast == slow and fast.saturated == ""


@pytest.mark.parametrize("setting", ["mlp", "conv"])
def test_every_registered_measure_equals_the_explicit_loop(setting, mlp, conv, monkeypatch):
    model, init, data = mlp if setting == "mlp" else conv
    fast = evaluate_all(model, data, init=init)
    monkeypatch.setattr(sharpness_module, "PerturbedErrors", _Reference)
    slow = evaluate_all(model, data, init=init)
    assert fast.values == slow.values and fast.skipped == slow.skipped
    assert len(fast.values) >= (46 if setting == "mlp" else 30)
