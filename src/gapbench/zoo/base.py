"""What a zoo is: a registered family of trained models, defined as data (a grid, presets, a typed spec).

A :class:`ZooDef` expands a preset's parameters into sweep job configs, exactly like an experiment, and says
which trained models each stored job holds (:attr:`ZooDef.members`): a job may train one model, a pair of
draws (nk2019-fig1) or every seed of a grid point stacked together (mnist-hparams). The jobs are stored under
the zoo's ``namespace`` (the store's experiment name and the directory OUT/<namespace>/ of its checkpoints):
a zoo over a paper experiment uses that experiment's name, so its stored runs and checkpoints are reused.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown_name
from ..experiments.base import coerce
from ..experiments.params import Param
from ..registry import Registry

STOP_REASONS = ("converged", "max_epochs", "failed", "missing")   # ZooModel.stop_reason (missing: not stored)


@dataclass(frozen=True)
class Member:
    """One model of a job: its hyperparameters, its RunConfig (as a dict), its stored values and how its
    training ended (one of STOP_REASONS)."""

    hp: dict[str, Any]
    run: dict[str, Any]
    values: dict[str, float]
    stop_reason: str


@dataclass(frozen=True)
class ZooDef:
    """A registered zoo: presets and a typed spec like an experiment, the job that trains a grid point, and
    how to read the models out of a stored job."""

    name: str
    summary: str                                            # one paragraph: which models, trained how
    reference: str                                          # the paper whose protocol the zoo follows
    namespace: str                                          # store experiment name and OUT/<namespace>/
    presets: Mapping[str, Mapping[str, Any]]
    spec: Mapping[str, Param]
    points: Callable[[Mapping[str, Any]], list[dict[str, Any]]]   # params -> job configs
    job: Callable[..., Any]                                 # fn(config, runtime, out_dir) -> JobResult
    members: Callable[[dict[str, Any], dict[str, float] | None, str | None], list[Member]]
    # (job config, stored values or None, stored status or None) -> the job's models
    mirrored: str | None = None                             # the Dataset.extra split holding S' (NK), if any
    notes: Mapping[str, str] = field(default_factory=dict)  # preset -> what it is for

    def __post_init__(self):
        keys = {key for preset in self.presets.values() for key in preset}
        undeclared = sorted(keys - set(self.spec))
        if undeclared:
            raise ConfigError(f"Zoo '{self.name}' has preset keys without a declared type and range: "
                              f"{undeclared}. Add them to its spec (gapbench.experiments.params).")

    def params(self, preset: str, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The preset's parameters with `--set key=value` overrides applied and type-checked."""
        if preset not in self.presets:
            raise unknown_name("preset", preset, self.presets, where=f" for zoo '{self.name}'")
        params = dict(self.presets[preset])
        for key, raw in (overrides or {}).items():
            if key not in params:
                close = difflib.get_close_matches(key, sorted(params), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"Unknown --set key '{key}' for zoo '{self.name}'.{hint} Known keys: "
                                  f"{', '.join(sorted(params))}.")
            params[key] = coerce(raw, params[key], key)
        for key, value in params.items():
            if not self.spec[key].accepts(value):
                raise ConfigError(f"The '{key}' parameter of zoo '{self.name}' must be "
                                  f"{self.spec[key].describe()}. Got {value!r} instead. Fix it with "
                                  f"--set {key}=... (see the preset's value: {self.presets[preset][key]!r}).")
        return params


ZOOS: Registry[ZooDef] = Registry("zoo")


def register(zoo: ZooDef) -> ZooDef:
    ZOOS.register(zoo.name, zoo, reference=zoo.reference, summary=zoo.summary)
    return zoo


def stop_reason(values: Mapping[str, float] | None, status: str | None) -> str:
    """How one model's training ended, from its stored values ('converged' is 1.0 when its stop rule was
    met) and its job's stored status."""
    if status is None or values is None:
        return "missing"
    if status == "failed" or values.get("failed", 0.0) == 1.0 or "test_error" not in values:
        return "failed"
    return "converged" if values.get("converged", 0.0) == 1.0 else "max_epochs"
