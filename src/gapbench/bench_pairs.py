"""The timed trials of ``gapbench bench``: :func:`interleaved` (the sides of a ratio called in turn, A B A B …,
after one untimed warm-up each), the workload of one trial (:class:`BenchSizes`, FULL and QUICK), and the five
throughput benchmarks, each returning one array of R per-pair values per figure: :func:`mfu_pairs`,
:func:`batch1_pairs`, :func:`stacked_pairs`, :func:`spectral_repeats`, :func:`probnet_pairs`.

What each figure is, its target, the threads it runs at and the JSON report are in :mod:`gapbench.bench`, which
runs these and summarizes them; the all-measures entry is :mod:`gapbench.bench_measures`. Inputs are seeded
synthetic tensors of MNIST shape (throughput does not depend on the pixel values). ``clock`` is
``time.perf_counter`` unless a test passes a scripted one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .config import ModelConfig, RunConfig, TrainConfig
from .models import build_model
from .pacbayes import pbb_cnn, pbb_fcn, probabilistic
from .train.batch1 import Batch1Engine
from .train.loop import PlainEngine
from .train.losses import get_loss
from .train.stacked import StackedMLP

Clock = Callable[[], float]  # seconds, monotonic (time.perf_counter); tests pass a scripted one

NK_NET = ModelConfig(depth=5, width=1024, bias=False, init="glorot_uniform")  # NK 2019 fig. 1 net
PB_PRIOR_STD = 0.03  # PBB's MNIST prior scale (σ_prior = 0.03); timings do not depend on it
NK_STEPS = 2_000_000  # ≈ batch-1 steps of the nk2019-fig1 paper preset per pair of draws
MNIST_SHAPE, CLASSES = (784,), 10


@dataclasses.dataclass(frozen=True)
class BenchSizes:
    """The workload of one timed trial of each benchmark (seconds are for the 2-core CPU)."""

    net: ModelConfig = NK_NET   # net of the MFU, batch-1 and spectral benchmarks
    matmul_size: int = 2048     # n of the (n×n)·(n×n) peak matmul (≈ 0.13 s each)
    matmul_calls: int = 4       # matmuls per peak trial
    mlp_batch: int = 128        # batch of the MFU training trial
    mlp_steps: int = 20         # SGD steps per MFU training trial (≈ 0.8 s)
    batch1_steps: int = 300     # steps per batch-1 trial, each side (≈ 2.3 s plain)
    stacked_models: int = 32    # models trained together / one after another
    stacked_width: int = 100    # hidden width of each 784-w-10 stacked model
    stacked_batch: int = 64
    stacked_steps: int = 20     # SGD steps per model per stacked trial
    pb_batch: int = 250         # batch of the probabilistic FCN forwards (PBB's batch size)
    pb_forwards: int = 10       # forwards per FCN trial, each side (≈ 0.1 s deterministic)
    pb_cnn_batch: int = 100     # batch of the CNN forwards, one per trial (≈ 0.5 s per-example)
    cost_depth: int = 2         # hidden layers of the MLP whose measures are timed (bench_measures)
    cost_width: int = 64        # its hidden width
    cost_train: int = 1000      # its training points (every measure on data passes over all of them)
    cost_epochs: int = 25       # SGD epochs it is trained for (training error 0 on the 2-core CPU, ≈ 8 s)


FULL = BenchSizes()
QUICK = BenchSizes(matmul_calls=2, mlp_steps=3, batch1_steps=20, stacked_steps=3, pb_forwards=3, pb_cnn_batch=25,
                   cost_width=32, cost_train=500)


def interleaved(fns: Sequence[Callable[[], object]], repeats: int, clock: Clock = time.perf_counter
                ) -> list[np.ndarray]:
    """Seconds of each fn over `repeats` rounds, the fns called in turn (A B A B … for two).

    One untimed warm-up call of each fn comes first. Returns one array of `repeats` durations per fn;
    element r of every array was measured in round r, so arrays divide elementwise into per-pair ratios.
    """
    for fn in fns:
        fn()
    seconds = np.empty((len(fns), repeats))
    for r in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            seconds[i, r] = clock() - start
    return list(seconds)


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *MNIST_SHAPE, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _plain_engine(net: ModelConfig, batch: int, lr: float, loss: str) -> PlainEngine:
    cfg = RunConfig(model=net, train=TrainConfig(loss=loss, lr=lr, batch_size=batch))
    return PlainEngine(build_model(net, MNIST_SHAPE, CLASSES), cfg, get_loss(loss))


def mfu_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: matmul peak FLOP/s (A), plain-path training FLOP/s of `sizes.net` (B), and B ÷ A."""
    n = sizes.matmul_size
    gen = torch.Generator().manual_seed(0)
    a, b, product = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen), torch.empty(n, n)
    engine = _plain_engine(sizes.net, sizes.mlp_batch, 1e-3, "sigmoid_ce")
    x, y = _inputs(sizes.mlp_batch * sizes.mlp_steps, 1)
    order = torch.arange(x.shape[0])

    def peak():
        for _ in range(sizes.matmul_calls):
            torch.mm(a, b, out=product)

    peak_s, mlp_s = interleaved([peak, lambda: engine.epoch(x, y, order)], repeats, clock)
    peak_flops = 2 * n**3 * sizes.matmul_calls / peak_s
    mlp_flops = 6 * _num_params(engine.model) * x.shape[0] / mlp_s
    return {"mlp_b128_mfu": mlp_flops / peak_flops, "matmul_peak_gflops": peak_flops / 1e9,
            "mlp_b128_gflops": mlp_flops / 1e9, "mlp_b128_step_ms": 1e3 * mlp_s / sizes.mlp_steps}


