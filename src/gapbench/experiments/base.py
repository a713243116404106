"""What an experiment is: data (presets, a grid, claims, a plot), no training code.

An :class:`Experiment` turns a preset's parameters into job configs (one per trained model or model pair);
the sweep runs its job function on each; the claims are predicates over the stored results table.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, unknown_name
from .params import Param, all_finite, check_params
from .table import Table

PRESETS = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class ClaimResult:
    name: str
    held: bool
    value: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "held": bool(self.held), "value": self.value, "detail": self.detail}


@dataclass(frozen=True)
class Claim:
    """A machine-checkable statement from the paper. `check(table, params)` returns (held, value, detail).

    `expected_not_held` maps a preset to why the claim is known not to hold there (a measured fact about
    that preset, shown next to the verdict in the report); presets absent from it are expected to hold."""

    name: str
    text: str
    check: Callable[[Table, Mapping[str, Any]], tuple[bool, float | None, str]]
    expected_not_held: Mapping[str, str] = field(default_factory=dict)

    def evaluate(self, table: Table, params: Mapping[str, Any]) -> ClaimResult:
        if len(table.ok()) == 0:
            return ClaimResult(self.name, False, None, "no successful runs to evaluate")
        held, value, detail = self.check(table.ok(), params)
        return ClaimResult(self.name, bool(held), None if value is None else float(value), detail)


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: one paper figure or claim."""

    name: str
    paper: str                                   # citation
    figure: str                                  # which figure / claim of the paper
    summary: str                                 # one paragraph: what it shows
    presets: Mapping[str, Mapping[str, Any]]     # preset name -> parameters
    points: Callable[[Mapping[str, Any]], list[dict[str, Any]]]  # params -> job configs (JSON dicts)
    job: Callable[..., Any]                      # fn(config, runtime, out_dir) -> JobResult, run on each config
    claims: tuple[Claim, ...] = ()
    plot: Callable[..., Any] | None = None       # plot(table, fig, params) draws the figure
    statistics: Callable[[Table], dict[str, float]] | None = None   # summary statistics of the whole table:
                                                                 # log-log slopes, Kendall τ, ...
    statistics_label: str = "slope (log-log, median over seeds)"   # what those statistics are, for the summary
    notes: Mapping[str, str] = field(default_factory=dict)  # preset -> what it changes vs the paper
    spec: Mapping[str, Param] = field(default_factory=dict)  # every preset key -> its type and range (params.py)

    def __post_init__(self):
        keys = {key for preset in self.presets.values() for key in preset}
        undeclared = sorted(keys - set(self.spec))
        if undeclared:
            raise ConfigError(f"Experiment '{self.name}' has preset keys without a declared type and range: "
                              f"{undeclared}. Add them to its spec (gapbench.experiments.params).")

    def params(self, preset: str, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The preset's parameters with `--set key=value` overrides applied and type-checked."""
        if preset not in self.presets:
            raise unknown_name("preset", preset, self.presets, where=f" for experiment '{self.name}'")
        params = dict(self.presets[preset])
        for key, raw in (overrides or {}).items():
            if key not in params:
                close = difflib.get_close_matches(key, sorted(params), n=1)
                example = close[0] if close else sorted(params)[0]
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"Unknown --set key '{key}' for experiment '{self.name}'.{hint} Known keys: "
                                  f"{', '.join(sorted(params))}. Example: --set {example}=...")
            params[key] = coerce(raw, params[key], key)
        check_params(params, self.spec, self.name)
        return params


def coerce(raw: Any, like: Any, key: str) -> Any:
    """Parse a --set value to the type of the preset's value `like` (lists: comma-separated or JSON; dicts:
    JSON). Every number must be finite: 'nan' and 'inf' are refused here, for every key."""
    value = _parse(raw, like, key)
    if not all_finite(value):
        raise ConfigError(f"The --set value for '{key}' must be finite (no nan or inf). Got {raw!r} instead.")
    return value


def _parse(raw: Any, like: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw.lower() in ("none", "null") and not isinstance(like, str):
        return None            # "not set" (Param.optional); check_params refuses it for every other parameter
    try:
        if isinstance(like, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(like, (list, tuple)):
            if raw.startswith("["):
                items = json.loads(raw)
            else:
                items = [s for s in raw.split(",") if s.strip()]
            elem = like[0] if like else raw
            try:
                return [_parse(str(v) if not isinstance(v, str) else v, elem, key) for v in items]
            except ConfigError:
                raise ValueError from None
        if isinstance(like, dict):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError
            return value
        if isinstance(like, int):
            return int(float(raw)) if float(raw).is_integer() else int(raw)
        if isinstance(like, float):
            return float(raw)
        if like is None:
            return json.loads(raw) if raw else None
        return raw
    except (ValueError, json.JSONDecodeError):
        kind = (f"a comma-separated list of {type(like[0]).__name__ if like else 'values'}"
                if isinstance(like, (list, tuple)) else "a JSON object" if isinstance(like, dict)
                else f"a {type(like).__name__}")
        raise ConfigError(f"The --set value for '{key}' must be {kind}, like the preset's {like!r}. "
                          f"Got {raw!r} instead.") from None
