"""The run / report / export path after faults (issue 13): stored presets, no emptier outputs, failures
counted from the store and classified, one run per output directory, orphan temp files, file modes, and
results rows that lead to their checkpoints."""

import csv
import dataclasses
import errno
import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from gapbench import atomic, checkpoint
from gapbench.cli import main
from gapbench.config import signature
from gapbench.experiments import EXPERIMENTS
from gapbench.experiments.analysis_jobs import nk_linear_job
from gapbench.outdir import locked, remove_orphan_temps
from gapbench.store import Store
from gapbench.sweep import failure_kind

EXP = "nk2019-linear"        # closed form, three grid points at smoke (m = 16, 32, 64): fast


def invoke(*args):
    """(exit code, output with the error paragraph's line breaks undone)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split(" ")).replace("\n", " ")


def smoke(out, *extra):
    code, text = invoke("run", EXP, "--preset", "smoke", "--out", out, "--no-progress", *extra)
    assert code == 0, text
    return text


def fail_at(monkeypatch, n_train, exc):
    """Make EXP's job (nk_linear_job) raise `exc` on the grid point with n_train; monkeypatch.undo() restores it."""
    def job(config, runtime, out_dir):
        if config["hp"]["n_train"] == n_train:
            raise exc
        return nk_linear_job(config, runtime, out_dir)
    entry = EXPERIMENTS.get(EXP)
    failing = dataclasses.replace(entry, obj=dataclasses.replace(entry.obj, job=job))
    monkeypatch.setitem(EXPERIMENTS._entries, EXP, failing)


