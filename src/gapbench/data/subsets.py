"""Training subsets, validation positions, augmentation noise and random labels, each drawn by its own seed.

Every draw goes through :func:`rng`: a numpy Generator on ``SeedSequence(seed, spawn_key=(stream,))``, so
the subset draw, the augmentation noise, the label corruption and generated test/validation data are
independent streams even when their seeds are equal, and no global RNG state is touched. The subset seed is
separate from the init and SGD seeds, so "two draws from the same initialization" is exactly defined.

Layout of a training file with N points (:func:`validation_layout`; a training draw indexes the pool, and
records the file positions it picked):

    n_val = 0                     pool = positions [0, pool_size) (NK: the first 55,000 MNIST images)
    n_val > 0, 'random' split     one permutation π of range(N) from the (split_seed, split) stream:
                                  validation = π[:n_val], pool = π[n_val : n_val + pool_size] (default: all the
                                  rest), each in file order, so the split is disjoint from every training draw of
                                  every subset_seed
    n_val > 0, 'last' split       validation = positions [N - n_val, N), pool = [0, pool_size): the layout
                                  before the random split existed, kept for reproducing old results

Why the split is random: a training file is not in random order. Measured on MNIST's (logistic regression
trained on 10,000 uniformly drawn rows, error on the rows it did not see): 0.053 on the last 2,000 rows and
0.065 on the last 5,000, against 0.075-0.106 on every other 2,000-row block (mean 0.090, standard error per
block ≈ 0.007); an MLP 784-200-10 trained on 8,000 such rows: 0.065 on the last 2,000 against 0.087-0.129.
A validation set of the last rows is easier than the pool and the test file, and a held-out certificate
computed on it certifies an easier distribution. A uniformly random split makes the validation points and the
pool two random parts of the same file.

References:
    V. Nagarajan, J. Z. Kolter, Uniform convergence may be unable to explain generalization in deep learning,
    NeurIPS 2019; released code locuslab/uniform-convergence-NeurIPS19, experiments.py
    (get_random_mnist_train_set: draws with replacement from the first 55,000 images; for n_train > 32678
    adds U(-0.01, 0.01) noise, unclipped, to the draws from position 32678 on).
    C. Zhang et al., Understanding deep learning requires rethinking generalization, ICLR 2017 (random
    labels).
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import VAL_SPLITS
from ..errors import (
    DataError,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_probability,
    param_error,
)

STREAM_SUBSET, STREAM_NOISE, STREAM_LABELS, STREAM_TEST, STREAM_VAL, STREAM_SPLIT = range(6)


def rng(seed: int, stream: int) -> np.random.Generator:
    """The numpy Generator of one (seed, stream) pair; different streams never share random numbers."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream,))))


