"""evaluate_all / measure_costs over the whole registry, and the per-call sharing of quantities between
measures: identical values with and without sharing, fewer computations with it, nothing outliving the call,
inputs untouched, and the reasons recorded for every measure that does not apply."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from gapbench.bench_measures import cost_model
from gapbench.errors import GapbenchError
from gapbench.measures import MEASURES, evaluate_all, measure_costs, sharpness_search
from gapbench.measures import sharpness as sharpness_module
from gapbench.measures.shared import is_sharing, shared, sharing

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def mlp():
    """A one-hidden-layer MLP trained to fit 80 points (every registered measure applies to it)."""
    return cost_model(depth=1, width=16, n_train=80, epochs=20)


def conv_bn_net(seed: int = 0) -> nn.Sequential:
    """A stride-1 conv net with BatchNorm (running statistics randomized, so folding matters) and a dense head."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
                                    flatten=nn.Flatten(), fc=nn.Linear(4 * 8 * 8, 3)))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        net.bn1.running_mean.copy_(torch.randn(4, generator=gen))
        net.bn1.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
    return net.eval()


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("setting", ["mlp", "conv_bn"])
def test_values_identical_with_and_without_sharing(setting, mlp):
    if setting == "mlp":
        model, init, data = mlp
    else:
        gen = torch.Generator().manual_seed(3)
        model, init = conv_bn_net(0), conv_bn_net(1)
        data = (torch.rand(40, 1, 8, 8, generator=gen), torch.randint(0, 3, (40,), generator=gen))
    before = (_state(model), _state(init), data[0].clone(), data[1].clone(), model.training)
    shared_result = evaluate_all(model, data, init=init)
    alone = evaluate_all(model, data, init=init, share=False)
    assert shared_result.values == alone.values            # exact: the same functions, computed fewer times
    assert shared_result.skipped == alone.skipped
    assert set(shared_result.values) | set(shared_result.skipped) == {e.name for e in MEASURES}
    assert len(shared_result.values) >= (46 if setting == "mlp" else 30)
    after = (_state(model), _state(init), data[0], data[1], model.training)
    for b, a in zip(before[:2], after[:2], strict=True):
        assert all(torch.equal(b[k], a[k]) for k in b)
    assert torch.equal(before[2], after[2]) and torch.equal(before[3], after[3]) and before[4] == after[4]
    assert not is_sharing()                                # the memo does not outlive the call


def test_skipped_measures_say_why(mlp):
    model, init, data = mlp
    deeper, deeper_init, _ = cost_model(depth=2, width=8, n_train=40, epochs=1)
    result = evaluate_all(deeper, data, init=deeper_init)
    assert result.skipped == {
        "margin_loss": "needs the parameter(s) gamma, which have no default",
        "dist_between": "needs the parameter(s) other, which have no default",
        "neyshabur2019_complexity": "The 'model' parameter of measure('neyshabur2019_complexity') must be a net "
                                    "with one hidden layer (2 weight layers). Got 'a net with 3 weight layers' "
                                    "instead. Use e.g. ModelConfig(depth=1)."}
    no_data = evaluate_all(model)
    assert no_data.skipped["error"] == "needs data (pass the training set)"
    assert no_data.skipped["dist_from_init_fro"] == "needs init (pass the initial weights)"
    assert set(no_data.values) == {e.name for e in MEASURES if not e.needs_data and not e.needs_init} - {
        "dist_between"}


def test_fc_only_measures_record_the_refusal_on_a_conv_net():
    gen = torch.Generator().manual_seed(0)
    data = (torch.rand(30, 1, 8, 8, generator=gen), torch.randint(0, 3, (30,), generator=gen))
    result = evaluate_all(conv_bn_net(0), data, init=conv_bn_net(1))
    assert "is defined for fully connected nets (Linear layers) only" in result.skipped["bartlett2017_complexity"]
    assert "spectral_product" in result.values


