"""Declared type and range of every experiment parameter, checked before anything is trained.

Each experiment module states, next to its preset grid, one :class:`Param` per preset key (``SPEC``). The
check runs on the resolved parameters (preset + ``--set`` overrides) in :meth:`Experiment.params`, so a value
out of range (``alpha=1.5``, ``resolution=0``, ``n_population=0``) or not finite (``nan``) is refused with the
parameter's own name, not as a confusing failure deep inside a job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One parameter: its element kind, bounds (None = unbounded), whether it is a list, allowed choices."""

    kind: type                           # int | float | str | bool | dict
    low: float | None = None
    high: float | None = None
    low_open: bool = False               # True: low itself is excluded
    high_open: bool = False
    many: bool = False                   # a non-empty list of such values
    choices: tuple[str, ...] = ()
    optional: bool = False               # None is accepted too (a preset's "not set: the default behaviour")

    def describe(self) -> str:
        if self.choices:
            one = f"one of {list(self.choices)}"
        elif self.kind is bool:
            one = "true or false"
        elif self.kind is dict:
            one = "a JSON object of finite values"
        elif self.kind is str:
            one = "a non-empty string"
        else:
            one = f"{'an int' if self.kind is int else 'a finite float'}{self._range()}"
        one = f"a non-empty list of values, each {one}" if self.many else one
        return f"{one}, or none" if self.optional else one

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            return f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f" {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f" {'<' if self.high_open else '<='} {self.high:g}"
        return ""

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.many:
            return (isinstance(value, (list, tuple)) and len(value) > 0
                    and all(self._accepts_one(v) for v in value))
        return self._accepts_one(value)

    def _accepts_one(self, value: Any) -> bool:
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is dict:
            return isinstance(value, dict) and all_finite(value)
        if self.kind is str:
            return isinstance(value, str) and bool(value) and (not self.choices or value in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


def count(minimum: int = 1, *, many: bool = False, optional: bool = False) -> Param:
    """An integer >= minimum (sizes, epochs, seeds)."""
    return Param(int, low=minimum, many=many, optional=optional)


def positive(*, many: bool = False) -> Param:
    """A finite float > 0 (learning rates, radii, scales)."""
    return Param(float, low=0.0, low_open=True, many=many)


def nonnegative(*, many: bool = False, optional: bool = False) -> Param:
    """A finite float >= 0."""
    return Param(float, low=0.0, many=many, optional=optional)


def fraction(*, low_open: bool = False, high_open: bool = False, many: bool = False) -> Param:
    """A float in [0, 1], with either end optionally excluded."""
    return Param(float, low=0.0, high=1.0, low_open=low_open, high_open=high_open, many=many)


def choice(*options: str) -> Param:
    return Param(str, choices=tuple(options))


def text() -> Param:
    """A non-empty name checked later against its registry (e.g. a dataset name)."""
    return Param(str)


def flag() -> Param:
    return Param(bool)


def mapping() -> Param:
    """A dict of options passed on to a generator (its own code checks the keys)."""
    return Param(dict)


def check_params(params: Mapping[str, Any], spec: Mapping[str, Param], experiment: str) -> None:
    """Raise ConfigError naming the first parameter whose value is outside its declared range."""
    for key, value in params.items():
        param = spec[key]
        if not param.accepts(value):
            raise ConfigError(f"The '{key}' parameter of experiment '{experiment}' must be {param.describe()}. "
                              f"Got {value!r} instead. Fix it with --set {key}=... (see the preset's value).")


def all_finite(value: Any) -> bool:
    """True when every float in a nest of dicts and lists is finite (non-floats count as finite)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(all_finite(v) for v in value)
    return True
