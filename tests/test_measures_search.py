"""The PAC-Bayes σ search's stops (gapbench.measures.sharpness): the tolerance stop and the σ-precision stop
against the plain loop of tests/reference_measures.py (same σ found, same σ's evaluated, in the same order),
fewer evaluations than the full bisection, a returned σ that passes with its error increase inside
[target − tolerance, target], both stops off reproducing the σ of gapbench 0.1.0 (pinned), the magnitude-aware
range, and clear errors for bad values."""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import reference_measures as ref  # noqa: E402
from test_measures_shared import conv_bn_net  # noqa: E402

from gapbench.bench_measures import cost_model  # noqa: E402
from gapbench.errors import GapbenchError  # noqa: E402
from gapbench.inference import zero_one_error  # noqa: E402
from gapbench.measures import MEASURES, measure, sharpness_search  # noqa: E402
from gapbench.measures import sharpness as sharpness_module  # noqa: E402

torch.set_num_threads(1)

# σ found by gapbench 0.1.0 (bisection of 20 steps over log σ in [1e-6, 1], no early stop) on the `mlp`
# fixture with every default (target 0.1, 10 draws, seed 0): computed with that code before the stops were added.
OLD_STD = {False: 0.027221838302473066, True: 0.3042860826906689}
OLD = {"tolerance": 0, "std_rtol": 0, "std_high": 1.0}      # the 0.1.0 search


class _Counted:
    """PerturbedErrors, recording every σ it is asked about."""

    def __init__(self, monkeypatch):
        self.stds = []
        original = sharpness_module.PerturbedErrors.__call__

        def call(errors, std, fails=None):
            self.stds.append(std)
            return original(errors, std, fails)
        monkeypatch.setattr(sharpness_module.PerturbedErrors, "__call__", call)


def _net(model):
    return sharpness_module._folded_params(model, "test")[0]


@pytest.fixture(scope="module")
def mlp():
    """Flatten → Linear → ReLU → Linear trained on 80 points (training error 0.26), as in
    test_measures_perturb.py: the model of the pinned OLD_STD."""
    return cost_model(depth=1, width=16, n_train=80, epochs=20)


@pytest.fixture(scope="module")
def conv():
    """Conv2d → BatchNorm (folded by the search) → ReLU → Flatten → Linear on 40 random 8×8 inputs labelled
    by its own predictions: base error 0, so noise can only raise the error and the search does not saturate."""
    model = conv_bn_net(0)
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model, None, (x, model(x).argmax(dim=1))


@pytest.mark.parametrize("magnitude", [False, True])
def test_both_stops_off_reproduce_the_old_search(magnitude, mlp, monkeypatch):
    model, _, data = mlp
    counted = _Counted(monkeypatch)
    result = sharpness_search(model, data, magnitude=magnitude, **OLD)
    assert result.std == OLD_STD[magnitude] and result.saturated == ""
    assert len(counted.stds) == 2 + 20                            # std_high, std_low, every bisection step


@pytest.mark.parametrize("magnitude", [False, True])
def test_the_tolerance_stop_saves_evaluations_and_returns_a_passing_std_near_the_target(magnitude, mlp,
                                                                                       monkeypatch):
    model, _, (x, y) = mlp
    counted = _Counted(monkeypatch)
    result = sharpness_search(model, (x, y), magnitude=magnitude, std_high=1.0, std_rtol=0)   # tolerance 0.01
    assert 2 < len(counted.stds) < 2 + 20                        # stopped before the last bisection step
    increase = ref.perturbed_error(_net(model), x.double(), y, result.std, 10, 0, magnitude=magnitude) \
        - result.base_error
    assert increase == result.perturbed_error - result.base_error
    assert 0.1 - 0.01 <= increase <= 0.1                         # passes, within the tolerance of the target
    assert result.std <= OLD_STD[magnitude]                       # the full bisection goes on from there


class _Staircase:
    """PerturbedErrors replaced by a made-up increase: 0 below σ = 1.5e-4, 0.095 up to 1e-3, 0.105 above."""

    def __init__(self, net, base, x, y, **_):
        self.base_error = zero_one_error(net, x, y)

    def __call__(self, std, fails=None):
        return self.base_error + (0.0 if std < 1.5e-4 else 0.095 if std < 1e-3 else 0.105)


def test_the_tolerance_stop_is_one_sided(mlp, monkeypatch):
    """σ = 1e-3 (the first midpoint of [1e-6, 1]) has increase 0.105: within 0.01 of the target, which stops
    the peer's two-sided search there, but it fails, so the search goes on: 10^-4.5 passes with 0, then
    10^-3.75 ≈ 1.8e-4 passes with 0.095, inside [target − 0.01, target]: the search stops and returns it."""
    model, _, data = mlp
    monkeypatch.setattr(sharpness_module, "PerturbedErrors", _Staircase)
    counted = _Counted(monkeypatch)
    result = sharpness_search(model, data)
    assert counted.stds == pytest.approx([1.0, 1e-6, 1e-3, 10 ** -4.5, 10 ** -3.75], rel=1e-12)
    assert result.std == counted.stds[-1] and result.perturbed_error - result.base_error == pytest.approx(0.095)
    wider = sharpness_search(model, data, tolerance=0.1)          # any passing σ with increase ≥ 0 stops it
    assert wider.std == counted.stds[1] == 1e-6 and len(counted.stds) == 5 + 2
    full = sharpness_search(model, data, tolerance=0, std_rtol=0)   # on to the edge of the failing step
    assert len(counted.stds) == 7 + 22 and 1e-3 * (1 - 1e-4) < full.std < 1e-3


