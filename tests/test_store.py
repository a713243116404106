import math
import multiprocessing
import pickle
import sqlite3

import pytest
import sweep_jobs

from gapbench.errors import GapbenchError
from gapbench.store import SCHEMA_VERSION, Store, store_error

PROV = {"gapbench": "test"}


def test_round_trip_with_inf_and_nan(tmp_path):
    store = Store(tmp_path / "gapbench.sqlite")
    values = {"a": 1.5, "big": math.inf, "small": -math.inf, "undefined": math.nan, "count": 3}
    config = {"hp": {"m": 128}, "run": {"train": {"lr": 0.1}}}
    store.record("exp", "sig1", config, values, status="done", reason="converged", seconds=2.0,
                 checkpoint="ckpt/sig1.pt", provenance=PROV)
    (run,) = Store(tmp_path / "gapbench.sqlite").runs("exp")     # a fresh connection sees the committed row
    assert (run.experiment, run.signature, run.config, run.status, run.reason) == (
        "exp", "sig1", config, "done", "converged")
    assert run.values["a"] == 1.5 and run.values["count"] == 3.0
    assert run.values["big"] == math.inf and run.values["small"] == -math.inf
    assert math.isnan(run.values["undefined"])
    assert run.seconds == 2.0 and run.checkpoint == "ckpt/sig1.pt" and run.provenance == PROV
    assert run.finished - run.started == pytest.approx(2.0)
    raw = sqlite3.connect(tmp_path / "gapbench.sqlite")
    assert raw.execute("SELECT value FROM run_values WHERE quantity = 'undefined'").fetchone() == (None,)
    assert raw.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_default_provenance_is_recorded(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.record("exp", "sig", {}, {}, status="failed", reason="diverged")
    run = store.get("exp", "sig")
    assert {"gapbench", "git_sha", "torch", "python", "hostname", "time"} <= set(run.provenance)
    assert run.status == "failed" and run.values == {} and store.get("exp", "other") is None


def test_queries_and_delete(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.record("b", "s1", {}, {"v": 1}, status="done", provenance=PROV)
    store.record("b", "s2", {}, {"v": 2}, status="failed", reason="x", provenance=PROV)
    store.record("a", "s1", {}, {"v": 3}, status="done", provenance=PROV)   # same signature, other experiment
    assert store.experiments() == ["a", "b"]
    assert store.has("b", "s2") and not store.has("a", "s2")
    assert store.done("b") == {"s1"} and store.statuses("b") == {"s1": "done", "s2": "failed"}
    assert store.get("a", "s1").values == {"v": 3.0} and store.get("b", "s1").values == {"v": 1.0}
    assert [r.signature for r in store.runs("b")] == ["s1", "s2"]
    assert store.delete("b", "s1") and not store.delete("b", "s1")
    assert not store.has("b", "s1") and store.has("a", "s1")
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    orphans = "SELECT COUNT(*) FROM run_values WHERE experiment = 'b' AND signature = 's1'"
    assert raw.execute(orphans).fetchone() == (0,)


def test_recording_again_replaces_atomically(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.record("exp", "sig", {"v": 1}, {"old": 1, "both": 1}, status="failed", provenance=PROV)
    store.record("exp", "sig", {"v": 2}, {"both": 2, "new": 2}, status="done", provenance=PROV)
    (run,) = store.runs("exp")
    assert run.values == {"both": 2.0, "new": 2.0} and run.config == {"v": 2} and run.status == "done"


def test_bad_values_are_rejected_whole(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    for bad in ("0.5", None, [1.0, 2.0]):
        with pytest.raises(GapbenchError, match=r"quantity 'q' given to Store.record\(\) must be a number"):
            store.record("exp", "sig", {}, {"ok": 1.0, "q": bad}, status="done", provenance=PROV)
    assert not store.has("exp", "sig")
    with pytest.raises(GapbenchError, match=r"The 'status' parameter of Store.record\(\) must be one of"):
        store.record("exp", "sig", {}, {}, status="ok", provenance=PROV)
    with pytest.raises(GapbenchError, match=r"The 'signature' parameter of Store.record\(\) must be a non"):
        store.record("exp", "", {}, {}, status="done", provenance=PROV)


def test_failed_insert_leaves_nothing(tmp_path):
    """An error between the run row and its values rolls the whole record back: the old run stays."""
    store = Store(tmp_path / "s.sqlite")
    store.record("exp", "sig", {}, {"v": 1}, status="done", provenance=PROV)
    real = store._conn()
    store._local.conn = _DuplicatingConnection(real)
    with pytest.raises(sqlite3.IntegrityError):      # a duplicated value row violates the primary key
        store.record("exp", "sig", {}, {"v": 2.0, "w": 3.0}, status="failed", provenance=PROV)
    store._local.conn = real
    run = store.get("exp", "sig")
    assert run.values == {"v": 1.0} and run.status == "done"


class _DuplicatingConnection:
    """A sqlite3 connection that inserts every value row twice (an error in the middle of a transaction)."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, *args):
        return self.conn.execute(*args)

    def executemany(self, sql, rows):
        rows = list(rows)
        return self.conn.executemany(sql, rows + rows)


def test_pickles_without_its_connection(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    store.record("exp", "sig", {}, {"v": 1}, status="done", provenance=PROV)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and clone.done("exp") == {"sig"}


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(GapbenchError, match=f"has schema version {SCHEMA_VERSION + 1}, newer than this gapbench knows"):
        Store(path).experiments()


def test_not_a_database(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GapbenchError, match=r"is corrupted \(SQLite: file is not a database\)\. Move it aside"):
        Store(path).experiments()


def test_concurrent_writers(tmp_path):
    """4 processes x 50 runs (+ one key all of them re-record), racing from an empty file to create the
    schema: every row present once, none partial."""
    path = str(tmp_path / "s.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=sweep_jobs.write_many, args=(path, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    runs = Store(path).runs("concurrent")
    by_sig = {r.signature: r for r in runs}
    assert len(runs) == len(by_sig) == 4 * 50 + 1
    for w in range(4):
        for i in range(50):
            assert by_sig[f"w{w}-{i}"].values == {"worker": w, "i": i, "sum": w + i}
    shared = by_sig["shared"]
    assert shared.values == {"worker": shared.config["worker"], "i": 40.0}    # one writer's last, whole
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM run_values").fetchone() == (200 * 3 + 2,)
    assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_full_disk_keeps_its_real_cause(tmp_path):
    """SQLite rolls back by itself on SQLITE_FULL; the error seen is 'disk is full', not 'cannot rollback'."""
    store = Store(tmp_path / "s.sqlite")
    store.record("exp", "small", {}, {"v": 1.0}, status="done", provenance=PROV)
    conn = store._conn()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 1}")       # a disk with one free page
    big = {f"q{i}": float(i) for i in range(5000)}
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full") as info:
        store.record("exp", "big", {"pad": "x" * 100_000}, big, status="done", provenance=PROV)
    assert store_error(store.path, info.value).args[0].startswith("No space left on device")
    assert store.get("exp", "small").values == {"v": 1.0} and store.get("exp", "big") is None


def test_store_error_leaves_bugs_alone(tmp_path):
    assert store_error(tmp_path / "s", sqlite3.OperationalError("no such table: runs")) is None
    message = str(store_error(tmp_path / "s", sqlite3.OperationalError("attempt to write a readonly database")))
    assert "cannot be written: its directory is read-only" in message and "damaged" not in message
