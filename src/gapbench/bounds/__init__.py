"""The bound registry: every valid upper bound on a population quantity, selectable by name.

A bound function has the signature ``fn(model, data, *, delta, **params) -> Bound`` where ``data`` is an
``(x, y)`` tensor pair (a :class:`~gapbench.data.types.Split` is normalized to one by :func:`bound`). It is
registered with its metadata::

    @BOUNDS.register("heldout_binomial", quantity="0-1 error of f", reference="Langford 2005, Thm 3.3",
                     needs=("model", "data"))

``needs`` says what the function consumes: 'model', 'data' (the n points the bound is about: held-out points
for the held-out bounds, training points for the others), 'init' (the initial weights), 'delta', 'split' (the
function takes ``data`` as the Split itself, to check where its points came from, or as an (x, y) pair).
``held_out=True`` says the data must not contain training points: :func:`bound` then accepts the model's
training record (``run=``, or ``train_indices=`` with ``train_source=``), refuses an overlap, and adds to the
Bound's assumptions what the guarantee rests on (:mod:`gapbench.overlap`).
Numeric cores usable without a model live in :mod:`.kl` and :mod:`.heldout`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from ..data.types import Split, as_xy
from ..errors import param_error
from ..overlap import held_out_statement, training_record
from ..registry import Registry, check_params, keyword_params, takes_any_keyword
from .types import Bound

BOUNDS: Registry = Registry("bound", required=("quantity", "reference", "needs"))
RECORD_PARAMS = ("run", "train_indices", "train_source")   # a held-out bound's training record (in this order)


def bound(name: str, model: nn.Module, data: Any, *, delta: float, **params: Any) -> Bound:
    """Evaluate the registered bound `name` on `model` and `data` (a Split or (x, y)) at confidence 1 − delta.

    Unknown params raise an error listing the accepted ones; the bound function validates their values, delta
    included (each value is checked once, by the function that uses it). A held-out bound also accepts the
    training record (``run=``, ``train_indices=``, ``train_source=``).
    """
    where = f"bound('{name}')"
    entry = BOUNDS.get(name)
    record_params = RECORD_PARAMS if entry.meta.get("held_out") else ()
    accepted = {**keyword_params(entry.obj), **dict.fromkeys(record_params)}
    accepted.pop("delta", None)
    check_params(params, accepted, where, open_ended=takes_any_keyword(entry.obj))
    if "init" in entry.meta["needs"] and params.get("init") is None:
        raise param_error("init", where, "the initial weights (a Run, an nn.Module or a state_dict)", None,
                          f"'{name}' is computed against the initialization: pass init=run.")
    keep_split = isinstance(data, Split) and "split" in entry.meta["needs"]
    pair = as_xy(data, where)
    given = data if keep_split else pair
    if not record_params:
        return entry.obj(model, given, delta=delta, **params)
    record = training_record(*(params.pop(p, None) for p in RECORD_PARAMS), where=where)
    statement = held_out_statement(data, int(pair[1].shape[0]), record, where=where)
    result = entry.obj(model, given, delta=delta, **params)
    return dataclasses.replace(result, assumptions=(*result.assumptions, statement))


def list_bounds() -> list:
    """Every registered bound as a registry Entry (``.name``, ``.obj``, ``.meta``), sorted by name."""
    return list(BOUNDS)


# Import the submodules so that they register (at the end: they import BOUNDS from here).
from . import heldout, margin_linear, pacbayes, spectral, theorem8  # noqa: E402,F401

__all__ = ["BOUNDS", "Bound", "bound", "list_bounds"]
