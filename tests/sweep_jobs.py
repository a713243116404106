"""Job functions and writers for tests/test_sweep.py and tests/test_store.py.

They live in their own module (not a test file) so that worker processes started by forkserver or spawn
unpickle them by reference as sweep_jobs.<function> (the tests directory is on sys.path under pytest, and the
kill -9 test puts it on PYTHONPATH).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from gapbench.config import signature
from gapbench.errors import GapbenchError
from gapbench.store import Store
from gapbench.sweep import Job, JobResult


def expected_values(x: float) -> dict[str, float]:
    """The values `square` returns for config {'x': x}: what the tests check after a sweep."""
    return {"x": float(x), "square": float(x) ** 2, "inv": math.inf if x == 0 else 1.0 / x}


def square(config: dict, runtime, out_dir: Path) -> JobResult:
    """Append this job's signature to config['side_log'] (so a rerun is detectable), write this process's
    pid to config['pid_dir']/<signature>.pid (so a test can kill the worker running it), sleep
    config['sleep'] seconds, and return expected_values(config['x'])."""
    if config.get("side_log"):
        line = (signature(config) + "\n").encode()
        fd = os.open(config["side_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)         # one O_APPEND write: lines from two workers never interleave
        finally:
            os.close(fd)
    if config.get("pid_dir"):
        Path(config["pid_dir"], signature(config) + ".pid").write_text(str(os.getpid()))
    time.sleep(config.get("sleep", 0.0))
    return JobResult(expected_values(config["x"]), reason=f"x={config['x']}")


def crash(config: dict, runtime, out_dir: Path) -> JobResult:
    """A bug inside a job: a plain exception."""
    raise ValueError(f"boom {config['x']}")


def user_error(config: dict, runtime, out_dir: Path) -> JobResult:
    """A user mistake inside a job: a GapbenchError, which must abort the sweep."""
    raise GapbenchError(f"The 'x' parameter of user_error() must be missing. Got {config['x']!r} instead.")


def bad_value(config: dict, runtime, out_dir: Path) -> JobResult:
    """Returns a value the store cannot hold."""
    return JobResult({"ok": 1.0, "text": "not a number"})


def not_a_result(config: dict, runtime, out_dir: Path) -> dict:
    return {"x": 1.0}


def jobs(fn: str, xs, experiment: str = "exp", **extra) -> list[Job]:
    """One Job of sweep_jobs.<fn> per x with config {'x': x, **extra}, signed by config.signature of the config."""
    out = []
    for x in xs:
        config = {"x": x, **extra}
        out.append(Job(experiment, signature(config), config, globals()[fn]))
    return out


def write_many(path: str, worker: int, count: int) -> None:
    """Concurrent-writer body: `count` distinct runs plus one shared key re-recorded by every worker."""
    store = Store(path)
    for i in range(count):
        store.record("concurrent", f"w{worker}-{i}", {"worker": worker, "i": i},
                     {"worker": worker, "i": i, "sum": worker + i}, status="done", provenance={"test": True})
        if i % 10 == 0:
            store.record("concurrent", "shared", {"worker": worker}, {"worker": worker, "i": i},
                         status="done", provenance={"test": True})
    store.close()


def epochs(config: dict, runtime, out_dir: Path) -> JobResult:
    """Report config['epochs'] epochs through gapbench.progress, config['sleep'] seconds apart, and (when
    config['die']) SIGKILL this process after the first, as a worker killed by the OOM killer."""
    from gapbench.progress import report
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(config.get("sleep", 0.0))
        report({"kind": "epoch", "epoch": epoch, "max_epochs": config["epochs"], "train_error": 1 / epoch})
        if config.get("die"):
            os.kill(os.getpid(), 9)
    return JobResult(expected_values(config["x"]))
