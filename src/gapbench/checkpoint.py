"""Checkpoints: one trained :class:`~gapbench.trained.Run` in one file, written atomically, loaded safely.

A checkpoint is a ``torch.save`` dict that ``torch.load(weights_only=True)`` can read (tensors, str, numbers,
lists and dicts only, so loading never executes pickled code):

    format           "gapbench-checkpoint"
    format_version   FORMAT_VERSION
    config           the RunConfig as canonical-order JSON (config.to_dict), a *string*
    signature        signature(config) at save time; load() recomputes and compares it
    input_shape      list[int]: one example's shape, without the batch dimension
    num_classes      int
    state_dict       trained weights (CPU tensors)
    init_state       weights at initialization (the Z of distance-from-init measures)
    train_indices    positions of the training points in their source pool (int64 tensor)
    status, reason, epochs, steps, seconds, history, extra    as in Run
    init_source      where the initial weights came from (Run.init_source); optional: a file written before
                     the field existed loads with {"kind": "unknown"}
    provenance       gapbench.provenance.provenance() of the saving process
    weights_sha256   SHA-256 of state_dict, init_state, train_indices and init_source (:func:`weights_digest`); load()
                     recomputes it and refuses a file whose tensors were changed after saving

Format 1 files (before the checksum) still load; their weights are unverified (:func:`is_verified` says so,
and ``gapbench measure`` prints a note).

``input_shape`` and ``num_classes`` are what :func:`gapbench.models.build_model` needs besides the config.
``save`` takes them as arguments, and when they are omitted infers them from the model: the first weight layer
gives the input features (MLP) or channels (CNN), the last Linear gives the classes, and a CNN's square image
side is recovered from the first Linear's fan-in and the number of 2x2 max-pools (models.cnn keeps the side
with 'same' padding). Either way, save() builds the model from the stored fields and refuses to write a file
whose parameter shapes differ from the run's model, so every written checkpoint loads.

Writes are atomic: the dict goes to a temporary file in the same directory, is fsync'ed, then os.replace'd
over the target (and the directory fsync'ed); a crash at any point leaves either the old file or the new one.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write_bytes
from .config import RunConfig, from_dict, signature, to_dict
from .digest import named_sha256
from .errors import GapbenchError
from .models import build_model
from .provenance import provenance
from .trained import Run, unknown_source

FORMAT = "gapbench-checkpoint"
FORMAT_VERSION = 2                 # 2: weights_sha256 added
ZIP_MAGIC = b"PK\x03\x04"          # torch.save writes a zip archive; anything else is not a checkpoint
_REQUIRED = ("format_version", "config", "signature", "input_shape", "num_classes", "state_dict",
             "init_state", "train_indices", "status", "reason", "epochs", "steps", "seconds", "history",
             "extra")
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def save(path: str | Path, run: Run, *, input_shape: tuple[int, ...] | None = None,
         num_classes: int | None = None) -> Path:
    """Write `run` to `path` atomically and return the path.

    Args:
        path: target file (parent directories are created).
        run: the trained run; its model must be what ``build_model(run.config.model, ...)`` builds.
        input_shape, num_classes: what build_model needs; inferred from the model when None (module doc).
    """
    path = Path(path)
    if input_shape is None or num_classes is None:
        inferred_shape, inferred_classes = infer_shapes(run.model)
        input_shape = inferred_shape if input_shape is None else input_shape
        num_classes = inferred_classes if num_classes is None else num_classes
    input_shape = tuple(int(d) for d in input_shape)
    state = _cpu(run.model.state_dict())
    _check_rebuildable(run.config, input_shape, int(num_classes), state, path)
    _check_plain(run.extra, "extra", path)
    _check_plain(run.history, "history", path)
    _check_plain(run.init_source, "init_source", path)
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "config": json.dumps(to_dict(run.config), sort_keys=True), "signature": signature(run.config),
        "input_shape": list(input_shape), "num_classes": int(num_classes),
        "state_dict": state, "init_state": _cpu(run.init_state),
        "train_indices": torch.as_tensor(run.train_indices).detach().cpu().clone(),
        "status": run.status, "reason": run.reason, "epochs": int(run.epochs), "steps": int(run.steps),
        "seconds": float(run.seconds), "history": run.history, "extra": run.extra,
        "init_source": _cpu_tree(run.init_source),
        "provenance": provenance(),
    }
    payload["weights_sha256"] = weights_digest(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def load(path: str | Path, *, expected_signature: str | None = None, device: str = "cpu") -> Run:
    """Read a checkpoint written by :func:`save` and rebuild its Run (model on `device`).

    Raises GapbenchError, naming the file and the fix, when the file is missing, is not a (complete)
    checkpoint, its stored signature differs from the signature of its stored config, or differs from
    `expected_signature`.
    """
    path = Path(path)
    payload = _read(path)
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise _corrupt(path, f"it lacks the field(s) {missing}")
    if payload["format_version"] > FORMAT_VERSION:
        raise GapbenchError(f"Checkpoint '{path}' has format version {payload['format_version']}, newer than "
                            f"this gapbench reads ({FORMAT_VERSION}). Upgrade gapbench.")
    _verify_weights(path, payload)
    try:
        config = from_dict(RunConfig, json.loads(payload["config"]))
    except (GapbenchError, ValueError, TypeError) as exc:
        raise _corrupt(path, f"its stored config is invalid ({exc})") from exc
    recomputed = signature(config)
    if payload["signature"] != recomputed:
        raise GapbenchError(f"Checkpoint '{path}' stores signature {payload['signature']!r} but its config "
                            f"hashes to {recomputed!r}: the file was modified after saving or written by an "
                            f"incompatible gapbench, so it is not measured. Retrain the run (gapbench run ...).")
    if expected_signature is not None and recomputed != expected_signature:
        raise GapbenchError(f"Checkpoint '{path}' holds run {recomputed!r}, not the expected "
                            f"{expected_signature!r}. Point to the checkpoint of that run, or delete this "
                            f"file and retrain.")
    model = build_model(config.model, tuple(payload["input_shape"]), int(payload["num_classes"]))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise _corrupt(path, f"its weights do not fit its config's architecture ({str(exc)[:200]})") from exc
    return Run(model=model.to(device), init_state={k: v.to(device) for k, v in payload["init_state"].items()},
               config=config, train_indices=payload["train_indices"], status=payload["status"],
               reason=payload["reason"], epochs=payload["epochs"], steps=payload["steps"],
               seconds=payload["seconds"], history=payload["history"], extra=payload["extra"],
               init_source=payload.get("init_source", unknown_source()))


def weights_digest(payload: dict[str, Any]) -> str:
    """Hex SHA-256 over state_dict, init_state (each in sorted key order), train_indices and init_source: for
    every tensor its path, dtype, shape and raw bytes, for init_source's other leaves their path and repr, so
    changing any weight, name, shape or the recorded origin of the initial weights changes the digest
    (init_source decides whether a PAC-Bayes prior counts as data-free: bounds/pacbayes.py). The byte stream
    is gapbench.digest.named_sha256's."""
    items = [(f"state_dict/{k}", payload["state_dict"][k]) for k in sorted(payload["state_dict"])]
    items += [(f"init_state/{k}", payload["init_state"][k]) for k in sorted(payload["init_state"])]
    items.append(("train_indices/", torch.as_tensor(payload["train_indices"])))
    if "init_source" in payload:
        items += _leaves("init_source", payload["init_source"])
    return named_sha256(items, lambda value: f"{type(value).__name__}:{value!r}")


