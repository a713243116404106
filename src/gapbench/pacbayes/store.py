"""Checkpoints of probabilistic networks and of the priors they start from: one file each, atomic, verified.

A PAC-Bayes checkpoint is a ``torch.save`` dict readable with ``torch.load(weights_only=True)``:

    format           "gapbench-pacbayes-checkpoint" (a plain gapbench checkpoint says "gapbench-checkpoint")
    format_version   FORMAT_VERSION
    kind             "posterior" (a ProbNet: mu and rho of every weight, prior mean and std as buffers) or
                     "prior" (the deterministic network trained on S_prior)
    model_config     the ModelConfig (JSON string) that gapbench.models.build_model turns into the architecture
    input_shape, num_classes
    prior_std        the scalar prior std the ProbNet was built with
    state_dict       ProbNet.state_dict() (posterior) or the deterministic model's (prior), CPU tensors
    split_spec       the gapbench.pacbayes.splits spec (JSON string): which points are S_prior and S_bound
    prior_record     {"kind": "data-free", "init_source": ...} or {"kind": "trained", "train_indices": S_prior's
                     positions, "pool": ..., "source": ..., "init_source": ...}: what the prior saw
    bound_indices    positions of S_bound in the pool (the certificate's points, checked on load against the
                     split_spec and, through prior_record, against the prior's points)
    training         JSON string of how the posterior (or prior) was trained: objective, lr, epochs, ...
    history          per-epoch dicts
    weights_sha256   SHA-256 over every tensor and string above; load() refuses a file that fails it
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write_bytes
from ..config import ModelConfig, from_dict, to_dict
from ..digest import named_sha256
from ..errors import GapbenchError
from ..models import build_model
from ..provenance import provenance
from .nets import probabilistic

FORMAT = "gapbench-pacbayes-checkpoint"
FORMAT_VERSION = 1
KINDS = ("posterior", "prior")
_JSON_FIELDS = ("model_config", "split_spec", "training")


@dataclass
class PacBayesCheckpoint:
    """What a PAC-Bayes checkpoint holds, rebuilt: `net` is a ProbNet (kind 'posterior') or an nn.Sequential."""

    kind: str
    net: nn.Module
    model_config: ModelConfig
    input_shape: tuple[int, ...]
    num_classes: int
    prior_std: float
    split_spec: dict[str, Any]
    prior_record: dict[str, Any]
    bound_indices: torch.Tensor
    training: dict[str, Any]
    history: list[dict[str, float]]

    def prior_points(self) -> tuple[torch.Tensor, str] | None:
        return prior_points(self.prior_record)


def prior_points(record: dict[str, Any]) -> tuple[torch.Tensor, str] | None:
    """(train_indices, pool) of a trained prior's record, as pacbayes_certificate's prior_record; None if the
    prior is data-free."""
    if record["kind"] == "data-free":
        return None
    return torch.as_tensor(record["train_indices"]), str(record["pool"])


def _digest(payload: dict[str, Any]) -> str:
    """weights_sha256 (gapbench.digest.named_sha256): state_dict in sorted key order, bound_indices, prior_record's
    fields in sorted key order, then the JSON fields, kind, prior_std, input_shape and num_classes; every
    non-tensor value as canonical JSON (a nested tensor by its repr)."""
    items = [(f"state_dict/{k}", payload["state_dict"][k]) for k in sorted(payload["state_dict"])]
    items += [("bound_indices", payload["bound_indices"])]
    items += [(f"prior_record/{k}", payload["prior_record"][k]) for k in sorted(payload["prior_record"])]
    items += [(key, payload[key]) for key in (*_JSON_FIELDS, "kind", "prior_std", "input_shape", "num_classes")]
    return named_sha256(items, lambda value: json.dumps(value, sort_keys=True, default=repr))


def _cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {str(k): _cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cpu(v) for v in value]
    return value


def save(path: str | Path, *, kind: str, net: nn.Module, model_config: ModelConfig, input_shape: tuple[int, ...],
         num_classes: int, prior_std: float, split_spec: dict[str, Any], prior_record: dict[str, Any],
         bound_indices: torch.Tensor, training: dict[str, Any], history: list[dict[str, float]]) -> Path:
    """Write a PAC-Bayes checkpoint atomically (module docstring) and return its path."""
    if kind not in KINDS:
        raise GapbenchError(f"The 'kind' parameter of pacbayes.store.save() must be one of {list(KINDS)}. "
                            f"Got {kind!r} instead.")
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
               "model_config": json.dumps(to_dict(model_config), sort_keys=True),
               "input_shape": [int(d) for d in input_shape], "num_classes": int(num_classes),
               "prior_std": float(prior_std), "state_dict": _cpu(net.state_dict()),
               "split_spec": json.dumps(split_spec, sort_keys=True), "prior_record": _cpu(prior_record),
               "bound_indices": _cpu(torch.as_tensor(bound_indices)),
               "training": json.dumps(training, sort_keys=True), "history": _cpu(history),
               "provenance": provenance()}
    payload["weights_sha256"] = _digest(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def read_format(path: str | Path) -> str | None:
    """The 'format' marker of a torch file (None when it has none or is not one); memory-mapped, nothing built."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 -- not a torch file: the caller's own loader explains
        return None
    return payload.get("format") if isinstance(payload, dict) else None


def load(path: str | Path) -> PacBayesCheckpoint:
    """Rebuild what :func:`save` wrote; a GapbenchError names a missing, foreign, damaged or modified file."""
    path = Path(path)
    if not path.is_file():
        raise GapbenchError(f"Checkpoint file '{path}' does not exist. gapbench run writes PAC-Bayes checkpoints "
                            f"to OUT/<experiment>/checkpoints/posterior-<signature>.pt.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        raise GapbenchError(f"Checkpoint '{path}' cannot be read as a torch file (damaged or not a checkpoint). "
                            f"Copy it again, or rerun the experiment that wrote it.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise GapbenchError(f"'{path}' is not a PAC-Bayes checkpoint (format "
                            f"{payload.get('format') if isinstance(payload, dict) else None!r}, expected "
                            f"{FORMAT!r}).")
    if payload.get("weights_sha256") != _digest(payload):
        raise GapbenchError(f"Checkpoint '{path}' fails its checksum: its weights or records were changed after "
                            f"saving, so it is not certified. Rerun the experiment that wrote it.")
    cfg = from_dict(ModelConfig, json.loads(payload["model_config"]))
    shape, classes = tuple(payload["input_shape"]), int(payload["num_classes"])
    model = build_model(cfg, shape, classes)
    net = model if payload["kind"] == "prior" else probabilistic(model, prior_std=payload["prior_std"])
    net.load_state_dict(payload["state_dict"])
    return PacBayesCheckpoint(payload["kind"], net, cfg, shape, classes, float(payload["prior_std"]),
                              json.loads(payload["split_spec"]), payload["prior_record"],
                              torch.as_tensor(payload["bound_indices"]), json.loads(payload["training"]),
                              list(payload["history"]))
