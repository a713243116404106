"""A measure or bound from anywhere (registry, import path, file, plugin) as one callable: :class:`Quantity`.

A Quantity is called like a measure, ``q(model, data, init=None) -> float``; for a bound the float is the
Bound's value at ``delta`` (:data:`DEFAULT_DELTA` unless given) and :meth:`Quantity.bound` returns the Bound.

The calling conventions a user's function must follow (checked with :func:`inspect.signature` before any call):

- a measure: ``fn(model, data, init)`` — ``data`` an (x, y) pair of tensors (or None), ``init`` an nn.Module of
  the model's architecture (or None); extra keyword-only parameters need defaults. Returns a finite float.
- a bound: ``fn(model, data, *, delta)``, and ``init=`` when it takes an ``init`` keyword, like the registered
  bounds (:mod:`gapbench.bounds`). Returns a :class:`~gapbench.bounds.types.Bound` at exactly that ``delta``;
  its value may be +inf (vacuous), never NaN or −inf.

The kind comes from, in this order: ``kind=`` forced by the caller; the registration (the built-in registry,
the plugin's entry-point group, or :func:`declare`); the return annotation (``-> Bound`` or ``-> float``);
else the signature (a ``delta`` parameter: a bound) provisionally, and the return type of the first call
decides (``Evaluation.kind``). A declared kind that the return type contradicts is a failure.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .bounds.types import Bound
from .errors import GapbenchError, check_choice, check_probability, param_error

KINDS = ("measure", "bound")
NEEDS = ("data", "init", "search")           # what a quantity may consume beyond the model
FAILURES = ("import", "signature", "raised", "non_finite", "return_type")
DEFAULT_DELTA = 0.05                         # a bound's 1 − δ confidence when the caller gives none (as in specs)
DECLARED = "__gapbench__"                    # the attribute :func:`declare` sets on a user's function


class QuantityError(GapbenchError):
    """A quantity that cannot be resolved or evaluated; `failure` is one of :data:`FAILURES`."""

    def __init__(self, message: str, failure: str):
        super().__init__(message)
        self.failure = failure


def declare(*, kind: str | None = None, needs: tuple[str, ...] | None = None, reference: str = "",
            higher_is_better: bool | None = None) -> Callable[[Callable], Callable]:
    """Attach registration metadata to a user's measure or bound (for plugins and import paths)::

        @declare(kind="measure", needs=("data",), reference="Me et al. 2026, eq. 3", higher_is_better=False)
        def my_measure(model, data, init=None): ...
    """
    where = "declare()"
    if kind is not None:
        check_choice(kind, "kind", where, KINDS)
    if needs is not None and (isinstance(needs, str) or not set(needs) <= set(NEEDS)):
        raise param_error("needs", where, f"a tuple of names from {NEEDS}", needs, "E.g. needs=('data', 'init').")

    def decorator(fn: Callable) -> Callable:
        setattr(fn, DECLARED, {"kind": kind, "needs": None if needs is None else tuple(needs),
                               "reference": reference, "higher_is_better": higher_is_better})
        return fn
    return decorator


@dataclass(frozen=True)
class Evaluation:
    """One call's result: the float, the kind the return type showed, the Bound for a bound."""

    value: float
    kind: str
    bound: Bound | None = None


