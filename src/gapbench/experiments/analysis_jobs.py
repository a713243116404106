"""The jobs that train (or draw) and then run one of the paper analyses (gapbench.analysis), one per experiment
that needs more than train-and-measure: ``fn(config, runtime, out_dir) -> JobResult``, module-level so a job
pickles by reference into worker processes.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.memorization import min_norm_interpolant, null_direction, random_relu_features
from ..analysis.nk_linear import nk_linear_gram, nk_linear_quantities
from ..analysis.slices import fitted_threshold, local_disagreement, slice_image
from ..analysis.two_phase import epoch_budgets, first_points, normalized, phase2_start, rest_points
from ..bounds import bound
from ..config import DataConfig, RunConfig, Runtime, from_dict
from ..data import load_data
from ..inference import zero_one_error
from ..progress import report
from ..sweep import JobResult
from ..train import fit
from ..trained import source_from_run
from .jobs import basic_values, load_for, train_or_reuse


def nk_linear_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `nk2019-linear`: one draw of S at one m."""
    p = config["hp"]
    m, dim_noise = int(p["n_train"]), int(p["dim_noise"])
    noise_var = float(p["noise_var_scale"]) / dim_noise
    u_sq_norm = float(p["u_norm_scale"]) ** 2 / m
    y, gram = nk_linear_gram(m, dim_noise, noise_var, int(p["seed"]))
    return JobResult(nk_linear_quantities(y, gram, u_sq_norm, noise_var))


def memorization_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `kkb2017-linear-memorization`: min-norm interpolant + c·(direction in the joint null
    space of the training and test features), at one label-noise fraction and one c (KKB §3, Prop. 1-2)."""
    p = config["hp"]
    data = load_data(DataConfig(name=config["data"]["name"], n_train=int(p["n_train"]), n_test=int(p["n_test"]),
                                label_noise=float(p["label_noise"]), subset_seed=int(p["seed"]),
                                label_seed=int(p["seed"])), data_dir=runtime.data_dir)
    x_train = data.train.x.reshape(len(data.train), -1)
    x_test = data.test.x.reshape(len(data.test), -1)
    if p["features"] == "pixels":
        phi_train, phi_test = x_train.double(), x_test.double()
    else:
        phi_train = random_relu_features(x_train, int(p["d_features"]), int(p["seed"]))
        phi_test = random_relu_features(x_test, int(p["d_features"]), int(p["seed"]))
    targets = torch.nn.functional.one_hot(data.train.y, data.num_classes).double()
    w_star = min_norm_interpolant(phi_train, targets)
    direction = null_direction(phi_train, phi_test, int(p["seed"]) + 1)
    # add c·v to every class row with a fixed sign pattern: the norm grows like c·sqrt(K)
    signs = torch.where(torch.arange(data.num_classes) % 2 == 0, 1.0, -1.0).double()
    w_c = w_star + float(p["c"]) * signs[:, None] * direction[None, :]
    pred_train, pred_test = phi_train @ w_c.T, phi_test @ w_c.T
    base_test = phi_test @ w_star.T
    return JobResult({
        "train_error": float((pred_train.argmax(1) != data.train.y).double().mean()),
        "test_error": float((pred_test.argmax(1) != data.test.y).double().mean()),
        "w_norm": float(w_c.norm()),
        "w_norm_ratio": float(w_c.norm() / w_star.norm()),
        "max_test_output_change": float((pred_test - base_test).abs().max()),
        "train_residual": float((pred_train - targets).abs().max()),
        "d_features": float(phi_train.shape[1]),
    })


def slices_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `nk2019-slices`: train a hypersphere net (or reuse its checkpoint), measure the local
    disagreement near training vs test points, and save one slice image of each kind next to the checkpoint."""
    torch.set_num_threads(runtime.threads)
    cfg = from_dict(RunConfig, config["run"])
    p = config["hp"]
    data = load_for(cfg, runtime)
    run, path = train_or_reuse(cfg, data, runtime, out_dir)
    if run.status == "failed":
        return JobResult({}, status="failed", reason=run.reason, checkpoint=str(path))
    r_in, r_out = float(cfg.data.options["r_inner"]), float(cfg.data.options["r_outer"])
    radius = float(p["radius_fraction"]) * (r_out - r_in)
    k = int(p["n_centers"])
    x_tr, x_te = data.train.x.double(), data.test.x.double()
    values = basic_values(run, data)
    model = copy.deepcopy(run.model).double()       # planes are computed in float64; the run keeps its model
    values["near_train_disagreement"] = local_disagreement(model, x_tr[:k], x_tr[k:2 * k], radius,
                                                           int(p["n_samples"]), r_in, r_out, seed=1)
    values["near_test_disagreement"] = local_disagreement(model, x_te[:k], x_te[k:2 * k], radius,
                                                          int(p["n_samples"]), r_in, r_out, seed=2)
    tau = fitted_threshold(model, x_tr.shape[1], r_in, r_out, n_dirs=int(p["n_dirs"]), seed=3)
    values["fitted_radius"] = tau
    for kind, pts, seed in (("train", x_tr, 1), ("test", x_te, 2)):
        values[f"near_{kind}_disagreement_fitted"] = local_disagreement(
            model, pts[:k], pts[k:2 * k], radius, int(p["n_samples"]), r_in, r_out, seed=seed, threshold=tau)
    images = {}
    for kind, pts in (("train", x_tr), ("test", x_te)):
        net, sphere, ca, cb = slice_image(model, pts[0], pts[1], 1.5 * r_out, int(p["resolution"]), r_in, r_out)
        images.update({f"{kind}_net": net, f"{kind}_sphere": sphere, f"{kind}_a": ca, f"{kind}_b": cb})
    image_path = Path(str(path) + ".slices.npz")
    tmp = image_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **images)
    tmp.replace(image_path)
    return JobResult(values, status="done", reason=run.reason, checkpoint=str(path))