def is_verified(path: str | Path) -> bool:
    """True when the checkpoint carries a weight checksum (format >= 2); load() checks it. Memory-maps the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        payload = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    return isinstance(payload, dict) and "weights_sha256" in payload


def _read(path: Path) -> dict[str, Any]:
    """torch.load(weights_only=True) with every failure in gapbench's words (no torch advice, no warnings)."""
    if not path.is_file():
        raise GapbenchError(f"Checkpoint file '{path}' does not exist. Check the path; gapbench run writes "
                            f"checkpoints to OUT/<experiment>/checkpoints/<signature>.pt.")
    with path.open("rb") as fh:
        head = fh.read(4)
    if head != ZIP_MAGIC:
        raise _not_checkpoint(path, f"a checkpoint is the zip archive torch.save writes, but this file starts "
                                    f"with {head!r}")
    try:
        with warnings.catch_warnings():      # torch warns about pickle protocols etc.; our message says it all
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- every torch.load failure means the same to the user
        if isinstance(exc, pickle.UnpicklingError):        # the weights_only unpickler met a class/function
            raise _not_checkpoint(path, "it holds pickled Python objects a checkpoint never contains; it was "
                                        "not unpickled, since that could run code") from None
        raise GapbenchError(f"Checkpoint '{path}' is damaged: its zip archive cannot be read (truncated by an "
                            f"interrupted copy?). Copy it again, or retrain the run (gapbench run ...).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise _not_checkpoint(path, "it is a torch file but has no gapbench 'format' marker")
    return payload


def _verify_weights(path: Path, payload: dict[str, Any]) -> None:
    if "weights_sha256" not in payload:
        if payload["format_version"] >= 2:
            raise _corrupt(path, "its weight checksum 'weights_sha256' is missing")
        return                                               # format 1: saved before checksums, unverified
    try:
        digest = weights_digest(payload)
    except (AttributeError, TypeError, RuntimeError) as exc:     # a section that is not a dict of tensors
        raise _corrupt(path, f"its weights are not tensors ({type(exc).__name__})") from None
    if digest != payload["weights_sha256"]:
        raise GapbenchError(f"Checkpoint '{path}' fails its weight checksum: its weights, initial weights or "
                            f"training indices were changed after it was saved, so it is not measured. "
                            f"Retrain the run (gapbench run ...) or restore the original file.")


def infer_shapes(model: nn.Module) -> tuple[tuple[int, ...], int]:
    """(input_shape, num_classes) of a models.mlp / models.cnn network, read off its layers (module doc)."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.MaxPool2d))]
    weights = [m for m in layers if not isinstance(m, nn.MaxPool2d)]
    if not weights or not isinstance(weights[-1], nn.Linear):
        raise GapbenchError(f"Cannot infer the input shape of a {type(model).__name__} without Linear/Conv2d "
                            f"layers ending in a Linear. Pass input_shape= and num_classes= to "
                            f"checkpoint.save().")
    num_classes = weights[-1].out_features
    if isinstance(weights[0], nn.Linear):
        return (weights[0].in_features,), num_classes
    convs = [m for m in weights if isinstance(m, nn.Conv2d)]
    first_fc = next(m for m in weights if isinstance(m, nn.Linear))
    pools = sum(1 for m in layers[:layers.index(first_fc)] if isinstance(m, nn.MaxPool2d))
    side = math.isqrt(first_fc.in_features // convs[-1].out_channels) * 2 ** pools
    return (convs[0].in_channels, side, side), num_classes


def _check_rebuildable(config: RunConfig, input_shape: tuple[int, ...], num_classes: int,
                       state: dict[str, torch.Tensor], path: Path) -> None:
    rebuilt = build_model(config.model, input_shape, num_classes).state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = {k: tuple(v.shape) for k, v in rebuilt.items()}
    if shapes != expected:
        raise GapbenchError(f"Cannot checkpoint to '{path}': build_model(config.model, "
                            f"input_shape={input_shape}, num_classes={num_classes}) gives parameter shapes "
                            f"{expected}, but the run's model has {shapes}. Pass the right input_shape= and "
                            f"num_classes= to checkpoint.save(), or make run.config describe the model.")


def _check_plain(obj: Any, where: str, path: Path) -> None:
    """Refuse values that torch.load(weights_only=True) could not read back."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise GapbenchError(f"Cannot checkpoint to '{path}': run.{where} has a key {key!r} of type "
                                    f"{type(key).__name__}; use str keys.")
            _check_plain(value, f"{where}[{key!r}]", path)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]", path)
    elif not isinstance(obj, _PLAIN):
        raise GapbenchError(f"Cannot checkpoint to '{path}': run.{where} is a {type(obj).__name__}; a "
                            f"checkpoint holds only tensors, str, numbers, bool, None, lists and dicts.")


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _leaves(path: str, obj: Any) -> list[tuple[str, Any]]:
    """(path, leaf) for every leaf of a nest of dicts and lists, dict keys in sorted order."""
    if isinstance(obj, dict):
        return [leaf for k in sorted(obj, key=str) for leaf in _leaves(f"{path}/{k}", obj[k])]
    if isinstance(obj, (list, tuple)):
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(f"{path}/{i}", v)]
    return [(path, obj)]


def _cpu_tree(obj: Any) -> Any:
    """A copy of a nest of dicts and lists with every tensor moved to the CPU."""
    if isinstance(obj, dict):
        return {k: _cpu_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_cpu_tree(v) for v in obj]
    return obj.detach().cpu().clone() if isinstance(obj, torch.Tensor) else obj


def _corrupt(path: Path, why: str) -> GapbenchError:
    return GapbenchError(f"Checkpoint '{path}' is a gapbench checkpoint but unusable: {why}. Retrain the run "
                         f"(gapbench run ...) or restore the original file.")


def _not_checkpoint(path: Path, why: str) -> GapbenchError:
    return GapbenchError(f"'{path}' is not a gapbench checkpoint: {why}. Point to a .pt file that gapbench "
                         f"wrote (OUT/<experiment>/checkpoints/<signature>.pt).")
