"""The data of a PAC-Bayes certificate: S_prior and S_bound cut from one permutation of the training pool.

A :class:`SplitSpec` (a plain dict in job configs and checkpoints) fixes every point:

    dataset         a file dataset ('mnist')
    n_train         points drawn from the training file (None: all of it, 60,000 for MNIST)
    split_seed      seed of the permutation (gapbench.data.subsets, stream 'subset')
    prior_fraction  0: a data-free prior, S_bound = all n_train points; f in (0, 1): S_prior = the first
                    round(f·n_train) points of the permutation, S_bound = the rest (PBB perc_prior,
                    pbb/data.py L98-105), so the two are disjoint by construction
    binary          labels 0-4 -> 0 and 5-9 -> 1 (Dziugaite & Roy 2017, pacbayes-opt snn/core/data_fn.py L47-53)
    normalize       (x - 0.1307) / 0.3081, PBB's MNIST transform (pbb/data.py L22); False: pixels in [0, 1]
    n_test          test points (None: the whole test file)

The posterior may train on every point (``train``); the certificate is computed on ``bound`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config import DataConfig
from ..data import load_data
from ..data.types import Split
from ..errors import param_error

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081      # PBB pbb/data.py L22: transforms.Normalize((0.1307,), (0.3081,))
BINARY_THRESHOLD = 5                        # labels < 5 -> class 0, >= 5 -> class 1 (DR2017 binarize_mnist_labels)
SPEC_KEYS = ("dataset", "n_train", "split_seed", "prior_fraction", "binary", "normalize", "n_test")


@dataclass(frozen=True)
class PacBayesData:
    train: Split            # every training point (the posterior's training set)
    prior: Split | None     # S_prior (None for a data-free prior)
    bound: Split            # S_bound: the certificate's points, disjoint from S_prior
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]


def check_spec(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The spec with its keys checked (a ConfigError-style message names the missing or unknown key)."""
    keys = set(spec)
    if keys != set(SPEC_KEYS):
        raise param_error("split_spec", where, f"a dict with exactly the keys {list(SPEC_KEYS)}",
                          f"missing {sorted(set(SPEC_KEYS) - keys)}, unknown {sorted(keys - set(SPEC_KEYS))}")
    fraction = spec["prior_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise param_error("prior_fraction", where, "a float in [0, 1) (0: data-free prior)", fraction,
                          "PBB uses 0.5: half of the training points for the prior, half for the bound.")
    return dict(spec)


def _transform(split: Split, spec: dict[str, Any]) -> Split:
    x, y = split.x, split.y
    if spec["normalize"]:
        x = (x - MNIST_MEAN) / MNIST_STD
    if spec["binary"]:
        y = (y >= BINARY_THRESHOLD).long()
    return replace(split, x=x, y=y)


def _rows(split: Split, start: int, stop: int | None, name: str) -> Split:
    return replace(split, x=split.x[start:stop], y=split.y[start:stop], indices=split.indices[start:stop], name=name)


def load_splits(spec: dict[str, Any], *, data_dir: str | None = None, device: str = "cpu") -> PacBayesData:
    """S_prior, S_bound, the whole training set and the test set that `spec` describes (module docstring)."""
    spec = check_spec(spec, "load_splits()")
    data = load_data(DataConfig(name=spec["dataset"], n_train=spec["n_train"], subset_seed=spec["split_seed"],
                                n_test=spec["n_test"]), data_dir=data_dir, device=device)
    train = _transform(data.train, spec)
    n_prior = round(spec["prior_fraction"] * len(train))
    prior = _rows(train, 0, n_prior, "prior") if n_prior else None
    bound = _rows(train, n_prior, None, "bound")
    num_classes = 2 if spec["binary"] else data.num_classes
    return PacBayesData(train, prior, bound, _transform(data.test, spec), num_classes, data.input_shape)
