"""Every registered measure on one model: the values (with shared quantities computed once) and the cost of
each measure alone.

    from gapbench.measures import evaluate_all, measure_costs
    result = evaluate_all(model, data.train, init=run.init_state)
    result.values["jiang2020_pacbayes_flatness"], result.skipped
    rows = measure_costs(model, data.train, init=run.init_state)   # seconds of each measure, called alone

A measure applies when what it needs was passed (data, init) and it has no required parameter
(``margin_loss`` needs ``gamma``, ``dist_between`` needs ``other``): those are skipped with the reason. A
measure that applies but refuses the model (e.g. a fully-connected-only complexity on a conv net, or a margin
measure when γ = 0) raises a :class:`~gapbench.errors.GapbenchError` whose message is recorded in ``skipped``;
the others go on. Each measure runs with its default parameters, through :func:`gapbench.measures.measure`.

:func:`evaluate_all` computes the measures inside :func:`~gapbench.measures.shared.sharing`, so the folded
layers, the operator norms, the training margins, the path norms and the σ searches are computed once for the
whole registry (``share=False`` computes each measure on its own; the values are identical).
:func:`measure_costs` times each measure called alone (no sharing), which is what one measure costs a user
who computes only that one. "needs a search": the measures of kind 'sharpness', the PAC-Bayes σ bisection
(:func:`gapbench.measures.sharpness_search`), the only kind that searches.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..data.types import as_xy
from ..errors import GapbenchError, param_error
from ..registry import keyword_params
from ._base import MEASURES, resolve_init
from .shared import sharing

CALLER = "evaluate_all()"


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate_all`."""

    values: dict[str, float]      # measure name -> value, in registry order
    skipped: dict[str, str]       # measure name -> why it was not computed


def _resolved(model: nn.Module, data: Any, init: Any, caller: str):
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise param_error("model", caller, "an nn.Module with parameters", type(model).__name__)
    xy = None if data is None else as_xy(data, caller)
    return xy, None if init is None else resolve_init(model, init, caller)


def plan(data_given: bool, init_given: bool) -> tuple[list[str], dict[str, str]]:
    """The registered measures that can run with what was passed, and why each other one cannot."""
    names, skipped = [], {}
    for entry in MEASURES:
        required = [p for p, spec in keyword_params(entry.obj).items() if spec.default is inspect.Parameter.empty]
        if entry.needs_data and not data_given:
            skipped[entry.name] = "needs data (pass the training set)"
        elif entry.needs_init and not init_given:
            skipped[entry.name] = "needs init (pass the initial weights)"
        elif required:
            skipped[entry.name] = f"needs the parameter(s) {', '.join(required)}, which have no default"
        else:
            names.append(entry.name)
    return names, skipped


def _call(name: str, model: nn.Module, xy, init) -> float:
    from . import measure  # the validated entry point (imported here: this module is imported by it)
    return measure(name, model, xy, init=init)


def evaluate_all(model: nn.Module, data: Any = None, *, init: Any = None, share: bool = True) -> Evaluation:
    """Every registered measure that applies to `model` (see the module docstring), with the quantities they
    share computed once (`share`, default True)."""
    xy, init_model = _resolved(model, data, init, CALLER)
    names, skipped = plan(xy is not None, init_model is not None)
    values = {}
    with sharing() if share else contextlib.nullcontext():
        for name in names:
            try:
                values[name] = _call(name, model, xy, init_model)
            except GapbenchError as err:
                skipped[name] = str(err)
    return Evaluation(values=values, skipped=dict(sorted(skipped.items())))


def measure_costs(model: nn.Module, data: Any = None, init: Any = None, *,
                  clock: Callable[[], float] = time.perf_counter) -> list[dict[str, Any]]:
    """One row per registered measure: {"measure", "seconds" (called alone, no sharing; None when skipped),
    "needs_data", "needs_init", "needs_search", "value", "skipped" (the reason, '' when computed)}, in
    registry order."""
    caller = "measure_costs()"
    xy, init_model = _resolved(model, data, init, caller)
    names, skipped = plan(xy is not None, init_model is not None)
    rows = []
    for entry in MEASURES:
        seconds = value = None
        reason = skipped.get(entry.name, "")
        if entry.name in names:
            start = clock()
            try:
                value = _call(entry.name, model, xy, init_model)
            except GapbenchError as err:
                reason = str(err)
            seconds = clock() - start
        rows.append({"measure": entry.name, "seconds": seconds, "needs_data": bool(entry.needs_data),
                     "needs_init": bool(entry.needs_init), "needs_search": entry.kind == "sharpness",
                     "value": value, "skipped": reason})
    return rows
