"""The validation split of a file dataset: a seeded uniformly random subset of the training file (the pool is the
rest), disjoint from every training draw of every subset_seed; the old contiguous layout on request; configs
without a random split keep the signatures (and data) they had before it existed, the others get new ones."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_data import load_fake, write_idx_dataset

import gapbench as gb
from gapbench.certificate import certify
from gapbench.cli import main
from gapbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig, from_dict, signature, to_dict
from gapbench.data.subsets import draw_subset, validation_layout
from gapbench.errors import GapbenchError

torch.set_num_threads(1)
N_FILE = 60000            # MNIST's training file: positions only, validation_layout never reads pixels
SPLIT_STREAM = 5          # gapbench.data.subsets.STREAM_SPLIT, spelled out so a renumbering fails here

# Captured from the code before the random split existed (git c401db0), by signature(...) of these configs.
OLD_SIGNATURES = {
    "default": (RunConfig(), "ede0de8074924080"),
    "nk_fig1": (RunConfig(data=DataConfig("mnist", n_train=1000, pool_size=55000, replace=True, augment_noise=0.01,
                                          n_test=10000),
                          model=ModelConfig(depth=5, width=1024, bias=False), train=TrainConfig(batch_size=1, lr=0.01)),
                "2be840c80f2f215d"),
    "seeds": (RunConfig(data=DataConfig("mnist", n_train=4096, subset_seed=3, label_noise=0.5, label_seed=2)),
              "0b5b48e6f1dc05a6"),
    "cifar": (RunConfig(data=DataConfig("cifar10", n_train=5000, n_test=1000)), "c322f58df5b36a56"),
    "sphere": (RunConfig(data=DataConfig("hypersphere", n_train=500, options={"dim": 20})), "b6a84a4f58606b0f"),
    "job_dict": ({"run": to_dict(RunConfig(data=DataConfig("mnist", n_train=1000, pool_size=9500))), "hp": {"x": 1}},
                 "e0d589e55cb13210"),
}
OLD_NVAL_SIGNATURES = {   # the same capture, configs with n_val > 0 (their data were the file's last n_val rows)
    "run": (DataConfig("mnist", n_train=1000, n_val=2000), True, "4909134e1464769c"),
    "data": (DataConfig("mnist", n_val=2000), False, "54bee2067f84fb45"),
    "pool": (DataConfig("mnist", n_val=500, pool_size=9500, n_test=2000), True, "a749917ac92c0c88"),
}
# sha256[:16] of the int64 / float32 bytes load_data gave on the real MNIST before the random split (c401db0)
OLD_MNIST = {
    "n_train=1000,subset_seed=3": (dict(n_train=1000, subset_seed=3),
                                   {"train_indices": "169a060f67a9fc30", "train_x": "66e4190ec40c6b09"}),
    "nk": (dict(n_train=60000, pool_size=55000, replace=True, augment_noise=0.01, subset_seed=1),
           {"train_indices": "03fcb72f4e797b71", "train_x": "89b6d3b26466f328"}),
    "labels": (dict(n_train=500, label_noise=0.5, label_seed=2),
               {"train_indices": "833b6d28f962a4a0", "train_y": "d01fb9baa40c325d"}),
    "n_val=2000 'last'": (dict(n_val=2000, n_train=1000, subset_seed=2, val_split="last"),
                          {"train_indices": "8bf36ef4ee61ede4", "val_indices": "030aad3af59223c2"}),
    "n_val=500 pool 9500 'last'": (dict(n_val=500, pool_size=9500, n_test=2000, val_split="last"),
                                   {"train_indices": "94765fd182d9b6d9", "val_indices": "59e298151552e3c1"}),
}


def reference_layout(n_file: int, n_val: int, pool_size: int | None, seed: int) -> tuple[list[int], list[int]]:
    """The random split spelled out: one permutation from SeedSequence(seed, spawn_key=(split stream,)), its first
    n_val entries the validation set, the next pool_size (default: all) the pool, each sorted by a plain loop."""
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(SPLIT_STREAM,))))
    order = order.permutation(n_file).tolist()
    pool_size = n_file - n_val if pool_size is None else pool_size
    val, pool = [], []
    for rank, position in enumerate(order):
        if rank < n_val:
            val.append(position)
        elif rank < n_val + pool_size:
            pool.append(position)
    return sorted(val), sorted(pool)


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.numpy()).tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ the layout

@pytest.mark.parametrize("n_val,pool_size,seed", [(2000, None, 0), (2000, 9500, 0), (7, None, 3), (500, 100, 11)])
def test_random_split_equals_the_reference(n_val, pool_size, seed):
    pool, val = validation_layout(N_FILE, n_val, pool_size, "random", seed)
    ref_val, ref_pool = reference_layout(N_FILE, n_val, pool_size, seed)
    assert val.tolist() == ref_val and pool.tolist() == ref_pool
    assert val.dtype == pool.dtype == np.int64


def test_split_and_pool_are_disjoint_and_cover_the_file():
    pool, val = validation_layout(N_FILE, 2000, None, "random", 0)
    assert len(val) == 2000 and len(pool) == N_FILE - 2000
    assert len(np.intersect1d(pool, val)) == 0
    assert np.array_equal(np.union1d(pool, val), np.arange(N_FILE))
    small, _ = validation_layout(N_FILE, 2000, 9500, "random", 0)
    assert len(small) == 9500 and len(np.intersect1d(small, val)) == 0


def _block_counts(positions: np.ndarray, n_blocks: int = 12) -> np.ndarray:
    return np.bincount(positions * n_blocks // N_FILE, minlength=n_blocks)


@pytest.mark.parametrize("seed", range(5))
def test_random_split_looks_uniform_over_the_file(seed):
    """Counts per 5,000-row block: chi-square (11 d.o.f.) below its 0.999 quantile 31.26, every block within 5
    standard deviations of 2000/12; the empirical CDF of the positions within the KS 0.999 band 1.95/√n.
    The old layout (the last 2,000 rows) fails all three, so these checks can fail."""
    for how, uniform in (("random", True), ("last", False)):
        _, val = validation_layout(N_FILE, 2000, None, how, seed)
        counts = _block_counts(val)
        expected, var = 2000 / 12, 2000 * (1 / 12) * (11 / 12)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        ks = float(np.max(np.abs(np.arange(1, 2001) / 2000 - (np.sort(val) + 1) / N_FILE)))
        checks = (chi2 < 31.26, bool(np.all(np.abs(counts - expected) < 5 * np.sqrt(var))), ks < 1.95 / np.sqrt(2000))
        assert checks == ((True,) * 3 if uniform else (False,) * 3), (how, chi2, counts.tolist(), ks)


def test_random_split_is_not_contiguous():
    _, val = validation_layout(N_FILE, 2000, None, "random", 0)
    gaps = np.diff(val)
    assert val[-1] - val[0] > 0.99 * N_FILE             # spread over the whole file
    assert int((gaps == 1).sum()) < 200                 # ≈ 2000 · 2000/60000 = 67 adjacent pairs expected


def test_split_is_reproducible_from_its_seed_alone():
    a = validation_layout(N_FILE, 1000, None, "random", 4)
    b = validation_layout(N_FILE, 1000, None, "random", 4)
    c = validation_layout(N_FILE, 1000, None, "random", 5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])
    state = np.random.get_state()[1].copy(), torch.get_rng_state()
    validation_layout(N_FILE, 1000, None, "random", 4)
    assert np.array_equal(np.random.get_state()[1], state[0]) and torch.equal(torch.get_rng_state(), state[1])


def test_without_validation_the_pool_is_the_first_pool_size_positions():
    for how in ("random", "last"):
        pool, val = validation_layout(N_FILE, 0, 55000, how, 7)
        assert np.array_equal(pool, np.arange(55000)) and len(val) == 0


def test_last_layout_is_the_old_one():
    pool, val = validation_layout(N_FILE, 2000, 9500, "last", 3)
    assert np.array_equal(val, np.arange(58000, 60000)) and np.array_equal(pool, np.arange(9500))


def test_bad_layout_arguments_are_refused():
    with pytest.raises(GapbenchError, match=r"The 'val_split' parameter of load_data\(\) must be one of "
                                            r"\['random', 'last'\]\. Got 'first' instead"):
        validation_layout(N_FILE, 10, None, "first", 0)
    with pytest.raises(GapbenchError, match=r"The 'pool_size' parameter of load_data\(\) must be an int <= 59990"):
        validation_layout(N_FILE, 10, 59991, "random", 0)
    with pytest.raises(GapbenchError, match=r"The 'val_split' parameter of DataConfig must be one of"):
        DataConfig(n_val=10, val_split="tail")
    with pytest.raises(GapbenchError, match=r"The 'split_seed' parameter of DataConfig must be an int >= 0\. "
                                            r"Got -1 instead"):
        DataConfig(n_val=10, split_seed=-1)


# ---------------------------------------------------------------------------- loaded data (fake file)

@pytest.fixture
def fake(tmp_path):
    return tmp_path, write_idx_dataset(tmp_path)


def test_training_draws_index_the_pool_and_miss_the_split(fake):
    root, arrays = fake
    _, ref_pool = reference_layout(40, 8, None, 0)
    vals = set()
    for seed in range(6):
        for kwargs in (dict(n_train=20), dict(n_train=20, replace=True), dict(n_train=32),
                       dict(n_train=50, augment_noise=0.01)):
            data = load_fake(root, n_val=8, subset_seed=seed, **kwargs)
            drawn = draw_subset(32, kwargs["n_train"], seed, kwargs.get("replace", False))
            assert data.train.indices.tolist() == [ref_pool[i] for i in drawn]
            assert set(data.train.indices.tolist()).isdisjoint(data.val.indices.tolist())
            vals.add(tuple(data.val.indices.tolist()))
            np.testing.assert_array_equal(data.val.y.numpy(), arrays["train_labels"][data.val.indices.numpy()])
            np.testing.assert_array_equal(data.train.y.numpy(), arrays["train_labels"][data.train.indices.numpy()])
    assert vals == {tuple(reference_layout(40, 8, None, 0)[0])}   # one split for every subset_seed
    other = load_fake(root, n_val=8, split_seed=1)
    assert other.val.indices.tolist() == reference_layout(40, 8, None, 1)[0] != list(vals.pop())


def test_draws_stay_nested_in_m(fake):
    root, _ = fake
    small = load_fake(root, n_val=8, n_train=10, subset_seed=2).train.indices
    large = load_fake(root, n_val=8, n_train=25, subset_seed=2).train.indices
    assert torch.equal(large[:10], small)


def test_dataset_info_describes_the_split(fake):
    root, _ = fake
    data = load_fake(root, n_val=8, n_train=10, split_seed=1)
    assert data.val.indices.tolist() == reference_layout(40, 8, None, 1)[0]
    assert "val_positions" not in data.info                  # the positions are data.val.indices, listed once
    assert data.info["val_split"] == ("random: the first 8 positions of a uniform permutation of the 40-point "
                                      "training file (split_seed 1); pool: all the other positions, in file order")
    assert data.info["pool_size"] == 32
    sub = load_fake(root, n_val=8, pool_size=20)
    assert sub.info["val_split"].endswith("pool: the next 20 of the permutation, in file order")
    old = load_fake(root, n_val=8, val_split="last")
    assert old.info["val_split"] == "last: positions [32, 40); pool: positions [0, 32)"
    assert old.val.indices.tolist() == list(range(32, 40))
    none = load_fake(root, n_train=10)
    assert none.info["val_split"] is None and none.val is None


def test_generated_data_ignore_val_split_and_refuse_split_seed():
    base = DataConfig("hypersphere", n_train=20, n_val=10, n_test=10, options={"dim": 3})
    a = gb.load_data(base)
    b = gb.load_data(base, val_split="last")
    assert torch.equal(a.val.x, b.val.x)
    with pytest.raises(GapbenchError, match=r"The 'split_seed' parameter of load_data\('hypersphere'\) must be 0 "
                                            r"\(it has no meaning for generated data\)\. Got 3 instead"):
        gb.load_data(base, split_seed=3)


# ----------------------------------------------------------------------- overlap checks, certificates

def test_certify_checks_the_random_split_and_refuses_another_splits_points(fake):
    root, _ = fake
    cfg = RunConfig(data=DataConfig("mnist", n_train=30, n_val=8), model=ModelConfig(width=4),
                    train=TrainConfig(stop="epochs", max_epochs=1))
    data = gb.load_data(cfg.data, data_dir=root, verify=False)
    run = gb.fit(cfg, data)
    model = run.model
    assert "checked: disjoint from the 30 training points" in certify(model, data.val, run=run).format()
    other = gb.load_data(cfg.data, data_dir=root, verify=False, split_seed=1)   # another split: overlaps the pool
    shared = len(set(other.val.indices.tolist()) & set(run.train_indices.tolist()))
    assert shared > 0
    with pytest.raises(GapbenchError, match=rf"shares {shared} of its 8 points with the 30 training points"):
        certify(model, other.val, run=run)


def test_cli_certifies_a_checkpoint_on_its_own_split(data_dir, tmp_path):
    """The checkpoint's config reloads its split: the random one, and the 'last' one (whose stored config is the
    dict gapbench wrote before the random split existed, so an old checkpoint reloads the old split)."""
    if not (data_dir / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    root = data_dir
    for how in ("random", "last"):
        cfg = RunConfig(data=DataConfig("mnist", n_train=30, n_val=8, val_split=how), model=ModelConfig(width=4),
                        train=TrainConfig(stop="epochs", max_epochs=1))
        run = gb.fit(cfg, gb.load_data(cfg.data, data_dir=root))
        path = gb.save_checkpoint(tmp_path / f"{how}.pt", run)
        assert gb.load_checkpoint(path).config == cfg
        out = CliRunner().invoke(main, ["certify", str(path), "--split", "val", "--data-dir", str(root), "--json"])
        assert out.exit_code == 0, out.output
        assert "checked: disjoint from the 30 training points" in json.dumps(json.loads(out.output))
        stored = json.loads(torch.load(path, weights_only=True)["config"])["data"]
        assert ("val_split" in stored) == (how == "random")


# --------------------------------------------------------------------------------------- signatures

@pytest.mark.parametrize("key", sorted(OLD_SIGNATURES))
def test_configs_without_a_random_split_keep_their_signatures(key):
    cfg, old = OLD_SIGNATURES[key]
    assert signature(cfg) == old
    if isinstance(cfg, RunConfig):
        assert "val_split" not in to_dict(cfg)["data"] and "split_seed" not in to_dict(cfg)["data"]


@pytest.mark.parametrize("key", sorted(OLD_NVAL_SIGNATURES))
def test_configs_with_a_random_split_get_new_signatures_and_last_gets_the_old_one(key):
    data, wrap, old = OLD_NVAL_SIGNATURES[key]

    def sig(d):
        return signature(RunConfig(data=d)) if wrap else signature(d)

    assert sig(data) != old
    assert sig(DataConfig(**{**to_dict(data), "split_seed": 1})) not in (old, sig(data))
    last = DataConfig(**{**to_dict(data), "val_split": "last"})
    assert sig(last) == old
    assert to_dict(last) == {k: v for k, v in to_dict(data).items() if k not in ("val_split", "split_seed")}


def test_dicts_round_trip_and_old_dicts_read_as_the_old_layout():
    for cfg in (DataConfig(n_val=5), DataConfig(n_val=5, split_seed=2), DataConfig(n_val=5, val_split="last"),
                DataConfig(), DataConfig(val_split="last", split_seed=4)):
        back = from_dict(DataConfig, to_dict(cfg))
        assert signature(back) == signature(cfg)
        # without validation points the split fields change nothing and are not written: they read back as defaults
        assert back == (cfg if cfg.n_val else dataclasses.replace(cfg, val_split="random", split_seed=0))
    assert to_dict(DataConfig(n_val=5))["val_split"] == "random" and to_dict(DataConfig(n_val=5))["split_seed"] == 0
    written_before = {k: v for k, v in to_dict(DataConfig(n_val=5)).items() if k not in ("val_split", "split_seed")}
    assert from_dict(DataConfig, written_before).val_split == "last"
    assert from_dict(RunConfig, {"data": written_before}).data.val_split == "last"


# ------------------------------------------------------------------------------ the real MNIST file

@pytest.mark.parametrize("key", sorted(OLD_MNIST))
def test_real_mnist_without_a_random_split_gives_the_old_data(key, data_dir):
    if not (data_dir / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    fields, digests = OLD_MNIST[key]
    data = gb.load_data(DataConfig("mnist", **fields), data_dir=data_dir)
    got = {"train_indices": data.train.indices, "train_x": data.train.x, "train_y": data.train.y,
           "val_indices": None if data.val is None else data.val.indices}
    assert {k: digest(got[k]) for k in digests} == digests


def test_real_mnist_random_split(data_dir):
    if not (data_dir / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    data = gb.load_data(DataConfig("mnist", n_train=1000, n_val=2000), data_dir=data_dir)
    ref_val, ref_pool = reference_layout(N_FILE, 2000, None, 0)
    assert data.val.indices.tolist() == ref_val
    assert data.train.indices.tolist() == [ref_pool[i] for i in draw_subset(58000, 1000, 0)]
    assert Path(data.info["files"]["train_images"]["path"]).exists()


def test_pacbayes_prior_and_bound_splits_are_random_parts_of_the_file(data_dir):
    """S_prior and S_bound (gapbench.pacbayes.splits) cut one seeded permutation of the file, not a fixed block:
    both spread uniformly over it (the same block test as the validation split), and they are disjoint."""
    if not (data_dir / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    from gapbench.pacbayes.splits import load_splits
    spec = {"dataset": "mnist", "n_train": None, "split_seed": 0, "prior_fraction": 0.5, "binary": False,
            "normalize": False, "n_test": 100}
    data = load_splits(spec, data_dir=str(data_dir))
    prior, bound = data.prior.indices.numpy(), data.bound.indices.numpy()
    assert len(prior) == len(bound) == 30000 and len(np.intersect1d(prior, bound)) == 0
    for positions in (prior, bound):
        counts = _block_counts(positions)
        expected = len(positions) / 12
        assert float(((counts - expected) ** 2 / expected).sum()) < 31.26, counts.tolist()
