"""build_zoo and load_zoo: a zoo build is a sweep over the zoo's jobs; a build record says what was built.

``build_zoo`` runs the zoo's jobs with :func:`gapbench.sweep.run_sweep` under the lock of OUT, exactly as
``gapbench run`` does (resumable, kill -9 safe, progress bars, workers, the Ray backend), then writes the
build record OUT/zoos/<name>/<preset>.json: the resolved parameters (preset + --set values) and the
provenance (datasets, pools, file checksums, gapbench version, git commit). ``load_zoo`` reads that record,
expands the same grid and reads each job's stored values: it trains nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..config import RunConfig, Runtime, from_dict, signature
from ..errors import GapbenchError
from ..experiments.execute import STORE_NAME
from ..outdir import locked, remove_orphan_temps
from ..provenance import provenance as code_provenance
from ..store import Store
from ..sweep import Job, run_sweep
from .base import ZOOS, ZooDef
from .types import Zoo, ZooModel

RECORDS = "zoos"            # OUT/zoos/<name>/<preset>.json


def jobs_of(zdef: ZooDef, params: Mapping[str, Any]) -> list[Job]:
    """The sweep jobs of a zoo's parameters, deduplicated, in grid order."""
    jobs, seen = [], set()
    for config in zdef.points(params):
        sig = signature(config)
        if sig not in seen:
            seen.add(sig)
            jobs.append(Job(zdef.namespace, sig, config, zdef.job))
    return jobs


def record_path(out: Path, name: str, preset: str) -> Path:
    return Path(out) / RECORDS / name / f"{preset}.json"


def build_zoo(name: str, preset: str = "quick", *, out: str | Path, overrides: Mapping[str, str] | None = None,
              workers: int = 1, backend: str = "local", progress: bool = True, data_dir: str | None = None,
              threads: int = 1, ray_address: str | None = None, retry_failed: bool = False) -> Zoo:
    """Train the zoo's models that OUT does not hold yet, record the build, and return the Zoo.

    `overrides` are --set values (strings, or values of the preset's types); `workers`, `backend`,
    `threads`, `ray_address` and `retry_failed` are those of ``gapbench run``. Zoo.build says how many jobs
    this call trained, reused and saw fail."""
    zdef = ZOOS.get(name).obj
    params = zdef.params(preset, overrides)
    jobs = jobs_of(zdef, params)
    if not jobs:
        raise GapbenchError(f"Zoo '{name}' with preset '{preset}' expands to no models; check the --set values "
                            f"({params}).")
    out = Path(out)
    runtime = Runtime(workers=workers, backend=backend, data_dir=data_dir, progress=progress, threads=threads,
                      ray_address=ray_address)
    store = Store(out / STORE_NAME)
    started = time.time()
    (out / zdef.namespace).mkdir(parents=True, exist_ok=True)
    with locked(out):
        remove_orphan_temps(out, older_than=started)
        result = run_sweep(jobs, store, workers=workers, runtime=runtime, out_dir=out / zdef.namespace,
                           progress=progress, retry_failed=retry_failed, backend=backend)
    zoo = Zoo(zdef, preset, params, {}, out, data_dir)
    _fill(zoo, jobs, store)
    zoo.provenance = data_provenance(zoo, data_dir)
    write_record(out, zoo, overrides)
    zoo.build = {"trained": len(result.trained), "reused": len(result.reused), "failed": len(result.failed)}
    return zoo


def load_zoo(out: str | Path, name: str, preset: str | None = None, *, data_dir: str | None = None) -> Zoo:
    """The zoo `name` built (or imported) in OUT: `preset`, or the most recently built one."""
    zdef = ZOOS.get(name).obj
    out = Path(out)
    records = built_records(out, name)
    if not records:
        raise GapbenchError(f"No zoo '{name}' is built in '{out}'. Build it first: gapbench zoo build {name} "
                            f"--preset quick --out {out} (or import an exported one: gapbench zoo import SRC "
                            f"--out {out}).")
    if preset is None:
        record = max(records.values(), key=lambda r: r["built"])
    elif preset in records:
        record = records[preset]
    else:
        raise GapbenchError(f"Zoo '{name}' is built in '{out}' with preset(s) {sorted(records)}, not "
                            f"'{preset}'. Pass one of those, or build it: gapbench zoo build {name} --preset "
                            f"{preset} --out {out}.")
    zoo = Zoo(zdef, record["preset"], record["params"], record["provenance"], out, data_dir)
    _fill(zoo, jobs_of(zdef, record["params"]), Store(out / STORE_NAME))
    return zoo


def built_records(out: Path, name: str) -> dict[str, dict[str, Any]]:
    """{preset: build record} of zoo `name` in OUT (records that cannot be read are errors naming the file)."""
    directory = Path(out) / RECORDS / name
    records = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GapbenchError(f"The zoo build record '{path}' cannot be read ({exc}). Delete it and build the "
                                f"zoo again (gapbench zoo build {name} --out {out}); stored models are "
                                f"reused.") from None
        records[record["preset"]] = record
    return records


def write_record(out: Path, zoo: Zoo, overrides: Mapping[str, Any] | None, **extra: Any) -> Path:
    record = {"zoo": zoo.name, "preset": zoo.preset, "params": zoo.params, "overrides": dict(overrides or {}),
              "provenance": zoo.provenance, "built": time.time(), "models": len(zoo.all_models), **extra}
    path = record_path(out, zoo.name, zoo.preset)
    atomic_write_bytes(path, json.dumps(record, indent=2, default=str).encode())
    return path


def _fill(zoo: Zoo, jobs: list[Job], store: Store) -> None:
    """Read every job's stored row and make the ZooModels of its members."""
    stored = {run.signature: run for run in store.runs(zoo.definition.namespace)}
    checkpoints = zoo.out / zoo.definition.namespace / "checkpoints"
    for job in jobs:
        rec = stored.get(job.signature)
        members = zoo.definition.members(job.config, None if rec is None else rec.values,
                                         None if rec is None else rec.status)
        for member in members:
            if member.stop_reason == "missing":
                zoo.missing += 1
                continue
            cfg = from_dict(RunConfig, member.run)
            sig = signature(cfg)
            zoo.all_models.append(ZooModel(sig, member.hp, cfg, member.values, member.stop_reason,
                                           checkpoints / f"{sig}.pt", zoo))


def data_provenance(zoo: Zoo, data_dir: str | None) -> dict[str, Any]:
    """Datasets, pools and file checksums of the zoo's data, and the code that built it."""
    from ..data import pool_id
    configs = [m.config.data for m in zoo.all_models]
    code = code_provenance()
    out = {"datasets": sorted({c.name for c in configs}),
           "pools": sorted({pool_id(c, s) for c in configs for s in ("train", "test")}),
           "checksums": {}, "gapbench": code["gapbench"], "git_sha": code["git_sha"], "torch": code["torch"]}
    if configs:
        info = zoo.dataset(configs[0]).info
        out["checksums"] = {Path(f["path"]).name: f["sha256"] for f in info.get("files", {}).values()}
        if "params" in info:
            out["generator"] = info["params"]
    return out
