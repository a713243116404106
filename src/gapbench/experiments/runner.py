"""Run an experiment end to end: expand the grid, sweep what is missing, evaluate claims, write outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Runtime, signature
from ..errors import GapbenchError
from . import get
from .base import ClaimResult, Experiment
from .table import Table

STORE_NAME = "gapbench.sqlite"


@dataclass
class Outcome:
    """What `run_experiment` returns: the summary plus where the outputs went."""

    experiment: str
    preset: str
    params: dict[str, Any]
    table: Table
    claims: list[ClaimResult]
    slopes: dict[str, float]
    slopes_label: str = "slope"
    runs_trained: int = 0
    runs_reused: int = 0
    runs_failed: int = 0
    missing: int = 0
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def training_seconds(self) -> float:
        """Wall-clock seconds the stored runs took when they were trained (and measured), whichever
        invocation trained them: a rerun that reuses everything still reports the original cost."""
        return sum(r.get("run_seconds") or 0.0 for r in self.table.rows)

    def summary(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "preset": self.preset,
                "claims": [c.as_dict() for c in self.claims], "slopes": self.slopes,
                "runs_trained": self.runs_trained, "runs_reused": self.runs_reused,
                "runs_failed": self.runs_failed, "runs_missing": self.missing,
                "seconds": round(self.seconds, 2), "training_seconds": round(self.training_seconds, 2),
                "params": self.params, "outputs": self.paths}


def jobs_for(exp: Experiment, params: dict[str, Any]):
    """The sweep jobs of a parameter set, deduplicated, in grid order."""
    from ..sweep import Job
    jobs, seen = [], set()
    for config in exp.points(params):
        sig = signature(config)
        if sig not in seen:
            seen.add(sig)
            jobs.append(Job(exp.name, sig, config, exp.job))
    return jobs


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value if not isinstance(value, list) else json.dumps(value)


def rows_for(store, exp: Experiment, jobs) -> list[dict[str, Any]]:
    """One row per stored job of this grid: hp.* from the config's 'hp' section, then the values."""
    stored = {r.signature: r for r in store.runs(exp.name)}
    rows = []
    for job in jobs:
        rec = stored.get(job.signature)
        if rec is None:
            continue
        row: dict[str, Any] = {}
        flatten("hp", job.config.get("hp", {}), row)
        row.update({"signature": rec.signature, "status": rec.status, "reason": rec.reason,
                    "checkpoint": getattr(rec, "checkpoint", None), "run_seconds": rec.seconds})
        row.update(rec.values)
        rows.append(row)
    return rows


def run_experiment(name: str | Experiment, preset: str = "quick", *, overrides: dict[str, str] | None = None,
                   out: str | Path = "results", runtime: Runtime | None = None, train: bool = True,
                   progress: bool = True, write: bool = True, retry_failed: bool = False) -> Outcome:
    """Train what is missing (unless train=False), evaluate the claims, and write OUT/<name>/ outputs.

    Stored failed runs (divergence, a crash) are reused as failures unless retry_failed=True."""
    from ..store import Store
    from ..sweep import run_sweep
    exp = get(name)
    runtime = runtime or Runtime()
    params = exp.params(preset, overrides)
    out = Path(out)
    exp_dir = out / exp.name
    exp_dir.mkdir(parents=True, exist_ok=True)
    store = Store(out / STORE_NAME)
    jobs = jobs_for(exp, params)
    if not jobs:
        raise GapbenchError(f"Experiment '{exp.name}' with preset '{preset}' expands to no runs; check the "
                            f"--set values ({params}).")
    start = time.perf_counter()
    trained = reused = failed = 0
    if train:
        result = run_sweep(jobs, store, workers=runtime.workers, runtime=runtime, out_dir=exp_dir,
                           progress=progress, retry_failed=retry_failed)
        trained, reused, failed = len(result.trained), len(result.reused), len(result.failed)
    rows = rows_for(store, exp, jobs)
    failed = sum(1 for r in rows if r["status"] != "done") if not train else failed
    table = Table.of(rows)
    claims = [claim.evaluate(table, params) for claim in exp.claims]
    slopes = exp.slopes(table.ok()) if exp.slopes and len(table.ok()) else {}
    outcome = Outcome(exp.name, preset, params, table, claims, slopes, exp.slopes_label, trained, reused, failed,
                      missing=len(jobs) - len(rows), seconds=time.perf_counter() - start)
    if write:
        from ..report import write_outputs
        outcome.paths = write_outputs(exp, outcome, exp_dir)
    return outcome
