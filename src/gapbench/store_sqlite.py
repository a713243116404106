"""The results store's SQLite file: its schema and migration, how a connection is opened, and SQLite's faults
in gapbench's words. :class:`gapbench.store.Store` holds the runs; this module holds the file under it.

Schema (``PRAGMA user_version`` = SCHEMA_VERSION):

    runs(experiment, signature, config JSON, status 'done'|'failed', reason, started, finished, seconds,
         provenance JSON, checkpoint, failure 'transient'|'deterministic'|NULL)
                                                            PRIMARY KEY (experiment, signature)
    run_values(experiment, signature, quantity, value)     PRIMARY KEY (experiment, signature, quantity),
         FOREIGN KEY (experiment, signature) REFERENCES runs ON DELETE CASCADE

Decisions:

- Version-1 stores (no ``failure`` column) gain the column on opening, in one transaction that re-reads the
  version (another process may have migrated it first); their failed runs read as deterministic, as they were
  treated before. A store newer than SCHEMA_VERSION is refused.
- WAL journal (readers never block the one writer), ``busy_timeout`` of BUSY_TIMEOUT_MS so concurrent writers
  queue instead of failing, foreign keys on.
- A store that cannot be written (read-only directory or file) is opened read-only: reading works, a write
  fails with SQLite's read-only error, which :func:`store_error` words as such.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .errors import GapbenchError

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 30_000   # a writer waits up to 30 s for another process's transaction to commit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    experiment TEXT NOT NULL,
    signature  TEXT NOT NULL,
    config     TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    reason     TEXT NOT NULL DEFAULT '',
    started    REAL,
    finished   REAL,
    seconds    REAL,
    provenance TEXT,
    checkpoint TEXT,
    failure    TEXT CHECK (failure IN ('transient', 'deterministic')),
    PRIMARY KEY (experiment, signature)
);
CREATE TABLE IF NOT EXISTS run_values (
    experiment TEXT NOT NULL,
    signature  TEXT NOT NULL,
    quantity   TEXT NOT NULL,
    value      REAL,
    PRIMARY KEY (experiment, signature, quantity),
    FOREIGN KEY (experiment, signature) REFERENCES runs (experiment, signature) ON DELETE CASCADE
);
"""


def open_connection(path: Path) -> sqlite3.Connection:
    """A connection to the store at `path` (created, or migrated to SCHEMA_VERSION, as needed), in autocommit
    mode (callers open their own transactions); read-only when the file cannot be written. A corrupt, full
    or unwritable store raises a GapbenchError saying what to do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            _init_schema(conn, path)
        except sqlite3.OperationalError as exc:
            if not (_is_read_only(exc) and path.is_file()):
                raise
            conn = _read_only_conn(path)       # read-only results: reading works, a write says read-only
    except sqlite3.DatabaseError as exc:
        raise (store_error(path, exc) or GapbenchError(
            f"The results store '{path}' cannot be opened as SQLite ({exc}). Point --out to another "
            f"directory, or move the file away and rerun.")) from exc
    return conn


def _read_only_conn(path: Path) -> sqlite3.Connection:
    """Open an existing store read-only (report/export on read-only results). 'immutable' is the fallback
    when SQLite cannot even create the WAL index next to the file (nobody can write there either), used
    only when no WAL file holds commits the main file lacks (a cleanly closed store has none)."""
    try:
        return _open_uri(path, "mode=ro")
    except sqlite3.OperationalError as exc:
        wal = path.with_name(path.name + "-wal")
        if not _is_read_only(exc) or (wal.exists() and wal.stat().st_size > 0):
            raise                             # immutable would ignore the WAL's committed runs
        return _open_uri(path, "mode=ro&immutable=1")


def _open_uri(path: Path, query: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True, isolation_level=None)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError:
        conn.close()
        raise
    if version != SCHEMA_VERSION:
        conn.close()
        raise sqlite3.OperationalError(f"attempt to write a readonly database (schema version {version} "
                                       f"needs an upgrade to {SCHEMA_VERSION})")
    return conn


def _init_schema(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise GapbenchError(f"The results store '{path}' has schema version {version}, newer than "
                            f"this gapbench knows ({SCHEMA_VERSION}). Upgrade gapbench or use another "
                            f"--out.")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] == 1:   # re-read: another process may have
            conn.execute("ALTER TABLE runs ADD COLUMN failure TEXT CHECK (failure IN "  # migrated it
                         "('transient', 'deterministic'))")
            conn.execute("UPDATE runs SET failure = 'deterministic' WHERE status = 'failed'")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite already rolled back after a full disk or I/O error,
    and a second ROLLBACK would replace the real cause with 'cannot rollback - no transaction is active'."""
    try:
        conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "no transaction is active" not in str(exc):
            raise


def _is_read_only(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def store_error(path: Path, exc: sqlite3.DatabaseError) -> GapbenchError | None:
    """The user-fixable SQLite faults in gapbench's words (None for anything else, which is a bug)."""
    text = str(exc).lower()
    if "malformed" in text or "not a database" in text:
        return GapbenchError(f"The results store '{path}' is corrupted (SQLite: {exc}). Move it aside (e.g. "
                             f"mv {path} {path}.bad) and rerun: finished runs are trained again.")
    if "disk is full" in text or "disk i/o error" in text:
        return GapbenchError(f"No space left on device (or an I/O error) while writing the results store "
                             f"'{path}' (SQLite: {exc}). Free some space, or use --out DIR on another disk.")
    if _is_read_only(exc):
        return GapbenchError(f"The results store '{path}' cannot be written: its directory is read-only or "
                             f"not writable (SQLite: {exc}). Copy the results directory somewhere writable "
                             f"and pass that as --out.")
    return None
