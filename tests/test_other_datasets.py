"""Every MNIST experiment runs on Fashion-MNIST and CIFAR-10 (`--set dataset=...`), and refuses sizes a
dataset's files cannot supply.

The data are small generated files in the canonical formats (IDX .gz for Fashion-MNIST, the python-pickle
batches for CIFAR-10), with the canonical checksum tables patched to their MD5s computed here with hashlib;
the smoke presets' sizes are lowered with --set to fit them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gapbench.cli import main
from gapbench.data import cifar, list_datasets
from gapbench.data.files import Checksum
from gapbench.data.idx import write_idx
from gapbench.data.mnist import FASHION_CHECKSUMS, STEMS
from gapbench.errors import GapbenchError
from gapbench.experiments import EXPERIMENTS, get
from gapbench.experiments.execute import jobs_for
from gapbench.experiments.file_datasets import FILE_DATASETS

N_TRAIN, N_TEST = 400, 80        # images in the generated training / test files (CIFAR: 5 batches of 80)
MNIST_EXPERIMENTS = ("nk2019-fig1", "kkb2017-validation", "kkb2017-random-labels", "kkb2017-deep-paths",
                     "kkb2017-linear-memorization", "kkb2017-two-phase")
SMALL = {  # smoke preset sizes lowered to the generated files (and epochs, to keep the whole file near 30 s)
    "nk2019-fig1": ["pool_size=400", "n_test=80", "batch_size=16"],
    "kkb2017-validation": ["n_val=80", "n_test=80"],
    "kkb2017-random-labels": ["n_val=80", "n_test=80", "max_epochs=3"],
    "kkb2017-deep-paths": ["n_population=80", "max_epochs=2"],
    "kkb2017-linear-memorization": ["n_test=80", "c=0,1e8", "label_noise=0,1"],
    "kkb2017-two-phase": ["n_test=80", "n_population=40"],
}
CNN = ["arch=cnn", "width=2", "conv2_width=2", "fc_width=8", "padding=valid"]  # the two-phase CNN on 3x32x32


def md5(path: Path) -> Checksum:
    return Checksum("md5", hashlib.md5(path.read_bytes()).hexdigest())


def images(gen, labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images of `shape` per label: dim noise plus a bright band of rows at a label-dependent height, so
    that the smoke presets' few epochs fit them (random pixels with random labels would not fit)."""
    x = gen.integers(0, 100, (len(labels), *shape), dtype=np.uint8)
    for i, label in enumerate(labels):
        x[i, ..., 2 * label:2 * label + 2, :] = 255
    return x


def write_fashion(root: Path) -> None:
    """The four Fashion-MNIST IDX .gz files: N_TRAIN / N_TEST 28x28 images, labels 0..9."""
    gen = np.random.default_rng(7)
    labels = {"train": (np.arange(N_TRAIN) % 10).astype(np.uint8),
              "test": (np.arange(N_TEST) * 3 % 10).astype(np.uint8)}
    (root / "fashion_mnist").mkdir(parents=True)
    for split in ("train", "test"):
        write_idx(root / "fashion_mnist" / f"{STEMS[split + '_images']}.gz", images(gen, labels[split], (28, 28)))
        write_idx(root / "fashion_mnist" / f"{STEMS[split + '_labels']}.gz", labels[split])


def write_cifar(root: Path) -> None:
    """The six CIFAR-10 python-pickle batches (5 x N_TRAIN/5 training images, N_TEST test images), each row
    the canonical 3072 bytes: 1024 red, 1024 green, 1024 blue values, each plane row-major."""
    folder = root / "cifar10" / cifar.FOLDER
    folder.mkdir(parents=True)
    gen = np.random.default_rng(8)
    for name in (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH):
        n = N_TEST if name == cifar.TEST_BATCH else N_TRAIN // len(cifar.TRAIN_BATCHES)
        labels = gen.integers(0, 10, n)
        data = images(gen, labels, (3, 32, 32)).reshape(n, 3072)
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels.tolist(), b"data": data,
                         b"filenames": [b"x.png"] * n}, handle, protocol=2)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fashion(root)
    write_cifar(root)
    return root


@pytest.fixture
def data_dir_patched(generated, monkeypatch) -> Path:
    """The generated files with the canonical checksum tables patched to them, as $GAPBENCH_DATA."""
    for path in (generated / "fashion_mnist").iterdir():
        monkeypatch.setitem(FASHION_CHECKSUMS, path.name, md5(path))
    for path in (generated / "cifar10" / cifar.FOLDER).iterdir():
        monkeypatch.setitem(cifar.CHECKSUMS, path.name, md5(path))
    monkeypatch.setenv("GAPBENCH_DATA", str(generated))
    return generated


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def run_on(name: str, dataset: str, out: Path, data_dir: Path, extra=()) -> dict:
    settings = [f"dataset={dataset}", *SMALL[name], *extra]
    code, text = invoke("run", name, "--preset", "smoke", *(a for s in settings for a in ("--set", s)),
                        "--out", out, "--data-dir", data_dir, "--json", "--no-progress")
    assert code == 0, text
    return json.loads(text[text.index("{"):])


CASES = ([(name, "fashion_mnist", ()) for name in MNIST_EXPERIMENTS]
         + [(name, "cifar10", ()) for name in MNIST_EXPERIMENTS if name != "kkb2017-two-phase"]
         + [("kkb2017-two-phase", "cifar10", CNN)])


