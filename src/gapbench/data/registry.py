"""The dataset registry and :func:`load_data`, the one entry point from a DataConfig to a Dataset.

Each registered dataset has a description, a reference, a kind ('file': read from the data directory;
'generated': drawn from seeded generators) and the options it accepts in ``DataConfig.options`` with their
defaults. Unknown names and unknown options are errors that list the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import DataConfig
from ..errors import check_positive_int, unknown_name
from ..registry import Registry
from . import cifar, mnist, synthetic
from .assemble import file_dataset, generated_dataset, require_n_train
from .files import resolve_data_dir
from .types import Dataset


@dataclass(frozen=True)
class DatasetInfo:
    """What `gapbench list datasets` shows about one dataset."""

    name: str
    description: str
    reference: str
    kind: str                                  # 'file' or 'generated'
    params: dict[str, Any] = field(default_factory=dict)   # option -> default (None: derived, see docs)


DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset", required=("description", "reference", "kind",
                                                                             "params"))
FILE_PARAMS = {
    "augment_from": None,    # first training position given augmentation noise; None = pool_size
    "test_subset": "random",  # n_test test points: a fixed uniformly random subset (default), or the "first" n_test
}


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    return [DatasetInfo(e.name, e.description, e.reference, e.kind, dict(e.params)) for e in DATASETS]


def load_data(cfg: DataConfig | str = "mnist", data_dir: str | Path | None = None, device: str = "cpu", *,
              download: bool = False, verify: bool = True, **fields: Any) -> Dataset:
    """The Dataset `cfg` describes, as tensors on `device`: ``load_data('mnist', n_train=1000)`` or
    ``load_data(DataConfig(...))``; `fields` are DataConfig fields (replacing those of a given DataConfig).

    `data_dir`: see :func:`resolve_data_dir`. `download=True` fetches missing files of a dataset with a known
    canonical URL (checksum-verified, atomic); it is off by default so nothing touches the network unasked.
    `verify=False` skips the checksum comparison (the file's SHA-256 is still recorded in ``info``).
    """
    cfg = DataConfig(name=cfg, **fields) if isinstance(cfg, str) else replace(cfg, **fields)
    entry = DATASETS.get(cfg.name)
    unknown = sorted(set(cfg.options) - set(entry.params))
    if unknown:
        raise unknown_name("option", unknown[0], entry.params, where=f" for dataset '{cfg.name}'")
    options = {**entry.params, **cfg.options}
    data = _with_pools(entry.obj(cfg, options, data_dir=data_dir, download=download, verify=verify), cfg)
    return data if str(device) == "cpu" else data.to(device)


def pool_id(cfg: DataConfig, source: str) -> str:
    """The identity of the pool that the indices of a `source` split of `cfg`'s dataset point into.

    A file dataset has one pool per file, whatever the subset: 'mnist:train' (training and validation
    points), 'mnist:test'. A generated dataset's points are fixed by its generator parameters and seeds, so
    they are part of the identity: 'hypersphere:train(dim=500, ..., subset_seed=0)'. Only what fixes the
    points enters (never n_train, label noise, or test_seed for a training pool): two loads whose points
    may coincide must get the same identity, so that their indices are compared rather than assumed apart.
    """
    entry = DATASETS.get(cfg.name)
    if entry.kind == "file":
        return f"{cfg.name}:{source}"
    params = {**entry.params, **cfg.options}
    if source != "test":
        params = {k: v for k, v in params.items() if k != "test_seed"} | {"subset_seed": cfg.subset_seed}
    return f"{cfg.name}:{source}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def _with_pools(data: Dataset, cfg: DataConfig) -> Dataset:
    def pooled(split):
        return replace(split, pool=pool_id(cfg, split.source))
    return replace(data, train=pooled(data.train), test=pooled(data.test),
                   val=None if data.val is None else pooled(data.val),
                   extra={k: pooled(v) for k, v in data.extra.items()})


def _file_info(name: str, files: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    entry = DATASETS.get(name)
    return {"name": name, "kind": "file", "reference": entry.reference, "data_dir": str(data_dir),
            "files": files}


def _idx_loader(name: str) -> Callable[..., Dataset]:
    def load(cfg: DataConfig, options: dict[str, Any], *, data_dir, download: bool, verify: bool) -> Dataset:
        root = resolve_data_dir(data_dir)
        arrays, files = mnist.load_mnist_arrays(root, name, verify=verify, download_missing=download)
        return file_dataset(cfg, arrays, mnist.NUM_CLASSES, _file_info(name, files, root))
    return load


def _load_cifar10(cfg: DataConfig, options: dict[str, Any], *, data_dir, download: bool,
                  verify: bool) -> Dataset:
    root = resolve_data_dir(data_dir)
    arrays, files = cifar.load_cifar10_arrays(root, verify=verify, download_missing=download)
    return file_dataset(cfg, arrays, cifar.NUM_CLASSES, _file_info("cifar10", files, root))


def _load_hypersphere(cfg: DataConfig, options: dict[str, Any], **_: Any) -> Dataset:
    dim = check_positive_int(options["dim"], "dim", "load_data('hypersphere')")
    r_inner, r_outer = float(options["r_inner"]), float(options["r_outer"])

    def sample(n, gen):
        return synthetic.hypersphere(n, dim, r_inner, r_outer, gen)

    def sprime(x, y):
        return synthetic.hypersphere_sprime(x, y, r_inner, r_outer)

    info = {"name": "hypersphere", "kind": "generated", "params": options}
    return generated_dataset(cfg, sample, sprime, 2, (dim,), _test_seed(options, "hypersphere"), info)


def _load_nk_linear(cfg: DataConfig, options: dict[str, Any], **_: Any) -> Dataset:
    where = "load_data('nk_linear')"
    m = require_n_train(cfg)
    k = check_positive_int(options["K"], "K", where)
    d = check_positive_int(1000 * m if options["D"] is None else options["D"], "D", where)
    scales = {key: float(options[key]) for key in ("u_norm_scale", "noise_var_scale")}

    def sample(n, gen):
        return synthetic.nk_linear(n, m, k, d, gen, **scales)

    def sprime(x, y):
        return synthetic.nk_linear_sprime(x, y, k)

    info = {"name": "nk_linear", "kind": "generated", "params": {**options, "D": d},
            "u_norm": scales["u_norm_scale"] / m ** 0.5, "noise_var": scales["noise_var_scale"] / d,
            "label_map": "class 1 <-> y = +1, class 0 <-> y = -1", "bytes_per_point": 4 * (k + d)}
    return generated_dataset(cfg, sample, sprime, 2, (k + d,), _test_seed(options, "nk_linear"), info)


def _test_seed(options: dict[str, Any], name: str) -> int:
    return check_positive_int(options["test_seed"], "test_seed", f"load_data('{name}')", minimum=0)


DATASETS.register("mnist", _idx_loader("mnist"),
             description="60k/10k 28x28 handwritten digits, pixels in [0, 1], shape (1, 28, 28)",
             reference="LeCun, Cortes & Burges 1998, The MNIST database of handwritten digits",
             kind="file", params=dict(FILE_PARAMS))
DATASETS.register("fashion_mnist", _idx_loader("fashion_mnist"),
             description="60k/10k 28x28 clothing images (MNIST's IDX format), pixels in [0, 1]",
             reference="Xiao, Rasul & Vollgraf 2017, Fashion-MNIST, arXiv:1708.07747",
             kind="file", params=dict(FILE_PARAMS))
DATASETS.register("cifar10", _load_cifar10,
             description="50k/10k 32x32 colour images, 10 classes (python-pickle distribution), (3, 32, 32)",
             reference="Krizhevsky 2009, Learning Multiple Layers of Features from Tiny Images",
             kind="file", params=dict(FILE_PARAMS))
DATASETS.register("hypersphere", _load_hypersphere,
             description="two concentric spheres in R^dim, label 0 inner, 1 outer; extra split S' (sprime)",
             reference="Nagarajan & Kolter 2019, NeurIPS, §4 (defaults: NK's blog, dim 500, radii 1 / 1.2)",
             kind="generated",
             params={"dim": 500, "r_inner": 1.0, "r_outer": 1.2, "test_seed": 0})
DATASETS.register("nk_linear", _load_nk_linear,
             description="NK's linear example x = (2y·u, N(0, noise_var_scale/D·I_D)); extra split S' (-x2)",
             reference="Nagarajan & Kolter 2019, NeurIPS, §3 (constants reconstructed [verify])",
             kind="generated",
             params={"K": 1, "D": None, "u_norm_scale": 1.0, "noise_var_scale": 32.0, "test_seed": 0})
