"""Data: loaders for MNIST / Fashion-MNIST (IDX) and CIFAR-10 (pickle), NK's generated distributions,
training subsets, validation splits and random labels. ``load_data(DataConfig(...))`` is the entry point.

    from gapbench.data import load_data
    data = load_data(DataConfig("mnist", n_train=1000, pool_size=55000, replace=True, subset_seed=3))
    data.train.x.shape   # (1000, 1, 28, 28) float32 in [0, 1]
"""

from .cifar import load_cifar10_arrays, read_cifar_batch
from .files import Checksum, file_digest, resolve_data_dir
from .idx import read_idx, write_idx
from .mnist import load_mnist_arrays
from .registry import DATASETS, DatasetInfo, list_datasets, load_data, pool_id
from .subsets import corrupt_labels, draw_subset
from .synthetic import hypersphere, hypersphere_sprime, nk_linear, nk_linear_sprime
from .types import Dataset, Split

__all__ = ["DATASETS", "Checksum", "Dataset", "DatasetInfo", "Split", "corrupt_labels", "draw_subset",
           "file_digest", "hypersphere", "hypersphere_sprime", "list_datasets", "load_cifar10_arrays",
           "load_data", "load_mnist_arrays", "nk_linear", "nk_linear_sprime", "pool_id", "read_cifar_batch",
           "read_idx", "resolve_data_dir", "write_idx"]
