"""Quantities shared between measures, computed once per evaluation of many measures on one model.

Many measures need the same intermediate quantities of one (model, data, init): the BatchNorm-folded float64
weight layers, the differences W_l − Z_l, the operator norms (SVDs, FFT + SVDs), the training margins (the
output on the whole training set), the path norms and the PAC-Bayes σ searches. Called one by one, each
measure recomputes them. Inside ``with sharing():`` (what :func:`gapbench.measures.evaluate_all` uses) the
functions decorated with :func:`shared` remember their results for the duration of the block, so each such
quantity is computed once per evaluation, as the peers' one-function ``get_all_measures`` does.

Purity is kept: the memo lives in a :class:`contextvars.ContextVar` set by :func:`sharing` and dropped when
the block exits (no cache outlives the call, none is global). Arguments are keyed by *identity* for tensors,
modules and layers (a reference to each is held by the memo, so an id cannot be reused by another object while
the block lasts) and by value for numbers, strings, tuples and None; the ``caller`` argument (which only names
the measure in error messages) is not part of the key. An argument of any other type (a dict, a list of
floats) turns sharing off for that call. Results are returned as fresh containers (a list is copied, a tensor
cloned) so that no measure can change what another one gets; the weight tensors inside a list of layers are
shared and are never modified in place by any measure. A call that raises is not remembered.

Values are identical with and without sharing: the same deterministic functions compute them, only fewer
times (``tests/test_measures_shared.py`` checks every registered measure for exact equality).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import nn

F = TypeVar("F", bound=Callable[..., Any])

_MEMO: ContextVar[dict | None] = ContextVar("gapbench_shared_quantities", default=None)
_BY_VALUE = (int, float, str, bool, type(None))


class _Unkeyable(Exception):
    """An argument that can be keyed neither by identity nor by value: the call is not shared."""


@contextlib.contextmanager
def sharing() -> Iterator[None]:
    """Share the quantities of :func:`shared` functions between the measures computed in the block."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def is_sharing() -> bool:
    """Whether a :func:`sharing` block is active in this context."""
    return _MEMO.get() is not None


def _key(value: Any, held: list[Any]) -> Any:
    if isinstance(value, (torch.Tensor, nn.Module)) or dataclasses.is_dataclass(value):
        held.append(value)                      # keeps the object alive, so its id stays its own
        return ("id", id(value))
    if isinstance(value, tuple):
        return tuple(_key(v, held) for v in value)
    if isinstance(value, _BY_VALUE):
        return value
    raise _Unkeyable


def _fresh(result: Any) -> Any:
    if isinstance(result, list):
        return list(result)
    if isinstance(result, torch.Tensor):
        return result.clone()
    return result


def shared(fn: F) -> F:
    """Decorate `fn` so that, inside :func:`sharing`, a call with the same arguments returns the remembered
    result; outside a sharing block the call goes straight to `fn`."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        memo = _MEMO.get()
        if memo is None:
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        held: list[Any] = []
        try:
            key = (fn.__module__, fn.__qualname__,
                   tuple((name, _key(value, held)) for name, value in bound.arguments.items() if name != "caller"))
        except _Unkeyable:
            return fn(*args, **kwargs)
        if key not in memo:
            memo[key] = (fn(*args, **kwargs), held)
        return _fresh(memo[key][0])

    return wrapper  # type: ignore[return-value]
