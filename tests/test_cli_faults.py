"""Faults (a full disk, a read-only or corrupted results directory, a file in the way) end in one gapbench
paragraph with the real cause and exit code 2, never a traceback. Root ignores chmod, so the OS faults are
simulated where the write happens (monkeypatch raising the OSError the kernel would)."""

import errno
import pathlib
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

import gapbench.report
import gapbench.store
from gapbench.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def assert_paragraph(code, out, *words):
    assert code == 2, out
    assert out.startswith("error:") and "Traceback" not in out, out
    for word in words:
        assert word in out, out


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("stored")
    code, text = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", out, "--no-progress")
    assert code == 0, text
    return out


@pytest.fixture
def results(stored, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(stored, copy)
    return copy


def raise_oserror(code, filename=None):
    def fail(*args, **kwargs):
        raise OSError(code, __import__("os").strerror(code), *([filename] if filename else []))
    return fail


def test_out_below_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path / "file" / "sub")
    assert_paragraph(code, out, "cannot be created as a directory (ENOTDIR)", "is a file", "--out DIR")


def test_out_on_a_read_only_file_system(tmp_path, monkeypatch):
    monkeypatch.setattr(pathlib.Path, "mkdir", raise_oserror(errno.EROFS, str(tmp_path / "ro")))
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path / "ro", "--no-progress")
    assert_paragraph(code, out, f"'{tmp_path / 'ro'}' is on a read-only file system (EROFS)", "Use --out DIR")


def test_export_to_an_unwritable_csv(results, tmp_path, monkeypatch):
    target = tmp_path / "locked" / "x.csv"
    monkeypatch.setattr(gapbench.report, "atomic_write_bytes", raise_oserror(errno.EACCES, str(target)))
    code, out = invoke("export", "nk2019-linear", "--preset", "smoke", "--out", results, "--csv", target)
    assert_paragraph(code, out, f"'{target}' is not writable (permission denied) (EACCES), so the CSV cannot",
                     "--csv PATH")


def test_disk_full_while_writing_the_report(results, monkeypatch):
    monkeypatch.setattr(gapbench.report, "atomic_write_bytes", raise_oserror(errno.ENOSPC))
    code, out = invoke("report", "nk2019-linear", "--preset", "smoke", "--out", results)
    assert_paragraph(code, out, f"No space left on device (ENOSPC) while writing the report to '{results}'")


def test_disk_full_while_writing_the_store(tmp_path, monkeypatch):
    """SQLITE_FULL as SQLite raises it (test_store shows a real one keeps this cause through the rollback)."""
    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(gapbench.store.Store, "record", full)
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--no-progress")
    assert_paragraph(code, out, "No space left on device", "gapbench.sqlite", "database or disk is full")
    assert "cannot rollback" not in out


def test_corrupted_store_page(results):
    path = results / "gapbench.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")                # every page in the main file
    page_size, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    conn.close()
    assert pages >= 3
    data = bytearray(path.read_bytes())
    for page in range(1, pages):                                    # keep the header page, garble the rest
        data[page * page_size:(page + 1) * page_size] = bytes([0xA5]) * page_size
    path.write_bytes(bytes(data))
    code, out = invoke("report", "nk2019-linear", "--preset", "smoke", "--out", results)
    assert_paragraph(code, out, f"The results store '{path}' is corrupted", "malformed", "Move it aside")


def test_read_only_results_are_called_read_only_not_damaged(results, monkeypatch):
    real_connect = sqlite3.connect

    def read_only(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA query_only = ON")     # every write now fails as on a read-only directory
        return conn
    monkeypatch.setattr(gapbench.store.sqlite3, "connect", read_only)
    (results / "gapbench.sqlite").unlink()
    code, out = invoke("report", "nk2019-linear", "--preset", "smoke", "--out", results)
    assert_paragraph(code, out, "cannot be written: its directory is read-only", "--out")
    assert "damaged" not in out and "corrupt" not in out


def _read_only_directory(monkeypatch, results):
    """SQLite in a read-only directory: a read-write open cannot create the WAL index, a writing connection
    fails its first write; only a URI open with mode=ro&immutable=1 reads. The store was closed cleanly
    (the last connection checkpoints and removes the WAL), as after a finished `gapbench run`."""
    conn = sqlite3.connect(results / "gapbench.sqlite")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    wal = results / "gapbench.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    real_connect = sqlite3.connect

    def connect(database, *args, **kwargs):
        if kwargs.get("uri") and "immutable=1" in str(database):
            return real_connect(database, *args, **kwargs)
        raise sqlite3.OperationalError("unable to open database file")
    monkeypatch.setattr(gapbench.store.sqlite3, "connect", connect)


def test_export_works_on_read_only_results(results, tmp_path, monkeypatch):
    code, before = invoke("export", "nk2019-linear", "--preset", "smoke", "--out", results, "--csv", tmp_path / "a.csv")
    assert code == 0, before
    _read_only_directory(monkeypatch, results)
    code, out = invoke("export", "nk2019-linear", "--preset", "smoke", "--out", results, "--csv", tmp_path / "b.csv")
    assert code == 0, out
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


def test_report_on_read_only_results_says_so(results, monkeypatch):
    _read_only_directory(monkeypatch, results)
    monkeypatch.setattr(gapbench.report, "atomic_write_bytes", raise_oserror(errno.EROFS, str(results / "x")))
    code, out = invoke("report", "nk2019-linear", "--preset", "smoke", "--out", results)
    assert_paragraph(code, out, "is on a read-only file system (EROFS), so the report cannot be written there")
    assert "damaged" not in out


def test_writing_to_read_only_results_says_so(results, monkeypatch):
    _read_only_directory(monkeypatch, results)
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--set", "seeds=2", "--out", results,
                       "--no-progress")
    assert_paragraph(code, out, "cannot be written: its directory is read-only", "readonly")
    assert "damaged" not in out


def test_read_only_store_with_pending_wal_is_refused_not_read_stale(results, monkeypatch):
    _read_only_directory(monkeypatch, results)
    (results / "gapbench.sqlite-wal").write_bytes(b"x" * 100)     # commits the main file does not have yet
    code, out = invoke("export", "nk2019-linear", "--preset", "smoke", "--out", results, "--csv", results / "c.csv")
    assert_paragraph(code, out, "its directory is read-only")


def test_certify_delta_speaks_of_the_option(tmp_path):
    (tmp_path / "c.pt").write_bytes(b"")
    for delta in ("0", "1.5", "nan"):
        code, out = invoke("certify", tmp_path / "c.pt", "--delta", delta)
        assert_paragraph(code, out, "The '--delta' parameter of gapbench certify must be a float in (0, 1)")
    code, out = invoke("certify", tmp_path / "c.pt", "--family-size", "0")
    assert_paragraph(code, out, "The '--family-size' parameter of gapbench certify must be an int >= 1")


def test_certify_with_a_subnormal_delta_is_valid():
    """--delta 5e-324: ln(|F|/δ) as ln|F| − ln δ stays finite; every bound is a number, the tightest ≤ 1."""
    import torch

    from gapbench.certificate import certify
    model = torch.nn.Linear(3, 2)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(50, 3, generator=gen), torch.zeros(50, dtype=torch.long))
    for family_size in (1, 10 ** 9):
        cert = certify(model, data, delta=5e-324, family_size=family_size)
        values = {name: bound.value for name, bound in cert.bounds.items()}
        assert all(v == v and v < float("inf") for v in values.values()), values
        assert cert.bounds[cert.headline].value <= 1.0
        assert cert.bounds["heldout_kl"].value > cert.empirical_error
