"""The cost entry of ``gapbench bench`` (issue 14, test 5): gapbench's whole measure registry on one model
against the peer's ``get_all_measures`` on the same model, as interleaved pairs (see :mod:`gapbench.bench`).

- ``measures_ratio`` = B's seconds ÷ A's. A: the port of Dziugaite et al. 2020's ``get_all_measures``
  (``benchmarks/peer_measures.py`` of the repository, a benchmark-only reference not shipped in the package:
  their 34 measures, two PAC-Bayes σ searches, shared quantities computed once). B:
  :func:`gapbench.measures.evaluate_all`, every registered measure that applies to the model (46 for the
  MLP below, with init and data; quantities shared within the call). Target < 1 (gapbench faster).
  The training accuracy their function takes as an argument is computed before the timing, as their
  training loop has it already; gapbench's searches compute their own base error inside the timing.
- ``measure_costs``: the seconds of every measure called alone on the same model (not paired, one run), with
  whether it needs data, the initialization or a search: :func:`gapbench.measures.measure_costs`.

The model: a ``cost_depth`` × ``cost_width`` ReLU MLP with biases on (1, 28, 28) inputs, trained with SGD
for ``cost_epochs`` epochs on ``cost_train`` seeded uniform-noise images labelled by a fixed random linear
teacher (argmax of 10 random projections: learnable, so the margins and the σ searches see a net that fits
its training set, as a zoo model does). Why not the peer's NiN: on CIFAR-shaped input it is heavy on a 2-core
CPU, and gapbench's exact conv norms refuse its stride-2 convolutions and its AdaptiveAvgPool2d; an MLP is a
zoo model both sides run (their FFT norm takes its dense layers as 1×1 kernels on a 1×1 input, the one
adaptation of their code that this model needs; see the port's header).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from .bench_pairs import interleaved
from .config import ModelConfig, RunConfig, TrainConfig
from .errors import GapbenchError
from .measures import evaluate_all, measure_costs
from .models import build_model
from .train.loop import PlainEngine
from .train.losses import get_loss

PEER_PORT = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_measures.py"
IMAGE_SHAPE, CLASSES = (1, 28, 28), 10
PEER_SEED = 0          # the `seed` argument of their get_all_measures (their hparams.seed default)


def load_peer_port(path: Path = PEER_PORT) -> ModuleType:
    """The benchmark-only port of the peer's measures, imported from the repository checkout."""
    if not path.is_file():
        raise GapbenchError(f"The peer port {path} is not there (it lives in the repository's benchmarks/ "
                            f"folder, not in the installed package). Run gapbench bench from a git checkout "
                            f"(pip install -e .) to time the measures against it.")
    name = "gapbench_peer_measures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def cost_model(depth: int, width: int, n_train: int, epochs: int, seed: int = 0
               ) -> tuple[nn.Module, nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """(trained model, its initial weights as a model, (x, y) training set): see the module docstring."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train, *IMAGE_SHAPE, generator=gen)
    teacher = torch.randn(int(np.prod(IMAGE_SHAPE)), CLASSES, generator=gen)
    y = ((x.reshape(n_train, -1) - 0.5) @ teacher).argmax(dim=1)
    cfg = RunConfig(model=ModelConfig(depth=depth, width=width, init_seed=seed),
                    train=TrainConfig(loss="softmax_ce", lr=0.01, batch_size=32, momentum=0.9))
    model = build_model(cfg.model, IMAGE_SHAPE, CLASSES)
    init = build_model(cfg.model, IMAGE_SHAPE, CLASSES)
    engine = PlainEngine(model, cfg, get_loss("softmax_ce"))
    for _ in range(epochs):
        engine.epoch(x, y, torch.randperm(n_train, generator=gen))
    return model.eval(), init.eval(), (x, y)


def measures_pairs(sizes, repeats: int, clock: Callable[[], float] = time.perf_counter
                   ) -> dict[str, np.ndarray]:
    """Per pair: seconds of the peer port's get_all_measures (A) and of gapbench's evaluate_all (B) on the
    same trained model; the ratio is B ÷ A. Also the gapbench measure count and each measure's cost alone."""
    peer = load_peer_port()
    model, init, (x, y) = cost_model(sizes.cost_depth, sizes.cost_width, sizes.cost_train, sizes.cost_epochs)
    peer_model = peer.PeerModel(model, IMAGE_SHAPE, CLASSES)
    peer_init = peer.PeerModel(init, IMAGE_SHAPE, CLASSES)
    loader = peer.eval_loader(x, y)
    acc = peer.accuracy(peer_model, loader)
    peer_s, ours_s = interleaved([lambda: peer.get_all_measures(peer_model, peer_init, loader, acc, PEER_SEED),
                                  lambda: evaluate_all(model, (x, y), init=init)], repeats, clock)
    return {"measures_ratio": ours_s / peer_s, "measures_peer_s": peer_s, "measures_gapbench_s": ours_s}


def cost_table(sizes) -> dict[str, object]:
    """measure_costs() on the bench's cost model, with the model's training accuracy and the totals."""
    model, init, data = cost_model(sizes.cost_depth, sizes.cost_width, sizes.cost_train, sizes.cost_epochs)
    rows = measure_costs(model, data, init)
    result = evaluate_all(model, data, init=init)
    return {"rows": rows, "computed": len(result.values),
            "train_error": result.values["error"],
            "alone_total_s": sum(r["seconds"] for r in rows if r["seconds"] is not None),
            "model": dataclasses.asdict(ModelConfig(depth=sizes.cost_depth, width=sizes.cost_width)),
            "n_train": sizes.cost_train}


def format_costs(costs: dict[str, object], top: int = 10) -> str:
    """The `top` most expensive measures (each called alone), with what each needs."""
    rows = sorted((r for r in costs["rows"] if r["seconds"] is not None), key=lambda r: -r["seconds"])
    lines = [f"measure costs (each alone; {costs['computed']} measures computed, {costs['alone_total_s']:.1f} s "
             f"in all, training error {costs['train_error']:.3f}): seconds, needs data / init / a search"]
    for r in rows[:top]:
        needs = "/".join(k for k in ("data", "init", "search") if r[f"needs_{k}"]) or "-"
        lines.append(f"  {r['measure']:<40} {r['seconds']:8.3f}  {needs}")
    return "\n".join(lines)
