"""The Ray backend, for real: a two-node local Ray cluster (tests/ray_cluster.py) runs an experiment through
`gapbench run --backend ray --ray-address`, survives a SIGKILLed worker, and resumes after a SIGKILLed driver;
the driver alone writes the store. The nodes have no data directory of their own (their GAPBENCH_DATA is an
empty folder), so MNIST reaches them through the object store.

Marked `ray` (runs by default; CI installs the extra); skipped when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from sweep_jobs import expected_values, jobs

import gapbench
from gapbench.cli import main
from gapbench.config import Runtime
from gapbench.errors import GapbenchError
from gapbench.store import Store

TESTS = Path(__file__).parent
DRIVER = TESTS / "ray_driver.py"
EXPERIMENT = "kkb2017-validation"          # smoke preset: 2 MNIST models, ~15 s locally
TIMING = {"seconds", "started", "finished", "train_seconds", "job_seconds"}   # not deterministic


def _env(**extra) -> dict[str, str]:
    """This environment, with this checkout's gapbench and the tests directory importable."""
    path = [str(Path(gapbench.__file__).parents[1]), str(TESTS), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p), RAY_USAGE_STATS_ENABLED="0",
                RAY_AUTH_MODE="disabled",   # a token in ~/.ray from another Ray must not switch this one on
                **extra)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'gapbench[ray]'")
    from ray_cluster import local_cluster
    no_data = tmp_path_factory.mktemp("node-data")            # the nodes' own data directory is empty
    with local_cluster(_env(GAPBENCH_DATA=str(no_data))) as running:
        yield running
    assert running.leftovers() == [], "processes of the test cluster survived its stop"


def _gapbench(*args, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gapbench", *args], env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _rows(out: Path) -> dict[str, dict]:
    """{signature: every deterministic column} of the experiment's stored runs; checkpoint relative to OUT."""
    rows = {}
    for run in Store(out / "gapbench.sqlite").runs(EXPERIMENT):
        values = {k: v for k, v in run.values.items() if k not in TIMING}
        rows[run.signature] = {"config": run.config, "status": run.status, "reason": run.reason,
                               "failure": run.failure, "values": values,
                               "checkpoint": str(Path(run.checkpoint).relative_to(out))}
        assert (out / rows[run.signature]["checkpoint"]).is_file()
    return rows


@pytest.mark.ray
def test_experiment_on_two_nodes_equals_local_run(cluster, tmp_path, data_dir):
    local, remote = tmp_path / "local", tmp_path / "ray"
    done = _gapbench("run", EXPERIMENT, "--preset", "smoke", "--out", str(local), "--no-progress")
    assert done.returncode == 0, done.stderr
    done = _gapbench("run", EXPERIMENT, "--preset", "smoke", "--out", str(remote), "--backend", "ray",
                     "--ray-address", cluster.address)
    assert done.returncode == 0, done.stderr
    assert "2 trained, 0 reused, 0 failed" in done.stdout
    assert _rows(remote) == _rows(local) and len(_rows(local)) == 2


def _start_driver(db: Path, address: str, spec: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(DRIVER), str(db), address, json.dumps(spec)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"driver ended or timed out before the condition held:\n{out}\n{err[-3000:]}")
        time.sleep(0.2)


def _check_complete(db: Path, xs) -> list[str]:
    """Every job stored once, done, with the right values; the signatures stored."""
    runs = Store(db).runs("exp")
    assert sorted(run.config["x"] for run in runs) == sorted(xs)
    for run in runs:
        assert run.status == "done" and run.values == expected_values(run.config["x"])
    return [run.signature for run in runs]


@pytest.mark.ray
def test_killed_worker_is_retried_and_its_job_stored_once(cluster, tmp_path):
    db, side, pids = tmp_path / "s.sqlite", tmp_path / "side.log", tmp_path / "pids"
    pids.mkdir()
    xs = list(range(1, 7))
    proc = _start_driver(db, cluster.address, {"xs": xs, "extra": {"sleep": 2.0, "side_log": str(side),
                                                                   "pid_dir": str(pids)}})
    _wait_for(lambda: any(pids.iterdir()), proc)
    victim = next(pids.iterdir())
    os.kill(int(victim.read_text()), signal.SIGKILL)         # a worker process dies mid-job
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1]) == {"trained": 6, "reused": 0, "failed": 0}
    signatures = _check_complete(db, xs)
    runs_per_job = Counter(side.read_text().split())
    assert runs_per_job[victim.stem] >= 2                      # Ray ran the killed task again
    assert all(runs_per_job[sig] == 1 for sig in signatures if sig != victim.stem)
    print(f"ray kill worker: {len(signatures)} of {len(xs)} jobs stored, {len(xs) - len(signatures)} lost, "
          f"{len(signatures) - len(set(signatures))} duplicated; the killed job ran {runs_per_job[victim.stem]}x")


