"""What a training job measures after training: typed quantity specs, and their JSON form in a job config.

A job config's ``quantities`` list holds the JSON form of these specs (:func:`to_json`), because the config
is stored and its canonical JSON is the job's signature. The JSON form holds exactly the fields that were
given: a field left at None is absent, and the job applies its default when it reads the spec back
(:func:`from_json`). So ``MeasureSpec("spectral_product")`` is ``{"measure": "spectral_product"}`` and
``MeasureSpec("spectral_product", split="train")`` a different signature, though both measure the same.

- :class:`MeasureSpec`: one registered measure, one column (``as_`` or the measure's name).
- :class:`PerLayerSpec`: one column per weight layer, ``<as_ or name>_l0``, ``_l1``, …
- :class:`BoundSpec`: one registered bound's value at ``delta``; its registry ``needs`` say whether the job
  passes the run's initial weights (``init``).
- :class:`DecompositionSpec`: KKB Theorem 7's identity, both sides and each factor as columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_SPLIT = "train"
DEFAULT_DELTA = 0.05      # the bounds' confidence 1 − δ when a spec gives none
DEFAULT_TOP_K = 5         # eigenvalues of Theorem 7's Gram matrix reported as columns


@dataclass(frozen=True)
class MeasureSpec:
    measure: str                                  # a registered measure name
    as_: str | None = None                        # column name; None: the measure's name
    split: str | None = None                      # dataset split; None: 'train'
    params: Mapping[str, Any] | None = None       # the measure's keyword parameters


@dataclass(frozen=True)
class PerLayerSpec:
    per_layer: str                                # a per-layer quantity (gapbench.measures.per_layer)
    as_: str | None = None                        # column prefix; None: the quantity's name
    split: str | None = None
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BoundSpec:
    bound: str                                    # a registered bound name
    as_: str | None = None                        # column name; None: the bound's name
    split: str | None = None
    params: Mapping[str, Any] | None = None
    delta: float | None = None                    # None: DEFAULT_DELTA


@dataclass(frozen=True)
class DecompositionSpec:
    decomposition: str                            # 'thm7': KKB Theorem 7 (the only one)
    population: str                               # split whose first n_population points estimate E_x
    n_population: int
    split: str | None = None                      # the training points; None: 'train'
    top_k: int | None = None                      # None: DEFAULT_TOP_K


QuantitySpec = MeasureSpec | PerLayerSpec | BoundSpec | DecompositionSpec
SPECS: tuple[type, ...] = (MeasureSpec, PerLayerSpec, BoundSpec, DecompositionSpec)   # keyed by first field


def to_json(spec: QuantitySpec) -> dict[str, Any]:
    """The spec as a job-config dict: its given fields only, ``as_`` written as 'as'."""
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value is not None:
            out["as" if f.name == "as_" else f.name] = dict(value) if isinstance(value, Mapping) else value
    return out


def from_json(data: Mapping[str, Any]) -> QuantitySpec:
    """The spec a job-config dict describes; a ConfigError names an unknown kind or field."""
    for cls in SPECS:
        kind = dataclasses.fields(cls)[0].name
        if kind in data:
            names = {f.name for f in dataclasses.fields(cls)}
            fields = {("as_" if key == "as" else key): value for key, value in data.items()}
            unknown = sorted(set(fields) - names)
            if unknown:
                raise ConfigError(f"Unknown field(s) {unknown} in the quantity spec {dict(data)}. Known fields of "
                                  f"a '{kind}' spec: {sorted(n if n != 'as_' else 'as' for n in names)}.")
            return cls(**fields)
    kinds = [dataclasses.fields(cls)[0].name for cls in SPECS]
    raise ConfigError(f"The quantity spec {dict(data)} names no kind of quantity. Give one of the keys {kinds}, "
                      f"e.g. {{'measure': 'spectral_product'}}.")


def quantities_json(specs: list[QuantitySpec]) -> list[dict[str, Any]]:
    """The ``quantities`` list of a job config."""
    return [to_json(spec) for spec in specs]
