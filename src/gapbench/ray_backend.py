"""Sweeps on a Ray cluster (``pip install 'gapbench[ray]'``): Ray tasks train and measure, the driver writes.

Design (issue 15):

- **The driver is the only writer.** A task runs the job (:func:`gapbench.sweep_job.run_job`) in a private
  temporary directory on its node and returns the job's :class:`~gapbench.sweep_job.Outcome` and the bytes of
  every file the job wrote there (its checkpoint). The driver records the outcome in the store and writes the files
  atomically under the sweep's output directory, as the local backend does; no node needs the output
  directory, and SQLite is only ever opened on the driver's disk (SQLite's locking over network file systems
  is unreliable: https://www.sqlite.org/faq.html#q5). A checkpoint file the driver already has is kept: a
  retrained model replaces nothing that a stored row points to.
- **Data without a shared file system.** The driver puts the verified files of the datasets the jobs name
  (``config[...]["data"]["name"]``) into the object store once (``ray.put``). A task uses its node's own data
  directory when that holds them verified, else writes the shipped files once into a temporary directory
  of the node named by their digest and loads from there; either way the loader checks every file against
  its canonical checksum.
- **Idempotent.** A job is its signature. A task whose worker dies (killed, node lost) is retried by Ray
  (:data:`TASK_RETRIES`); the driver records the one value each task returns, so a job is stored once. A task
  that still fails is recorded as a transient failure, which the next sweep runs again; a killed driver loses
  only the tasks in flight, and rerunning the sweep resumes.
- **Resources.** Each task asks for ``runtime.threads`` CPUs and one GPU when ``runtime.device`` is CUDA, so
  one command fills a mixed cluster. At most IN_FLIGHT_PER_SLOT tasks per task slot are submitted at once
  (back-pressure: a 10,000-job zoo never floods the object store).
- **Progress.** The display shows as running the first :func:`task_slots` submitted tasks not yet returned,
  and a job ends when the driver records it; epochs are not streamed from the nodes.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes
from .config import Runtime
from .errors import GapbenchError
from .local_backend import init_worker
from .store import Store
from .sweep_job import Job, Outcome, failure_kind, record, run_job

TASK_RETRIES = 3               # re-runs of a task whose worker or node died, before it counts as failed
IN_FLIGHT_PER_SLOT = 2         # tasks submitted per free task slot: nodes stay busy while the driver records
INSTALL_HINT = "pip install 'gapbench[ray]'"
CONNECT_TIMEOUT_S = 10.0       # for the head node's port to answer a TCP connect
_data_dirs: dict[str, Path] = {}   # payload digest -> where this worker process found its shipped data


def import_ray():
    """The `ray` module, or a GapbenchError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise GapbenchError(f"The 'backend' parameter is 'ray', but Ray is not installed in this Python "
                            f"environment. Install the extra with: {INSTALL_HINT} (on the driver and on every "
                            f"node), or use --backend local.") from None
    return ray


def connect(address: str | None):
    """Connect to the Ray cluster at `address` ('host:port'), or start a local Ray instance when None. Once
    this process is connected, later calls reuse that connection (one cluster per process)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address is not None:
        _check_reachable(address)
    import logging
    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address is None:
            raise GapbenchError(f"Ray could not start a local instance ({type(exc).__name__}: {exc}). Start "
                                f"one with 'ray start --head --port 6379' and pass --ray-address "
                                f"127.0.0.1:6379, or use --backend local.") from exc
        raise GapbenchError(f"The --ray-address '{address}' does not reach a Ray cluster ({type(exc).__name__}: "
                            f"{exc}). Start a head node with 'ray start --head --port 6379' and pass "
                            f"--ray-address HEAD_IP:6379, or omit --ray-address to start a local Ray "
                            f"instance.") from exc
    return ray


def _check_reachable(address: str) -> None:
    """A GapbenchError now when nothing listens at a 'host:port' address (ray.init would retry for minutes)."""
    import socket
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return                                  # 'auto', 'ray://…' and the like: left to ray.init
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise GapbenchError(f"The --ray-address '{address}' does not reach a Ray cluster: nothing answers at "
                            f"{host}:{port} ({exc.strerror or exc}). Start a head node there with 'ray start "
                            f"--head --port {port}', check the host and port, or omit --ray-address to start a "
                            f"local Ray instance.") from None


def task_slots(runtime: Runtime) -> int:
    """How many tasks the cluster runs at once now: its CPUs / runtime.threads (and its GPUs, for CUDA);
    connects to runtime.ray_address first."""
    resources = connect(runtime.ray_address).cluster_resources()
    slots = int(resources.get("CPU", 1) // max(runtime.threads, 1))
    if str(runtime.device).startswith("cuda"):
        gpus = int(resources.get("GPU", 0))
        if gpus == 0:
            raise GapbenchError(f"--device {runtime.device} was requested, but the Ray cluster at "
                                f"{runtime.ray_address or 'this machine'} has no GPU (its resources: "
                                f"{dict(sorted(resources.items()))}). Join nodes with GPUs, or use --device cpu.")
        slots = min(slots, gpus)
    return max(slots, 1)


def run_ray(todo: list[Job], store: Store, runtime: Runtime, out_dir: Path, workers: int,
            on_event: Callable[[dict], None]) -> Iterator[tuple[Job, str]]:
    """Run `todo` as Ray tasks; yield (job, status) as the driver records each result (module doc).

    At most max(workers, IN_FLIGHT_PER_SLOT x task_slots) tasks are submitted at once; the first task_slots
    of those in submission order are shown as running ('start' events), as a pool shows its workers' jobs."""
    ray = connect(runtime.ray_address)
    gpus = 1 if str(runtime.device).startswith("cuda") else 0
    task = ray.remote(num_cpus=runtime.threads, num_gpus=gpus, max_retries=TASK_RETRIES)(_run_on_node)
    data_ref = ray.put(data_payload(todo, runtime.data_dir))
    slots = task_slots(runtime)
    limit = max(workers, IN_FLIGHT_PER_SLOT * slots)
    queue, pending, waiting, running = list(reversed(todo)), {}, [], set()
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                job = queue.pop()
                pending[task.remote(job, runtime, data_ref)] = job
                waiting.append(job)
            while waiting and len(running) < slots:
                job = waiting.pop(0)
                running.add(job.signature)
                on_event({"kind": "start", "signature": job.signature})
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            running.discard(job.signature)
            if job in waiting:                 # Ray ran it before those submitted earlier
                waiting.remove(job)
            yield job, _record_result(ray, ready[0], store, job, Path(out_dir))
    finally:
        for ref in pending:            # the driver stops (an error, Ctrl-C): nothing more runs for it
            ray.cancel(ref, force=True)