@pytest.mark.parametrize("name, dataset, extra", CASES, ids=[f"{n}-{d}{'-cnn' if e else ''}" for n, d, e in CASES])
def test_smoke_runs_on_other_dataset_and_rows_say_it(name, dataset, extra, data_dir_patched, tmp_path):
    summary = run_on(name, dataset, tmp_path, data_dir_patched, extra)
    with open(tmp_path / name / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert summary["runs_failed"] == 0 and summary["models_ok"] == summary["models_total"] == len(rows) > 0, rows
    assert {r["hp.dataset"] for r in rows} == {dataset}
    assert summary["params"]["dataset"] == dataset


def test_every_mnist_experiment_has_a_dataset_parameter_defaulting_to_mnist():
    file_datasets = {info.name for info in list_datasets() if info.kind == "file"}
    assert set(FILE_DATASETS) == file_datasets      # the literal table covers exactly the registered files
    for name in MNIST_EXPERIMENTS:
        exp = get(name)
        assert set(exp.spec["dataset"].choices) >= file_datasets, name
        for preset, values in exp.presets.items():
            assert values["dataset"] == "mnist" or (name, preset) == ("kkb2017-deep-paths", "synthetic")
    others = {e.name for e in EXPERIMENTS} - set(MNIST_EXPERIMENTS)
    assert all("dataset" not in get(name).spec for name in others)   # generated-data experiments: no key


@pytest.mark.parametrize("name", MNIST_EXPERIMENTS)
def test_mnist_jobs_do_not_store_the_default_dataset(name):
    """'mnist' stays out of the hp (stored signatures stay valid); another dataset enters it."""
    exp = get(name)
    for job in jobs_for(exp, exp.params("smoke")):
        assert job.config["hp"].get("dataset", "mnist") == "mnist"
        if name != "kkb2017-deep-paths":            # it always stored its dataset
            assert "dataset" not in job.config["hp"]
    for job in jobs_for(exp, exp.params("smoke", {"dataset": "fashion_mnist"})):
        assert job.config["hp"]["dataset"] == "fashion_mnist"
        data = job.config.get("run", {}).get("data") or job.config["data"]
        assert data["name"] == "fashion_mnist"


def test_unknown_dataset_is_refused_by_name(tmp_path):
    code, out = invoke("run", "kkb2017-random-labels", "--preset", "smoke", "--set", "dataset=svhn",
                       "--out", tmp_path)
    assert code == 2 and "Traceback" not in out
    assert ("The 'dataset' parameter of experiment 'kkb2017-random-labels' must be one of "
            "['mnist', 'fashion_mnist', 'cifar10']. Got 'svhn' instead.") in out


@pytest.mark.parametrize("name, settings, message", [
    ("nk2019-fig1", [], "The 'pool_size' parameter of experiment 'nk2019-fig1' asks for more images than dataset "
                        "'cifar10' has: pool_size = 55000 must be <= 50000, the size of its training file. Fix it "
                        "with --set pool_size=50000"),
    ("kkb2017-validation", ["n_train=45000", "n_val=5001"], "n_train + n_val = 45000 + 5001 = 50001 must be "
                                                            "<= 50000, the size of its training file. Fix it "
                                                            "with --set n_train=44999"),
    ("kkb2017-random-labels", ["n_test=10001"], "The 'n_test' parameter of experiment 'kkb2017-random-labels' "
                                                "asks for more images than dataset 'cifar10' has: n_test = 10001 "
                                                "must be <= 10000, the size of its test file"),
    ("kkb2017-deep-paths", ["m=100,50001"], "max(m) = 50001 must be <= 50000"),
    ("kkb2017-deep-paths", ["n_population=10001"], "n_population = 10001 must be <= 10000"),
    ("kkb2017-two-phase", ["n_train=50001"], "n_train = 50001 must be <= 50000"),
    ("kkb2017-linear-memorization", ["n_train=50001", "d_features=100000"], "n_train = 50001 must be <= 50000"),
])
def test_sizes_cifar10_cannot_supply_are_refused(name, settings, message, tmp_path):
    args = [a for s in ["dataset=cifar10", *settings] for a in ("--set", s)]
    code, out = invoke("run", name, "--preset", "smoke", *args, "--out", tmp_path)
    assert code == 2 and "Traceback" not in out, out
    assert message in out, out


def test_sizes_that_fit_the_dataset_are_accepted():
    exp = get("kkb2017-validation")
    assert jobs_for(exp, exp.params("smoke", {"dataset": "cifar10", "n_train": "49000", "n_val": "1000"}))
    assert jobs_for(exp, exp.params("smoke", {"dataset": "mnist", "n_train": "59000", "n_val": "1000"}))
    fig1 = get("nk2019-fig1")
    assert jobs_for(fig1, fig1.params("smoke", {"dataset": "cifar10", "pool_size": "50000"}))
    assert jobs_for(fig1, fig1.params("smoke", {"dataset": "fashion_mnist"}))   # NK's 55,000 of 60,000


@pytest.mark.parametrize("dataset, n_test, refused", [("mnist", 684, True), ("mnist", 683, False),
                                                      ("cifar10", 2972, True), ("cifar10", 2971, False)])
def test_pixel_features_need_more_pixels_than_points(dataset, n_test, refused):
    """features=pixels: d_φ is the pixel count, 784 (MNIST) or 3,072 (CIFAR-10), and must exceed
    n_train + n_test (smoke: n_train = 100): the edge cases d_φ = n_train + n_test and d_φ = n_train + n_test + 1."""
    exp = get("kkb2017-linear-memorization")
    params = exp.params("smoke", {"dataset": dataset, "features": "pixels", "n_test": str(n_test),
                                  "d_features": "10"})   # d_features is unused by pixel features
    if refused:
        with pytest.raises(GapbenchError, match=rf"'features' parameter .* dataset '{dataset}' has only "
                                            rf"{FILE_DATASETS[dataset].input_dim} pixels"):
            jobs_for(exp, params)
    else:
        assert jobs_for(exp, params)