# -- 1. report / export use what is stored -----------------------------------------------------------------
def test_report_and_export_default_to_the_stored_preset(tmp_path):
    smoke(tmp_path)
    code, out = invoke("report", EXP, "--out", tmp_path, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["preset"] == "smoke" and summary["runs_failed"] == 0
    # smoke's three points are also points of the demo and quick grids: smoke is the complete one
    assert summary["notes"] == ["preset 'smoke': the most recently run and most complete of the presets with "
                                "runs stored for nk2019-linear ('smoke' (3 of 3 runs), 'demo' (3 of 5 runs), "
                                "'quick' (3 of 18 runs)); pass --preset to choose another"]
    code, out = invoke("export", EXP, "--out", tmp_path, "--csv", tmp_path / "x.csv")
    assert code == 0 and "wrote 3 rows (smoke preset)" in out
    assert len(list(csv.DictReader(open(tmp_path / "x.csv")))) == 3


def test_a_preset_with_nothing_stored_is_refused(tmp_path):
    smoke(tmp_path)
    figure = (tmp_path / EXP / "figure.png").read_bytes()
    for command in (("report",), ("export", "--csv", tmp_path / "y.csv")):
        code, out = invoke(*command, EXP, "--preset", "paper", "--out", tmp_path)
        assert code == 2 and "Traceback" not in out
        assert ("holds no runs of 'nk2019-linear' with preset 'paper'. Stored presets: 'smoke' (3 of 3 runs), "
                "'demo' (3 of 5 runs), 'quick' (3 of 18 runs).") in out
    assert (tmp_path / EXP / "figure.png").read_bytes() == figure and not (tmp_path / "y.csv").exists()
    code, out = invoke("report", EXP, "--out", tmp_path / "empty")
    assert code == 2 and "holds no runs of 'nk2019-linear'; nothing to report" in out


def test_outputs_are_never_replaced_by_emptier_ones(tmp_path):
    smoke(tmp_path)
    exp_dir = tmp_path / EXP
    before = {name: (exp_dir / name).read_bytes() for name in ("figure.png", "results.csv", "summary.json")}
    code, out = invoke("run", EXP, "--preset", "smoke", "--set", "m=16", "--out", tmp_path, "--no-progress")
    assert code == 0 and "outputs not written:" in out and "holds 3 rows and this table 1" in out
    assert {name: (exp_dir / name).read_bytes() for name in before} == before
    (tmp_path / "big.csv").write_text("a\n1\n2\n3\n4\n5\n")
    code, out = invoke("export", EXP, "--out", tmp_path, "--csv", tmp_path / "big.csv")
    assert code == 2 and "holds 5 rows and this table 3" in out
    assert (tmp_path / "big.csv").read_text() == "a\n1\n2\n3\n4\n5\n"


# -- 3, 4. failures: counted from the store, classified, transient ones rerun ------------------------------
def test_disk_full_is_transient_and_rerun_without_retry_failed(tmp_path, monkeypatch):
    fail_at(monkeypatch, 32, OSError(errno.ENOSPC, "No space left on device"))
    out = smoke(tmp_path)
    assert "1 failed, 0 missing, claims on 2 of 3 models" in out and "computed on 2 of 3 models" in out
    (failed,) = [r for r in Store(tmp_path / "gapbench.sqlite").runs(EXP) if r.status == "failed"]
    assert failed.failure == "transient" and "No space left on device" in failed.reason
    monkeypatch.undo()
    summary = json.loads(smoke(tmp_path, "--json"))
    assert (summary["runs_trained"], summary["runs_reused"], summary["runs_failed"]) == (1, 2, 0)
    assert all("computed on" not in c["detail"] for c in summary["claims"])


def test_a_deterministic_failure_stays_and_every_rerun_counts_it(tmp_path, monkeypatch):
    fail_at(monkeypatch, 64, ValueError("invalid construction"))
    smoke(tmp_path)
    monkeypatch.undo()
    summary = json.loads(smoke(tmp_path, "--json"))
    assert (summary["runs_trained"], summary["runs_reused"], summary["runs_failed"]) == (0, 3, 1)
    assert summary["models_ok"] == 2 and summary["models_total"] == 3
    assert all(c["detail"].endswith("computed on 2 of 3 models") for c in summary["claims"])
    summary = json.loads(smoke(tmp_path, "--json", "--retry-failed"))
    assert (summary["runs_trained"], summary["runs_failed"]) == (1, 0)


@pytest.mark.parametrize("exc, kind", [
    (OSError(errno.ENOSPC, "No space left on device"), "transient"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "transient"),
    (MemoryError(), "transient"),
    (torch.OutOfMemoryError("CUDA out of memory"), "transient"),
    (KeyboardInterrupt(), "transient"),
    (BrokenProcessPool("a worker died"), "transient"),
    (OSError(errno.EACCES, "Permission denied"), "deterministic"),
    (ValueError("loss is nan"), "deterministic"),
])
def test_failure_kind(exc, kind):
    assert failure_kind(exc) == kind
    try:                                   # wrapped by a job: the cause decides
        try:
            raise exc
        except BaseException as inner:
            raise RuntimeError("saving the checkpoint failed") from inner
    except RuntimeError as outer:
        assert failure_kind(outer) == kind


def test_a_version_1_store_is_migrated(tmp_path):
    path = tmp_path / "s.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript("""
        CREATE TABLE runs (experiment TEXT NOT NULL, signature TEXT NOT NULL, config TEXT NOT NULL,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', started REAL, finished REAL, seconds REAL,
            provenance TEXT, checkpoint TEXT, PRIMARY KEY (experiment, signature));
        CREATE TABLE run_values (experiment TEXT NOT NULL, signature TEXT NOT NULL, quantity TEXT NOT NULL,
            value REAL, PRIMARY KEY (experiment, signature, quantity));
        INSERT INTO runs VALUES ('e', 'a', '{}', 'failed', 'nan loss', 0, 1, 1, NULL, NULL);
        INSERT INTO runs VALUES ('e', 'b', '{}', 'done', '', 0, 1, 1, NULL, NULL);
        PRAGMA user_version = 1;""")
    raw.close()
    runs = {r.signature: r.failure for r in Store(path).runs("e")}
    assert runs == {"a": "deterministic", "b": None}
    assert Store(path).transient("e") == set()


# -- 5. one run per output directory -----------------------------------------------------------------------
def test_a_second_run_on_the_same_out_waits_and_trains_nothing_twice(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    command = [sys.executable, "-m", "gapbench", "run", EXP, "--preset", "smoke", "--out", str(tmp_path),
               "--json", "--no-progress"]
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    with locked(tmp_path):                 # hold the lock until both runs are waiting for it
        procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=open(log, "w"), env=env, text=True)
                 for log in logs]
        deadline = time.time() + 120
        while not all("waiting for another" in log.read_text() for log in logs) and time.time() < deadline:
            time.sleep(0.2)
    summaries = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    for log in logs:
        assert f"waiting for another gapbench run on {tmp_path} (pid {os.getpid()})…" in log.read_text()
    assert sorted(s["runs_trained"] for s in summaries) == [0, 3]
    assert sorted(s["runs_reused"] for s in summaries) == [0, 3]


# -- 6, 7. temp files and modes ----------------------------------------------------------------------------
def test_orphan_temp_files_are_removed_and_only_ours(tmp_path):
    exp_dir = tmp_path / EXP / "checkpoints"
    exp_dir.mkdir(parents=True)
    ours = [tmp_path / EXP / ".results.csv.k2j_x9ab.tmp", exp_dir / ".0123abcd.pt.abcdefgh.tmp"]
    theirs = [tmp_path / "notes.tmp", tmp_path / ".results.csv.tmp", tmp_path / "x.abcdefgh.tmp"]
    for path in ours + theirs:
        path.write_text("half")
        os.utime(path, (time.time() - 60, time.time() - 60))
    fresh = tmp_path / ".figure.png.zzzzzzzz.tmp"          # a write of this run, in flight
    fresh.write_text("half")
    assert sorted(remove_orphan_temps(tmp_path, older_than=time.time() - 30)) == sorted(ours)
    assert all(p.exists() for p in theirs + [fresh]) and not any(p.exists() for p in ours)
    ours[0].write_text("half")
    os.utime(ours[0], (time.time() - 60, time.time() - 60))
    smoke(tmp_path)
    assert not ours[0].exists() and all(p.exists() for p in theirs)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic.atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == mode


def test_outputs_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        smoke(tmp_path)
    finally:
        os.umask(old)
    for path in (tmp_path / EXP).iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644, path


def test_gitignore_lists_the_default_output_directories():
    ignored = (Path(__file__).parents[1] / ".gitignore").read_text().split()
    assert {"demo/", "results/"} <= set(ignored)


# -- 2. from a results row to its model --------------------------------------------------------------------
def test_every_row_leads_to_its_checkpoint(tmp_path):
    code, out = invoke("run", "nk2019-hypersphere", "--preset", "smoke", "--out", tmp_path, "--no-progress")
    assert code == 0, out
    rows = list(csv.DictReader(open(tmp_path / "nk2019-hypersphere" / "results.csv")))
    assert len(rows) == 2
    for row in rows:
        path = Path(row["checkpoint"])
        assert path.exists() and row["model_signature"] in path.name
        run = checkpoint.load(path, expected_signature=row["model_signature"])
        assert signature(run.config) == row["model_signature"]
        assert row["signature"] != row["model_signature"]     # the job's: the model plus what is measured