@pytest.mark.ray
def test_killed_driver_resumes_on_rerun(cluster, tmp_path):
    db, side = tmp_path / "s.sqlite", tmp_path / "side.log"
    xs = list(range(1, 9))
    spec = {"xs": xs, "extra": {"sleep": 1.5, "side_log": str(side)}}
    proc = _start_driver(db, cluster.address, spec)
    _wait_for(lambda: db.exists() and len(Store(db).runs("exp")) >= 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)                        # the driver dies mid-sweep
    proc.communicate(timeout=30)
    before = {run.signature for run in Store(db).runs("exp")}
    assert 2 <= len(before) < len(xs)
    rerun = _start_driver(db, cluster.address, spec)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err[-3000:]
    assert json.loads(out.splitlines()[-1]) == {"trained": len(xs) - len(before), "reused": len(before),
                                                "failed": 0}
    signatures = _check_complete(db, xs)
    runs_per_job = Counter(side.read_text().split())
    assert all(runs_per_job[sig] == 1 for sig in before)       # nothing stored before the kill ran again
    print(f"ray kill driver: {len(before)} stored before the kill, {len(signatures)} of {len(xs)} after the rerun "
          f"({len(xs) - len(signatures)} lost, {len(signatures) - len(set(signatures))} duplicated), "
          f"{sum(runs_per_job.values()) - len(xs)} in-flight runs repeated")


@pytest.mark.ray
def test_job_errors_on_the_cluster_are_recorded_or_raised_as_locally(cluster, tmp_path):
    db = tmp_path / "s.sqlite"
    crashed = _start_driver(db, cluster.address, {"fn": "crash", "xs": [1], "extra": {}})
    out, err = crashed.communicate(timeout=180)
    assert json.loads(out.splitlines()[-1]) == {"trained": 0, "reused": 0, "failed": 1}
    [run] = Store(db).runs("exp")
    assert run.status == "failed" and run.reason == "ValueError: boom 1" and run.failure == "deterministic"
    assert "boom 1" in (tmp_path / "logs" / f"{run.signature}.log").read_text()   # written by the driver
    mistaken = _start_driver(db, cluster.address, {"fn": "user_error", "xs": [2], "extra": {}})
    out, err = mistaken.communicate(timeout=180)
    assert mistaken.returncode != 0
    assert err.strip().splitlines()[-1].startswith("gapbench.errors.GapbenchError: The 'x' parameter")


@pytest.mark.parametrize("command", [["run", "nk2019-linear", "--preset", "smoke"], ["demo"]])
def test_missing_ray_is_one_paragraph_naming_the_extra(monkeypatch, tmp_path, command):
    monkeypatch.setitem(sys.modules, "ray", None)              # `import ray` raises ImportError
    result = CliRunner().invoke(main, [*command, "--backend", "ray", "--out", str(tmp_path)])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Ray is not installed" in text and "pip install 'gapbench[ray]'" in text
    assert "Traceback" not in result.output and not (tmp_path / "gapbench.sqlite").exists()


