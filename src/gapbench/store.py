"""The results store: one SQLite file per results directory (OUT/gapbench.sqlite), rows of runs and their values.

The file (schema, migration, connections, SQLite's faults in gapbench's words) is :mod:`gapbench.store_sqlite`:
a table ``runs`` keyed by (experiment, signature) and ``run_values`` keyed by (experiment, signature, quantity).

Decisions:

- A run is keyed by **(experiment, signature)**: the same trained configuration may be measured differently by
  two experiments (each keeps its own row and values), and the primary key makes duplicates impossible.
- :meth:`Store.record` is one ``BEGIN IMMEDIATE … COMMIT`` transaction that deletes any previous row of the
  key (its values go with it, ON DELETE CASCADE) and inserts the run and all its values: a run is either
  fully stored or absent, and recording an existing key **replaces** it atomically (a re-measure), never
  raises and never mixes old and new values.
- A failed run records what kind of failure it was (FAILURES): 'transient' (no space left, out of memory,
  interrupted, a killed worker: the next sweep runs it again) or 'deterministic' (divergence, an invalid
  construction: it stays failed unless retried explicitly). Version-1 stores gain the column on opening;
  their failed runs read as deterministic, as they were treated before.
- SQLite stores ±inf as REAL but NaN as NULL; a NaN value is stored as NULL and read back as float('nan').
- Connections are opened lazily, one per (process, thread), so a Store may be shared by threads and survives
  being pickled into, or forked with, worker processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import to_dict
from .errors import GapbenchError, check_choice, param_error
from .provenance import provenance as current_provenance
from .store_sqlite import SCHEMA_VERSION, open_connection, rollback, store_error

JOB_STATUSES = ("done", "failed")
FAILURES = ("transient", "deterministic")   # kinds of failed run; None for a done one


@dataclass
class StoredRun:
    """One row of `runs` with its values (NaN where NULL was stored)."""

    experiment: str
    signature: str
    config: dict[str, Any]
    status: str                                   # 'done' | 'failed'
    reason: str
    values: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None                  # the job's wall-clock time
    provenance: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    started: float | None = None                  # Unix time (s) the job started
    finished: float | None = None                 # Unix time (s) it was recorded
    failure: str | None = None                    # 'transient' | 'deterministic' for a failed run


class Store:
    """Transactional SQLite store of runs and their values (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:      # connections never travel between processes
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    # -- connection ----------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = open_connection(self.path)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (a later call reopens it)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writes --------------------------------------------------------------------------------------------
    def record(self, experiment: str, signature: str, config: Mapping[str, Any], values: Mapping[str, Any], *,
               status: str, reason: str = "", seconds: float | None = None, checkpoint: str | None = None,
               provenance: Mapping[str, Any] | None = None, started: float | None = None,
               failure: str | None = None) -> None:
        """Store one run and all its values in one transaction, replacing any previous run of the key.

        Args:
            values: {quantity: number}; each must convert with float() (NaN is stored as NULL).
            status: 'done' or 'failed'; reason: why it failed or how it stopped.
            failure: for a failed run, 'transient' or 'deterministic' (default); None for a done one.
            seconds: the job's wall-clock time; started: Unix time it started (default finished − seconds).
            provenance: default gapbench.provenance.provenance() of this process.
        """
        where = "Store.record()"
        for name, value in (("experiment", experiment), ("signature", signature)):
            if not isinstance(value, str) or not value:
                raise param_error(name, where, "a non-empty str", value)
        check_choice(status, "status", where, JOB_STATUSES)
        if status == "failed":
            failure = check_choice(failure or "deterministic", "failure", where, FAILURES)
        elif failure is not None:
            raise param_error("failure", where, "None for a run with status 'done'", failure)
        rows = [(experiment, signature, quantity, None if math.isnan(value) else value)
                for quantity, value in checked_values(values).items()]
        config_json = json.dumps(dict(config), sort_keys=True, default=_json_default)
        prov_json = json.dumps(dict(current_provenance() if provenance is None else provenance), default=str)
        finished = time.time()
        if started is None and seconds is not None:
            started = finished - float(seconds)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM runs WHERE experiment = ? AND signature = ?", (experiment, signature))
            conn.execute("INSERT INTO runs (experiment, signature, config, status, reason, started, finished, "
                         "seconds, provenance, checkpoint, failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (experiment, signature, config_json, status, str(reason), started, finished,
                          None if seconds is None else float(seconds), prov_json,
                          None if checkpoint is None else str(checkpoint), failure))
            conn.executemany("INSERT INTO run_values VALUES (?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise

    def delete(self, experiment: str, signature: str) -> bool:
        """Remove a run and its values; True when it existed."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("DELETE FROM runs WHERE experiment = ? AND signature = ?",
                               (experiment, signature))
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        return cur.rowcount > 0

    # -- reads ---------------------------------------------------------------------------------------------
    def has(self, experiment: str, signature: str) -> bool:
        """Whether (experiment, signature) is stored, with either status."""
        return self._conn().execute("SELECT 1 FROM runs WHERE experiment = ? AND signature = ?",
                                    (experiment, signature)).fetchone() is not None

    def statuses(self, experiment: str) -> dict[str, str]:
        """{signature: status} of every stored run of `experiment`."""
        return dict(self._conn().execute("SELECT signature, status FROM runs WHERE experiment = ?",
                                         (experiment,)))

    def transient(self, experiment: str) -> set[str]:
        """Signatures of the runs of `experiment` that failed transiently (run again by the next sweep)."""
        return {row[0] for row in self._conn().execute(
            "SELECT signature FROM runs WHERE experiment = ? AND failure = 'transient'", (experiment,))}

    def done(self, experiment: str) -> set[str]:
        """Signatures of the runs of `experiment` stored with status 'done'."""
        return {sig for sig, status in self.statuses(experiment).items() if status == "done"}

    def experiments(self) -> list[str]:
        """Names of the experiments with at least one stored run, sorted."""
        return [row[0] for row in self._conn().execute("SELECT DISTINCT experiment FROM runs ORDER BY 1")]

    def get(self, experiment: str, signature: str) -> StoredRun | None:
        """One stored run, or None."""
        found = self._select("WHERE experiment = ? AND signature = ?", (experiment, signature))
        return found[0] if found else None

    def runs(self, experiment: str) -> list[StoredRun]:
        """Every stored run of `experiment`, in the order they were recorded."""
        return self._select("WHERE experiment = ?", (experiment,))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[StoredRun]:
        conn = self._conn()
        conn.execute("BEGIN")          # one snapshot for the runs and their values
        try:
            rows = conn.execute(f"SELECT experiment, signature, config, status, reason, started, finished, "
                                f"seconds, provenance, checkpoint, failure FROM runs {where} ORDER BY finished, rowid",
                                args).fetchall()
            values: dict[tuple[str, str], dict[str, float]] = {}
            for exp, sig, quantity, value in conn.execute(
                    f"SELECT experiment, signature, quantity, value FROM run_values {where}", args):
                values.setdefault((exp, sig), {})[quantity] = math.nan if value is None else float(value)
        finally:
            conn.execute("COMMIT")
        return [StoredRun(experiment=exp, signature=sig, config=json.loads(config), status=status,
                          reason=reason, values=values.get((exp, sig), {}), seconds=seconds,
                          provenance=json.loads(prov) if prov else {}, checkpoint=ckpt, started=started,
                          finished=finished, failure=failure)
                for exp, sig, config, status, reason, started, finished, seconds, prov, ckpt, failure in rows]


def checked_values(values: Mapping[str, Any]) -> dict[str, float]:
    """{quantity: float}; a non-number (str, None, a list, a multi-element tensor) is an error naming it."""
    if not isinstance(values, Mapping):
        raise param_error("values", "Store.record()", "a dict of quantity -> float", type(values).__name__)
    out = {}
    for quantity, value in values.items():
        if not isinstance(quantity, str) or not quantity:
            raise GapbenchError(f"Quantity names given to Store.record() must be non-empty str. Got "
                                f"{quantity!r} instead.")
        try:
            if isinstance(value, (str, bytes)) or value is None:
                raise TypeError
            out[quantity] = float(value)
        except (TypeError, ValueError, RuntimeError):
            raise GapbenchError(f"The value of quantity '{quantity}' given to Store.record() must be a "
                                f"number convertible with float(). Got {value!r} ({type(value).__name__}) "
                                f"instead. "
                                f"Convert it in the job function (e.g. float(tensor.item())).") from None
    return out


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return to_dict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


__all__ = ["FAILURES", "JOB_STATUSES", "SCHEMA_VERSION", "Store", "StoredRun", "checked_values", "store_error"]
