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
- workers=1 runs in this process. workers>1 uses a ProcessPoolExecutor with the 'forkserver' start method
  (plain 'fork' of a process whose torch thread pools are running can deadlock) whose server preloads torch,
  so a worker starts without re-importing torch. Measured on the 2-core dev machine (torch import ≈ 2.2 s),
  a 2-worker pool answering its first job: 'spawn' 2.4-3.8 s every time (each worker imports torch);
  forkserver 1.8-2.5 s for the first pool of a process (the server imports torch once) and ≈ 0.05 s for
  every later one. 'spawn' is used where forkserver does not exist (Windows). Each worker gets
  ``runtime.threads`` intra-op threads (default 1: two threads per worker degrade badly when the other core
  is busy) and OMP_NUM_THREADS / MKL_NUM_THREADS set to match.
- Progress (:mod:`gapbench.sweep_progress`): a job reports its epochs with ``progress.report``; :func:`execute`
  tags each event with the job's signature and hands it to the parent: directly in-process, through a
  multiprocessing queue from pool workers (the parent drains it every :data:`POLL_S` seconds while it waits).
  A worker never blocks on that queue (``cancel_join_thread``), a failing put is ignored, and a job that ends
  (or dies with its worker) leaves the display's running set, so nothing waits on progress. Ray tasks report
  their starts and ends.
- backend='ray' (optional extra, ``pip install 'gapbench[ray]'``): :mod:`gapbench.ray_backend` runs
  :func:`run_job` as Ray tasks and this process alone records their outcomes (:func:`record`); no node needs
  the store or the output directory.
"""

from __future__ import annotations

import copy
import errno
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Runtime
from .errors import GapbenchError, check_choice, check_positive_int, param_error
from .progress import reporting
from .store import JOB_STATUSES, Store, checked_values
from .sweep_progress import JobReporter, SweepDisplay, drain, forwarder, labels

BACKENDS = ("local", "ray")
FORKSERVER_PRELOAD = ["torch", "gapbench.sweep"]  # imported once by the fork server, inherited by workers
TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT}   # no space left on the device, disk quota exceeded
POLL_S = 0.5                # how often the parent of a pool drains progress events while jobs run
_worker_queue = None        # a pool worker's queue to the parent (set by _init_worker)


@dataclass(frozen=True)
class Job:
    """One unit of a sweep: run `fn` on `config` and store the result under (experiment, signature)."""

    experiment: str
    signature: str
    config: dict[str, Any]
    fn: Callable[..., JobResult]          # a module-level function, so the job pickles into worker processes

    @property
    def key(self) -> tuple[str, str]:
        return self.experiment, self.signature


@dataclass
class JobResult:
    """What a job function returns: its values, and whether the run counts as done."""

    values: dict[str, float]
    status: str = "done"                  # 'done' | 'failed' (e.g. training diverged)
    reason: str = ""                      # why it failed, or how training stopped
    checkpoint: str | None = None         # path of the checkpoint it wrote, if any

    def __post_init__(self):
        check_choice(self.status, "status", "JobResult", JOB_STATUSES)


@dataclass
class SweepResult:
    """Signatures by outcome: run now and done, found in the store, run now and failed."""

    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def job_name(fn: Callable[..., Any]) -> str:
    """'module.function' of a job function, for messages and logs."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass
class Outcome:
    """What one run of a job leaves for the store: made where the job ran, recorded by the store's writer."""

    status: str                           # 'done' | 'failed'
    values: dict[str, float]
    reason: str = ""
    seconds: float | None = None          # wall-clock time of the job (None: lost with its worker)
    started: float | None = None          # Unix time it started
    checkpoint: str | None = None
    failure: str | None = None            # for a failed run: 'transient' | 'deterministic' (failure_kind)
    trace: str | None = None              # an exception's traceback, for OUT/logs/<signature>.log (None: none)
    interrupted: bool = False             # a KeyboardInterrupt: recorded, then re-raised


def execute(job: Job, store: Store, runtime: Runtime, out_dir: Path,
            on_event: Callable[[dict], None] | None = None) -> str:
    """Run one job, record its result in `store`, and return its status ('done' | 'failed').

    The worker-side half of a local sweep: used in-process and in pool workers. Progress events (a 'start',
    then the job's own) go to `on_event`, else to this pool worker's queue, tagged with the job's signature.
    """
    outcome = run_job(job, runtime, out_dir, on_event or _queue_put)
    status = record(store, job, outcome, out_dir)
    if outcome.interrupted:
        raise KeyboardInterrupt
    return status


