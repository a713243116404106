"""The training jobs the sweep runs: train one model (or a pair from the same init), checkpoint it, measure it.

A job config is a JSON dict:

    {"hp": {...},                 # the grid point's parameters, shown as hp.* columns
     "run": {...},                # a RunConfig as a dict (config.to_dict)
     "quantities": [...]}         # what to measure after training: the JSON form of typed quantity specs
                                  # (gapbench.experiments.quantities: MeasureSpec, PerLayerSpec, BoundSpec, ...)

Every value is a float; a bound contributes its value (and `vacuous` is derivable). The whole dict is the
job's signature (the results row's `signature`), so changing what is measured re-runs the job. A checkpoint
holds one trained model and is named by that model's RunConfig signature (:func:`checkpoint_path`), which
is what checkpoint.load verifies: two jobs that train the same model (measured differently, or by two
experiments) share its file, and training is reused. A results row names its model by `checkpoint` (the
path) and `model_signature` (`model_signature_b` for draw b of a pair, beside it): see model_signatures.
Training reports each epoch with gapbench.progress.report, which the sweep running the job displays.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint
from ..analysis.theorem7 import gap_decomposition
from ..bounds import BOUNDS, bound
from ..config import RunConfig, Runtime, from_dict, signature
from ..data import load_data
from ..inference import margins, zero_one_error
from ..measures import measure, per_layer
from ..progress import report
from ..sweep import JobResult
from ..train import fit
from .quantities import (
    DEFAULT_DELTA,
    DEFAULT_SPLIT,
    DEFAULT_TOP_K,
    DecompositionSpec,
    MeasureSpec,
    PerLayerSpec,
    QuantitySpec,
    from_json,
)


def load_for(cfg: RunConfig, runtime: Runtime):
    """The dataset `cfg` trains on, loaded from runtime.data_dir onto runtime.device."""
    return load_data(cfg.data, data_dir=runtime.data_dir, device=runtime.device)


def checkpoint_path(out_dir: Path, cfg: RunConfig) -> Path:
    """Where the model trained from `cfg` is checkpointed: OUT/<experiment>/checkpoints/<signature(cfg)>.pt."""
    return Path(out_dir) / "checkpoints" / f"{signature(cfg)}.pt"


def model_signatures(config: dict[str, Any]) -> dict[str, str]:
    """{'model_signature': …} of the model(s) a job config trains (and 'model_signature_b' for a pair's
    draw b): the signatures their checkpoints carry and are named by; {} for a config without a RunConfig."""
    if "run" not in config:
        return {}
    cfg = from_dict(RunConfig, config["run"])
    out = {"model_signature": signature(cfg)}
    if "pair_subset_seed" in config:
        out["model_signature_b"] = signature(_draw_b(cfg, config))
    return out


def _draw_b(cfg_a: RunConfig, config: dict[str, Any]) -> RunConfig:
    """A pair's second draw: the same config with data.subset_seed = config['pair_subset_seed']."""
    return dataclasses.replace(cfg_a, data=dataclasses.replace(cfg_a.data,
                                                               subset_seed=int(config["pair_subset_seed"])))


def train_or_reuse(cfg: RunConfig, data, runtime: Runtime, out_dir: Path, draw: str | None = None):
    """Train `cfg`, or load its checkpoint when one with the same RunConfig signature exists; epochs are
    reported (gapbench.progress) with the pair's `draw` ('a' or 'b') when given."""
    path = checkpoint_path(out_dir, cfg)
    if path.exists():
        try:
            return checkpoint.load(path, expected_signature=signature(cfg)), path
        except Exception:  # a corrupt or stale checkpoint is retrained, never trusted
            path.unlink(missing_ok=True)
    on_epoch = report if draw is None else (lambda event: report({**event, "draw": draw}))
    run = fit(cfg, data, runtime=runtime, progress=False, on_epoch=on_epoch)   # epochs to the sweep's display
    checkpoint.save(path, run)
    return run, path


def basic_values(run, data) -> dict[str, float]:
    """Errors, margins summary and training statistics of a trained run."""
    model = run.model
    tr_margins = margins(model, data.train.x, data.train.y)
    values = {
        "train_error": float((tr_margins <= 0).double().mean()),
        "test_error": zero_one_error(model, data.test.x, data.test.y),
        "median_margin": float(tr_margins.double().median()),
        "converged": 1.0 if run.status == "converged" else 0.0,
        "epochs": float(run.epochs),
        "steps": float(run.steps),
        "train_seconds": float(run.seconds),
    }
    if data.val is not None:
        values["val_error"] = zero_one_error(model, data.val.x, data.val.y)
    for name, split in data.extra.items():
        values[f"{name}_error"] = zero_one_error(model, split.x, split.y)
    if "sprime" in data.extra:  # NK's lemma: S and S' are equally likely, so ε_unif ≥ err(S') − test error
        values["uc_lower_bound"] = values["sprime_error"] - values["test_error"]
    return values