def draw_subset(pool_size: int, m: int, seed: int, replace: bool = False) -> np.ndarray:
    """Positions (int64, length m) of an m-point draw from ``range(pool_size)``.

    With replacement: m i.i.d. uniform positions (NK's released code). Without: the first m entries of a
    seeded permutation, so for one seed the draws are nested in m; beyond the pool (m > pool_size) further
    independent permutations follow, so each point appears ⌊m/pool⌋ or ⌈m/pool⌉ times. Whether m may exceed
    the pool is decided by the caller (:func:`training_positions` requires augmentation noise).
    """
    where = "draw_subset()"
    check_positive_int(pool_size, "pool_size", where)
    check_positive_int(m, "m", where)
    check_positive_int(seed, "seed", where, minimum=0)
    gen = rng(seed, STREAM_SUBSET)
    if replace:
        return gen.integers(0, pool_size, size=m, dtype=np.int64)
    rounds = -(-m // pool_size)
    return np.concatenate([gen.permutation(pool_size) for _ in range(rounds)])[:m].astype(np.int64)


def validation_layout(n_file: int, n_val: int, pool_size: int | None, val_split: str = "random",
                      split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pool positions, validation positions) of a training file of n_file points, both int64 in file order.

    See the module docstring for the layouts. With n_val = 0 the pool is [0, pool_size) whatever `val_split`
    says. The 'random' permutation depends on `split_seed` only, never on a subset seed, so every training draw
    of an experiment indexes the same pool and misses the same validation points.
    """
    where = "load_data()"
    check_choice(val_split, "val_split", where, VAL_SPLITS)
    if n_val >= n_file:
        raise param_error("n_val", where, f"an int < {n_file} (the training file's size)", n_val,
                          "Leave some training points for the pool.")
    available = n_file - n_val
    pool = available if pool_size is None else pool_size
    if pool > available:
        raise param_error("pool_size", where, f"an int <= {available} (= {n_file} training points - n_val "
                          f"{n_val}) so that the pool and the validation split are disjoint", pool_size,
                          "Lower pool_size or n_val.")
    if n_val == 0 or val_split == "last":
        return np.arange(pool, dtype=np.int64), np.arange(available, n_file, dtype=np.int64)
    order = rng(check_positive_int(split_seed, "split_seed", where, minimum=0), STREAM_SPLIT).permutation(n_file)
    return np.sort(order[n_val:n_val + pool]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def training_positions(pool_size: int, m: int | None, seed: int, replace: bool, augment_noise: float,
                       augment_from: int | None = None) -> tuple[np.ndarray, int]:
    """(positions of the m training points, first position that receives augmentation noise).

    m defaults to the whole pool. m > pool_size is refused unless augment_noise > 0; the noise then starts at
    `augment_from` (default pool_size: the copies beyond the pool; NK's code uses 32678). Without noise the
    returned start is m (no point is perturbed).
    """
    m = pool_size if m is None else m
    if m > pool_size and augment_noise <= 0:
        raise param_error("n_train", "load_data()", f"an int <= pool_size = {pool_size}", m,
                          "Training sets larger than the pool repeat points; allow it explicitly with "
                          "augment_noise > 0 (NK: 0.01, uniform noise on the copies beyond the pool).")
    start = pool_size if augment_from is None else check_positive_int(augment_from, "augment_from",
                                                                       "load_data()", minimum=0)
    return draw_subset(pool_size, m, seed, replace), (min(start, m) if augment_noise > 0 else m)


def uniform_noise(shape: tuple[int, ...], half_width: float, seed: int) -> np.ndarray:
    """float32 noise ~ U(-half_width, half_width), i.i.d. per entry, from the (seed, noise) stream."""
    check_positive_float(half_width, "half_width", "uniform_noise()")
    return rng(seed, STREAM_NOISE).uniform(-half_width, half_width, size=shape).astype(np.float32)


def augment(x: torch.Tensor, start: int, half_width: float, seed: int) -> torch.Tensor:
    """x with U(-half_width, half_width) noise added to rows start.. (unclipped, as NK's code), as a new
    tensor; x itself when there is nothing to add."""
    if start >= len(x) or half_width <= 0:
        return x
    out = x.clone()
    noise = uniform_noise(tuple(out[start:].shape), half_width, seed)
    out[start:] += torch.from_numpy(noise).to(out.device)
    return out


def corrupt_labels(y, p: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Replace exactly round(p·m) labels, at uniformly drawn positions, by uniform labels over num_classes.

    Returns ``(new labels, corrupted positions)`` as int64 numpy arrays (torch tensors if `y` is one); `y` is
    never modified. round is half-up (⌊p·m + ½⌋). A replacement label is uniform over all classes, so about
    1/num_classes of the chosen positions keep their label by chance (Zhang et al.'s protocol); p = 1 gives
    fully random labels.
    """
    where = "corrupt_labels()"
    check_probability(p, "p", where, open_low=False, open_high=False)
    check_positive_int(num_classes, "num_classes", where, minimum=2)
    check_positive_int(seed, "seed", where, minimum=0)
    is_tensor = isinstance(y, torch.Tensor)
    labels = (y.detach().cpu().numpy() if is_tensor else np.asarray(y)).astype(np.int64, copy=True)
    if labels.ndim != 1:
        raise DataError(f"The 'y' parameter of {where} must be a 1-D array of class labels. "
                        f"Got shape {labels.shape} instead.")
    count = int(np.floor(p * len(labels) + 0.5))
    gen = rng(seed, STREAM_LABELS)
    positions = np.sort(gen.choice(len(labels), size=count, replace=False)).astype(np.int64)
    labels[positions] = gen.integers(0, num_classes, size=count, dtype=np.int64)
    if is_tensor:
        return torch.from_numpy(labels).to(y.device), torch.from_numpy(positions).to(y.device)
    return labels, positions
