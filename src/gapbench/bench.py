"""The training-throughput benchmark behind ``gapbench bench`` (SPEC §6), all ratios measured in one run.

Measurements (every timing is the best of `reps` repetitions after a warm-up; inputs are seeded synthetic
tensors of MNIST shape, since throughput does not depend on the pixel values):

- ``matmul_peak_flops``: fp32 (n×n)·(n×n) matmul, n = 2048, counted as 2n³ FLOP.
- ``mlp_b128_mfu``: the engine's plain path (autograd + torch.optim.SGD) on the 784-1024×5-10 bias-free
  MLP, sigmoid CE, batch 128: achieved FLOP/s ÷ ``matmul_peak_flops``, counting 6·N_params·batch FLOP per
  step (2 forward + 4 backward; the SGD update is not counted). Target ≥ 0.75.
- ``batch1_speedup``: the fused batch-1 path's steps/s ÷ a plain ``nn.Module`` + ``torch.optim.SGD`` loop's
  steps/s on the same net and loss. Target ≥ 4. Also ``batch1_steps_per_s`` and ``batch1_hours_2m_steps``
  (the NK paper preset's ≈ 2 M steps per pair of draws).
- ``stacked32_speedup``: 32 × 784-100-10 MLPs at batch 64, trained together as one stacked model ÷ trained
  one after another with the plain path, the same number of steps each. Target ≥ 2.5.
- ``spectral_s``: seconds for the exact spectral norms (``torch.linalg.matrix_norm(ord=2)``) of the six
  weight matrices of the 784-1024×5-10 net. Target < 2.

Threads: everything runs with one intra-op thread per core of the machine (``os.cpu_count()``), reported as
``threads``; both sides of each ratio run under the same thread count. Other processes on the machine make
the figures noisy; the ratios, measured back to back, are the robust part.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable

import torch

from .config import ModelConfig, RunConfig, TrainConfig
from .models import build_model
from .train.batch1 import Batch1Engine
from .train.loop import PlainEngine
from .train.losses import get_loss
from .train.stacked import StackedMLP

TARGETS = {"mlp_b128_mfu": (">=", 0.75), "batch1_speedup": (">=", 4.0), "stacked32_speedup": (">=", 2.5),
           "spectral_s": ("<", 2.0)}
NK_NET = ModelConfig(depth=5, width=1024, bias=False, init="glorot_uniform")  # NK 2019 fig. 1 net
NK_STEPS = 2_000_000  # ≈ batch-1 steps of the nk2019-fig1 paper preset per pair of draws
MNIST_SHAPE, CLASSES = (784,), 10


def _best(fn: Callable[[], object], reps: int) -> float:
    """Best wall-clock seconds of `reps` calls of fn (after one warm-up call)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *MNIST_SHAPE, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matmul_peak(size: int, reps: int) -> dict[str, float]:
    """fp32 matmul FLOP/s of one (size×size)·(size×size) product: 2·size³ / best seconds."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    seconds = _best(lambda: torch.mm(a, b), reps)
    return {"matmul_peak_flops": 2 * size**3 / seconds, "matmul_size": size, "matmul_s": seconds}


def mlp_mfu(peak_flops: float, batch: int, steps: int, reps: int) -> dict[str, float]:
    """Plain-path training FLOP/s on the NK net at `batch` (6·N·batch FLOP per step) ÷ peak_flops."""
    cfg = RunConfig(model=NK_NET, train=TrainConfig(loss="sigmoid_ce", lr=1e-3, batch_size=batch))
    model = build_model(cfg.model, MNIST_SHAPE, CLASSES)
    engine = PlainEngine(model, cfg, get_loss("sigmoid_ce"))
    x, y = _inputs(batch * steps, 1)
    order = torch.arange(batch * steps)
    seconds = _best(lambda: engine.epoch(x, y, order), reps)
    flops = 6 * _num_params(model) * batch * steps / seconds
    return {"mlp_b128_mfu": flops / peak_flops, "mlp_b128_flops": flops,
            "mlp_b128_step_ms": 1e3 * seconds / steps, "mlp_params": _num_params(model)}


def batch1_speed(steps: int, reps: int) -> dict[str, float]:
    """Steps/s of the fused batch-1 path and of a plain nn.Module + torch.optim.SGD loop (NK net, sigmoid
    CE, batch 1)."""
    cfg = RunConfig(model=NK_NET, train=TrainConfig(loss="sigmoid_ce", lr=1e-3, batch_size=1))
    loss = get_loss("sigmoid_ce")
    model = build_model(cfg.model, MNIST_SHAPE, CLASSES)
    plain, fused = PlainEngine(model, cfg, loss), Batch1Engine(copy.deepcopy(model), 1e-3, loss, CLASSES)
    x, y = _inputs(steps, 2)
    order = torch.arange(steps)
    plain_s, fused_s = math.inf, math.inf
    for _ in range(reps):  # interleaved, so that load from other processes hits both sides alike
        plain_s = min(plain_s, _best(lambda: plain.epoch(x, y, order), 1))
        fused_s = min(fused_s, _best(lambda: fused.epoch(x, y, order), 1))
    fused_rate = steps / fused_s
    return {"batch1_speedup": plain_s / fused_s, "batch1_steps_per_s": fused_rate,
            "batch1_plain_steps_per_s": steps / plain_s,
            "batch1_hours_2m_steps": NK_STEPS / fused_rate / 3600,
            "batch1_plain_hours_2m_steps": NK_STEPS * plain_s / steps / 3600}


def stacked_speed(num_models: int, batch: int, steps: int, reps: int) -> dict[str, float]:
    """num_models × 784-100-10 MLPs at `batch`: stacked training vs one after another, same steps each."""
    cfg = RunConfig(model=ModelConfig(depth=1, width=100), train=TrainConfig(lr=0.01, batch_size=batch))
    loss = get_loss(cfg.train.loss)
    models = [build_model(dataclasses.replace(cfg.model, init_seed=i), MNIST_SHAPE, CLASSES)
              for i in range(num_models)]
    n = batch * steps
    data = [_inputs(n, 10 + i) for i in range(num_models)]
    xs, ys = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
    orders = torch.arange(n).expand(num_models, n)
    stacked = StackedMLP(models, cfg, loss)
    active = torch.ones(num_models, dtype=torch.bool)
    singles = [PlainEngine(copy.deepcopy(m), cfg, loss) for m in models]

    def one_after_another():
        for engine, (x, y) in zip(singles, data, strict=True):
            engine.epoch(x, y, orders[0])

    seq_s, stack_s = math.inf, math.inf
    for _ in range(reps):
        seq_s = min(seq_s, _best(one_after_another, 1))
        stack_s = min(stack_s, _best(lambda: stacked.epoch(xs, ys, orders, active), 1))
    return {"stacked32_speedup": seq_s / stack_s, "stacked32_steps_per_s": num_models * steps / stack_s,
            "stacked32_sequential_steps_per_s": num_models * steps / seq_s, "stacked32_models": num_models}


def spectral_time(reps: int) -> dict[str, float]:
    """Seconds for the exact spectral norms of all weight matrices of the NK net."""
    weights = [m.weight.detach() for m in build_model(NK_NET, MNIST_SHAPE, CLASSES)
               if isinstance(m, torch.nn.Linear)]
    seconds = _best(lambda: [torch.linalg.matrix_norm(w, ord=2) for w in weights], reps)
    return {"spectral_s": seconds, "spectral_matrices": len(weights)}


def run_bench(quick: bool = False, progress: bool = False) -> dict[str, object]:
    """Run every measurement (fewer steps and repetitions with `quick`) and return one flat JSON-able dict."""
    threads = os.cpu_count() or 1
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    reps = 2 if quick else 5
    plan = [("matmul peak", lambda r: matmul_peak(2048, 3 * reps)),
            ("MLP batch 128", lambda r: mlp_mfu(r["matmul_peak_flops"], 128, 3 if quick else 20, reps)),
            ("batch 1", lambda r: batch1_speed(20 if quick else 300, reps)),
            ("stacked x32", lambda r: stacked_speed(32, 64, 3 if quick else 20, reps)),
            ("spectral norms", lambda r: spectral_time(1 if quick else 3))]
    result: dict[str, object] = {"quick": quick, "threads": threads, "torch": torch.__version__,
                                 "machine": platform.machine(), "processor": platform.processor()}
    t0 = time.perf_counter()
    try:
        for name, measure in plan:
            if progress:
                print(f"bench: {name} ...", flush=True)
            result.update(measure(result))
    finally:
        torch.set_num_threads(previous)
    for key, (op, target) in TARGETS.items():
        value = float(result[key])
        result[f"{key}_target"] = f"{op} {target:g}"
        result[f"{key}_met"] = value >= target if op == ">=" else value < target
    result["bench_s"] = time.perf_counter() - t0
    return result


def format_bench(result: dict[str, object]) -> str:
    """A one-screen human-readable summary of run_bench()'s result."""
    ok = {True: "met", False: "NOT met"}
    lines = [f"gapbench bench (torch {result['torch']}, {result['threads']} threads"
             f"{', quick' if result['quick'] else ''}; figures are noisy on a shared machine)",
             f"  matmul peak        {float(result['matmul_peak_flops']) / 1e9:8.1f} GFLOP/s",
             f"  MLP b128 MFU       {float(result['mlp_b128_mfu']):8.2f}   "
             f"(target {result['mlp_b128_mfu_target']}: {ok[result['mlp_b128_mfu_met']]})",
             f"  batch-1 speed-up   {float(result['batch1_speedup']):8.2f}x  "
             f"(target {result['batch1_speedup_target']}: {ok[result['batch1_speedup_met']]}); "
             f"{float(result['batch1_steps_per_s']):.0f} steps/s, "
             f"{float(result['batch1_hours_2m_steps']):.2f} h per 2 M steps",
             f"  stacked x32        {float(result['stacked32_speedup']):8.2f}x  "
             f"(target {result['stacked32_speedup_target']}: {ok[result['stacked32_speedup_met']]})",
             f"  spectral norms     {float(result['spectral_s']):8.2f} s   "
             f"(target {result['spectral_s_target']}: {ok[result['spectral_s_met']]})"]
    return "\n".join(lines)
