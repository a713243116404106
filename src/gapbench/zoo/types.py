"""Zoo and ZooModel: a built zoo read back from the store, one object per trained model.

A :class:`ZooModel` is cheap until used: its checkpoint is loaded (and verified) on the first ``.run`` /
``.model()`` / ``.init()``, its dataset on the first ``.data``, and the :class:`Zoo` caches datasets by their
DataConfig, so models trained on the same draw share one loaded Dataset.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..config import DataConfig, RunConfig, signature
from ..data.types import Dataset, Split
from .base import ZooDef


@dataclass(eq=False)
class ZooModel:
    """One trained model of a zoo (see gapbench.zoo for the fields the evaluation relies on)."""

    id: str                               # the model's RunConfig signature: stable across machines and builds
    hp: dict[str, Any]                    # its grid point's hyperparameters (Zoo.varied: those that vary)
    config: RunConfig
    values: dict[str, float]              # everything stored for it: train_error, test_error, median_margin, ...
    stop_reason: str                      # 'converged' | 'max_epochs' (capped) | 'failed'
    checkpoint: Path
    zoo: Zoo = field(repr=False)

    @property
    def m(self) -> int:
        """The training-set size."""
        return int(self.config.data.n_train)

    @property
    def train_error(self) -> float:
        return float(self.values["train_error"])

    @property
    def test_error(self) -> float:
        return float(self.values["test_error"])

    @property
    def gap(self) -> float:
        """Test error − training error (0-1 losses, ties counted as errors)."""
        return self.test_error - self.train_error

    @property
    def capped(self) -> bool:
        """True when training hit max_epochs before the zoo's stop rule."""
        return self.stop_reason == "max_epochs"

    @functools.cached_property
    def run(self):
        """The gapbench.trained.Run read from the checkpoint (checksum-verified), loaded once."""
        from ..checkpoint import load
        return load(self.checkpoint, expected_signature=self.id)

    def model(self) -> nn.Module:
        """The trained network in eval mode (shared by calls: measures never mutate it)."""
        return self.run.model.eval()

    def init(self) -> nn.Module:
        """A copy of the network at its initial weights, in eval mode: what measures take as `init=`."""
        return self.run.init_model().eval()

    @property
    def data(self) -> Dataset:
        """The Dataset the model was trained and tested on (.train is its S, .test its test set)."""
        return self.zoo.dataset(self.config.data)

    @property
    def mirrored(self) -> Split | None:
        """S' (NK's mirrored training set) for a zoo that has one (nk-hypersphere), else None."""
        return None if self.zoo.definition.mirrored is None else self.data.extra[self.zoo.definition.mirrored]


class Zoo:
    """A built zoo: its name, preset, parameters, provenance and models (module gapbench.zoo)."""

    def __init__(self, definition: ZooDef, preset: str, params: dict[str, Any], provenance: dict[str, Any],
                 out: Path, data_dir: str | None = None):
        self.definition = definition
        self.name = definition.name
        self.preset = preset
        self.params = params
        self.provenance = provenance
        self.out = Path(out)
        self.data_dir = data_dir
        self.all_models: list[ZooModel] = []     # every model of the grid with a stored job, failed included
        self.missing = 0                         # models of the grid whose job is not stored (build unfinished)
        self.build: dict[str, int] = {}          # what build_zoo did: {'trained': jobs, 'reused': jobs, 'failed': jobs}
        self._datasets: dict[str, Dataset] = {}

    def __repr__(self) -> str:
        return f"Zoo({self.name!r}, preset={self.preset!r}, models={len(self)}, out={str(self.out)!r})"

    def models(self, include_capped: bool = False) -> list[ZooModel]:
        """The trained models, in grid order: those that met the stop rule, and the capped ones too when
        include_capped. Failed (diverged) models are never included; counts() says how many there are."""
        keep = ("converged", "max_epochs") if include_capped else ("converged",)
        return [m for m in self.all_models if m.stop_reason in keep]

    def __iter__(self) -> Iterator[ZooModel]:
        return iter(self.models())

    def __len__(self) -> int:
        return len(self.models())

    def __getitem__(self, model_id: str) -> ZooModel:
        for model in self.all_models:
            if model.id == model_id:
                return model
        raise KeyError(model_id)

    def counts(self) -> dict[str, int]:
        """Models by how training ended, and those not built: the numbers a report card states."""
        out = {reason: 0 for reason in ("converged", "max_epochs", "failed")}
        for model in self.all_models:
            out[model.stop_reason] += 1
        return {**out, "missing": self.missing, "total": len(self.all_models) + self.missing}

    @property
    def varied(self) -> list[str]:
        """The hyperparameters that take more than one value across the zoo's models."""
        keys = sorted({key for m in self.all_models for key in m.hp})
        return [k for k in keys if len({repr(m.hp.get(k)) for m in self.all_models}) > 1]

    def dataset(self, cfg: DataConfig) -> Dataset:
        """The Dataset of `cfg`, loaded once per zoo."""
        key = signature(cfg)
        if key not in self._datasets:
            from ..data import load_data
            self._datasets[key] = load_data(cfg, data_dir=self.data_dir)
        return self._datasets[key]
