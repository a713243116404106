"""Export a built zoo as a self-contained directory, and import one on another machine.

An export directory holds ``checkpoints/<model id>.pt`` and ``manifest.json``:

    format, format_version     "gapbench-zoo", MANIFEST_VERSION
    zoo, preset, params        what was built (params: the resolved preset + --set values)
    provenance                 the build's data provenance (datasets, pools, file checksums, code version)
    exported                   gapbench.provenance of the exporting process
    models                     per model: id, hp, m, train_error, test_error, gap, stop_reason, checkpoint
                               (relative path), sha256 (of the checkpoint file), data (its DataConfig),
                               pools (train and test pool ids)
    jobs                       the zoo's stored jobs (signature, config, status, reason, seconds, values),
                               so that the importing store holds what a build would have stored

Import verifies every file's SHA-256 before writing anything (a mismatch is an error naming the file),
copies the checkpoints to OUT/<namespace>/checkpoints/, records the jobs in OUT's store and writes the
build record: ``load_zoo(out, name)`` then works, and ``gapbench zoo build`` there retrains nothing.
The dataset files themselves are not exported: the importing machine needs them (the manifest's checksums
say which files; ``gapbench data fetch`` gets them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..config import signature, to_dict
from ..data import pool_id
from ..data.files import file_digest
from ..errors import GapbenchError
from ..experiments.execute import STORE_NAME
from ..provenance import provenance
from ..store import Store
from .base import ZOOS
from .build import jobs_of, load_zoo, write_record
from .types import Zoo

FORMAT = "gapbench-zoo"
MANIFEST_VERSION = 1
MANIFEST = "manifest.json"


def export_zoo(zoo: Zoo, dest: str | Path) -> Path:
    """Write `zoo` (every trained model, capped ones included, failed ones not) to the directory `dest`;
    returns the manifest's path. `dest` must not already hold an export."""
    dest = Path(dest)
    if (dest / MANIFEST).exists():
        raise GapbenchError(f"'{dest}' already holds a zoo export ({MANIFEST}). Choose an empty or new "
                            f"directory, or delete that one first.")
    if dest.exists() and not dest.is_dir():
        raise GapbenchError(f"The export destination '{dest}' is a file. Pass a directory path.")
    models = []
    for model in zoo.models(include_capped=True):
        if not model.checkpoint.is_file():
            raise GapbenchError(f"The checkpoint of model {model.id} of zoo '{zoo.name}' is missing: "
                                f"'{model.checkpoint}'. Rebuild the zoo (gapbench zoo build {zoo.name} --preset "
                                f"{zoo.preset} --out {zoo.out}) to retrain it, then export again.")
        relative = f"checkpoints/{model.id}.pt"
        payload = model.checkpoint.read_bytes()
        atomic_write_bytes(dest / relative, payload)
        models.append(_model_entry(model, relative, file_digest(dest / relative)))
    manifest = {"format": FORMAT, "format_version": MANIFEST_VERSION, "zoo": zoo.name, "preset": zoo.preset,
                "params": zoo.params, "provenance": zoo.provenance, "exported": provenance(),
                "models": models, "jobs": _jobs(zoo)}
    path = dest / MANIFEST
    atomic_write_bytes(path, json.dumps(manifest, indent=1, default=str).encode())
    return path


def _model_entry(model, relative: str, sha256: str) -> dict[str, Any]:
    return {"id": model.id, "hp": model.hp, "m": model.m, "train_error": model.train_error,
            "test_error": model.test_error, "gap": model.gap, "stop_reason": model.stop_reason,
            "checkpoint": relative, "sha256": sha256, "data": to_dict(model.config.data),
            "pools": {split: pool_id(model.config.data, split) for split in ("train", "test")}}


def _jobs(zoo: Zoo) -> list[dict[str, Any]]:
    stored = {run.signature: run for run in Store(zoo.out / STORE_NAME).runs(zoo.definition.namespace)}
    rows = []
    for job in jobs_of(zoo.definition, zoo.params):
        rec = stored.get(job.signature)
        if rec is not None:
            rows.append({"signature": rec.signature, "config": rec.config, "status": rec.status,
                         "reason": rec.reason, "seconds": rec.seconds, "values": rec.values})
    return rows


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of export directory `src`, checked for its format."""
    path = Path(src) / MANIFEST
    if not path.is_file():
        raise GapbenchError(f"'{src}' is not a zoo export: it has no {MANIFEST}. Point to a directory written "
                            f"by gapbench zoo export.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise GapbenchError(f"The zoo manifest '{path}' cannot be read ({exc}). Copy the export again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GapbenchError(f"'{path}' is not a gapbench zoo manifest (no format '{FORMAT}'). Point to a "
                            f"directory written by gapbench zoo export.")
    if manifest.get("format_version", 0) > MANIFEST_VERSION:
        raise GapbenchError(f"The zoo export '{src}' has manifest version {manifest['format_version']}, newer "
                            f"than this gapbench reads ({MANIFEST_VERSION}). Upgrade gapbench.")
    return manifest


def verify_export(src: Path, manifest: dict[str, Any]) -> None:
    """Refuse an export whose checkpoint files or job signatures do not match its manifest."""
    for entry in manifest["models"]:
        path = Path(src) / entry["checkpoint"]
        if not path.is_file():
            raise GapbenchError(f"The zoo export '{src}' lacks the checkpoint '{path}' its manifest lists. Copy "
                                f"the export again.")
        actual = file_digest(path)
        if actual != entry["sha256"]:
            raise GapbenchError(f"The checkpoint '{path}' of zoo export '{src}' does not match its manifest: "
                                f"SHA-256 {actual[:16]}… instead of {entry['sha256'][:16]}…. The file was changed "
                                f"or damaged after export; copy the export again (nothing was imported).")
    for job in manifest["jobs"]:
        if signature(job["config"]) != job["signature"]:
            raise GapbenchError(f"Job {job['signature']} in the manifest of zoo export '{src}' does not match its "
                                f"config (it hashes to {signature(job['config'])}). The manifest was edited; copy "
                                f"the export again (nothing was imported).")


def import_zoo(src: str | Path, out: str | Path) -> Zoo:
    """Verify the export `src`, copy it into OUT's store and checkpoints, and return ``load_zoo(out, ...)``."""
    src, out = Path(src), Path(out)
    manifest = read_manifest(src)
    zdef = ZOOS.get(manifest["zoo"]).obj
    verify_export(src, manifest)
    checkpoints = out / zdef.namespace / "checkpoints"
    for entry in manifest["models"]:
        atomic_write_bytes(checkpoints / f"{entry['id']}.pt", (src / entry["checkpoint"]).read_bytes())
    store = Store(out / STORE_NAME)
    for job in manifest["jobs"]:
        values = {k: float("nan") if v is None else v for k, v in job["values"].items()}
        store.record(zdef.namespace, job["signature"], job["config"], values, status=job["status"],
                     reason=job["reason"], seconds=job["seconds"], checkpoint=None,
                     failure="deterministic" if job["status"] == "failed" else None)
    zoo = Zoo(zdef, manifest["preset"], manifest["params"], manifest["provenance"], out)
    write_record(out, zoo, None, imported_from=str(src.resolve()))
    return load_zoo(out, zdef.name, manifest["preset"])
