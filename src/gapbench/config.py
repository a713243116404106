"""Frozen configuration dataclasses and run signatures.

Fields that change results (data, model, training, seeds) form a run's *signature*: the SHA-256 of the
canonical JSON of those fields (Dora's rule). Operational fields (device, threads, paths, verbosity) live in
:class:`Runtime` and never enter the signature, so the same run on CPU or GPU, with 1 or 8 workers, is the
same stored row.

Adding a field: give it a default that reproduces the old behaviour, and it changes no existing signature
only if ``canonical()`` drops fields equal to their default (it does) and ``to_dict()`` (whose full dicts sign
experiment jobs) does not write it where it changes nothing: stored results stay valid. DataConfig's
``val_split``/``split_seed`` are the one field pair whose default changed the data (a random validation split
instead of the file's last n_val rows); they are written exactly where that split is drawn (SPLIT_FIELDS).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    ConfigError,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_probability,
    param_error,
)

SIGNATURE_VERSION = 1   # bump only when the meaning of an existing field changes
STOP_RULES = ("margin", "loss", "train_error", "epochs")   # TrainConfig.stop (gapbench.train.stop)
VAL_SPLITS = ("random", "last")                            # DataConfig.val_split (gapbench.data.subsets)
# DataConfig's split fields are written (to_dict, canonical, so the signature) only where a random validation
# split is drawn. Every other config keeps the dict and signature it had before these fields existed: n_val = 0
# (the data do not change) and val_split 'last' (the old layout, so its stored results are found again), while
# every config with a random split gets a new signature and never reuses a result computed on the old layout.
SPLIT_FIELDS = ("val_split", "split_seed")


@dataclass(frozen=True)
class DataConfig:
    """Which data a run trains and is evaluated on."""

    name: str = "mnist"            # registered dataset name (see gapbench list datasets)
    n_train: int | None = None     # m: training-set size; None = the whole pool
    pool_size: int | None = None   # draw training points from the first pool_size training images (NK: 55,000);
                                   # with a random validation split, from pool_size random non-validation ones
    replace: bool = False          # draw with replacement (NK's released code) or without
    augment_noise: float = 0.0     # half-width of uniform noise on copies beyond the pool (NK: 0.01); 0 = refuse
    n_val: int = 0                 # held-out validation points, disjoint from every training draw (val_split)
    label_noise: float = 0.0       # fraction p of training labels replaced by uniform random labels
    subset_seed: int = 0           # seed of the m-point draw, separate from init and SGD seeds
    label_seed: int = 0            # seed of the random-label corruption
    n_test: int | None = None      # evaluate on n_test test points (a fixed random subset: the MNIST test file's
                                   # halves differ in difficulty; options['test_subset']='first' for a prefix)
    options: dict[str, Any] = field(default_factory=dict)  # generator parameters (dim, radii, ...)
    val_split: str = "random"      # where a file dataset's n_val points lie: 'random' (a uniform subset drawn by
                                   # split_seed; the pool is the rest) | 'last' (the file's last n_val: the old
                                   # layout, whose rows are easier on MNIST; see gapbench.data.subsets)
    split_seed: int = 0            # seed of the 'random' split, shared by every subset_seed so that no draw meets it

    def __post_init__(self):
        where = "DataConfig"
        check_choice(self.val_split, "val_split", where, VAL_SPLITS)
        check_positive_int(self.split_seed, "split_seed", where, minimum=0)
        for name in ("n_train", "pool_size", "n_test"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name, where)
        check_positive_int(self.n_val, "n_val", where, minimum=0)
        check_positive_float(self.augment_noise, "augment_noise", where, allow_zero=True)
        check_probability(self.label_noise, "label_noise", where, open_low=False, open_high=False)
        for name in ("subset_seed", "label_seed"):
            check_positive_int(getattr(self, name), name, where, minimum=0)

    @property
    def random_split(self) -> bool:
        """Whether a random validation split is drawn (n_val > 0, val_split 'random'): only then are val_split
        and split_seed written to the config's dict and signature (see :data:`SPLIT_FIELDS`). A generated
        dataset draws its validation points fresh whatever val_split says, but carries the fields all the same:
        a config does not know the kind of its dataset."""
        return self.n_val > 0 and self.val_split == "random"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and initialization."""

    arch: str = "mlp"              # 'mlp' | 'cnn'
    depth: int = 1                 # number of hidden layers (weight layers L = depth + 1 for an MLP)
    width: int = 100               # hidden width (MLP) or channels of the first conv (CNN)
    bias: bool = True              # NK fig1 and KKB deep paths use bias-free nets
    init: str = "torch_default"    # 'torch_default' | 'glorot_uniform'
    init_seed: int = 0             # seed of the initial weights, separate from data and SGD seeds
    options: dict[str, Any] = field(default_factory=dict)  # arch-specific (e.g. CNN fc width, dropout)

    def __post_init__(self):
        check_positive_int(self.depth, "depth", "ModelConfig", minimum=0)
        check_positive_int(self.width, "width", "ModelConfig")
        check_positive_int(self.init_seed, "init_seed", "ModelConfig", minimum=0)


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, loss and stop rule."""

    loss: str = "softmax_ce"       # 'softmax_ce' | 'sigmoid_ce' (NK, one-hot, mean over batch x classes) | 'squared'
    lr: float = 0.1                # SGD step size
    momentum: float = 0.0          # heavy-ball momentum (torch.optim.SGD convention)
    weight_decay: float = 0.0      # L2 coefficient added to the gradient
    batch_size: int = 64           # examples per SGD step; 1 = NK paper protocol (fused path)
    max_epochs: int = 100          # hard cap; a run that hits it without meeting `stop` is 'max_epochs'
    stop: str = "margin"           # 'margin' | 'loss' | 'train_error' | 'epochs'
    target_margin: float = 10.0    # gamma*: margin a training point must reach (NK fig1: 10)
    margin_fraction: float = 0.99  # stop when this fraction of training points has margin >= gamma*
    loss_threshold: float = 0.0    # stop when training loss <= this ('loss' rule)
    error_threshold: float = 0.0   # stop when training error <= this ('train_error' rule)
    sgd_seed: int = 0              # seed of the example order, separate from data and init seeds
    options: dict[str, Any] = field(default_factory=dict)  # e.g. two-phase alpha

    def __post_init__(self):
        where = "TrainConfig"
        check_positive_float(self.lr, "lr", where)
        if not 0 <= self.momentum < 1:
            raise param_error("momentum", where, "a float in [0, 1)", self.momentum)
        check_positive_float(self.weight_decay, "weight_decay", where, allow_zero=True)
        check_positive_int(self.batch_size, "batch_size", where)
        check_positive_int(self.max_epochs, "max_epochs", where)
        check_choice(self.stop, "stop", where, STOP_RULES)
        check_positive_float(self.target_margin, "target_margin", where, allow_zero=True)
        check_probability(self.margin_fraction, "margin_fraction", where, open_high=False)
        check_positive_float(self.loss_threshold, "loss_threshold", where, allow_zero=True)
        check_probability(self.error_threshold, "error_threshold", where, open_low=False)
        check_positive_int(self.sgd_seed, "sgd_seed", where, minimum=0)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a trained model's weights."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class Runtime:
    """Operational settings: never part of a signature."""

    device: str = "cpu"
    threads: int = 1               # intra-op threads per worker (two are slower when the other core is busy)
    workers: int = 1
    data_dir: str | None = None
    progress: bool = True
    backend: str = "local"         # where sweeps run: 'local' (this machine) or 'ray' (gapbench.ray_backend)
    ray_address: str | None = None # Ray cluster 'host:port' for backend 'ray'; None starts a local Ray instance


def _written(cfg: Any) -> list[dataclasses.Field]:
    """The fields of a config dataclass that its dict holds: all, but DataConfig's SPLIT_FIELDS only where a
    random validation split is drawn."""
    fields = dataclasses.fields(cfg)
    if isinstance(cfg, DataConfig) and not cfg.random_split:
        return [f for f in fields if f.name not in SPLIT_FIELDS]
    return list(fields)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in _written(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """Full nested dict of a config dataclass (all fields, JSON-ready; DataConfig's SPLIT_FIELDS only where a
    random validation split is drawn)."""
    return _plain(cfg)


def canonical(cfg: Any) -> dict[str, Any]:
    """The signature-relevant dict: like to_dict, minus every field that equals its default (SPLIT_FIELDS,
    where written, are always kept: a random split must never share a signature with the old layout)."""
    if not dataclasses.is_dataclass(cfg):
        return _plain(cfg)
    out: dict[str, Any] = {}
    defaults = type(cfg)()
    for f in _written(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            sub = canonical(value)
            if sub:
                out[f.name] = sub
        elif value != getattr(defaults, f.name) or (isinstance(cfg, DataConfig) and f.name in SPLIT_FIELDS):
            out[f.name] = _plain(value)
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj) if dataclasses.is_dataclass(obj) else _plain(obj),
                      sort_keys=True, separators=(",", ":"), allow_nan=False)


def signature(cfg: Any, *extra: Any) -> str:
    """Hex SHA-256 (first 16 chars) of the canonical JSON of cfg and any extra signature-relevant objects."""
    payload = json.dumps([SIGNATURE_VERSION, json.loads(canonical_json(cfg))] +
                         [json.loads(canonical_json(e)) for e in extra], sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a (nested) config dataclass from a dict; unknown keys raise ConfigError naming them.

    A DataConfig dict with n_val > 0 and no 'val_split' means the 'last' layout: to_dict writes val_split
    wherever a random split is drawn, so such a dict was written for the old layout (by gapbench before the
    random split, or with val_split='last'); stored runs and checkpoints thus load with their own data and
    signature.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"Unknown field(s) {unknown} for {cls.__name__}. Known fields: {sorted(names)}.")
    if cls is DataConfig and data.get("n_val") and "val_split" not in data:
        data = {**data, "val_split": "last"}
    kwargs = {}
    for key, value in data.items():
        sub = _SUBCONFIGS.get((cls, key))
        kwargs[key] = from_dict(sub, value) if sub and isinstance(value, dict) else value
    return cls(**kwargs)


_SUBCONFIGS = {(RunConfig, "data"): DataConfig, (RunConfig, "model"): ModelConfig,
               (RunConfig, "train"): TrainConfig}


def replace_path(cfg: RunConfig, dotted: str, value: Any) -> RunConfig:
    """Return cfg with the field at a dotted path ('train.lr', 'data.options.dim') replaced."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(cfg):
        raise ConfigError(f"Cannot set '{dotted}': not a config section.")
    names = [f.name for f in dataclasses.fields(cfg)]
    if head not in names:
        raise ConfigError(f"Unknown config key '{head}' in '{dotted}'. Known keys: {names}.")
    current = getattr(cfg, head)
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    if isinstance(current, dict):
        new = dict(current)
        new[rest] = value
        return dataclasses.replace(cfg, **{head: new})
    return dataclasses.replace(cfg, **{head: replace_path(current, rest, value)})
