"""The file datasets an MNIST experiment may also run on, and the sizes their canonical files can supply.

Every MNIST experiment takes ``--set dataset=fashion_mnist`` (the same 60,000 / 10,000 images of 1×28×28)
and ``dataset=cifar10`` (50,000 / 10,000 images of 3×32×32): their MLPs and linear models flatten any input,
and the CNN of kkb2017-two-phase reads the channels and side length from the data (models.cnn). A preset
size the chosen dataset cannot supply (fig1's pool of 55,000, 60,000 training points on CIFAR-10) is refused
in points(), before anything is trained, naming the parameter. The loader checks the files on disk again.
Constants that are protocol choices rather than sizes stay as the presets set them: kkb2017-two-phase's paper
preset normalizes with MNIST's mean and std (0.1307, 0.3081); on another dataset pass its own with --set
normalize=[mean,std] (or null for raw pixels).

The table is literal rather than read from the data registry: importing gapbench.data loads torch, and the
experiment modules stay importable without it (tests check the two agree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .params import Param, choice

DEFAULT = "mnist"        # the dataset every MNIST experiment's presets use; never stored in an hp dict


@dataclass(frozen=True)
class FileDataset:
    """Sizes of a dataset's canonical files."""

    n_train: int                          # images in the training file(s)
    n_test: int                           # images in the test file
    input_shape: tuple[int, int, int]     # (channels, height, width) of one image

    @property
    def input_dim(self) -> int:
        """Pixels per image: the input width of an MLP or of a linear model on pixels."""
        return math.prod(self.input_shape)


FILE_DATASETS = {
    "mnist": FileDataset(60_000, 10_000, (1, 28, 28)),           # LeCun et al. 1998
    "fashion_mnist": FileDataset(60_000, 10_000, (1, 28, 28)),   # Xiao et al. 2017: MNIST's format and sizes
    "cifar10": FileDataset(50_000, 10_000, (3, 32, 32)),         # Krizhevsky 2009: 5 batches of 10,000
}


def dataset_param(*generated: str) -> Param:
    """The 'dataset' parameter: a file dataset, or one of the `generated` ones the experiment also accepts."""
    return choice(*FILE_DATASETS, *generated)


def hp_dataset(p: Mapping[str, Any]) -> dict[str, str]:
    """{'dataset': name} for a job's hp, or {} for the default: MNIST jobs keep the signatures they had."""
    return {} if p["dataset"] == DEFAULT else {"dataset": p["dataset"]}


def check_sizes(p: Mapping[str, Any], experiment: str, *, train: Sequence[str] = (),
                test: Sequence[str] = ()) -> None:
    """Refuse sizes the dataset's files cannot supply: the `train` parameters (summed, a list by its largest
    value: e.g. n_train + n_val) must fit in the training file, each `test` parameter in the test file.
    Generated datasets have no files: nothing to check."""
    files = FILE_DATASETS.get(p["dataset"])
    if files is None:
        return
    values = {key: max(p[key]) if isinstance(p[key], list) else p[key] for key in train}
    if values and sum(values.values()) > files.n_train:
        _refuse(p, experiment, list(values), values, files.n_train, "training")
    for key in test:
        if p[key] > files.n_test:
            _refuse(p, experiment, [key], {key: p[key]}, files.n_test, "test")


def _refuse(p, experiment, keys, values, limit, which) -> None:
    key, others = keys[0], sum(values[k] for k in keys[1:])
    names = " + ".join(f"max({k})" if isinstance(p[k], list) else k for k in keys)
    sizes = " + ".join(str(values[k]) for k in keys)
    asked = f"{names} = {sizes}" + (f" = {sum(values.values())}" if len(keys) > 1 else "")
    fix = f"--set {key}={limit - others}" if limit - others >= 1 else f"smaller {', '.join(keys[1:])}"
    raise ConfigError(f"The '{key}' parameter of experiment '{experiment}' asks for more images than dataset "
                      f"'{p['dataset']}' has: {asked} must be <= {limit}, the size of its {which} file. "
                      f"Fix it with {fix}, or choose a larger dataset.")