def _record_result(ray, ref, store: Store, job: Job, out_dir: Path) -> str:
    """Fetch a task's result and record it: files first (atomically), then the row that names them."""
    try:
        outcome, files = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, GapbenchError):     # the user's mistake: stop the sweep with its message
            raise exc.cause from None
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc   # the task's own set-up failed
        outcome = Outcome("failed", {}, reason=f"{type(cause).__name__}: {cause}"[:2000],
                          failure=failure_kind(cause), trace=str(exc))
        return record(store, job, outcome, out_dir)
    except ray.exceptions.RayError as exc:          # worker or node lost TASK_RETRIES + 1 times
        outcome = Outcome("failed", {}, reason=f"{type(exc).__name__}: {exc}"[:2000], failure="transient",
                          trace="")
        return record(store, job, outcome, out_dir)
    for rel, content in files.items():
        path = out_dir / rel
        if not path.exists():
            atomic_write_bytes(path, content)
    if outcome.checkpoint is not None and not Path(outcome.checkpoint).is_absolute():
        outcome.checkpoint = str(out_dir / outcome.checkpoint)
    return record(store, job, outcome, out_dir)


def _run_on_node(job: Job, runtime: Runtime, data: dict[str, dict[str, bytes]]) -> tuple[Outcome, dict[str, bytes]]:
    """The Ray task: run `job` in a private directory; its Outcome (checkpoint path relative to that
    directory) and the bytes of every file it wrote there."""
    import dataclasses
    init_worker(runtime.threads)
    node_runtime = dataclasses.replace(runtime, data_dir=_node_data_dir(runtime.data_dir, data))
    with tempfile.TemporaryDirectory(prefix="gapbench-task-") as tmp:
        work = Path(tmp)
        outcome = run_job(job, node_runtime, work, lambda event: None)
        files = {str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
        if outcome.checkpoint is not None:
            path = Path(outcome.checkpoint)
            if path.is_relative_to(work):
                outcome.checkpoint = str(path.relative_to(work))
    return outcome, files


def dataset_names(jobs: list[Job]) -> set[str]:
    """Names of the datasets the jobs' configs name: every ``{"data": {"name": ...}}`` at any depth."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            data = value.get("data")
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                names.add(data["name"])
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    for job in jobs:
        walk(job.config)
    return names


def data_payload(jobs: list[Job], data_dir: str | None) -> dict[str, dict[str, bytes]]:
    """{dataset: {path relative to the data directory: bytes}} of every verified file of each file-backed
    dataset the jobs name, as this machine's data directory holds it; generated datasets ship nothing."""
    from .data.fetch import dataset_status
    from .data.files import resolve_data_dir
    root, payload = resolve_data_dir(data_dir), {}
    for name in sorted(dataset_names(jobs)):
        try:
            status = dataset_status(name, data_dir)
        except GapbenchError:
            continue                          # not a registered dataset name: the job reports it
        if status.state != "verified":
            continue                          # generated, or missing here: the nodes must have it
        for file in status.files:
            rel = file.path.relative_to(root) if file.path.is_relative_to(root) else Path(name) / file.path.name
            payload.setdefault(name, {})[str(rel)] = file.path.read_bytes()
    return payload


def _node_data_dir(data_dir: str | None, payload: dict[str, dict[str, bytes]]) -> str | None:
    """The data directory a task reads: the node's own when it holds every shipped dataset verified, else the
    node's temporary directory for this payload (one per payload digest, shared by the node's workers; the
    loader verifies every file's checksum, so a damaged copy fails loudly rather than being used)."""
    from .data.fetch import dataset_status
    try:
        if all(dataset_status(name, data_dir).state == "verified" for name in payload):
            return data_dir
    except (GapbenchError, OSError):
        pass
    files = {rel: content for per_dataset in payload.values() for rel, content in per_dataset.items()}
    digest = hashlib.sha256(b"".join(rel.encode() + hashlib.sha256(content).digest()
                                     for rel, content in sorted(files.items()))).hexdigest()
    if digest not in _data_dirs:
        root = Path(tempfile.gettempdir()) / f"gapbench-shipped-data-{digest[:16]}"
        for rel, content in files.items():
            path = root / rel
            if not path.is_file() or path.stat().st_size != len(content):
                atomic_write_bytes(path, content)   # concurrent writers put identical bytes, atomically
        _data_dirs[digest] = root
    return str(_data_dirs[digest])
