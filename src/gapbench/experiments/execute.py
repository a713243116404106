"""Run an experiment end to end: expand the grid, sweep what is missing, evaluate claims, write outputs.

Counts are of what the store holds for the grid, not of this invocation alone: `runs_failed` is every stored
failed run of the grid (a rerun that trains nothing still reports the failures before it), and when some
grid points have no successful run each claim says on how many models it was computed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Runtime, signature
from ..errors import GapbenchError
from ..outdir import locked, remove_orphan_temps
from ..report import write_outputs
from ..store import Store
from ..sweep import Job, run_sweep
from . import get
from .base import ClaimResult, Experiment
from .jobs import model_signatures
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
    statistics: dict[str, float]          # Experiment.statistics of the table (slopes, Kendall τ, ...)
    statistics_label: str = "slope"
    runs_trained: int = 0
    runs_reused: int = 0
    runs_failed: int = 0
    missing: int = 0
    seconds: float = 0.0
    paths: dict[str, str] = field(default_factory=dict)
    models_ok: int = 0                    # grid points with a successful stored run
    models_total: int = 0                 # grid points
    notes: list[str] = field(default_factory=list)   # what the user should know (preset chosen, not written)

    @property
    def partial(self) -> bool:
        return self.models_ok < self.models_total

    @property
    def training_seconds(self) -> float:
        """Wall-clock seconds the stored runs took when they were trained (and measured), whichever
        invocation trained them: a rerun that reuses everything still reports the original cost."""
        return sum(r.get("run_seconds") or 0.0 for r in self.table.rows)

    def summary(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "preset": self.preset,
                "claims": [c.as_dict() for c in self.claims], "statistics": self.statistics,
                "statistics_label": self.statistics_label,
                "runs_trained": self.runs_trained, "runs_reused": self.runs_reused,
                "runs_failed": self.runs_failed, "runs_missing": self.missing,
                "models_ok": self.models_ok, "models_total": self.models_total,
                "seconds": round(self.seconds, 2), "training_seconds": round(self.training_seconds, 2),
                "params": self.params, "outputs": self.paths, "notes": self.notes}


def jobs_for(exp: Experiment, params: dict[str, Any]):
    """The sweep jobs of a parameter set, deduplicated, in grid order."""
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
    """One row per stored job of this grid: hp.* from the config's 'hp' section, the job's signature, status
    and checkpoint with the signature(s) of the model(s) it trained (jobs.model_signatures), then the values."""
    stored = {r.signature: r for r in store.runs(exp.name)}
    rows = []
    for job in jobs:
        rec = stored.get(job.signature)
        if rec is None:
            continue
        row: dict[str, Any] = {}
        flatten("hp", job.config.get("hp", {}), row)
        row.update({"signature": rec.signature, "status": rec.status, "reason": rec.reason,
                    "checkpoint": rec.checkpoint, "run_seconds": rec.seconds})
        row.update(model_signatures(job.config))
        row.update(rec.values)
        rows.append(row)
    return rows


def stored_presets(store, exp: Experiment, overrides: dict[str, str] | None = None) -> list[tuple[str, int, int]]:
    """[(preset, stored runs of its grid, grid size)] for the presets with any stored run: the most recently
    recorded first, then (presets share grid points) the most complete."""
    finished = {r.signature: r.finished or 0.0 for r in store.runs(exp.name)}
    found = []
    for preset in exp.presets:
        grid = [job.signature for job in jobs_for(exp, exp.params(preset, overrides))]
        sigs = [sig for sig in grid if sig in finished]
        if sigs:
            found.append((max(finished[s] for s in sigs), len(sigs) / len(grid), preset, len(sigs), len(grid)))
    return [(preset, n, total) for *_, preset, n, total in sorted(found, reverse=True)]


def choose_preset(store, exp: Experiment, preset: str | None, overrides: dict[str, str] | None,
                  out: Path) -> tuple[str, list[str]]:
    """The preset to report: `preset`, or the stored one (the most recent of several), with a note saying
    which; a GapbenchError naming what is stored when nothing matches."""
    present = stored_presets(store, exp, overrides)
    listed = ", ".join(f"'{p}' ({n} of {total} runs)" for p, n, total in present) or "none"
    if preset is not None:
        exp.params(preset, overrides)                       # an unknown preset or key fails first
        if preset not in {p for p, *_ in present}:
            raise GapbenchError(f"The store {out / STORE_NAME} holds no runs of '{exp.name}' with preset "
                                f"'{preset}'{' and these --set values' if overrides else ''}. Stored presets: "
                                f"{listed}. Pass one of those with --preset, or train it first: gapbench run "
                                f"{exp.name} --preset {preset} --out {out}.")
        return preset, []
    if not present:
        raise GapbenchError(f"The store {out / STORE_NAME} holds no runs of '{exp.name}'"
                            f"{' with these --set values' if overrides else ''}; nothing to report. Train it "
                            f"first, e.g. gapbench run {exp.name} --preset smoke --out {out}.")
    chosen = present[0][0]
    note = f"preset '{chosen}': the one stored for {exp.name}"
    if len(present) > 1:
        note = (f"preset '{chosen}': the most recently run and most complete of the presets with runs stored "
                f"for {exp.name} ({listed}); pass --preset to choose another")
    return chosen, [note]


def run_experiment(name: str | Experiment, preset: str | None = "quick", *,
                   overrides: dict[str, str] | None = None, out: str | Path = "results",
                   runtime: Runtime | None = None, train: bool = True, progress: bool = True,
                   write: bool = True, retry_failed: bool = False,
                   on_wait: Callable[[str], None] | None = None) -> Outcome:
    """Train what is missing (unless train=False), evaluate the claims, and write OUT/<name>/ outputs.

    Stored failed runs (divergence, a crash) are reused as failures unless retry_failed=True; transient ones
    (disk full, out of memory, interrupted) are run again. Training holds the lock of `out` (gapbench.outdir):
    a second run on the same directory waits (calling on_wait(message)) and then reuses what the first
    stored. With train=False, preset=None reports the preset(s) stored (choose_preset); a preset with no
    stored runs is an error."""
    exp = get(name)
    runtime = runtime or Runtime()
    out = Path(out)
    if preset is not None:
        exp.params(preset, overrides)      # refuse a bad preset or --set value before the store is opened (created)
    store = Store(out / STORE_NAME)
    notes: list[str] = []
    if preset is None or not train:
        preset, notes = choose_preset(store, exp, preset, overrides, out)
    params = exp.params(preset, overrides)
    jobs = jobs_for(exp, params)
    if not jobs:
        raise GapbenchError(f"Experiment '{exp.name}' with preset '{preset}' expands to no runs; check the "
                            f"--set values ({params}).")
    exp_dir = out / exp.name
    start = time.perf_counter()
    trained = reused = 0
    if train:
        trained, reused = _sweep(jobs, store, out, exp_dir, runtime, progress, retry_failed, on_wait)
    table = Table.of(rows_for(store, exp, jobs))
    ok = len(table.ok())
    claims = [_on_partial(claim.evaluate(table, params), ok, len(jobs)) for claim in exp.claims]
    statistics = exp.statistics(table.ok()) if exp.statistics and ok else {}
    outcome = Outcome(exp.name, preset, params, table, claims, statistics, exp.statistics_label, trained, reused,
                      runs_failed=len(table) - ok, missing=len(jobs) - len(table),
                      seconds=time.perf_counter() - start, models_ok=ok, models_total=len(jobs), notes=notes)
    if write:
        outcome.paths = write_outputs(exp, outcome, exp_dir)
    return outcome


def _sweep(jobs, store, out: Path, exp_dir: Path, runtime: Runtime, progress: bool, retry_failed: bool,
           on_wait) -> tuple[int, int]:
    """Under the lock of `out`: remove orphan temp files, run the sweep; (trained, reused) by this call."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with locked(out, on_wait):
        remove_orphan_temps(out, older_than=started)
        result = run_sweep(jobs, store, workers=runtime.workers, runtime=runtime, out_dir=exp_dir,
                           progress=progress, retry_failed=retry_failed)
    return len(result.trained), len(result.reused)


def _on_partial(claim: ClaimResult, ok: int, total: int) -> ClaimResult:
    """The claim, its detail saying so when it was computed on fewer models than the grid has."""
    if ok >= total:
        return claim
    return dataclasses.replace(claim, detail=f"{claim.detail}; computed on {ok} of {total} models")
