import collections
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sweep_jobs
from sweep_jobs import expected_values, jobs

from gapbench.errors import GapbenchError
from gapbench.store import Store
from gapbench.sweep import Job, JobResult, run_sweep

TESTS = Path(__file__).resolve().parent


def side_counts(path: Path) -> collections.Counter:
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def assert_values(store: Store, experiment: str, job_list: list[Job]) -> None:
    stored = {r.signature: r for r in store.runs(experiment)}
    for job in job_list:
        assert stored[job.signature].values == expected_values(job.config["x"])


def test_second_sweep_reuses_everything(tmp_path):
    side = tmp_path / "side.log"
    sweep = jobs("square", [1, 2, 3, 0], side_log=str(side))
    first = run_sweep(sweep, tmp_path / "s.sqlite", progress=False)
    assert sorted(first.trained) == sorted(j.signature for j in sweep) and not first.reused + first.failed
    second = run_sweep(sweep, tmp_path / "s.sqlite", progress=False)
    assert second.trained == [] and sorted(second.reused) == sorted(first.trained)
    assert side_counts(side) == {j.signature: 1 for j in sweep}
    store = Store(tmp_path / "s.sqlite")
    assert_values(store, "exp", sweep)
    assert store.get("exp", sweep[0].signature).reason == "x=1"


def test_duplicates_run_once_and_conflicts_are_refused(tmp_path):
    side = tmp_path / "side.log"
    sweep = jobs("square", [1, 1, 2], side_log=str(side))
    result = run_sweep(sweep + sweep, tmp_path / "s.sqlite", progress=False)
    assert len(result.trained) == 2 and sum(side_counts(side).values()) == 2
    clash = Job("exp", sweep[0].signature, {"x": 99}, sweep_jobs.square)
    with pytest.raises(GapbenchError, match="share signature .* but differ in config or function"):
        run_sweep([sweep[0], clash], tmp_path / "t.sqlite", progress=False)


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = jobs("square", [1]) + jobs("crash", [2]) + jobs("bad_value", [3]) + jobs("not_a_result", [4]) \
        + jobs("square", [5])
    result = run_sweep(sweep, tmp_path / "s.sqlite", out_dir=tmp_path / "out", progress=False)
    crash, bad, odd = sweep[1].signature, sweep[2].signature, sweep[3].signature
    assert result.trained == [sweep[0].signature, sweep[4].signature]
    assert result.failed == [crash, bad, odd]
    store = Store(tmp_path / "s.sqlite")
    failed = store.get("exp", crash)
    assert (failed.status, failed.reason, failed.values) == ("failed", "ValueError: boom 2", {})
    log = (tmp_path / "out" / "logs" / f"{crash}.log").read_text()
    assert "Traceback" in log and "ValueError: boom 2" in log and "fn: sweep_jobs.crash" in log
    assert store.get("exp", bad).reason.startswith(
        "JobResultError: job function sweep_jobs.bad_value: The value of quantity 'text'")
    assert store.get("exp", odd).reason == (
        "JobResultError: job function sweep_jobs.not_a_result returned dict, not JobResult")
    # stored failures are reused, unless retry_failed
    again = run_sweep(sweep, tmp_path / "s.sqlite", out_dir=tmp_path / "out", progress=False)
    assert again.trained == again.failed == [] and len(again.reused) == 5
    retry = run_sweep(sweep, tmp_path / "s.sqlite", out_dir=tmp_path / "out", progress=False,
                      retry_failed=True)
    assert retry.failed == [crash, bad, odd] and len(retry.reused) == 2


def test_job_reporting_failure_itself(tmp_path):
    """A job may return status='failed' (e.g. training diverged): recorded as such, with its values."""
    assert JobResult({"epochs": 3.0}, status="failed", reason="loss is nan").status == "failed"
    with pytest.raises(GapbenchError, match=r"The 'status' parameter of JobResult must be one of"):
        JobResult({}, status="diverged")


def test_gapbench_error_aborts_the_sweep(tmp_path):
    sweep = jobs("square", [1]) + jobs("user_error", [2]) + jobs("square", [3])
    with pytest.raises(GapbenchError, match="The 'x' parameter of user_error"):
        run_sweep(sweep, tmp_path / "s.sqlite", progress=False)
    store = Store(tmp_path / "s.sqlite")
    assert store.done("exp") == {sweep[0].signature} and not store.has("exp", sweep[1].signature)


