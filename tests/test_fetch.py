"""`gapbench data fetch|list` against a local HTTP server on 127.0.0.1: no test reaches the internet.

The server serves (a) the real MNIST .gz files from $GAPBENCH_DATA/mnist, whose canonical checksums match,
and (b) small generated Fashion-MNIST / CIFAR-10 files in the canonical formats, with the canonical checksum
tables patched to the generated files' digests (computed here with hashlib, not by the code under test).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import shlex
import shutil
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_data import write_cifar, write_idx_dataset

from gapbench.cli import main
from gapbench.config import DataConfig
from gapbench.data import cifar, load_data
from gapbench.data.fetch import dataset_status, fetch_dataset, list_status
from gapbench.data.files import Checksum
from gapbench.data.mnist import FASHION_CHECKSUMS, MNIST_CHECKSUMS, STEMS, load_mnist_arrays
from gapbench.errors import DataError

GZ_NAMES = [f"{stem}.gz" for stem in STEMS.values()]


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def md5(path: Path) -> Checksum:
    return Checksum("md5", hashlib.md5(path.read_bytes()).hexdigest())


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a fetch might leave behind."""
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".part", ".tmp")]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(folder, base URL): an HTTP server on 127.0.0.1, an ephemeral port, serving `folder`."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)     # 127.0.0.1 must be reached directly
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def fashion(served, monkeypatch):
    """Generated Fashion-MNIST .gz files served over HTTP, the canonical MD5 table patched to them."""
    folder, url = served
    arrays = write_idx_dataset(folder.parent / "gen", name="fashion_mnist", seed=5)
    for name in GZ_NAMES:
        shutil.copy(folder.parent / "gen" / "fashion_mnist" / name, folder / name)
        monkeypatch.setitem(FASHION_CHECKSUMS, name, md5(folder / name))
    return folder, url, arrays


@pytest.fixture
def cifar_archive(served, monkeypatch):
    """A generated CIFAR-10 archive (six small batches) served over HTTP, checksums patched to it."""
    folder, url = served
    write_cifar(folder.parent / "gen")
    batches = folder.parent / "gen" / "cifar10" / cifar.FOLDER
    with tarfile.open(folder / cifar.ARCHIVE_NAME, "w:gz") as tar:
        tar.add(batches, arcname=cifar.FOLDER)
    monkeypatch.setattr(cifar, "ARCHIVE_CHECKSUM", md5(folder / cifar.ARCHIVE_NAME))
    for batch in batches.iterdir():
        monkeypatch.setitem(cifar.CHECKSUMS, batch.name, md5(batch))
    return folder, url, batches


def test_fetch_real_mnist_over_http_then_skips(data_dir, served, tmp_path):
    folder, url = served
    for name in GZ_NAMES:
        shutil.copy(data_dir / "mnist" / name, folder / name)
    target = tmp_path / "data"
    code, out = invoke("data", "fetch", "mnist", "--data-dir", target, "--from", url)
    assert code == 0, out
    for name in GZ_NAMES:
        assert (target / "mnist" / name).read_bytes() == (data_dir / "mnist" / name).read_bytes()
        assert hashlib.sha256((target / "mnist" / name).read_bytes()).hexdigest() == MNIST_CHECKSUMS[name].hexdigest
        assert f"mnist/{name}" in out
    assert out.count("sha256 verified (fetched)") == 4 and "9.91 MB" in out
    assert dataset_status("mnist", target).state == "verified"
    (folder / GZ_NAMES[0]).unlink()                     # a second fetch must not even ask the server
    code, out = invoke("data", "fetch", "mnist", "--data-dir", target, "--from", url)
    assert code == 0 and out.count("(already present)") == 4, out
    assert leftovers(target) == []


