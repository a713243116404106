"""The data layer: IDX / CIFAR readers and their errors, subsets, random labels, NK's generated datasets."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gapbench.config import DataConfig
from gapbench.data import Checksum, list_datasets, load_data, resolve_data_dir
from gapbench.data import files as files_mod
from gapbench.data.cifar import load_cifar10_arrays, read_cifar_batch
from gapbench.data.idx import read_idx, write_idx
from gapbench.data.mnist import FASHION_CHECKSUMS, MNIST_CHECKSUMS, STEMS, load_mnist_arrays
from gapbench.data.subsets import corrupt_labels, draw_subset, training_positions
from gapbench.data.synthetic import hypersphere, hypersphere_sprime, nk_linear, nk_linear_u
from gapbench.errors import DataError, GapbenchError

torch.set_num_threads(1)
N_TRAIN, N_TEST = 40, 12  # points in the small IDX files the tests write


# ----------------------------------------------------------------------------------------- helpers

def idx_bytes_reference(array: np.ndarray, type_code: int, fmt: str) -> bytes:
    """IDX bytes built element by element with struct: the slow, obviously correct encoder."""
    out = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return out + b"".join(struct.pack(">" + fmt, v) for v in array.ravel().tolist())


def write_idx_dataset(root: Path, name: str = "mnist", gz: bool = True, seed: int = 0,
                      train_labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Four small valid IDX files in <root>/<name>/ named like the canonical ones; returns their arrays."""
    gen = np.random.default_rng(seed)
    if train_labels is None:
        train_labels = np.arange(N_TRAIN, dtype=np.uint8) % 10
    arrays = {"train_images": gen.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
              "train_labels": train_labels,
              "test_images": gen.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
              "test_labels": (np.arange(N_TEST, dtype=np.uint8) * 3) % 10}
    (root / name).mkdir(parents=True, exist_ok=True)
    for key, stem in STEMS.items():
        write_idx(root / name / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


def digests(folder: Path, algorithm: str) -> dict[str, Checksum]:
    return {p.name: Checksum(algorithm, hashlib.new(algorithm, p.read_bytes()).hexdigest())
            for p in folder.iterdir()}


def write_cifar(root: Path, n_per_batch: int = 6, labels_test=None) -> dict[str, tuple[np.ndarray, list]]:
    """Six small batches in the canonical python-pickle layout; returns {file: (data, labels)}."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    gen = np.random.default_rng(1)
    batches = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data = gen.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n_per_batch)]
        if name == "test_batch" and labels_test is not None:
            labels = labels_test
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n_per_batch}, handle, protocol=2)
        batches[name] = (data, labels)
    return batches


@pytest.fixture
def fake_mnist(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, write_idx_dataset(tmp_path)


def load_fake(root: Path, **fields) -> object:
    return load_data(DataConfig(name=fields.pop("name", "mnist"), **fields), data_dir=root, verify=False)


# ------------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype,code,fmt", [(np.uint8, 0x08, "B"), (np.int16, 0x0B, "h"),
                                            (np.float32, 0x0D, "f")])
def test_idx_round_trip_matches_reference_encoding(tmp_path, gz, dtype, code, fmt):
    array = (np.arange(2 * 3 * 4) * 7 % 251).reshape(2, 3, 4).astype(dtype)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    assert raw == idx_bytes_reference(array, code, fmt)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(5, dtype=np.uint8)
    path = tmp_path / "labels.bin"
    path.write_bytes(gzip.compress(idx_bytes_reference(array, 0x08, "B")))
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match=r"bad\.idx is not an IDX file: its first bytes are 12340801"):
        read_idx(path)


def test_idx_truncated_names_file_and_sizes(tmp_path):
    path = write_idx(tmp_path / "t.idx", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"t\.idx is truncated or corrupt: .*shape \(4, 28, 28\).*3147 bytes"):
        read_idx(path)


def test_idx_shorter_than_header(tmp_path):
    path = tmp_path / "h.idx"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DataError, match=r"h\.idx is truncated: 6 bytes, shorter than its 16-byte IDX header"):
        read_idx(path)


def test_idx_corrupt_and_truncated_gzip(tmp_path):
    good = write_idx(tmp_path / "g.idx.gz", np.arange(1000, dtype=np.uint8))
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not a deflate stream at all")
    with pytest.raises(DataError, match=r"Cannot decompress .*broken\.gz: it is not a valid gzip file"):
        read_idx(broken)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:-12])
    with pytest.raises(DataError, match=r"Cannot decompress .*cut\.gz"):
        read_idx(cut)


# ----------------------------------------------------------------------------- MNIST / Fashion files

def test_missing_dataset_names_files_directory_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_data(DataConfig("mnist"), data_dir=tmp_path)
    msg = str(err.value)
    for part in ("Dataset 'mnist' not found", "train-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]",
                 str(tmp_path / "mnist"), "https://ossci-datasets.s3.amazonaws.com/mnist/", "--data-dir",
                 "GAPBENCH_DATA"):
        assert part in msg


def test_checksum_mismatch_names_file_and_both_hashes(fake_mnist):
    root, _ = fake_mnist
    path = root / "mnist" / "train-images-idx3-ubyte.gz"
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        load_data(DataConfig("mnist"), data_dir=root)
    msg = str(err.value)
    assert f"Checksum mismatch for {path}" in msg
    assert MNIST_CHECKSUMS[path.name].hexdigest in msg and actual in msg


def test_injected_checksums_verify_and_record_provenance(fake_mnist):
    root, arrays = fake_mnist
    got, files = load_mnist_arrays(root, "mnist", checksums=digests(root / "mnist", "sha256"))
    for key, array in arrays.items():
        np.testing.assert_array_equal(got[key], array)
        assert files[key]["verified"]
        assert files[key]["sha256"] == hashlib.sha256(Path(files[key]["path"]).read_bytes()).hexdigest()
    assert not got["train_images"].flags.writeable  # the cached array cannot be mutated by a caller
    assert load_mnist_arrays(root, "mnist", checksums=digests(root / "mnist", "sha256"))[0]["train_images"] \
        is got["train_images"]  # decoded once per process


def test_raw_idx_files_and_pixel_scaling(tmp_path):
    arrays = write_idx_dataset(tmp_path, gz=False)
    data = load_fake(tmp_path)
    assert data.train.x.shape == (N_TRAIN, 1, 28, 28) and data.input_shape == (1, 28, 28)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    expected = arrays["train_images"][data.train.indices.numpy()].astype(np.float64) / 255.0
    np.testing.assert_allclose(data.train.x[:, 0].double().numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.test.y.numpy(), arrays["test_labels"])
    assert data.test.source == "test" and data.train.source == "train"
    assert data.info["files"]["train_images"]["verified"] is False


def test_labels_out_of_range_names_file(tmp_path):
    labels = np.arange(N_TRAIN, dtype=np.uint8) % 10
    labels[7] = 10
    write_idx_dataset(tmp_path, train_labels=labels)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz has labels out of range: label 10 at "
                                        r"position 7"):
        load_fake(tmp_path)


def test_image_label_count_mismatch(tmp_path):
    write_idx_dataset(tmp_path, train_labels=np.zeros(N_TRAIN - 1, np.uint8))
    with pytest.raises(DataError, match=r"has 40 images but .*train-labels.* has 39 labels"):
        load_fake(tmp_path)


def test_fashion_mnist_loads_with_injected_md5_and_canonical_table_refuses(tmp_path):
    arrays = write_idx_dataset(tmp_path, name="fashion_mnist", seed=3)
    table = digests(tmp_path / "fashion_mnist", "md5")
    got, files = load_mnist_arrays(tmp_path, "fashion_mnist", checksums=table)
    np.testing.assert_array_equal(got["test_images"], arrays["test_images"])
    assert all(f["verified"] for f in files.values())
    with pytest.raises(DataError) as err:
        load_data(DataConfig("fashion_mnist"), data_dir=tmp_path)
    assert "expected md5 " in str(err.value)
    assert any(c.hexdigest in str(err.value) for c in FASHION_CHECKSUMS.values())
    assert len(load_fake(tmp_path, name="fashion_mnist").train) == N_TRAIN


# ------------------------------------------------------------------------------------------ CIFAR

def test_cifar10_loader_layout_and_checksums(tmp_path):
    batches = write_cifar(tmp_path)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    arrays, files = load_cifar10_arrays(tmp_path, checksums=digests(folder, "md5"))
    assert arrays["train_images"].shape == (30, 3, 32, 32) and arrays["test_images"].shape == (6, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    row = data[1]  # 1024 red, 1024 green, 1024 blue values, each plane row-major
    image = arrays["train_images"][6 + 1]
    assert image[0, 0, 5] == row[5] and image[1, 2, 3] == row[1024 + 2 * 32 + 3]
    assert image[2, 31, 31] == row[-1]
    assert arrays["train_labels"][7] == labels[1]
    assert all(f["verified"] for f in files.values())
    with pytest.raises(DataError, match=r"Checksum mismatch for .*data_batch_1: expected md5 "
                                        r"c99cafc152244af753f735de768cd75f"):
        load_cifar10_arrays(tmp_path)
    ds = load_data(DataConfig("cifar10", n_train=10, n_val=5, n_test=4), data_dir=tmp_path, verify=False)
    assert ds.input_shape == (3, 32, 32) and ds.train.x.shape == (10, 3, 32, 32)
    assert 0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1


def test_cifar_refuses_foreign_pickle_globals(tmp_path):
    path = tmp_path / "evil"
    path.write_bytes(b"cos\nsystem\n(S'echo owned'\ntR.")
    with pytest.raises(DataError, match=r"Cannot read .*evil: .*global 'os\.system' is not allowed"):
        read_cifar_batch(path)


def test_cifar_labels_out_of_range(tmp_path):
    write_cifar(tmp_path, labels_test=[0, 1, 2, 3, 4, 12])
    with pytest.raises(DataError, match=r"test_batch has labels out of range \[0, 12\]"):
        load_cifar10_arrays(tmp_path, verify=False)


# -------------------------------------------------------------------------------- real MNIST (shared)

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_shapes_range_counts(mnist):
    assert mnist.train.x.shape == (60000, 1, 28, 28) and mnist.test.x.shape == (10000, 1, 28, 28)
    assert float(mnist.train.x.min()) == 0.0 and float(mnist.train.x.max()) == 1.0
    assert torch.bincount(mnist.train.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert all(f["verified"] for f in mnist.info["files"].values())


def test_real_mnist_reload_is_cached(mnist, data_dir):
    start = time.perf_counter()
    sub = load_data(DataConfig("mnist", n_train=256, n_val=1000, n_test=100), data_dir=data_dir)
    assert time.perf_counter() - start < 1.0   # decoded arrays and checksums come from the in-process cache
    assert len(sub.val) == 1000 and not set(sub.val.indices.tolist()) & set(sub.train.indices.tolist())


# ---------------------------------------------------------------------------------- subsets / labels

def test_draw_subset_deterministic_and_valid():
    a, b, c = draw_subset(100, 30, seed=4), draw_subset(100, 30, seed=4), draw_subset(100, 30, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(set(a.tolist())) == 30 and a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(draw_subset(100, 50, seed=4)[:30], a)   # nested in m for one seed
    assert sorted(draw_subset(100, 100, seed=1).tolist()) == list(range(100))
    rep = draw_subset(10, 1000, seed=2, replace=True)
    assert rep.min() >= 0 and rep.max() < 10 and len(set(rep.tolist())) == 10
    np.testing.assert_array_equal(rep, draw_subset(10, 1000, seed=2, replace=True))
    beyond = draw_subset(10, 25, seed=3)        # without replacement beyond the pool: 2 or 3 copies each
    assert sorted(np.bincount(beyond, minlength=10).tolist()) == [2] * 5 + [3] * 5


def test_m_beyond_pool_needs_augmentation(fake_mnist):
    root, _ = fake_mnist
    with pytest.raises(GapbenchError, match=r"The 'n_train' parameter of load_data\(\) must be an int <= "
                                            r"pool_size = 20\. Got 30 instead\. .*augment_noise > 0"):
        load_fake(root, n_train=30, pool_size=20)


def test_augmentation_noise_beyond_the_pool(fake_mnist):
    root, arrays = fake_mnist
    data = load_fake(root, n_train=30, pool_size=20, augment_noise=0.01, subset_seed=1)
    exact = arrays["train_images"][data.train.indices.numpy()].astype(np.float32) / 255.0
    diff = data.train.x[:, 0].numpy() - exact
    assert np.all(diff[:20] == 0)                                   # the first pool_size draws are untouched
    assert 0 < np.abs(diff[20:]).max() <= 0.01 + 1e-6               # copies beyond: U(-0.01, 0.01), unclipped
    assert abs(diff[20:].mean()) < 0.002 and diff[20:].std() > 0.004  # U(-a, a): std = a/√3 ≈ 0.0058
    assert data.info["augmented_from"] == 20
    nk = load_fake(root, n_train=30, pool_size=20, augment_noise=0.01, subset_seed=1,
                   options={"augment_from": 5})                     # NK's code starts the noise at 32678
    assert np.all(nk.train.x[:5].numpy() == data.train.x[:5].numpy())
    assert np.all(nk.train.x[5:, 0].numpy() != exact[5:])
    _, start = training_positions(20, 10, 0, False, 0.01)
    assert start == 10   # m within the pool: no noise unless augment_from says so


def test_validation_split_disjoint_and_overlap_errors(fake_mnist):
    """The old contiguous layout, kept as val_split='last' (the random split: tests/test_data_split.py)."""
    root, arrays = fake_mnist
    for seed in range(3):
        data = load_fake(root, n_train=20, n_val=8, replace=True, subset_seed=seed, val_split="last")
        assert data.val.indices.tolist() == list(range(32, 40))
        assert set(data.train.indices.tolist()).isdisjoint(data.val.indices.tolist())
        np.testing.assert_array_equal(data.val.y.numpy(), arrays["train_labels"][32:])
        assert data.val.source == "train" and data.val.name == "val"
    with pytest.raises(GapbenchError, match=r"The 'pool_size' parameter of load_data\(\) must be an int "
                                            r"<= 32 .*disjoint\. Got 35 instead\. Lower pool_size or "
                                            r"n_val\."):
        load_fake(root, pool_size=35, n_val=8)
    with pytest.raises(GapbenchError, match=r"The 'n_val' parameter .* must be an int < 40"):
        load_fake(root, n_val=40)
    with pytest.raises(GapbenchError, match=r"The 'n_test' parameter .* must be an int <= 12"):
        load_fake(root, n_test=13)
    assert load_fake(root, n_test=5, options={"test_subset": "first"}).test.indices.tolist() == list(range(5))


def test_corrupt_labels_exact_fraction_deterministic_pure():
    y = np.arange(1000) % 10
    original = y.copy()
    noisy, positions = corrupt_labels(y, 0.25, 10, seed=7)
    np.testing.assert_array_equal(y, original)                       # input untouched
    assert len(positions) == 250 and len(set(positions.tolist())) == 250
    outside = np.setdiff1d(np.arange(1000), positions)
    np.testing.assert_array_equal(noisy[outside], y[outside])
    assert noisy.min() >= 0 and noisy.max() < 10
    again, pos2 = corrupt_labels(y, 0.25, 10, seed=7)
    np.testing.assert_array_equal(again, noisy) and np.testing.assert_array_equal(pos2, positions)
    assert len(corrupt_labels(y[:7], 0.5, 10, seed=0)[1]) == 4      # round half up: 3.5 -> 4
    full, _ = corrupt_labels(np.zeros(20000, np.int64), 1.0, 10, seed=1)
    assert np.abs(np.bincount(full, minlength=10) / 20000 - 0.1).max() < 0.01   # uniform over K classes
    t_noisy, t_pos = corrupt_labels(torch.as_tensor(y), 0.25, 10, seed=7)
    assert isinstance(t_noisy, torch.Tensor) and torch.equal(t_noisy, torch.from_numpy(noisy))


def test_load_data_label_noise(fake_mnist):
    root, _ = fake_mnist
    clean = load_fake(root, n_train=30)
    noisy = load_fake(root, n_train=30, label_noise=0.5, label_seed=3)
    assert torch.equal(clean.train.x, noisy.train.x) and noisy.info["n_corrupted_labels"] == 15
    assert torch.equal(noisy.train.y, load_fake(root, n_train=30, label_noise=0.5, label_seed=3).train.y)
    assert torch.equal(clean.test.y, noisy.test.y)


# -------------------------------------------------------------------------------------- hypersphere

def test_hypersphere_radii_labels_balance():
    x, y = hypersphere(4000, 12, 1.0, 1.3, np.random.default_rng(0))
    radii = np.linalg.norm(x.astype(np.float64), axis=1)
    np.testing.assert_allclose(radii, np.where(y == 1, 1.3, 1.0), rtol=1e-5)
    assert abs(y.mean() - 0.5) < 0.03 and x.dtype == np.float32
    assert np.abs(x.mean(axis=0)).max() < 0.03   # uniform directions: mean ≈ 0 (its std ≈ 1/√(12·4000))


def test_hypersphere_dataset_and_sprime():
    cfg = DataConfig("hypersphere", n_train=500, n_test=300, n_val=50, subset_seed=2,
                     options={"dim": 8, "r_inner": 1.0, "r_outer": 1.5})
    data = load_data(cfg)
    sp = data.extra["sprime"]
    assert data.split("sprime") is sp and data.num_classes == 2 and data.input_shape == (8,)
    r, rs = data.train.x.double().norm(dim=1), sp.x.double().norm(dim=1)
    close = np.testing.assert_allclose
    close(rs.numpy(), np.where(data.train.y.numpy() == 0, 1.5, 1.0), rtol=1e-5)
    close((r * rs).numpy(), 1.5, rtol=1e-5)                                          # radii swapped
    assert torch.equal(sp.y, 1 - data.train.y)                                       # labels flipped
    close((sp.x / rs[:, None]).numpy(), (data.train.x / r[:, None]).numpy(), atol=1e-6)  # directions
    assert abs(sp.y.double().mean() - 0.5) < 0.08           # S' has the same label balance as S
    again = load_data(cfg)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.x, data.test.x)
    other = load_data(DataConfig("hypersphere", n_train=500, n_test=300, subset_seed=3, options=cfg.options))
    assert not torch.equal(other.train.x, data.train.x)
    assert torch.equal(other.test.x, data.test.x)            # one fixed test stream for every training draw
    assert len(data.test) == 300 and len(data.val) == 50
    assert data.info["params"]["dim"] == 8 and data.info["test_seed"] == 0
    x, y = data.train.x.numpy(), data.train.y.numpy()
    xs, ys = hypersphere_sprime(x, y, 1.0, 1.5)
    np.testing.assert_array_equal(y, data.train.y.numpy()) and np.testing.assert_allclose(xs, sp.x.numpy())


def test_generated_dataset_errors():
    with pytest.raises(GapbenchError, match=r"The 'n_train' parameter of load_data\('hypersphere'\) must be "
                                            r"an int >= 1 for a generated dataset\. Got None instead\."):
        load_data(DataConfig("hypersphere"))
    with pytest.raises(GapbenchError, match=r"The 'pool_size' parameter of load_data\('nk_linear'\)"):
        load_data(DataConfig("nk_linear", n_train=4, pool_size=4))
    with pytest.raises(GapbenchError, match=r"The 'r_outer' parameter of hypersphere\(\) must be a float > "
                                            r"r_inner = 2\.0\. Got 1\.0 instead\."):
        load_data(DataConfig("hypersphere", n_train=4, options={"r_inner": 2.0, "r_outer": 1.0}))
    with pytest.raises(GapbenchError, match=r"Unknown option 'radius' for dataset 'hypersphere'\. .*Known "
                                            r"options: dim, r_inner, r_outer, test_seed\."):
        load_data(DataConfig("hypersphere", n_train=4, options={"radius": 2.0}))


# ---------------------------------------------------------------------------------------- nk_linear

def test_nk_linear_shapes_u_norm_noise_var_and_sprime():
    m, k, d = 16, 3, 16000
    data = load_data(DataConfig("nk_linear", n_train=m, n_test=64, options={"K": k, "D": d}))
    x, y = data.train.x, data.train.y
    assert x.shape == (m, k + d) and data.test.x.shape == (64, k + d) and x.dtype == torch.float32
    u = nk_linear_u(m, k)
    assert abs(np.linalg.norm(u) - 1 / np.sqrt(m)) < 1e-12
    sign = (2 * y - 1).double()                                         # class 1 <-> y = +1
    np.testing.assert_allclose(x[:, :k].double().numpy(), 2 * sign[:, None].numpy() * u[None], rtol=1e-6)
    noise = torch.cat([x[:, k:], data.test.x[:, k:]]).double()
    var = float(noise.var())                                            # 80·16000 draws of N(0, 32/D)
    assert abs(var / (32.0 / d) - 1) < 0.02 and abs(float(noise.mean())) < 0.003
    sp = data.extra["sprime"]
    assert torch.equal(sp.x[:, :k], x[:, :k]) and torch.equal(sp.x[:, k:], -x[:, k:]) and torch.equal(sp.y, y)
    assert data.info["u_norm"] == pytest.approx(0.25) and data.info["noise_var"] == pytest.approx(32 / d)
    default_d = load_data(DataConfig("nk_linear", n_train=4, n_test=2))
    assert default_d.input_shape == (1 + 4000,) and default_d.info["bytes_per_point"] == 4 * 4001


def test_nk_linear_generator_scales():
    gen = np.random.default_rng(0)
    x, c = nk_linear(2000, m=9, k=1, d=50, gen=gen, u_norm_scale=3.0, noise_var_scale=5.0)
    np.testing.assert_allclose(np.abs(x[:, 0]), 2 * 3.0 / 3.0, rtol=1e-6)   # |x1| = 2‖u‖ = 2·3/√9
    assert abs(x[:, 1:].var() / (5.0 / 50) - 1) < 0.03 and set(np.unique(c)) == {0, 1}


# ------------------------------------------------------------------------------- registry / paths

def test_list_datasets_and_unknown_name():
    infos = {d.name: d for d in list_datasets()}
    assert set(infos) == {"mnist", "fashion_mnist", "cifar10", "hypersphere", "nk_linear"}
    assert {d.kind for d in infos.values()} == {"file", "generated"}
    assert all(d.description and d.reference for d in infos.values())
    assert set(infos["nk_linear"].params) == {"K", "D", "u_norm_scale", "noise_var_scale", "test_seed"}
    with pytest.raises(GapbenchError, match=r"Unknown dataset 'minst'\. Did you mean 'mnist'\?"):
        load_data(DataConfig("minst"))


def test_resolve_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GAPBENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("GAPBENCH_DATA")
    assert "gapbench" in str(resolve_data_dir())


def test_download_is_atomic_and_verified(tmp_path):
    source = write_idx(tmp_path / "src.gz", np.arange(10, dtype=np.uint8))
    good = Checksum("sha256", hashlib.sha256(source.read_bytes()).hexdigest())
    dest = tmp_path / "data" / "mnist" / "f.gz"
    files_mod.download(source.as_uri(), dest, good)                 # file:// URL: no network involved
    assert dest.read_bytes() == source.read_bytes()
    bad = tmp_path / "data" / "mnist" / "g.gz"
    with pytest.raises(DataError, match=r"its sha256 is [0-9a-f]{64}, expected 0+; nothing was saved"):
        files_mod.download(source.as_uri(), bad, Checksum("sha256", "0" * 64))
    assert sorted(os.listdir(dest.parent)) == ["f.gz"]              # no temp file, no half-written file
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"Could not download http://127\.0\.0\.1:9/x"):
        files_mod.download("http://127.0.0.1:9/x", tmp_path / "h", None, timeout_s=2)   # refused locally
    assert time.perf_counter() - start < 5


def test_checksum_cache_rehashes_changed_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert files_mod.file_digest(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")
    os.utime(path, ns=(1, 10**9))    # a different (size, mtime): a new cache key
    assert files_mod.file_digest(path) == hashlib.sha256(b"abcd").hexdigest()


def test_random_test_subset_is_fixed_and_spread(fake_mnist):
    root, arrays = fake_mnist
    first = load_fake(root, n_test=6, options={"test_subset": "first"})
    rand = load_fake(root, n_test=6, subset_seed=4)           # 'random' is the default
    positions = rand.test.indices.numpy()
    assert len(set(positions.tolist())) == 6 and positions.tolist() != list(range(6))
    np.testing.assert_array_equal(rand.test.y.numpy(), arrays["test_labels"][positions])
    assert torch.equal(load_fake(root, n_test=6, options={"test_subset": "random"}).test.x, rand.test.x)
    assert first.test.indices.tolist() == list(range(6))
    with pytest.raises(GapbenchError, match=r"The 'test_subset' parameter of load_data\(\) must be one of "
                                            r"\['first', 'random'\]\. Got 'middle' instead\."):
        load_fake(root, n_test=6, options={"test_subset": "middle"})


def test_download_into_unwritable_directory_fails_cleanly(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_bytes(b"")            # the data directory cannot be created (works as root, too)
    with pytest.raises(DataError, match=r"Could not write .*not_a_dir/f\.gz .*read-only"):
        files_mod.download("http://127.0.0.1:9/x", blocker / "f.gz", None, timeout_s=2)