@dataclass(frozen=True)
class Quantity:
    """A resolved measure or bound; see the module docstring for the conventions."""

    name: str
    kind: str                                   # 'measure' | 'bound'
    fn: Callable[..., Any]
    origin: str                                 # 'gapbench' | 'plugin <dist> <version>' | the import path
    needs: tuple[str, ...] | None = None        # from registration metadata; None: not declared
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)   # reference, higher_is_better, ...
    kind_from: str = "registered"               # registered | forced | annotation | signature (provisional)
    spec: str = ""                              # what resolve() was given (a Quantity pickles as it)
    builtin: bool = False                       # called through gapbench.measure() / gapbench.bound()

    @property
    def label(self) -> str:
        """How messages name it: "measure 'x' (plugin pkg 1.0)"."""
        return f"{self.kind} '{self.name}' ({self.origin})"

    def __reduce__(self):
        from .plugins import resolve
        return resolve, (self.spec or self.name, self.kind if self.kind_from == "forced" else None)

    def evaluate(self, model: Any, data: Any = None, init: Any = None, *, delta: float = DEFAULT_DELTA,
                 **params: Any) -> float:
        """The measure's value, or the bound's value at `delta`."""
        return self.run(model, data, init, delta=delta, **params).value

    __call__ = evaluate

    def bound(self, model: Any, data: Any = None, init: Any = None, *, delta: float = DEFAULT_DELTA,
              **params: Any) -> Bound:
        """The Bound object (for a bound)."""
        result = self.run(model, data, init, delta=delta, **params)
        if result.bound is None:
            raise GapbenchError(f"{self.label} is a measure: it returns a float, not a Bound. Use evaluate().")
        return result.bound

    def run(self, model: Any, data: Any = None, init: Any = None, *, delta: float = DEFAULT_DELTA,
            **params: Any) -> Evaluation:
        """Call the function and check its result (type, finiteness, delta); a bad result raises
        QuantityError with failure 'return_type' or 'non_finite'."""
        check_probability(delta, "delta", f"{self.kind} '{self.name}'")
        return check_result(self, self._call(model, data, init, delta, params), delta)

    def _call(self, model: Any, data: Any, init: Any, delta: float, params: dict[str, Any]) -> Any:
        if self.builtin:
            return _call_builtin(self, model, data, init, delta, params)
        from .data.types import as_xy
        from .measures._base import resolve_init
        where = f"{self.kind} '{self.name}'"
        xy = None if data is None else as_xy(data, where)
        init_model = None if init is None else resolve_init(model, init, where)
        if self.kind == "measure":
            return self.fn(model, xy, init_model, **params)
        if init_model is not None and _accepts_keyword(self.fn, "init"):
            params = {**params, "init": init_model}
        return self.fn(model, xy, delta=delta, **params)


def _call_builtin(quantity: Quantity, model, data, init, delta, params) -> Any:
    if quantity.kind == "measure":
        from .measures import measure
        return measure(quantity.name, model, data, init=init, **params)
    from .bounds import bound
    if init is not None and _accepts_keyword(quantity.fn, "init"):
        params = {**params, "init": init}
    return bound(quantity.name, model, data, delta=delta, **params)


def _parameters(fn: Callable) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(fn).parameters


def _accepts_keyword(fn: Callable, name: str) -> bool:
    params = _parameters(fn).values()
    return any(p.name == name and p.kind is not p.POSITIONAL_ONLY or p.kind is p.VAR_KEYWORD for p in params)


def infer_kind(fn: Callable) -> tuple[str, str]:
    """(kind, how it was found) from the declaration, the return annotation, else the signature."""
    declared = (getattr(fn, DECLARED, None) or {}).get("kind")
    if declared:
        return declared, "registered"
    annotation = inspect.signature(fn).return_annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if isinstance(annotation, type) and issubclass(annotation, Bound) or text.rsplit(".", 1)[-1] == "Bound":
        return "bound", "annotation"
    if text in ("float", "int"):
        return "measure", "annotation"
    return ("bound" if "delta" in _parameters(fn) else "measure"), "signature"


_EXPECTED = {"measure": "(model, data, init=None) -> float",
             "bound": "(model, data, *, delta, init=None) -> Bound"}


def _signature(fn: Any, kind: str, label: str) -> inspect.Signature:
    if not callable(fn):
        raise QuantityError(f"{label} is a {type(fn).__name__}, not a function. Point it at a function with the "
                            f"signature {_EXPECTED[kind]}.", "signature")
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise QuantityError(f"{label}: its signature cannot be read ({exc}). Wrap it in a Python function "
                            f"with the signature {_EXPECTED[kind]}.", "signature") from exc


def check_signature(fn: Any, kind: str, label: str) -> None:
    """Refuse, before any call, a function that cannot be called as a `kind` (see the module docstring)."""
    sig = _signature(fn, kind, label)
    probe = object()
    try:
        sig.bind(probe, probe, probe) if kind == "measure" else sig.bind(probe, probe, delta=DEFAULT_DELTA)
    except TypeError as exc:
        raise QuantityError(f"{label} cannot be called as a {kind}: its signature is {sig} ({exc}). A {kind} "
                            f"must accept {_EXPECTED[kind]}; extra keyword-only parameters need defaults. Fix "
                            f"its signature.", "signature") from exc