def _with_epochs(cfg, epochs: int):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=epochs))


def two_phase_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Sweep job for `kkb2017-two-phase`: mode 'standard' (all m points, the baseline), 'two_phase' (gates
    learned on S_αm then frozen; value weights trained on all m points) or 'last_layer' (all but the last layer
    frozen after phase 1). Epochs per run: :func:`epoch_budgets`; phase 2's start: :func:`phase2_start`
    (hp 'phase2_init'); inputs: :func:`normalized` when hp 'normalize' is [mean, std]."""
    torch.set_num_threads(runtime.threads)
    cfg = from_dict(RunConfig, config["run"])
    p = config["hp"]
    data = load_for(cfg, runtime)
    if p.get("normalize"):
        data = normalized(data, *map(float, p["normalize"]))
    start = time.perf_counter()
    if p["mode"] == "standard":
        run = fit(_with_epochs(cfg, epoch_budgets(p, len(data.train), len(data.train))["standard"]), data,
                  runtime=runtime, on_epoch=report)
        model, failed = run.model, run.status == "failed" and run.reason
        values = {}
    else:
        count = max(1, round(float(p["alpha"]) * len(data.train)))
        budgets = epoch_budgets(p, len(data.train), count)
        phase1 = fit(_with_epochs(cfg, budgets["phase1"]), first_points(data, count), runtime=runtime,
                     on_epoch=lambda e: report({**e, "phase": 1}))
        net = phase2_start(phase1.model, p["mode"], p.get("phase2_init", "warm"), cfg)
        phase2 = fit(_with_epochs(cfg, budgets["phase2"]), data, runtime=runtime, model=net,
                     init_source=source_from_run(phase1, data.train.source),
                     on_epoch=lambda e: report({**e, "phase": 2}))
        model, failed = phase2.model, (phase1.status == "failed" and phase1.reason) or (
            phase2.status == "failed" and phase2.reason)
        # phase 1's training error on S_αm (its last evaluation): whether the gates were learned to convergence
        values = {"n_phase1": float(count), "n_rest": float(len(data.train) - count),
                  "phase1_train_error": float(phase1.history[-1]["train_error"])}
        if count < len(data.train) and not failed:
            values.update(_rest_bounds(model, data, count, p))
    if failed:
        return JobResult({}, status="failed", reason=str(failed))
    values.update({"train_error": zero_one_error(model, data.train.x, data.train.y),
                   "test_error": zero_one_error(model, data.test.x, data.test.y),
                   "job_seconds": time.perf_counter() - start})
    values["test_accuracy"] = 1.0 - values["test_error"]
    return JobResult(values)


def _rest_bounds(model, data, count, p) -> dict[str, float]:
    """Bounds on the (1 − α)·m points phase 1 never saw: the rigorous linear-margin bound (last-layer variant:
    a linear head on features frozen after phase 1) and KKB's Theorem 8 (plug-in constants: an estimate)."""
    rest = rest_points(data, count)
    out = {"rest_error": zero_one_error(model, rest.x, rest.y)}      # batched, no autograd graph
    if p["mode"] == "last_layer":
        out["linear_margin"] = bound("linear_margin", model, rest, delta=0.05).value
    elif p["mode"] == "two_phase" and p.get("theorem8", True):
        population = (data.test.x[:p["n_population"]], data.test.y[:p["n_population"]])
        est = bound("kkb2017_theorem8", model, rest, delta=0.05, population=population,
                    max_paths=int(p["theorem8_max_paths"]))
        out["kkb2017_theorem8_plugin"] = est.value
    return out
