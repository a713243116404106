"""The PAC-Bayes jobs: train a prior on S_prior (or take the seeded init), train the posterior, certify on S_bound.

A job config (JSON; the whole dict is the job's signature):

    {"hp": {...},                          # the grid point, shown as hp.* columns
     "split": {...},                       # gapbench.pacbayes.splits spec: which points are S_prior, S_bound
     "model": {...},                       # a ModelConfig: the architecture and the seed of the initial weights
     "prior": {"kind": "data-free"} | {"kind": "trained", "lr", "momentum", "epochs", "dropout", "batch_size",
                                       "seed"},
     "posterior": {"objective", "prior_std", "lr", "momentum", "epochs", "batch_size", "kl_penalty", "p_min",
                   "seed"},
     "certificate": {"delta", "delta_mc", "passes", "family_size", "seed"}}

Checkpoints (gapbench.pacbayes.store) go to OUT/<experiment>/checkpoints/: ``prior-<sig>.pt`` named by the
signature of (split, model, prior), shared by every objective and prior std trained from it, and
``posterior-<sig>.pt`` named by (split, model, prior, posterior). A job finds them and skips their training,
so a killed sweep loses at most the job it was running (finished jobs are rows in the store).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..certificate import certify
from ..config import ModelConfig, RunConfig, Runtime, from_dict, signature
from ..inference import zero_one_error
from ..models import build_model
from ..pacbayes import store
from ..pacbayes.certificate import pacbayes_certificate
from ..pacbayes.nets import probabilistic
from ..pacbayes.splits import load_splits
from ..pacbayes.train import train_prior, train_probabilistic
from ..progress import report
from ..sweep import JobResult
from ..trained import seeded_source
from .jobs import load_for, train_or_reuse


def _reuse(path: Path) -> store.PacBayesCheckpoint | None:
    if not path.exists():
        return None
    try:
        return store.load(path)
    except Exception:  # noqa: BLE001 -- a corrupt or stale checkpoint is retrained, never trusted
        path.unlink(missing_ok=True)
        return None


def _prior(config: dict[str, Any], data, cfg: ModelConfig, out_dir: Path):
    """(prior mean network, prior_record, prior checkpoint path or None) of the job's prior."""
    model = build_model(cfg, data.input_shape, data.num_classes)
    init_source = seeded_source(cfg.init_seed)
    p = config["prior"]
    if p["kind"] == "data-free":
        return model, {"kind": "data-free", "init_source": init_source}, None
    path = Path(out_dir) / "checkpoints" / f"prior-{signature(config['split'], config['model'], p)}.pt"
    found = _reuse(path)
    if found is not None:
        return found.net, found.prior_record, path
    report({"kind": "stage", "stage": "training the prior on S_prior"})
    trained = train_prior(model, data.prior, lr=p["lr"], momentum=p["momentum"], epochs=p["epochs"],
                          dropout=p["dropout"], batch_size=p["batch_size"], seed=p["seed"], init_source=init_source)
    record = {"kind": "trained", "train_indices": trained.train_indices, "pool": trained.pool,
              "source": trained.source, "init_source": trained.init_source}
    store.save(path, kind="prior", net=trained.model, model_config=cfg, input_shape=data.input_shape,
               num_classes=data.num_classes, prior_std=0.0, split_spec=config["split"], prior_record=record,
               bound_indices=data.bound.indices, training=p, history=trained.history)
    return trained.model, record, path


