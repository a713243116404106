import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from gapbench.data.types import Dataset, Split
from gapbench.errors import GapbenchError
from gapbench.train import LOSSES, fit, fit_many, fusable_reason, get_loss, stack_reason

torch.set_num_threads(1)


def blobs(n=48, dim=6, classes=3, spread=0.5, seed=0) -> Dataset:
    """K Gaussian blobs: separable when `spread` is small."""
    gen = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=torch.Generator().manual_seed(100))
    y = torch.arange(n) % classes
    x = centers[y] + spread * torch.randn(n, dim, generator=gen)
    train = Split(x, y, torch.arange(n), "train", "train")
    return Dataset("blobs", train, dataclasses.replace(train, name="test"), classes, (dim,))


def config(**train) -> RunConfig:
    base = dict(lr=0.05, batch_size=8, max_epochs=5, stop="epochs")
    return RunConfig(model=ModelConfig(depth=2, width=16, bias=True), train=TrainConfig(**{**base, **train}))


def weights(model):
    return [p.detach() for p in model.parameters()]


# ---------------------------------------------------------------- losses

def test_losses_against_hand_computation():
    gen = torch.Generator().manual_seed(0)
    out, y = torch.randn(5, 4, generator=gen), torch.tensor([0, 3, 1, 1, 2])
    onehot = F.one_hot(y, 4).float()
    bce = F.binary_cross_entropy_with_logits(out, onehot)  # mean over batch x classes
    assert torch.allclose(get_loss("sigmoid_ce").mean(out, y), bce)
    squared = sum((float(out[i, k]) - float(onehot[i, k])) ** 2 for i in range(5) for k in range(4)) / 5
    assert math.isclose(float(get_loss("squared").mean(out, y)), squared, rel_tol=1e-6)
    ce = sum(-float(out[i, y[i]]) + math.log(sum(math.exp(float(v)) for v in out[i])) for i in range(5)) / 5
    assert math.isclose(float(get_loss("softmax_ce").mean(out, y)), ce, rel_tol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_gradient_matches_autograd(name):
    out = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = torch.tensor([4, 0, 2])
    (auto,) = torch.autograd.grad(get_loss(name).mean(out, y), out)
    assert torch.allclose(get_loss(name).grad(out.detach(), y), auto, atol=1e-7)


def test_unknown_loss_message():
    with pytest.raises(GapbenchError, match="Unknown loss 'sigmoid'. Did you mean 'sigmoid_ce'"):
        get_loss("sigmoid")
    with pytest.raises(GapbenchError, match="The 'stop' parameter of TrainConfig must be one of"):
        fit(config(stop="margins"), blobs())


# ---------------------------------------------------------------- stop rules

@pytest.mark.parametrize("rule, key, field, threshold", [
    ("margin", "margin_fraction", "target_margin", 2.0),
    ("loss", "loss", "loss_threshold", 0.05),
    ("train_error", "train_error", "error_threshold", 0.0),
])
def test_stop_rules_trigger(rule, key, field, threshold):
    cfg = config(stop=rule, max_epochs=50, lr=0.1, **{field: threshold})
    run = fit(cfg, blobs())
    assert run.status == "converged" and run.reason.startswith(rule)
    assert 0 < run.epochs < 50 and run.steps == run.epochs * 6
    met = [h for h in run.history]
    if rule == "margin":
        ok = [h[key] >= cfg.train.margin_fraction for h in met]
    else:
        ok = [h[key] <= threshold for h in met]
    assert ok[-1] and not any(ok[:-1])  # stops at the first epoch that meets the rule
    assert [h["epoch"] for h in run.history] == list(range(run.epochs + 1))


def test_epochs_rule_and_max_epochs_status():
    run = fit(config(stop="epochs", max_epochs=3), blobs())
    assert (run.status, run.epochs, run.steps) == ("converged", 3, 18)
    run = fit(config(stop="margin", target_margin=1e6, max_epochs=2), blobs())
    assert (run.status, run.epochs) == ("max_epochs", 2) and "not met within 2 epochs" in run.reason


# ---------------------------------------------------------------- seeds

def test_seeds_separate_and_reproducible():
    data = blobs()
    a, b = fit(config(), data), fit(config(), data)
    assert all(torch.equal(p, q) for p, q in zip(weights(a.model), weights(b.model), strict=True))
    c = fit(config(sgd_seed=1), data)
    assert not torch.equal(weights(a.model)[0], weights(c.model)[0])
    assert all(torch.equal(a.init_state[k], c.init_state[k]) for k in a.init_state)
    other = dataclasses.replace(config(), data=DataConfig(subset_seed=7))
    d = fit(other, blobs(seed=3))  # another training draw, same init_seed: same initialization
    assert all(torch.equal(a.init_state[k], d.init_state[k]) for k in a.init_state)
    assert not torch.equal(weights(a.model)[0], weights(d.model)[0])


def test_explicit_init_state():
    data = blobs()
    first = fit(config(), data)
    again = fit(dataclasses.replace(config(), model=ModelConfig(depth=2, width=16, init_seed=5)), data,
                init_state=first.init_state)
    assert all(torch.equal(first.init_state[k], again.init_state[k]) for k in first.init_state)
    assert all(torch.equal(p, q) for p, q in zip(weights(first.model), weights(again.model), strict=True))


def test_init_source_is_recorded():
    """fit() records a seeded init, an explicit start without a record as 'unknown', and the record given."""
    from gapbench.trained import source_from_run
    data = blobs()
    first = fit(config(), data)
    assert first.init_source == {"kind": "seeded", "seed": 0}
    assert fit(config(), data, init_state=first.init_state).init_source == {"kind": "unknown"}
    record = source_from_run(first, data.train.source)
    child = fit(config(), data, model=first.model, init_source=record)
    assert child.init_source is record and torch.equal(record["train_indices"], data.train.indices)
    stacked = fit_many([config(), dataclasses.replace(config(), model=ModelConfig(depth=2, width=16,
                                                                                    init_seed=4))], data)
    assert [r.init_source for r in stacked] == [{"kind": "seeded", "seed": 0}, {"kind": "seeded", "seed": 4}]


# ---------------------------------------------------------------- divergence

def test_divergence_marks_run_failed():
    run = fit(config(loss="squared", lr=1e12, max_epochs=5), blobs())
    assert run.status == "failed"
    assert run.reason.startswith("loss is ") and " at step " in run.reason
    assert ("nan" in run.reason or "inf" in run.reason) and run.epochs == 1


# ---------------------------------------------------------------- momentum

def reference_heavy_ball(cfg, data):
    """Obvious SGD with heavy-ball momentum and weight decay, written out without torch.optim."""
    from gapbench.models import build_model
    tc = cfg.train
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    params, bufs = list(model.parameters()), [None] * len(list(model.parameters()))
    gen = torch.Generator().manual_seed(tc.sgd_seed)
    x, y = data.train.x, data.train.y
    for _ in range(tc.max_epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), tc.batch_size):
            idx = order[start:start + tc.batch_size]
            loss = get_loss(tc.loss).mean(model(x[idx]), y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for j, (p, g) in enumerate(zip(params, grads, strict=True)):
                    d = g + tc.weight_decay * p
                    bufs[j] = d.clone() if bufs[j] is None else tc.momentum * bufs[j] + d
                    p -= tc.lr * bufs[j]
    return model


def test_momentum_matches_reference():
    cfg = config(momentum=0.9, weight_decay=1e-3, max_epochs=3, batch_size=10)  # 48 % 10: partial batch
    run, ref = fit(cfg, blobs()), reference_heavy_ball(cfg, blobs())
    for p, q in zip(weights(run.model), weights(ref), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- stacked

@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_stacked_equals_sequential_with_early_stop(momentum):
    cfgs = [dataclasses.replace(config(stop="train_error", max_epochs=8, lr=0.02, momentum=momentum,
                                       weight_decay=1e-3, batch_size=10, sgd_seed=s),
                                model=ModelConfig(depth=2, width=16, init_seed=s)) for s in range(3)]
    datasets = [blobs(spread=0.2, seed=0), blobs(spread=2.5, seed=1), blobs(spread=1.5, seed=2)]
    assert stack_reason(cfgs, datasets) == ""
    stacked = fit_many(cfgs, datasets)
    sequential = [fit(c, d) for c, d in zip(cfgs, datasets, strict=True)]
    assert len({r.epochs for r in stacked}) > 1  # at least one model stopped earlier than another
    for s, q in zip(stacked, sequential, strict=True):
        assert s.extra["engine"] == "StackedMLP"
        assert (s.status, s.epochs, s.steps) == (q.status, q.epochs, q.steps)
        for p, r in zip(weights(s.model), weights(q.model), strict=True):
            assert torch.allclose(p, r, rtol=1e-5, atol=1e-5)
        assert all(torch.equal(s.init_state[k], q.init_state[k]) for k in q.init_state)


def test_stacked_divergent_model_does_not_stop_others():
    cfgs = [config(max_epochs=2), config(max_epochs=2, sgd_seed=1)]
    bad = blobs()
    bad = dataclasses.replace(bad, train=dataclasses.replace(bad.train, x=bad.train.x * 1e30))
    runs = fit_many(cfgs, [bad, blobs()])
    assert runs[0].status == "failed" and "at step" in runs[0].reason
    assert runs[1].status == "converged" and runs[1].epochs == 2
    assert torch.isfinite(weights(runs[1].model)[0]).all()


def test_fit_many_falls_back_with_reason():
    cfgs = [config(), config(lr=0.01)]
    assert stack_reason(cfgs, [blobs(), blobs()]) == "training configs differ in more than sgd_seed"
    runs = fit_many(cfgs, blobs())
    assert [r.extra["not_stacked"] for r in runs] == ["training configs differ in more than sgd_seed"] * 2
    with pytest.raises(GapbenchError, match="The 'datasets' parameter of fit_many"):
        fit_many(cfgs, [blobs()] * 3)


# ---------------------------------------------------------------- fused batch-1

# squared loss at lr 0.05 is unstable here (its loss rises), which amplifies float32 rounding; 0.01 is stable
@pytest.mark.parametrize("loss, bias, lr", [("sigmoid_ce", False, 0.05), ("softmax_ce", True, 0.05),
                                            ("squared", True, 0.01)])
def test_batch1_equals_plain_loop(loss, bias, lr):
    cfg = RunConfig(model=ModelConfig(depth=3, width=24, bias=bias, init="glorot_uniform"),
                    train=TrainConfig(loss=loss, lr=lr, batch_size=1, stop="epochs", max_epochs=4))
    data = blobs(n=50, dim=10, classes=4, spread=1.5)  # 4 epochs x 50 = 200 steps
    fused, plain = fit(cfg, data), fit(cfg, data, engine="plain")
    assert fused.extra["engine"] == "Batch1Engine" and plain.extra["engine"] == "PlainEngine"
    assert fused.steps == plain.steps == 200
    for p, q in zip(weights(fused.model), weights(plain.model), strict=True):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6)
    for h, g in zip(fused.history, plain.history, strict=True):
        assert math.isclose(h["loss"], g["loss"], rel_tol=1e-4)
        if h["epoch"]:
            assert math.isclose(h["sgd_loss"], g["sgd_loss"], rel_tol=1e-4)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_batch1_kernels_agree_on_sparse_inputs(loss):
    """The compiled kernel skips rows of zero inputs; the torch path does not: both equal the plain loop."""
    from gapbench.train.batch1 import Batch1Engine, Batch1TorchEngine, load_kernel
    from gapbench.train.loop import PlainEngine

    if load_kernel()[0] is None:
        pytest.skip(load_kernel()[1])
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(40, 12, generator=gen) * (torch.rand(40, 12, generator=gen) < 0.3)  # ~70 % exact zeros
    y, order = torch.randint(0, 4, (40,), generator=gen), torch.randperm(40, generator=gen)
    cfg = RunConfig(model=ModelConfig(depth=3, width=16, bias=True),
                    train=TrainConfig(loss=loss, lr=0.02, batch_size=1))
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                               torch.nn.ReLU(), torch.nn.Linear(16, 4))
    models = [copy.deepcopy(base) for _ in range(3)]
    kernel = Batch1Engine(models[0], 0.02, get_loss(loss), 4)
    fallback = Batch1Engine(models[1], 0.02, get_loss(loss), 4, kernel="torch")
    assert type(kernel) is Batch1Engine and type(fallback) is Batch1TorchEngine
    assert fallback.kernel_reason == "kernel='torch' was asked for"
    losses = [kernel.epoch(x, y, order), fallback.epoch(x, y, order),
              PlainEngine(models[2], cfg, get_loss(loss)).epoch(x, y, order)]
    assert torch.allclose(losses[0], losses[2], rtol=1e-4, atol=1e-6)
    assert torch.allclose(losses[1], losses[2], rtol=1e-4, atol=1e-6)
    for p, q, r in zip(*(weights(m) for m in models), strict=True):
        assert torch.allclose(p, r, rtol=1e-4, atol=1e-6) and torch.allclose(q, r, rtol=1e-4, atol=1e-6)


