"""One job of a sweep, wherever it runs: the :class:`Job` (config + job function), what its function returns
(:class:`JobResult`), the :class:`Outcome` a run leaves, and the two halves every backend shares:
:func:`run_job` runs a job and touches no store, :func:`record` stores an outcome (a failure's traceback to
OUT/logs/<signature>.log). The rules they follow (reuse, failure kinds) are in :mod:`gapbench.sweep`'s
module doc; :mod:`gapbench.local_backend` and :mod:`gapbench.ray_backend` call these two.
"""

from __future__ import annotations

import copy
import errno
import time
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import Runtime
from .errors import GapbenchError, check_choice
from .progress import reporting
from .store import JOB_STATUSES, Store, checked_values
from .sweep_progress import JobReporter

TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT}   # no space left on the device, disk quota exceeded


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


def failure_kind(exc: BaseException) -> str:
    """'transient' when `exc` or an exception it was raised from means "try again later" (gapbench.sweep's
    module doc), else 'deterministic'."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
            return "transient"
        if isinstance(exc, (MemoryError, torch.OutOfMemoryError, KeyboardInterrupt, BrokenProcessPool)):
            return "transient"
        exc = exc.__cause__ or exc.__context__
    return "deterministic"


class JobResultError(TypeError):
    """A job function returned something the store cannot hold: a bug in that job, so a failed run."""


def _result_values(job: Job, result: Any) -> dict[str, float]:
    if not isinstance(result, JobResult):
        raise JobResultError(f"job function {job_name(job.fn)} returned {type(result).__name__}, not JobResult")
    try:
        return checked_values(result.values)
    except GapbenchError as exc:
        raise JobResultError(f"job function {job_name(job.fn)}: {exc}") from None


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