def test_sharing_runs_each_sigma_search_once(mlp, monkeypatch):
    model, init, data = mlp
    calls = []
    original = sharpness_module.PerturbedErrors.__call__
    monkeypatch.setattr(sharpness_module.PerturbedErrors, "__call__",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    sharpness_search(model, data)
    sharpness_search(model, data, magnitude=True)
    one_each = len(calls)
    calls.clear()
    evaluate_all(model, data, init=init)
    assert len(calls) == one_each                          # 10 measures need a search; 2 searches are run
    calls.clear()
    evaluate_all(model, data, init=init, share=False)
    searching = sum(e.kind == "sharpness" for e in MEASURES)
    assert searching == 10 and len(calls) > 4 * one_each   # each of them searched again


def test_shared_memo_keys_by_identity_and_copies_results():
    calls = []

    @shared
    def layer_list(tensor: torch.Tensor, scale: float, options=None, caller: str = "") -> list[float]:
        calls.append(caller)
        return [float(tensor.sum()) * scale]

    a, b = torch.ones(3), torch.ones(3)
    assert layer_list(a, 2.0) == [6.0] and len(calls) == 1     # outside a block: no memo
    layer_list(a, 2.0)
    assert len(calls) == 2
    with sharing():
        first = layer_list(a, 2.0, caller="x")
        first.append("changed by a caller")
        assert layer_list(a, 2.0, caller="y") == [6.0]       # same key (caller ignored), a fresh list
        assert len(calls) == 3
        layer_list(b, 2.0)                                    # equal values, another tensor: computed
        layer_list(a, 3.0)                                    # another scale: computed
        layer_list(a, 2.0, options={"unhashable": 1})         # not keyable: computed, not stored
        layer_list(a, 2.0, options={"unhashable": 1})
        assert len(calls) == 7
        with sharing():                                       # a nested block starts empty ...
            layer_list(a, 2.0)
            assert len(calls) == 8
        layer_list(a, 2.0)                                    # ... and the outer memo is back after it
        assert len(calls) == 8
    assert not is_sharing()


def test_a_raising_call_is_not_remembered():
    attempts = []

    @shared
    def flaky(x: torch.Tensor) -> float:
        attempts.append(1)
        if len(attempts) == 1:
            raise GapbenchError("first call fails")
        return 1.0

    x = torch.zeros(1)
    with sharing():
        with pytest.raises(GapbenchError, match="first call fails"):
            flaky(x)
        assert flaky(x) == 1.0 and flaky(x) == 1.0
    assert len(attempts) == 2


def test_measure_costs_rows(mlp):
    model, init, data = mlp
    ticks = iter(range(1000))
    rows = measure_costs(model, data, init, clock=lambda: float(next(ticks)))
    assert [r["measure"] for r in rows] == [e.name for e in MEASURES]
    by_name = {r["measure"]: r for r in rows}
    assert by_name["margin_loss"]["seconds"] is None and "gamma" in by_name["margin_loss"]["skipped"]
    assert by_name["spectral_product"]["seconds"] == 1.0   # one tick between start and end
    assert by_name["spectral_product"]["value"] == evaluate_all(model, data, init=init).values["spectral_product"]
    assert {r["measure"] for r in rows if r["needs_search"]} == {e.name for e in MEASURES if e.kind == "sharpness"}
    assert by_name["pacbayes_kl"]["needs_init"] and by_name["pacbayes_kl"]["needs_data"]
    assert not by_name["num_params"]["needs_data"] and not by_name["num_params"]["needs_search"]


def test_bad_model_is_refused_with_the_parameter_named():
    with pytest.raises(GapbenchError, match=r"The 'model' parameter of evaluate_all\(\) must be an nn.Module "
                                            r"with parameters\. Got 'str' instead\."):
        evaluate_all("not a model")
    with pytest.raises(GapbenchError, match=r"The 'model' parameter of measure_costs\(\)"):
        measure_costs(nn.ReLU())
    model = copy.deepcopy(conv_bn_net())
    with pytest.raises(GapbenchError, match=r"The 'data' parameter of evaluate_all\(\)"):
        evaluate_all(model, data=[1, 2, 3])