def _posterior(config: dict[str, Any], data, cfg: ModelConfig, prior_model, record, out_dir: Path):
    """(the trained ProbNet, its checkpoint path, training seconds)."""
    q, c = config["posterior"], config["certificate"]
    sig = signature(config["split"], config["model"], config["prior"], q)
    path = Path(out_dir) / "checkpoints" / f"posterior-{sig}.pt"
    found = _reuse(path)
    if found is not None:
        return found.net, path, 0.0
    start_mean = None                                  # PBB: the posterior starts at the prior mean
    if q.get("start"):                                 # DR2017: at an SGD solution on all training points
        s = q["start"]
        report({"kind": "stage", "stage": "SGD to the posterior's starting mean"})
        start_mean = train_prior(prior_model, data.train, lr=s["lr"], momentum=s["momentum"], epochs=s["epochs"],
                                 dropout=0.0, batch_size=s["batch_size"], seed=q["seed"]).model
    net = probabilistic(prior_model, prior_std=q["prior_std"], posterior_mean=start_mean,
                        posterior_std=q.get("posterior_std"))
    report({"kind": "stage", "stage": f"training the posterior ({q['objective']})"})
    start = time.perf_counter()
    trained = train_probabilistic(net, data.train, objective=q["objective"], n_bound=len(data.bound),
                                  delta=c["delta"] - c["delta_mc"], kl_penalty=q["kl_penalty"], lr=q["lr"],
                                  momentum=q["momentum"], epochs=q["epochs"], batch_size=q["batch_size"],
                                  p_min=q["p_min"], seed=q["seed"])
    seconds = time.perf_counter() - start
    store.save(path, kind="posterior", net=trained.net, model_config=cfg, input_shape=data.input_shape,
               num_classes=data.num_classes, prior_std=q["prior_std"], split_spec=config["split"],
               prior_record=record, bound_indices=data.bound.indices, training={**q, "seconds": seconds},
               history=trained.history)
    return trained.net, path, seconds


def pacbayes_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """Train (or reuse) the prior and the posterior of `config`, then certify the posterior on S_bound."""
    torch.set_num_threads(runtime.threads)
    start = time.perf_counter()
    data = load_splits(config["split"], data_dir=runtime.data_dir, device=runtime.device)
    cfg = from_dict(ModelConfig, config["model"])
    prior_model, record, _ = _prior(config, data, cfg, out_dir)
    net, path, seconds = _posterior(config, data, cfg, prior_model, record, out_dir)
    report({"kind": "stage", "stage": "certifying on S_bound"})
    c = config["certificate"]
    cert = pacbayes_certificate(net, data.bound, delta=c["delta"], delta_mc=c["delta_mc"], passes=c["passes"],
                                family_size=int(c["family_size"]), seed=c["seed"],
                                prior_record=store.prior_points(record), test_data=data.test,
                                p_min=config["posterior"]["p_min"])
    values = {"certificate": cert.risk, "certificate_bounded_ce": cert.risk_bounded_ce,
              "test_error": cert.test_error_stochastic,          # the error of what is certified: Q, not its mean
              "test_error_stochastic": cert.test_error_stochastic, "test_error_mean": cert.test_error_mean,
              "n_bound": float(len(data.bound)), "n_prior": float(0 if data.prior is None else len(data.prior)),
              "n_train": float(len(data.train)), "train_seconds": seconds, "job_seconds": time.perf_counter() - start,
              **{key: float(value) for key, value in cert.terms.items()}}
    if record["kind"] == "trained":
        values["prior_test_error"] = zero_one_error(prior_model, data.test.x, data.test.y)
    return JobResult(values, status="done", checkpoint=str(path))


def heldout_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """A deterministic net trained on the training file minus n_val points, certified on those n_val points
    by gapbench.certificate.certify (its training record checked disjoint from them)."""
    torch.set_num_threads(runtime.threads)
    cfg = from_dict(RunConfig, config["run"])
    data = load_for(cfg, runtime)
    run, path = train_or_reuse(cfg, data, runtime, out_dir)
    if run.status == "failed":
        return JobResult({}, status="failed", reason=run.reason, checkpoint=str(path))
    cert = certify(run.model, data.val, delta=config["certificate"]["delta"], run=run)
    test_error = zero_one_error(run.model, data.test.x, data.test.y)
    return JobResult({"certificate": cert.bounds[cert.headline].value, "val_error": cert.empirical_error,
                      "test_error": test_error, "test_error_mean": test_error,
                      "n_bound": float(cert.n), "n_train": float(len(data.train)), "train_seconds": run.seconds},
                     status="done", checkpoint=str(path))


def budget_job(config: dict[str, Any], runtime: Runtime, out_dir: Path):
    """certify-budget's job: a held-out certificate ('run' in the config) or a PAC-Bayes one."""
    return heldout_job(config, runtime, out_dir) if "run" in config else pacbayes_job(config, runtime, out_dir)
