"""Sweeps on this machine: :func:`execute` runs one job and records it, in this process or in a pool worker,
and :func:`run_pool` keeps a local process pool busy (the 'ray' backend's counterpart is
:mod:`gapbench.ray_backend`).

- The pool is a ProcessPoolExecutor with the 'forkserver' start method (plain 'fork' of a process whose torch
  thread pools are running can deadlock) whose server preloads torch, so a worker starts without re-importing
  torch. Measured on the 2-core dev machine (torch import ≈ 2.2 s), a 2-worker pool answering its first job:
  'spawn' 2.4-3.8 s every time (each worker imports torch); forkserver 1.8-2.5 s for the first pool of a
  process (the server imports torch once) and ≈ 0.05 s for every later one. 'spawn' is used where forkserver
  does not exist (Windows). Each worker gets ``runtime.threads`` intra-op threads (default 1: two threads per
  worker degrade badly when the other core is busy) and OMP_NUM_THREADS / MKL_NUM_THREADS set to match.
- Each job records its own result from the worker that ran it, the moment it ends; a worker that dies
  (BrokenProcessPool) loses the jobs in flight, which the parent records as transient failures.
- Progress: a pool worker puts its job's events on a multiprocessing queue that the parent drains every
  :data:`POLL_S` seconds while it waits. A worker never blocks on that queue (``cancel_join_thread``), a
  failing put is ignored, so nothing waits on progress.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from .config import Runtime
from .store import Store
from .sweep_job import Job, Outcome, failure_kind, record, run_job
from .sweep_progress import drain

FORKSERVER_PRELOAD = ["torch", "gapbench.sweep"]  # imported once by the fork server, inherited by workers
POLL_S = 0.5                # how often the parent of a pool drains progress events while jobs run
_worker_queue = None        # a pool worker's queue to the parent (set by init_worker)


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


def _queue_put(event: dict) -> None:
    if _worker_queue is not None:
        _worker_queue.put_nowait(event)


def init_worker(threads: int, queue=None) -> None:
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


def run_pool(todo: list[Job], store: Store, runtime: Runtime, out_dir: Path, workers: int,
             on_event: Callable[[dict], None]) -> Iterator[tuple[Job, str]]:
    """Run `todo` in a pool of `workers` processes; yields (job, status) as each ends, recorded."""
    ctx = _mp_context()
    queue = ctx.Queue()
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                             initializer=init_worker, initargs=(runtime.threads, queue)) as pool:
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
    outcome = Outcome("failed", {}, reason=f"{type(exc).__name__}: {exc}", failure=failure_kind(exc), trace="")
    return record(store, job, outcome, out_dir)