def test_batch1_kernel_refuses_what_it_cannot_train():
    from gapbench.train.batch1 import Batch1Engine, Batch1TorchEngine

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    auto = Batch1Engine(model, 0.1, get_loss("squared"), 2)
    assert type(auto) is Batch1TorchEngine and "float32" in auto.kernel_reason
    with pytest.raises(GapbenchError, match="The 'kernel' parameter of Batch1Engine"):
        Batch1Engine(model, 0.1, get_loss("squared"), 2, kernel="numba")
    with pytest.raises(GapbenchError, match="The 'kernel' parameter of Batch1Engine"):
        Batch1Engine(model.float(), 0.1, get_loss("squared"), 2, kernel="cuda")


def test_batch1_dispatch_and_refusal():
    data = blobs()
    cfg = config(batch_size=1, max_epochs=1)
    assert fit(cfg, data).extra["engine"] == "Batch1Engine"
    assert fit(config(batch_size=1, max_epochs=1, momentum=0.9), data).extra["engine"] == "PlainEngine"
    assert "momentum" in fusable_reason(torch.nn.Sequential(torch.nn.Linear(2, 2)), cfg.train.__class__(
        batch_size=1, momentum=0.5))
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2, 2))
    assert "other than" in fusable_reason(conv, cfg.train)
    with pytest.raises(GapbenchError, match="The 'engine' parameter of fit"):
        fit(config(batch_size=4, max_epochs=1), data, engine="batch1")