def test_fetch_generated_fashion_loads_and_is_listed(fashion, tmp_path):
    _, url, arrays = fashion
    rows = fetch_dataset("fashion_mnist", tmp_path / "data", url)
    assert [r.action for r in rows] == ["fetched"] * 4 and all(r.checksum.algorithm == "md5" for r in rows)
    got, files = load_mnist_arrays(tmp_path / "data", "fashion_mnist")      # the canonical (patched) table
    np.testing.assert_array_equal(got["train_images"], arrays["train_images"])
    assert all(f["verified"] for f in files.values())
    states = {s.name: s.state for s in list_status(tmp_path / "data")}
    assert states == {"fashion_mnist": "verified", "mnist": "missing", "cifar10": "missing",
                      "hypersphere": "generated", "nk_linear": "generated"}


def test_corrupt_served_file_is_refused_and_nothing_is_left(fashion, tmp_path):
    folder, url, _ = fashion
    bad = GZ_NAMES[1]
    data = bytearray((folder / bad).read_bytes())
    data[-1] ^= 0xFF
    (folder / bad).write_bytes(bytes(data))
    target = tmp_path / "data"
    code, out = invoke("data", "fetch", "fashion_mnist", "--data-dir", target, "--from", url)
    assert code == 2 and "Traceback" not in out
    assert f"Downloaded {url}{bad} but its md5 is {hashlib.md5(data).hexdigest()}, expected " \
           f"{FASHION_CHECKSUMS[bad].hexdigest}; nothing was saved." in out
    assert sorted(p.name for p in (target / "fashion_mnist").iterdir()) == [GZ_NAMES[0]]   # fetched before
    assert leftovers(target) == []


def test_corrupt_present_file_is_replaced(fashion, tmp_path):
    _, url, _ = fashion
    target = tmp_path / "data"
    fetch_dataset("fashion_mnist", target, url)
    (target / "fashion_mnist" / GZ_NAMES[2]).write_bytes(b"not gzip")
    assert dataset_status("fashion_mnist", target).state == "corrupt"
    rows = fetch_dataset("fashion_mnist", target, url)
    assert [r.action for r in rows] == ["already present"] * 2 + ["fetched", "already present"]
    assert dataset_status("fashion_mnist", target).state == "verified"


def test_list_shows_present_missing_corrupt_and_generated(fashion, tmp_path):
    _, url, _ = fashion
    target = tmp_path / "data"
    fetch_dataset("fashion_mnist", target, url)
    write_idx_dataset(target, name="mnist")              # valid IDX files, not the canonical MNIST bytes
    code, out = invoke("data", "list", "--data-dir", target)
    assert code == 0, out
    assert f"data directory: {target} (--data-dir)" in out
    assert f"fashion_mnist verified {target / 'fashion_mnist'} " in out
    assert f"mnist corrupt {target / 'mnist'} corrupt: {', '.join(GZ_NAMES)}" in out
    assert f"cifar10 missing {target / 'cifar10' / cifar.FOLDER} missing: data_batch_1" in out
    assert f"-> gapbench data fetch cifar10 --data-dir {target}" in out
    assert "hypersphere generated" in out and "nk_linear generated" in out


def test_fetch_cifar_archive_extracts_verified_batches(cifar_archive, tmp_path):
    _, url, batches = cifar_archive
    target = tmp_path / "data"
    code, out = invoke("data", "fetch", "cifar10", "--data-dir", target, "--from", url)
    assert code == 0, out
    assert out.count("md5 verified (fetched)") == 6
    folder = target / "cifar10" / cifar.FOLDER
    for batch in batches.iterdir():
        assert (folder / batch.name).read_bytes() == batch.read_bytes()
    assert sorted(p.name for p in (target / "cifar10").iterdir()) == [cifar.FOLDER]   # archive removed
    data = load_data(DataConfig("cifar10", n_train=10, n_test=4), data_dir=target)
    assert data.train.x.shape == (10, 3, 32, 32)
    code, out = invoke("data", "fetch", "cifar10", "--data-dir", target, "--from", url)
    assert code == 0 and out.count("(already present)") == 6


