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
import inspect
from typing import Any

import torch
from torch import nn

from ..data.types import Split
from ..errors import GapbenchError, check_probability
from ..overlap import held_out_statement, training_record
from ..registry import Registry
from .types import Bound

BOUNDS: Registry = Registry("bound", required=("quantity", "reference", "needs"))
RECORD_PARAMS = ("run", "train_indices", "train_source")   # a held-out bound's training record (in this order)


def _as_pair(data: Any, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split -> (x, y); an (x, y) pair of tensors passes through."""
    if isinstance(data, Split):
        return data.as_tuple()
    if (isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data)
            and data[0].shape[0] == data[1].shape[0]):
        return data[0], data[1]
    raise GapbenchError(f"The 'data' parameter of {where} must be a Split or an (x, y) pair of tensors "
                        f"with the same number of rows. Got {type(data).__name__} instead. Pass "
                        f"dataset.split('test') or (x, y).")


def _keyword_params(fn: Any) -> tuple[set[str], bool]:
    """The keyword-only parameter names of fn (except delta) and whether it accepts **kwargs."""
    sig = inspect.signature(fn)
    names = {p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    return names - {"delta"}, var_kw


def bound(name: str, model: nn.Module, data: Any, *, delta: float, **params: Any) -> Bound:
    """Evaluate the registered bound `name` on `model` and `data` (a Split or (x, y)) at confidence 1 − delta.

    Unknown params raise an error listing the accepted ones; the bound function validates their values. A
    held-out bound also accepts the training record (``run=``, ``train_indices=``, ``train_source=``).
    """
    where = f"bound('{name}')"
    entry = BOUNDS.get(name)
    delta = check_probability(delta, "delta", "bound()")
    accepted, var_kw = _keyword_params(entry.obj)
    record_params = set(RECORD_PARAMS) if entry.meta.get("held_out") else set()
    unknown = sorted(set(params) - accepted - record_params)
    if unknown and not var_kw:
        raise GapbenchError(f"The parameter(s) {unknown} of {where} are not accepted. Accepted parameters: "
                            f"{', '.join(sorted(accepted | record_params)) or 'none'}. Remove or rename them.")
    keep_split = isinstance(data, Split) and "split" in entry.meta["needs"]
    pair = _as_pair(data, where)
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