def test_the_precision_stop_brackets_std_to_the_relative_width(mlp, monkeypatch):
    model, _, data = mlp
    counted = _Counted(monkeypatch)
    result = sharpness_search(model, data, tolerance=0, std_rtol=0.01)
    steps = math.ceil(math.log2(math.log(1.0 / 1e-6) / math.log1p(0.01)))   # halvings of [1e-6, 1] to 1 %
    assert steps == 11 and len(counted.stds) == 2 + steps
    failing = min(s for s in counted.stds if s > result.std)     # the top of the last bracket
    assert failing / result.std <= 1.01 < (failing / result.std) ** 2     # 1 % now, not one step earlier
    assert 1 <= OLD_STD[False] / result.std <= 1.01               # the full bisection ends inside that bracket


@pytest.mark.parametrize("setting", ["mlp", "conv"])
@pytest.mark.parametrize("magnitude", [False, True])
@pytest.mark.parametrize("stops", [{}, {"tolerance": 0.03}, {"tolerance": 0, "std_rtol": 0.05},
                                   {"tolerance": 0, "std_rtol": 0}])
def test_the_search_equals_the_plain_loop(setting, magnitude, stops, mlp, conv, monkeypatch):
    model, _, (x, y) = mlp if setting == "mlp" else conv
    params = {"n_samples": 4, "iters": 12, "std_high": 50.0, "seed": 2, **stops}
    counted = _Counted(monkeypatch)
    fast = sharpness_search(model, (x, y), magnitude=magnitude, **params)
    full = {"tolerance": sharpness_module.TOLERANCE, "std_rtol": sharpness_module.STD_RTOL, **params}
    std, increase, evaluated = ref.sigma_search(_net(model), x, y, magnitude=magnitude, **full)
    assert fast.std == std and fast.perturbed_error - fast.base_error == increase
    assert counted.stds == evaluated                              # the same σ's, in the same order
    assert fast.saturated == "" and increase <= 0.1


def test_defaults_are_the_documented_constants():
    assert (sharpness_module.TOLERANCE, sharpness_module.STD_RTOL) == (0.01, 0.01)
    assert (sharpness_module.STD_HIGH, sharpness_module.MAG_STD_HIGH) == (1.0, 2.0)
    searching = [entry for entry in MEASURES if entry.kind == "sharpness"]
    assert len(searching) == 10
    for entry in searching:
        defaults = {n: p.default for n, p in inspect.signature(entry.obj).parameters.items()}
        magnitude = "magnitude_eps" in defaults
        assert defaults["tolerance"] == 0.01 and defaults["std_rtol"] == 0.01, entry.name
        assert defaults["std_high"] == (2.0 if magnitude else 1.0), entry.name
        assert magnitude == ("_mag_" in entry.name), entry.name


def test_measures_pass_the_stops_through(mlp):
    model, init, data = mlp
    for name, magnitude in (("pacbayes_sharpness", False), ("pacbayes_mag_sharpness", True)):
        for stops in ({"tolerance": 0, "std_rtol": 0}, {"tolerance": 0.05, "std_rtol": 0.02}):
            expected = sharpness_search(model, data, magnitude=magnitude, **stops).std
            assert measure(name, model, data, **stops) == expected
    assert measure("jiang2020_pacbayes_flatness", model, data, tolerance=0, std_rtol=0) == 1 / OLD_STD[False] ** 2
    assert measure("jiang2020_pacbayes_mag_flatness", model, data, **OLD) == 1 / OLD_STD[True] ** 2
    for name, magnitude in (("pacbayes_kl", False), ("pacbayes_mag_kl", True), ("jiang2020_pacbayes_init", False),
                            ("jiang2020_pacbayes_mag_init", True)):
        old = OLD if magnitude else {"tolerance": 0, "std_rtol": 0}
        assert measure(name, model, data, init=init, **old) != measure(name, model, data, init=init), name


@pytest.mark.parametrize("bad", [-0.01, 0.2, float("nan"), "0.01", True, None])
def test_bad_tolerance_values_are_refused_with_the_fix(bad, mlp):
    model, _, data = mlp
    message = (r"The 'tolerance' parameter of sharpness_search\(\) must be a float in \[0, target=0\.1\]\. "
               r"Got .* instead\. It stops the search at a σ whose error increase is within `tolerance` below "
               r"`target`; 0 turns that stop off\.")
    with pytest.raises(GapbenchError, match=message):
        sharpness_search(model, data, tolerance=bad)
    with pytest.raises(GapbenchError, match=r"The 'tolerance' parameter of measure\('pacbayes_mag_kl'\) must be "
                                            r"a float in \[0, target=0\.05\]"):
        measure("pacbayes_mag_kl", model, data, init=model, tolerance=bad if bad != 0.2 else 0.06, target=0.05)


@pytest.mark.parametrize("bad", [-0.01, float("inf"), "0.01"])
def test_bad_std_rtol_values_are_refused(bad, mlp):
    model, _, data = mlp
    with pytest.raises(GapbenchError, match=r"The 'std_rtol' parameter of measure\('pacbayes_sharpness'\) must be "
                                            r"a finite float >= 0\. Got .* instead"):
        measure("pacbayes_sharpness", model, data, std_rtol=bad)
