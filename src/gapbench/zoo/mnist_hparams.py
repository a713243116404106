"""mnist-hparams: a Jiang et al. 2020-style grid of MLPs and the small CNN, every model trained to the same
training cross-entropy.

Jiang et al. (Fantastic generalization measures, ICLR 2020, §4 and App. A) train a grid of networks varying
depth, width, batch size, learning rate, weight decay, dropout and optimizer, and stop every model at the
same training cross-entropy (0.01) so that a measure's correlation with the gap is not confounded by how well
the model fits. Here: MLPs (``depth`` hidden ReLU layers of ``width``) and gapbench's small CNN (two 5x5 conv
layers of ``cnn_width`` and 2·cnn_width channels, FC ``cnn_fc_width``; its depth is fixed and recorded as
``depth`` = 2), SGD with momentum, varying depth, width, learning rate, batch size, weight decay, training-set
size and seed. Every model stops when its training cross-entropy is ≤ ``loss_threshold`` (TrainConfig
stop='loss'), or at ``max_epochs``: such a model is recorded as capped (stop_reason 'max_epochs') and left
out of scores by default.

A job is one grid point with all its seeds: the seeds' models share everything but their seeds, so
:func:`gapbench.train.fit_many` trains the MLPs of a point as one stacked model (the CNN one after another).
Each model is checkpointed under its own RunConfig signature (reused by any later job that trains it), and
its values are stored as ``seed<s>.<quantity>``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint
from ..config import DataConfig, ModelConfig, RunConfig, Runtime, TrainConfig, from_dict, signature, to_dict
from ..experiments.file_datasets import check_sizes, dataset_param
from ..experiments.jobs import basic_values, checkpoint_path, load_for
from ..experiments.params import Param, count, nonnegative, positive
from ..progress import report
from ..sweep import JobResult
from ..train import fit_many
from .base import Member, ZooDef, register, stop_reason

NAME = "mnist-hparams"
CNN_DEPTH = 2                # the CNN's conv layers, recorded as its 'depth' hyperparameter


def run_config(p, hp: dict[str, Any], seed: int) -> RunConfig:
    """The RunConfig of grid point `hp` at `seed` (the seed sets the training subset, init and SGD order)."""
    if hp["arch"] == "cnn":
        model = ModelConfig(arch="cnn", width=hp["width"], init_seed=seed,
                            options={"fc_width": p["cnn_fc_width"]})
    else:
        model = ModelConfig(arch="mlp", depth=hp["depth"], width=hp["width"], init_seed=seed)
    return RunConfig(
        data=DataConfig(name=p["dataset"], n_train=hp["n_train"], subset_seed=seed, n_test=p["n_test"]),
        model=model,
        train=TrainConfig(loss="softmax_ce", lr=hp["lr"], momentum=p["momentum"], weight_decay=hp["weight_decay"],
                          batch_size=hp["batch_size"], max_epochs=p["max_epochs"], stop="loss",
                          loss_threshold=p["loss_threshold"], sgd_seed=seed))


def grid(p) -> list[dict[str, Any]]:
    """Every grid point's hyperparameters, MLPs first (the CNN takes cnn_width and its fixed depth)."""
    points = []
    for arch in p["archs"]:
        depths = p["depth"] if arch == "mlp" else [CNN_DEPTH]
        widths = p["width"] if arch == "mlp" else p["cnn_width"]
        for depth, width, lr, batch, decay, n in itertools.product(depths, widths, p["lr"], p["batch_size"],
                                                                   p["weight_decay"], p["n_train"]):
            points.append({"dataset": p["dataset"], "arch": arch, "depth": depth, "width": width, "lr": lr,
                           "batch_size": batch, "weight_decay": decay, "n_train": n})
    return points


def points(p):
    check_sizes(p, NAME, train=("n_train",), test=("n_test",))
    seeds = list(range(p["seeds"]))
    return [{"hp": hp, "seeds": seeds, "runs": [to_dict(run_config(p, hp, s)) for s in seeds]} for hp in grid(p)]