def _as_float(result: Any) -> float | None:
    """A real number (Python, numpy or 0-d tensor) as float; None for anything else."""
    if isinstance(result, bool):
        return None
    if isinstance(result, numbers.Real):
        return float(result)
    if type(result).__name__ == "Tensor" and getattr(result, "ndim", None) == 0 and result.is_floating_point():
        return float(result.item())
    return None


def check_result(quantity: Quantity, result: Any, delta: float) -> Evaluation:
    """The Evaluation of a raw result, or QuantityError naming the quantity, what it returned and the fix."""
    label = quantity.label
    firm = quantity.kind_from != "signature"           # the kind was declared, not guessed
    if isinstance(result, Bound):
        if firm and quantity.kind == "measure":
            raise QuantityError(f"{label} returned a Bound, but it is declared a measure, which returns a float. "
                                f"Return a float, or resolve it with kind='bound'.", "return_type")
        if result.delta != delta:
            raise QuantityError(f"{label} returned a Bound at delta={result.delta!r} when asked for delta="
                                f"{delta!r}. A bound must hold at the delta it is given: take a keyword "
                                f"parameter delta and build the Bound with it.", "return_type")
        if math.isnan(result.value) or result.value == -math.inf:
            raise QuantityError(f"{label} returned a Bound whose value is {result.value}. A bound's value is a "
                                f"number or +inf (vacuous); find where the computation breaks (log of 0, 0/0) "
                                f"or raise GapbenchError where the bound does not apply.", "non_finite")
        return Evaluation(float(result.value), "bound", result)
    value = _as_float(result)
    if value is None:
        raise QuantityError(f"{label} returned {type(result).__name__} {_short(result)}. A measure must return "
                            f"a float and a bound a gapbench.Bound; convert the result (e.g. float(...)).",
                            "return_type")
    if firm and quantity.kind == "bound":
        raise QuantityError(f"{label} returned the float {value!r}, but a bound must return a gapbench.Bound "
                            f"(value, delta, quantity ...). Return Bound(...), or resolve it with "
                            f"kind='measure'.", "return_type")
    if not math.isfinite(value):
        raise QuantityError(f"{label} returned {value} for this model. A measure must be finite: find where the "
                            f"computation breaks (log of 0, 0/0, overflow; compute in float64) or raise "
                            f"gapbench.GapbenchError where the measure does not apply.", "non_finite")
    return Evaluation(value, "measure")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def quantity_of(fn: Any, *, name: str, origin: str, spec: str, kind: str | None = None,
                kind_from: str = "forced") -> Quantity:
    """A checked Quantity for a user's function; `kind` given: forced (or by a plugin group, `kind_from`)."""
    _signature(fn, kind or "measure", f"{kind or 'measure or bound'} '{name}' ({origin})")
    declared = dict(getattr(fn, DECLARED, None) or {})
    if kind is None:
        kind, kind_from = infer_kind(fn)
    elif declared.get("kind") not in (None, kind):
        raise QuantityError(f"{kind} '{name}' ({origin}) is declared kind={declared['kind']!r} but is used "
                            f"as a {kind}. Make the declaration and the entry-point group (or kind=) agree.",
                            "signature")
    check_signature(fn, kind, f"{kind} '{name}' ({origin})")
    meta = {k: v for k, v in declared.items() if k not in ("kind", "needs")}
    return Quantity(name, kind, fn, origin, declared.get("needs"), meta, kind_from, spec)


def builtin_quantity(entry: Any, kind: str) -> Quantity:
    """The Quantity of a registry entry (a built-in measure or bound)."""
    meta = dict(entry.meta)
    if kind == "measure":
        needs = tuple(n for n, flag in (("data", meta["needs_data"]), ("init", meta["needs_init"]),
                                        ("search", meta["kind"] == "sharpness")) if flag)
    else:
        needs = tuple(n for n in ("data", "init") if n in meta["needs"])
    return Quantity(entry.name, kind, entry.obj, "gapbench", needs, meta, "registered", f"{kind}/{entry.name}",
                    builtin=True)


__all__ = ["DEFAULT_DELTA", "FAILURES", "KINDS", "NEEDS", "Evaluation", "Quantity", "QuantityError",
           "builtin_quantity", "check_result", "check_signature", "declare", "infer_kind", "quantity_of"]
