"""`gapbench bench --ray`: the wall-time overhead of the Ray backend against the local process pool.

The same sweep (``jobs`` jobs that each keep one core busy for ``job_seconds`` of wall time, so the work itself
takes the same time on both paths) runs through ``run_sweep(backend='local')`` with a ``workers``-process pool
and through ``run_sweep(backend='ray')`` on the Ray cluster at ``address`` (default: a local instance), in
interleaved pairs after one warm-up sweep each (pool workers and Ray workers started, torch imported).
Connecting to (or starting) Ray is timed separately. Each backend gets a fresh store, so nothing is reused.
The issue's target: at most 10 % extra wall time for jobs of 5 s or more.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .config import Runtime, signature
from .sweep import Job, JobResult, run_sweep

MATMUL_SIZE = 64       # a small product per step: the loop checks the clock often


def busy(config: dict[str, Any], runtime: Runtime, out_dir: Path) -> JobResult:
    """Keep one core busy with float32 matrix products for config['seconds'] of wall time."""
    gen = torch.Generator().manual_seed(int(config["index"]))
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=gen)
    steps, end = 0, time.perf_counter() + float(config["seconds"])
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)
        steps += 1
    return JobResult({"steps": float(steps)})


def bench_jobs(count: int, seconds: float, tag: str) -> list[Job]:
    configs = [{"index": i, "seconds": float(seconds), "tag": tag} for i in range(count)]
    return [Job("bench-ray", signature(c), c, busy) for c in configs]


def _sweep_seconds(jobs: list[Job], runtime: Runtime) -> float:
    with tempfile.TemporaryDirectory(prefix="gapbench-bench-ray-") as tmp:
        start = time.perf_counter()
        run_sweep(jobs, Path(tmp) / "s.sqlite", workers=runtime.workers, runtime=runtime, progress=False)
        return time.perf_counter() - start


def run_ray_bench(jobs: int = 4, job_seconds: float = 5.0, workers: int = 2, repeats: int = 2,
                  address: str | None = None) -> dict[str, Any]:
    """Median wall time of the sweep on each backend, their ratio (ray / local) and the overhead per job."""
    from .ray_backend import connect
    start = time.perf_counter()
    connect(address)
    connect_s = time.perf_counter() - start
    runtimes = {b: Runtime(workers=workers, backend=b, ray_address=address) for b in ("local", "ray")}
    for backend, runtime in runtimes.items():                       # warm-up: workers started, torch imported
        _sweep_seconds(bench_jobs(workers, 0.1, f"warm-{backend}"), runtime)
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for repeat in range(repeats):
        for backend, runtime in runtimes.items():
            times[backend].append(_sweep_seconds(bench_jobs(jobs, job_seconds, f"{backend}-{repeat}"), runtime))
    local, ray = statistics.median(times["local"]), statistics.median(times["ray"])
    return {"jobs": jobs, "job_seconds": job_seconds, "workers": workers, "repeats": repeats,
            "ray_connect_seconds": connect_s, "local_seconds": times["local"], "ray_seconds": times["ray"],
            "ratio_ray_over_local": ray / local, "overhead_per_job_seconds": (ray - local) / jobs,
            "ideal_seconds": job_seconds * -(-jobs // workers)}


def format_ray_bench(result: dict[str, Any]) -> str:
    return (f"Ray backend vs local pool: {result['jobs']} jobs of {result['job_seconds']:.1f} s, "
            f"{result['workers']} workers, median of {result['repeats']}\n"
            f"  local pool {statistics.median(result['local_seconds']):.2f} s, "
            f"ray {statistics.median(result['ray_seconds']):.2f} s (ideal {result['ideal_seconds']:.1f} s)\n"
            f"  ratio ray/local {result['ratio_ray_over_local']:.3f}, overhead "
            f"{result['overhead_per_job_seconds']:+.3f} s per job; connecting to Ray took "
            f"{result['ray_connect_seconds']:.1f} s (not included)")