def members(config, values, status) -> list[Member]:
    out = []
    for seed, run in zip(config["seeds"], config["runs"], strict=True):
        prefix = f"seed{seed}."
        own = None if values is None else {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
        out.append(Member({**config["hp"], "seed": seed}, run, own or {}, stop_reason(own, status)))
    return out


def trained_runs(cfgs: list[RunConfig], datasets, runtime: Runtime, out_dir: Path):
    """The Run of every config: loaded from its checkpoint when one exists, the others trained together
    (stacked where fit_many allows) and checkpointed."""
    runs: list[Any] = [None] * len(cfgs)
    for i, cfg in enumerate(cfgs):
        path = checkpoint_path(out_dir, cfg)
        if path.exists():
            try:
                runs[i] = checkpoint.load(path, expected_signature=signature(cfg))
            except Exception:  # a corrupt or stale checkpoint is retrained, never trusted
                path.unlink(missing_ok=True)
    todo = [i for i, run in enumerate(runs) if run is None]
    if todo:
        fresh = fit_many([cfgs[i] for i in todo], [datasets[i] for i in todo], runtime=runtime, on_epoch=report)
        for i, run in zip(todo, fresh, strict=True):
            checkpoint.save(checkpoint_path(out_dir, cfgs[i]), run)
            runs[i] = run
    return runs


def model_values(run, data) -> dict[str, float]:
    """A model's stored values: errors, margins and training statistics, or 'failed' when it diverged."""
    if run.status == "failed":
        return {"failed": 1.0, "epochs": float(run.epochs), "steps": float(run.steps)}
    values = basic_values(run, data)
    values["capped"] = 1.0 if run.status == "max_epochs" else 0.0
    return values


def train_seeds(config: dict[str, Any], runtime: Runtime, out_dir: Path) -> JobResult:
    """Train (or reuse) every seed's model of one grid point and store each one's values as seed<s>.*."""
    torch.set_num_threads(runtime.threads)
    start = time.perf_counter()
    cfgs = [from_dict(RunConfig, run) for run in config["runs"]]
    datasets = [load_for(cfg, runtime) for cfg in cfgs]
    runs = trained_runs(cfgs, datasets, runtime, out_dir)
    report({"kind": "stage", "stage": "measuring"})
    values: dict[str, float] = {}
    for seed, run, data in zip(config["seeds"], runs, datasets, strict=True):
        values.update({f"seed{seed}.{key}": value for key, value in model_values(run, data).items()})
    values["job_seconds"] = time.perf_counter() - start
    reasons = sorted({run.status for run in runs})
    return JobResult(values, status="done", reason=f"models: {', '.join(reasons)}",
                     checkpoint=str(checkpoint_path(out_dir, cfgs[0])))


PAPER = {"dataset": "mnist", "archs": ["mlp", "cnn"], "depth": [1, 2, 3], "width": [128, 256, 512],
         "cnn_width": [16], "cnn_fc_width": 256, "lr": [0.01, 0.03, 0.1], "batch_size": [32, 64, 128],
         "weight_decay": [0.0, 1e-4, 5e-4], "n_train": [2000], "seeds": 1, "momentum": 0.9,
         "loss_threshold": 0.01, "max_epochs": 300, "n_test": 10000}

SPEC = {"dataset": dataset_param(),                 # experiments/file_datasets.py
        "archs": Param(str, choices=("mlp", "cnn"), many=True),     # models.py's architectures
        "depth": count(0, many=True), "width": count(many=True), "cnn_width": count(many=True),
        "cnn_fc_width": count(), "lr": positive(many=True), "batch_size": count(many=True),
        "weight_decay": nonnegative(many=True), "n_train": count(many=True), "seeds": count(),
        "momentum": nonnegative(), "loss_threshold": positive(), "max_epochs": count(), "n_test": count()}

ZOO = register(ZooDef(
    name=NAME,
    summary="Jiang et al. 2020-style grid: MLPs and the small CNN varying depth, width, learning rate, batch "
            "size, weight decay, training-set size and seed, each trained to training cross-entropy <= 0.01.",
    reference="Jiang, Neyshabur, Mobahi, Krishnan & Bengio 2020, Fantastic generalization measures and where "
              "to find them (ICLR), §4 and App. A",
    namespace=f"zoo-{NAME}",
    presets={
        "smoke": {**PAPER, "archs": ["mlp"], "depth": [1], "width": [16, 32], "lr": [0.1], "batch_size": [50],
                  "weight_decay": [0.0], "n_train": [100], "seeds": 2, "max_epochs": 100, "n_test": 500},
        "quick": {**PAPER, "depth": [1, 3], "width": [64, 256], "cnn_width": [8], "lr": [0.02, 0.1],
                  "batch_size": [32, 128], "weight_decay": [0.0, 5e-4], "n_train": [500], "seeds": 2,
                  "max_epochs": 200, "n_test": 2000},
        # for Dziugaite et al.'s robust sign error: 7 seeds give 49 model pairs per environment, so ESS ≥ 12
        # is reachable with the noise weights (quick's 2 seeds: ESS ≤ 4); MLPs only and widths 32/128 to keep
        # `evaluate --all` near 3 s of CPU per model; 300 epochs so that lr 0.02 at batch 128 converges
        "coupled": {**PAPER, "archs": ["mlp"], "depth": [1, 3], "width": [32, 128], "lr": [0.02, 0.1],
                    "batch_size": [32, 128], "weight_decay": [0.0, 5e-4], "n_train": [500], "seeds": 7,
                    "max_epochs": 300, "n_test": 10000},
        "paper": PAPER,
    },
    spec=SPEC,
    points=points,
    job=train_seeds,
    members=members,
    notes={"smoke": "4 tiny MLPs on 100 points: plumbing for tests, seconds",
           "quick": "MLPs (depth 1/3, width 64/256) and the CNN (width 8) x lr x batch x weight decay, 500 "
                    "points, 2 seeds: 80 models",
           "coupled": "MLPs only, 2^5 grid (depth 1/3, width 32/128, lr, batch, weight decay), 500 points, 7 "
                      "seeds, 10,000 test points: 224 models, for the robust sign error's ESS >= 12 filter",
           "paper": "3^5 MLPs (depth, width, lr, batch, weight decay) + 27 CNNs, 2,000 points: 270 models"},
))