def run_job(job: Job, runtime: Runtime, out_dir: Path, on_event: Callable[[dict], None]) -> Outcome:
    """Run one job and return its Outcome without touching any store; a GapbenchError propagates."""
    started, t0 = time.time(), time.perf_counter()
    sink = JobReporter(job.signature, on_event)
    try:
        sink({"kind": "start"})
        with reporting(sink):
            result = job.fn(copy.deepcopy(job.config), runtime, Path(out_dir))
        sink.flush()
        values = _result_values(job, result)
    except GapbenchError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        return Outcome("failed", {}, reason=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0,
                       started=started, failure=failure_kind(exc), trace=traceback.format_exc(),
                       interrupted=isinstance(exc, KeyboardInterrupt))
    failure = "deterministic" if result.status == "failed" else None   # the job reported failure (diverged)
    return Outcome(result.status, values, reason=result.reason, seconds=time.perf_counter() - t0,
                   started=started, checkpoint=result.checkpoint, failure=failure)


def record(store: Store, job: Job, outcome: Outcome, out_dir: Path) -> str:
    """Store `outcome` as the run of `job` (a failure's traceback to OUT/logs/) and return its status."""
    if outcome.trace is not None:
        _log_failure(Path(out_dir), job, outcome.reason, outcome.trace)
    store.record(job.experiment, job.signature, job.config, outcome.values, status=outcome.status,
                 reason=outcome.reason, seconds=outcome.seconds, checkpoint=outcome.checkpoint,
                 started=outcome.started, failure=outcome.failure)
    return outcome.status


def _queue_put(event: dict) -> None:
    if _worker_queue is not None:
        _worker_queue.put_nowait(event)


def failure_kind(exc: BaseException) -> str:
    """'transient' when `exc` or an exception it was raised from means "try again later" (module doc),
    else 'deterministic'."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return "transient"
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError, KeyboardInterrupt, BrokenProcessPool)):
            return "transient"
        exc = exc.__cause__ or exc.__context__
    return "deterministic"


def _record_failure(store: Store, job: Job, exc: BaseException, trace: str, out_dir: Path,
                    started: float | None, seconds: float | None) -> str:
    """Store `job` as failed with the exception as reason and its kind, log the traceback; 'failed'."""
    return record(store, job, Outcome("failed", {}, reason=f"{type(exc).__name__}: {exc}", seconds=seconds,
                                      started=started, failure=failure_kind(exc), trace=trace), out_dir)


class JobResultError(TypeError):
    """A job function returned something the store cannot hold: a bug in that job, so a failed run."""


def _result_values(job: Job, result: Any) -> dict[str, float]:
    if not isinstance(result, JobResult):
        raise JobResultError(f"job function {job_name(job.fn)} returned {type(result).__name__}, not JobResult")
    try:
        return checked_values(result.values)
    except GapbenchError as exc:
        raise JobResultError(f"job function {job_name(job.fn)}: {exc}") from None


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
            outcomes = _run_pool(todo, store, runtime, out_dir, workers, forward)
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


def _init_worker(threads: int, queue=None) -> None:
    """Pool initializer: one BLAS/OpenMP configuration per worker process, and its progress queue."""
    global _worker_queue
    if queue is not None:
        queue.cancel_join_thread()    # exiting never waits to flush progress to a parent that is gone
        _worker_queue = queue
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(FORKSERVER_PRELOAD)    # effective when the server is not yet running
        return ctx
    return multiprocessing.get_context("spawn")


def _run_pool(todo: list[Job], store: Store, runtime: Runtime, out_dir: Path, workers: int,
              on_event: Callable[[dict], None]) -> Iterator[tuple[Job, str]]:
    ctx = _mp_context()
    queue = ctx.Queue()
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=_init_worker, initargs=(runtime.threads, queue)) as pool:
        pending = {pool.submit(execute, job, store, runtime, out_dir): job for job in todo}
        try:
            while pending:
                finished, _ = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                drain(queue, on_event)
                on_event({"kind": "tick"})
                for future in finished:
                    job = pending.pop(future)
                    try:
                        status = future.result()  # a GapbenchError from the job re-raises here
                    except BrokenProcessPool as exc:   # a worker died (killed, out of memory): every job
                        status = _record_broken(store, job, exc, out_dir)   # in flight is lost, transiently
                    yield job, status
        finally:
            # On an error (or an abandoned generator) nothing new starts; runs in flight finish, are stored.
            pool.shutdown(wait=True, cancel_futures=True)
            queue.close()


def _record_broken(store: Store, job: Job, exc: BrokenProcessPool, out_dir: Path) -> str:
    """Record a job lost with its worker as a transient failure, unless the worker stored it before dying."""
    stored = store.get(job.experiment, job.signature)
    if stored is not None and stored.status == "done":
        return "done"
    return _record_failure(store, job, exc, "", out_dir, None, None)


def _log_failure(out_dir: Path, job: Job, reason: str, trace: str) -> None:
    """Write the traceback of a failed job to out_dir/logs/<signature>.log (best effort)."""
    try:
        logs = out_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{job.signature}.log").write_text(
            f"experiment: {job.experiment}\nsignature: {job.signature}\nfn: {job_name(job.fn)}\n"
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\nreason: {reason}\n\n{trace}")
    except OSError:
        pass