def test_pool_runs_and_aborts_on_user_error(tmp_path):
    side = tmp_path / "side.log"
    sweep = jobs("square", [1, 2, 3, 4], side_log=str(side))
    result = run_sweep(sweep, tmp_path / "s.sqlite", workers=2, progress=False)
    assert sorted(result.trained) == sorted(j.signature for j in sweep)
    assert_values(Store(tmp_path / "s.sqlite"), "exp", sweep)
    with pytest.raises(GapbenchError, match="The 'x' parameter of user_error"):
        run_sweep(jobs("user_error", [7]) + jobs("square", [8]), tmp_path / "s.sqlite", workers=2,
                  progress=False)


def test_bad_arguments(tmp_path):
    with pytest.raises(GapbenchError, match=r"The 'fn' parameter of Job must be a module-level job function "
                       r"fn\(config, runtime, out_dir\). Got 'sweep_jobs:square' instead"):
        run_sweep([Job("e", "s", {}, "sweep_jobs:square")], tmp_path / "s.sqlite", progress=False)
    with pytest.raises(GapbenchError, match=r"The 'workers' parameter of run_sweep\(\) must be an int >= 1"):
        run_sweep([], tmp_path / "s.sqlite", workers=0)
    with pytest.raises(GapbenchError, match=r"The 'backend' parameter of run_sweep\(\) must be one of"):
        run_sweep([], tmp_path / "s.sqlite", backend="dask")


def test_a_job_pickles_its_function_by_reference():
    (job,) = jobs("square", [3])
    assert pickle.loads(pickle.dumps(job)).fn is sweep_jobs.square


def test_ray_backend_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)              # `import ray` raises ImportError
    with pytest.raises(GapbenchError, match=r"pip install 'gapbench\[ray\]'"):
        run_sweep(jobs("square", [1]), tmp_path / "s.sqlite", backend="ray", progress=False)
    assert Store(tmp_path / "s.sqlite").runs("exp") == []


KILL_DRIVER = """
import sys
from sweep_jobs import jobs
from gapbench.sweep import run_sweep
sweep = jobs("square", range(1, 13), sleep=0.2, side_log=sys.argv[2])
run_sweep(sweep, sys.argv[1], workers=2, progress=False)
"""


def test_kill_9_mid_sweep_then_resume(tmp_path):
    """SIGKILL the whole process group of a 2-worker sweep mid-way: the store holds k whole runs; the rerun
    trains exactly the 12 - k others, none of the k again, and every value is right."""
    db, side = tmp_path / "s.sqlite", tmp_path / "side.log"
    sweep = jobs("square", range(1, 13), sleep=0.2, side_log=str(side))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, str(db), str(side)], env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists() and len(_stored(db)) >= 3:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)          # the driver, its fork server and both workers
        proc.wait()
    before = _stored(db)
    k = len(before)
    print(f"killed with {k} of 12 runs stored")
    assert 3 <= k < 12, f"kill landed outside the sweep ({k} runs stored)"
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert raw.execute("SELECT COUNT(*) FROM run_values v LEFT JOIN runs r USING (experiment, signature) "
                       "WHERE r.signature IS NULL").fetchone() == (0,)          # no orphan values
    store = Store(db)
    assert_values(store, "exp", [j for j in sweep if j.signature in before])      # each run whole
    counts_before = side_counts(side)

    result = run_sweep(sweep, db, workers=2, progress=False)
    assert sorted(result.reused) == sorted(before) and result.failed == []
    assert len(result.trained) == 12 - k and not set(result.trained) & before
    counts_after = side_counts(side)
    assert all(counts_after[sig] == counts_before[sig] for sig in before)      # nothing stored was rerun
    assert all(counts_after[sig] >= 1 for sig in result.trained)
    assert raw.execute("SELECT COUNT(*), COUNT(DISTINCT signature) FROM runs").fetchone() == (12, 12)
    assert raw.execute("SELECT COUNT(*) FROM run_values").fetchone() == (12 * 3,)
    assert_values(store, "exp", sweep)


def _stored(db: Path) -> set[str]:
    raw = sqlite3.connect(db, timeout=30)
    try:
        return {row[0] for row in raw.execute("SELECT signature FROM runs")}
    except sqlite3.OperationalError:             # the schema is not created yet
        return set()
    finally:
        raw.close()