def test_batch1_divergence_names_step():
    run = fit(config(batch_size=1, loss="squared", lr=1e12, max_epochs=2), blobs())
    assert run.status == "failed" and " at step " in run.reason and run.extra["engine"] == "Batch1Engine"


def _cnn_with_dropout(sgd_seed=0):
    return RunConfig(model=ModelConfig(arch="cnn", width=2, options={"fc_width": 8, "dropout": 0.5}),
                     train=TrainConfig(lr=0.05, batch_size=8, max_epochs=2, stop="epochs", sgd_seed=sgd_seed))


def _images(n=32, seed=0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 1, 28, 28, generator=gen), torch.arange(n) % 10
    train = Split(x, y, torch.arange(n), "train", "train")
    return Dataset("images", train, dataclasses.replace(train, name="test"), 10, (1, 28, 28))


def test_dropout_masks_come_from_the_runs_seed_not_the_global_generator():
    """nn.Dropout draws from torch's global generator: fit() seeds it from sgd_seed for its duration, so a
    run does not depend on what the process drew before, and the caller's generator is left untouched."""
    data = _images()
    torch.manual_seed(1)
    first = weights(fit(_cnn_with_dropout(), data).model)
    torch.manual_seed(2)
    torch.rand(1000)
    state = torch.get_rng_state()
    again = weights(fit(_cnn_with_dropout(), data).model)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = weights(fit(_cnn_with_dropout(sgd_seed=1), data).model)
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))