def test_unreachable_ray_address_fails_fast(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'gapbench[ray]'")
    from ray_cluster import free_port_block
    port = free_port_block(1)                                  # nothing listens there
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["run", "nk2019-linear", "--preset", "smoke", "--backend", "ray",
                                       "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path)])
    assert result.exit_code == 2 and time.perf_counter() - start < 60
    assert f"nothing answers at 127.0.0.1:{port}" in " ".join(result.output.split())


def test_ray_address_needs_the_ray_backend(tmp_path):
    result = CliRunner().invoke(main, ["run", "nk2019-linear", "--ray-address", "127.0.0.1:6379",
                                       "--out", str(tmp_path)])
    assert result.exit_code == 2 and "used only by --backend ray" in " ".join(result.output.split())


def test_runtime_carries_the_backend():
    assert Runtime().backend == "local" and Runtime(backend="ray", ray_address="h:1").ray_address == "h:1"


def test_data_payload_ships_verified_files_and_nodes_use_them(data_dir, tmp_path, monkeypatch):
    import tempfile

    from gapbench import ray_backend
    from gapbench.data.fetch import dataset_status
    from gapbench.ray_backend import _node_data_dir, data_payload, dataset_names
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "node-tmp"))   # this "node"'s temporary directory
    monkeypatch.setattr(ray_backend, "_data_dirs", {})
    (tmp_path / "node-tmp").mkdir()
    sweep = (jobs("square", [1], run={"data": {"name": "mnist"}})
             + jobs("square", [2], run={"data": {"name": "nk_linear"}}))
    assert dataset_names(sweep) == {"mnist", "nk_linear"}
    payload = data_payload(sweep, str(data_dir))
    assert list(payload) == ["mnist"]                          # a generated dataset ships nothing
    canonical = {file.path.name for file in dataset_status("mnist", data_dir).files}
    assert {Path(rel).name for rel in payload["mnist"]} == canonical
    assert _node_data_dir(str(data_dir), payload) == str(data_dir)     # a node that has the data uses its own
    shipped = _node_data_dir(str(tmp_path / "empty"), payload)         # one that has not gets the shipped copy
    assert Path(shipped).parent == tmp_path / "node-tmp" and dataset_status("mnist", shipped).state == "verified"
    assert _node_data_dir(str(tmp_path / "empty"), payload) == shipped  # one copy per payload


@pytest.mark.ray
def test_ray_bench_and_task_slots_on_the_cluster(cluster, monkeypatch):
    import ray

    from gapbench.bench_ray import format_ray_bench, run_ray_bench
    from gapbench.ray_backend import task_slots
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    try:
        result = run_ray_bench(jobs=2, job_seconds=0.5, workers=2, repeats=1, address=cluster.address)
        assert task_slots(Runtime(backend="ray", ray_address=cluster.address)) == 2     # 1 CPU on each node
        with pytest.raises(GapbenchError, match="has no GPU"):                         # never waits forever
            task_slots(Runtime(device="cuda", backend="ray", ray_address=cluster.address))
    finally:
        ray.shutdown()
    assert len(result["local_seconds"]) == len(result["ray_seconds"]) == 1
    assert min(result["local_seconds"] + result["ray_seconds"]) >= 0.5       # at least one job's busy time
    assert result["ratio_ray_over_local"] == pytest.approx(result["ray_seconds"][0] / result["local_seconds"][0])
    assert "ratio ray/local" in format_ray_bench(result)


def test_busy_job_keeps_busy_for_its_wall_time(tmp_path):
    from gapbench.bench_ray import busy
    start = time.perf_counter()
    result = busy({"index": 0, "seconds": 0.3}, Runtime(), tmp_path)
    assert 0.3 <= time.perf_counter() - start < 5 and result.values["steps"] >= 1