def batch1_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: steps/s of a plain nn.Module + torch.optim.SGD loop (A) and of the fused batch-1 path (B)
    on `sizes.net`, sigmoid CE, batch 1; the speed-up is A's seconds ÷ B's."""
    plain = _plain_engine(sizes.net, 1, 1e-3, "sigmoid_ce")
    fused = Batch1Engine(copy.deepcopy(plain.model), 1e-3, get_loss("sigmoid_ce"), CLASSES)
    x, y = _inputs(sizes.batch1_steps, 2)
    order = torch.arange(sizes.batch1_steps)
    plain_s, fused_s = interleaved([lambda: plain.epoch(x, y, order), lambda: fused.epoch(x, y, order)],
                                   repeats, clock)
    fused_rate, plain_rate = sizes.batch1_steps / fused_s, sizes.batch1_steps / plain_s
    return {"batch1_speedup": plain_s / fused_s, "batch1_steps_per_s": fused_rate,
            "batch1_plain_steps_per_s": plain_rate, "batch1_hours_2m_steps": NK_STEPS / fused_rate / 3600,
            "batch1_plain_hours_2m_steps": NK_STEPS / plain_rate / 3600}


def stacked_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: `stacked_models` 784-w-10 MLPs trained one after another (A) and stacked (B), the same
    steps each; the speed-up is A's seconds ÷ B's."""
    num, steps = sizes.stacked_models, sizes.stacked_steps
    cfg = RunConfig(model=ModelConfig(depth=1, width=sizes.stacked_width),
                    train=TrainConfig(lr=0.01, batch_size=sizes.stacked_batch))
    loss = get_loss(cfg.train.loss)
    models = [build_model(dataclasses.replace(cfg.model, init_seed=i), MNIST_SHAPE, CLASSES) for i in range(num)]
    n = sizes.stacked_batch * steps
    data = [_inputs(n, 10 + i) for i in range(num)]
    xs, ys = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
    orders = torch.arange(n).expand(num, n)
    stacked = StackedMLP(models, cfg, loss)
    active = torch.ones(num, dtype=torch.bool)
    singles = [PlainEngine(copy.deepcopy(m), cfg, loss) for m in models]

    def one_after_another():
        for engine, (x, y) in zip(singles, data, strict=True):
            engine.epoch(x, y, orders[0])

    seq_s, stack_s = interleaved([one_after_another, lambda: stacked.epoch(xs, ys, orders, active)],
                                 repeats, clock)
    return {"stacked32_speedup": seq_s / stack_s, "stacked32_steps_per_s": num * steps / stack_s,
            "stacked32_sequential_steps_per_s": num * steps / seq_s}


def spectral_repeats(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter
                     ) -> dict[str, np.ndarray]:
    """Seconds for the exact spectral norms of all weight matrices of `sizes.net`, per repetition."""
    weights = [m.weight.detach() for m in build_model(sizes.net, MNIST_SHAPE, CLASSES)
               if isinstance(m, torch.nn.Linear)]
    (seconds,) = interleaved([lambda: [torch.linalg.matrix_norm(w, ord=2) for w in weights]], repeats, clock)
    return {"spectral_s": seconds}


def _pb_sides(model: torch.nn.Module, x: torch.Tensor, forwards: int) -> list[Callable[[], object]]:
    net = probabilistic(model, prior_std=PB_PRIOR_STD)
    mean_net, gen = net.mean_network(), torch.Generator().manual_seed(0)

    def repeat(fn, frozen):
        def run():
            with torch.no_grad(), (net.frozen() if frozen else contextlib.nullcontext()):
                for _ in range(forwards):
                    fn()
        return run
    return [repeat(lambda: mean_net(x), False), repeat(lambda: net(x, "per_example", gen), True),
            repeat(lambda: net(x, "per_example", gen), False)]


def probnet_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter
                  ) -> dict[str, np.ndarray]:
    """Per round: PBB's FCN forward as the mean network (A), per-example inside frozen() (B) and without
    (C); PBB's CNN as the mean network and per-example inside frozen(). Ratios are seconds ÷ A's."""
    x = _inputs(sizes.pb_batch, 3)[0]
    det_s, pe_s, unfrozen_s = interleaved(_pb_sides(pbb_fcn(seed=0), x, sizes.pb_forwards), repeats, clock)
    images = torch.rand(sizes.pb_cnn_batch, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    cnn_det_s, cnn_pe_s = interleaved(_pb_sides(pbb_cnn(seed=0), images, 1)[:2], repeats, clock)
    return {"pbnet_fcn_ratio": pe_s / det_s, "pbnet_fcn_unfrozen_ratio": unfrozen_s / det_s,
            "pbnet_fcn_ms": 1e3 * pe_s / sizes.pb_forwards, "pbnet_cnn_ratio": cnn_pe_s / cnn_det_s,
            "pbnet_cnn_ms": 1e3 * cnn_pe_s}

