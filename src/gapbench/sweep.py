"""Resumable sweeps: run the jobs the store does not have yet, in-process or in a local process pool.

A :class:`Job` holds its function itself: a module-level function pickles by reference (module and name)
into worker processes and Ray tasks. The function has the signature
``fn(config: dict, runtime: Runtime, out_dir: Path) -> JobResult``.

Rules (SPEC §5):

- A job whose (experiment, signature) is already stored is **reused**, never run again; a stored 'failed' run
  too, unless ``retry_failed`` or its failure was transient (see below). Identical jobs are run once; two
  jobs with one key but different configs are an error.
- Each job records its own result in the store (one transaction) the moment it ends, from the process that
  ran it (with backend 'ray', the driver records it the moment the task's result arrives), so killing the
  sweep (even ``kill -9`` of the whole process group) loses only the jobs in flight; rerunning the same
  sweep resumes where it stopped.
- An exception from a job function that is not a GapbenchError is a failure of that run: it is stored as
  'failed' with reason ``"<ExceptionType>: <message>"``, the traceback goes to OUT/logs/<signature>.log, and
  the sweep goes on. The failure is classified when it is recorded (:func:`failure_kind`): **transient** when
  the exception, or one it was raised from, is an OSError ENOSPC/EDQUOT (disk full, quota), a MemoryError or
  torch out-of-memory error, a KeyboardInterrupt (recorded, then re-raised), or a worker process that died
  (BrokenProcessPool, recorded by the parent); the next sweep runs those again by itself. Everything else,
  and a job that returns status 'failed' (training diverged), is **deterministic** and stays failed. A
  GapbenchError is the user's mistake (missing data, bad parameter): the sweep stops
  and re-raises it (runs already finished stay stored).
- workers=1 runs in this process; workers>1 runs a local process pool (:mod:`gapbench.local_backend`:
  forkserver workers that preload torch, ``runtime.threads`` intra-op threads each).
- Progress (:mod:`gapbench.sweep_progress`): a job reports its epochs with ``progress.report``; each event is
  tagged with the job's signature and handed to the parent: directly in-process, through a queue from pool
  workers. A job that ends (or dies with its worker) leaves the display's running set, so nothing waits on
  progress. Ray tasks report their starts and ends.
- backend='ray' (optional extra, ``pip install 'gapbench[ray]'``): :mod:`gapbench.ray_backend` runs
  :func:`run_job` as Ray tasks and this process alone records their outcomes (:func:`record`); no node needs
  the store or the output directory.

A job and what its run leaves (Job, JobResult, Outcome, run_job, record, failure_kind) live in
:mod:`gapbench.sweep_job`, the local backend (execute, the process pool) in :mod:`gapbench.local_backend`;
the names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import Runtime
from .errors import GapbenchError, check_choice, check_positive_int, param_error
from .local_backend import execute, run_pool
from .store import Store
from .sweep_job import Job, JobResult, JobResultError, Outcome, failure_kind, job_name, record, run_job
from .sweep_progress import SweepDisplay, forwarder, labels

BACKENDS = ("local", "ray")


@dataclass
class SweepResult:
    """Signatures by outcome: run now and done, found in the store, run now and failed."""

    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def run_sweep(jobs: list[Job], store: Store | str | Path, *, workers: int = 1, runtime: Runtime | None = None,
              out_dir: str | Path | None = None, progress: bool = True, retry_failed: bool = False,
              backend: str | None = None, on_progress: Callable[[dict], None] | None = None) -> SweepResult:
    """Run every job the store does not have yet and return which were trained, reused and failed.

    Args:
        jobs: the sweep; duplicates (same experiment and signature) run once.
        store: a Store or the path of its SQLite file.
        workers: processes running jobs at once; 1 runs them in this process (its torch threads untouched).
        runtime: operational settings passed to every job (runtime.threads = intra-op threads per worker);
            default Runtime().
        out_dir: where jobs write files (checkpoints) and failures their logs (out_dir/logs/); default: the
            store's directory.
        progress: show the sweep's progress on stderr (gapbench.progress: a bar on a terminal, plain lines
            otherwise): jobs done, failures, each running job's epoch and train error, and the time left
            estimated from measured job durations (before any finishes here: those stored for the same
            experiment, else the running jobs' epoch progress).
        retry_failed: run again every job stored as 'failed' (transient failures are run again anyway).
        backend: 'local' (this machine) or 'ray' (gapbench.ray_backend; the cluster at runtime.ray_address);
            default runtime.backend.
        on_progress: also called in this process with every progress event (dicts with 'kind' ('start',
            'epoch', 'end') and 'signature'), e.g. to log them.
    """
    where = "run_sweep()"
    workers = check_positive_int(workers, "workers", where)
    runtime = runtime if runtime is not None else Runtime()
    backend = check_choice(backend or runtime.backend, "backend", where, BACKENDS)
    store = store if isinstance(store, Store) else Store(store)
    out_dir = Path(out_dir) if out_dir is not None else store.path.parent
    unique = _dedupe(jobs)
    result, todo, stored, transient = SweepResult(), [], {}, {}
    for job in unique:
        if job.experiment not in stored:
            stored[job.experiment] = store.statuses(job.experiment)
            transient[job.experiment] = store.transient(job.experiment)
        status = stored[job.experiment].get(job.signature)
        retry = retry_failed or job.signature in transient[job.experiment]
        if status == "done" or (status == "failed" and not retry):
            result.reused.append(job.signature)
        else:
            todo.append(job)
    if not todo:
        return result
    if backend == "ray":
        from .ray_backend import task_slots
        slots = task_slots(runtime)        # connects to (or starts) Ray: a bad address fails before the display
    else:
        slots = workers
    display = SweepDisplay(labels(todo), workers=min(slots, len(todo)), enabled=progress,
                           prior=_stored_seconds(store, unique, result.reused))
    forward = forwarder(display, on_progress)
    try:
        if backend == "ray":
            from .ray_backend import run_ray
            outcomes = run_ray(todo, store, runtime, out_dir, workers, forward)
        elif workers == 1:
            outcomes = ((job, execute(job, store, runtime, out_dir, forward)) for job in todo)
        else:
            outcomes = run_pool(todo, store, runtime, out_dir, workers, forward)
        for job, status in outcomes:
            (result.trained if status == "done" else result.failed).append(job.signature)
            forward({"kind": "end", "signature": job.signature, "status": status})
    finally:
        display.close()
    return result


def _stored_seconds(store: Store, jobs: list[Job], reused: list[str]) -> list[float]:
    """Measured durations of the done runs this sweep reuses: the time a job of these experiments takes."""
    reused_set, seconds = set(reused), []
    for experiment in {job.experiment for job in jobs if job.signature in reused_set}:
        seconds += [run.seconds for run in store.runs(experiment)
                    if run.signature in reused_set and run.status == "done" and run.seconds]
    return seconds


def _dedupe(jobs: list[Job]) -> list[Job]:
    seen: dict[tuple[str, str], Job] = {}
    for job in jobs:
        if not isinstance(job, Job):
            raise param_error("jobs", "run_sweep()", "a list of Job", type(job).__name__)
        if not callable(job.fn):
            raise param_error("fn", "Job", "a module-level job function fn(config, runtime, out_dir)", job.fn)
        other = seen.setdefault(job.key, job)
        if other is not job and (other.config != job.config or other.fn != job.fn):
            raise GapbenchError(f"Two jobs of experiment '{job.experiment}' share signature "
                                f"'{job.signature}' but differ in config or function ({job_name(other.fn)} vs "
                                f"{job_name(job.fn)}). A signature must be the hash of everything that changes a "
                                f"result: compute it with gapbench.config.signature().")
    return list(seen.values())


__all__ = ["BACKENDS", "Job", "JobResult", "JobResultError", "Outcome", "SweepResult", "execute", "failure_kind",
           "job_name", "record", "run_job", "run_sweep"]