def test_cifar_archive_with_a_wrong_batch_leaves_nothing(cifar_archive, tmp_path, monkeypatch):
    _, url, _ = cifar_archive
    monkeypatch.setitem(cifar.CHECKSUMS, "test_batch", Checksum("md5", "0" * 32))
    with pytest.raises(DataError, match=r"test_batch in the archive from .* has md5 [0-9a-f]{32}, expected "
                                        r"0{32}; nothing was saved"):
        fetch_dataset("cifar10", tmp_path / "data", url)
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []


def test_fetch_from_a_local_directory(fashion, tmp_path):
    folder, _, _ = fashion
    code, out = invoke("data", "fetch", "fashion_mnist", "--data-dir", tmp_path / "data", "--from", folder)
    assert code == 0 and out.count("md5 verified (fetched)") == 4, out
    (folder / GZ_NAMES[3]).unlink()
    code, out = invoke("data", "fetch", "fashion_mnist", "--data-dir", tmp_path / "other", "--from", folder)
    assert code == 2
    assert f"--from {folder} has no file {GZ_NAMES[3]}; a mirror directory holds the canonical file" in out


@pytest.mark.parametrize("args, message", [
    (("fetch", "mnst"), "Unknown dataset 'mnst' for gapbench data fetch. Did you mean 'mnist'? Known datasets: "
                        "cifar10, fashion_mnist, mnist."),
    (("fetch", "hypersphere"), "Dataset 'hypersphere' is generated from a seed; there is nothing to fetch."),
    (("fetch", "mnist", "--from", "/no/such/dir"), "The '--from' parameter of gapbench data fetch mnist must be "
                                                   "a base URL (http://, https://, file://) or an existing "
                                                   "directory. Got '/no/such/dir' instead."),
    (("fetch", "mnist", "--from", "ftp://x/"), "Got 'ftp://x/' instead."),
    (("fetch", "mnist", "--from", "http://127.0.0.1:9/"), "Could not download http://127.0.0.1:9/train-images-"
                                                          "idx3-ubyte.gz within 10 s"),
])
def test_data_errors_exit_2_with_one_paragraph(tmp_path, args, message):
    code, out = invoke("data", *args, "--data-dir", tmp_path / "data")
    assert code == 2 and "Traceback" not in out
    assert message in out
    assert leftovers(tmp_path) == []


def test_missing_dataset_error_names_a_command_that_works(fashion, tmp_path):
    _, url, _ = fashion
    target = tmp_path / "data"
    with pytest.raises(DataError) as err:
        load_data(DataConfig("fashion_mnist"), data_dir=target)
    msg = str(err.value)
    command = f"gapbench data fetch fashion_mnist --data-dir {target}"
    assert f"Run `{command}` to download it from http://fashion-mnist" in msg
    assert f"`{command} --from DIR` with DIR holding the four canonical .gz files" in msg
    args = shlex.split(command)[1:] + ["--from", url]       # run exactly what the message says, plus a mirror
    code, out = invoke(*args)
    assert code == 0, out
    assert len(load_data(DataConfig("fashion_mnist"), data_dir=target).train) == 40


def test_missing_cifar_error_names_the_archive(tmp_path):
    with pytest.raises(DataError) as err:
        load_data(DataConfig("cifar10"), data_dir=tmp_path)
    assert f"`gapbench data fetch cifar10 --data-dir {tmp_path} --from DIR` with DIR holding " \
           f"{cifar.ARCHIVE_NAME}" in str(err.value)


def test_default_data_dir_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("GAPBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out = invoke("data", "list")
    assert code == 0 and f"data directory: {tmp_path / 'cache' / 'gapbench'} (the per-user cache)" in out
    assert "-> gapbench data fetch mnist" in out and "--data-dir" not in out    # the default needs none