def measure_quantities(run, data, quantities: list[dict[str, Any]]) -> dict[str, float]:
    """Evaluate a job config's quantity specs (gapbench.experiments.quantities) on a trained run."""
    values: dict[str, float] = {}
    init = run.init_model()
    for spec in map(from_json, quantities):
        values.update(_evaluate(spec, run.model, data, init))
    return values


def _evaluate(spec: QuantitySpec, model, data, init) -> dict[str, float]:
    """{column: value} of one quantity spec."""
    split = data.split(spec.split or DEFAULT_SPLIT)
    if isinstance(spec, DecompositionSpec):
        return theorem7_values(model, split, data.split(spec.population), n_population=int(spec.n_population),
                               top_k=int(spec.top_k or DEFAULT_TOP_K))
    params = dict(spec.params or {})
    if isinstance(spec, MeasureSpec):
        return {spec.as_ or spec.measure: float(measure(spec.measure, model, split, init=init, **params))}
    if isinstance(spec, PerLayerSpec):
        prefix = spec.as_ or spec.per_layer
        return {f"{prefix}_l{layer}": float(value)
                for layer, value in enumerate(per_layer(spec.per_layer, model, split, init=init, **params))}
    if "init" in BOUNDS.get(spec.bound).meta["needs"]:    # the registry says what the bound consumes
        params["init"] = init
    delta = DEFAULT_DELTA if spec.delta is None else spec.delta
    return {spec.as_ or spec.bound: float(bound(spec.bound, model, split, delta=delta, **params).value)}


def theorem7_values(model, train, population, *, n_population: int, top_k: int) -> dict[str, float]:
    """KKB Theorem 7 on a trained net: both sides of the identity and each factor, as flat columns.

    The population expectation is the average over the first n_population points of `population`."""
    pop = (population.x[:n_population], population.y[:n_population])
    dec = gap_decomposition(model, (train.x, train.y), pop, top_k=top_k)
    out = {"thm7_lhs": float(dec.lhs), "thm7_rhs": float(dec.rhs),
           "thm7_abs_diff": abs(float(dec.lhs) - float(dec.rhs)),
           "path_norm_l2": float(torch.as_tensor(dec.path_norms).double().pow(2).sum().sqrt()),
           "v_norm": float(torch.as_tensor(dec.v_norms).double().pow(2).sum().sqrt()),
           "cos_mean": float(torch.as_tensor(dec.cosines).double().mean()),
           "c_y": float(dec.c_y)}
    eig = torch.as_tensor(dec.eigenvalues).double()
    for j in range(min(top_k, eig.numel())):
        out[f"lambda_{j + 1}"] = float(eig[j])
    return out


def train_measure(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Train one model from config['run'], checkpoint it, and measure config['quantities']."""
    torch.set_num_threads(runtime.threads)
    cfg = from_dict(RunConfig, config["run"])
    data = load_for(cfg, runtime)
    start = time.perf_counter()
    run, path = train_or_reuse(cfg, data, runtime, out_dir)
    if run.status == "failed":
        return JobResult({"epochs": float(run.epochs), "steps": float(run.steps)}, status="failed",
                         reason=run.reason, checkpoint=str(path))
    report({"kind": "stage", "stage": "measuring"})
    values = basic_values(run, data)
    values.update(measure_quantities(run, data, config.get("quantities", [])))
    values["job_seconds"] = time.perf_counter() - start
    return JobResult(values, status="done", reason=run.reason, checkpoint=str(path))


def train_pair(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """NK's "two training sets from the same initialization": train config['run'] (draw a) and the same
    config with data.subset_seed = config['pair_subset_seed'] (draw b; same init_seed and SGD seed), then
    measure both. Draw a's values are the plain columns, draw b's carry a '_b' suffix, and
    'dist_between_fro' is ‖W_a − W_b‖_F over all weight layers."""
    torch.set_num_threads(runtime.threads)
    cfg_a = from_dict(RunConfig, config["run"])
    cfg_b = _draw_b(cfg_a, config)
    start = time.perf_counter()
    values: dict[str, float] = {}
    runs, paths = [], []
    for cfg, suffix in ((cfg_a, ""), (cfg_b, "_b")):
        data = load_for(cfg, runtime)
        run, path = train_or_reuse(cfg, data, runtime, out_dir, draw=suffix[1:] or "a")
        if run.status == "failed":
            return JobResult({"epochs" + suffix: float(run.epochs)}, status="failed",
                             reason=f"draw{suffix or '_a'}: {run.reason}", checkpoint=str(path))
        report({"kind": "stage", "stage": "measuring"})
        draw = basic_values(run, data)
        draw.update(measure_quantities(run, data, config.get("quantities", [])))
        values.update({key + suffix: value for key, value in draw.items()})
        runs.append(run)
        paths.append(path)
    values["dist_between_fro"] = float(measure("dist_between", runs[0].model, other=runs[1].model))
    values["job_seconds"] = time.perf_counter() - start
    return JobResult(values, status="done", reason=runs[0].reason, checkpoint=str(paths[0]))
