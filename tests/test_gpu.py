"""CUDA twins of CPU computations (marker ``gpu``; opt-in: ``pytest -m gpu`` on a machine with a GPU).

Each test computes one thing on the GPU and on the CPU and checks that they agree, so a device bug (a tensor
left on the wrong device, a CPU-only kernel, a silent dtype change) fails here rather than in a long run.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gapbench.analysis.deep_paths import TwoPhaseNet
from gapbench.bounds import bound
from gapbench.config import ModelConfig, RunConfig, Runtime, TrainConfig
from gapbench.data.types import Dataset, Split
from gapbench.measures import measure
from gapbench.models import build_model
from gapbench.train import fit

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = Runtime(device="cuda")


@pytest.fixture(autouse=True)
def _exact_float32():
    """TF32 matmuls would make GPU and CPU differ by ~1e-3; the comparisons below want fp32 on both."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def images(n=64, shape=(1, 12, 12), classes=3, seed=0) -> Dataset:
    """Class-dependent mean images plus noise: learnable in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(classes, *shape, generator=torch.Generator().manual_seed(100))
    y = torch.arange(n) % classes
    x = means[y] + 0.5 * torch.randn(n, *shape, generator=gen)
    train = Split(x, y, torch.arange(n), "train", "train")
    return Dataset("images", train, dataclasses.replace(train, name="test"), classes, shape)


MLP = ModelConfig(arch="mlp", depth=2, width=32, bias=True)
CNN = ModelConfig(arch="cnn", width=4, bias=True, options={"fc_width": 16, "dropout": 0.0})


@pytest.mark.parametrize("model_cfg", [MLP, CNN], ids=["mlp", "cnn"])
def test_fit_on_cuda_matches_cpu(model_cfg):
    cfg = RunConfig(model=model_cfg, train=TrainConfig(lr=0.05, momentum=0.9, batch_size=8, max_epochs=4,
                                                       stop="epochs"))
    data = images()
    cpu = fit(cfg, data, engine="plain")
    gpu = fit(cfg, data, runtime=CUDA, engine="plain")
    assert next(gpu.model.parameters()).is_cuda
    assert gpu.steps == cpu.steps and gpu.epochs == cpu.epochs
    for a, b in zip(cpu.model.parameters(), gpu.model.parameters(), strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=2e-4, rtol=1e-3)
    assert [h["train_error"] for h in gpu.history] == [h["train_error"] for h in cpu.history]


@pytest.mark.parametrize("name", ["spectral_product", "frobenius_product", "path_norm_l2", "dist_from_init_fro",
                                  "median_margin", "bartlett2017_complexity"])
def test_measures_of_a_cuda_model_match_cpu(name):
    data = images(n=32, shape=(1, 4, 4))
    model = build_model(MLP, data.input_shape, data.num_classes)
    init = build_model(dataclasses.replace(MLP, init_seed=1), data.input_shape, data.num_classes)
    needs_init = name in ("dist_from_init_fro", "bartlett2017_complexity")
    split = (data.train.x, data.train.y)
    on_cpu = measure(name, model, split, **({"init": init} if needs_init else {}))
    on_gpu = measure(name, model.cuda(), (split[0].cuda(), split[1].cuda()),
                     **({"init": init.cuda()} if needs_init else {}))
    assert math.isclose(on_gpu, on_cpu, rel_tol=1e-6)


def test_heldout_bound_of_a_cuda_model_matches_cpu():
    data = images(n=200, shape=(1, 4, 4))
    model = build_model(MLP, data.input_shape, data.num_classes)
    split = (data.train.x, data.train.y)
    on_cpu = bound("heldout_binomial", model, split, delta=0.05).value
    on_gpu = bound("heldout_binomial", model.cuda(), (split[0].cuda(), split[1].cuda()), delta=0.05).value
    assert on_gpu == on_cpu


def test_two_phase_net_on_cuda_starts_as_the_tied_model():
    data = images(n=16)
    model = build_model(CNN, data.input_shape, data.num_classes).cuda().eval()
    net = TwoPhaseNet.from_model(model).cuda().eval()
    x = data.train.x.cuda()
    torch.testing.assert_close(net(x), model(x))


def test_two_phase_experiment_runs_on_cuda(tmp_path, data_dir):
    from gapbench.experiments.execute import run_experiment
    runtime = dataclasses.replace(CUDA, data_dir=str(data_dir))
    outcome = run_experiment("kkb2017-two-phase", "smoke", out=tmp_path, runtime=runtime, progress=False,
                             overrides={"arch": "cnn", "width": "4", "fc_width": "16", "bias": "true"})
    rows = outcome.table.rows
    assert rows and all(r["status"] == "done" for r in rows)
    assert all(0.0 <= r["test_error"] <= 1.0 for r in rows)
