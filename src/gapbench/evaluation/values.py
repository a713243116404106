"""Every (zoo model, quantity, split) value or failure, computed once and kept in the results store.

Storage uses the store's existing schema (no migration, so every older store stays readable and older
gapbench versions can still open a store this code wrote): one row of ``runs`` per evaluation, under the
experiment name ``evaluate:<zoo>`` and a signature hashing what decides the value:

    (quantity key, model id, split, delta)

The quantity key is the quantity's name and kind and a digest of its code: for a built-in the gapbench
version, for a user's function the bytes of its source file, so editing the file recomputes its values and
nothing else. A value is stored as ``values = {'value': v, 'seconds': s}`` with status 'done'; a failure as
status 'failed', failure 'deterministic' and ``reason`` = "<kind>: <message>" (kind one of
gapbench.quantity.FAILURES, or 'not_applicable' for a quantity that raised GapbenchError to say it does not
apply to this model: the convention of the registered measures and bounds).

Splits: 'S' is the model's training set, 'Sprime' NK's mirrored S' (nk-hypersphere), 'test' its test set
(the data a held-out bound is given); 'S:alone' is S again, for a timing of the quantity on its own.

Many quantities on one model: :meth:`ValueCache.prefetch` computes them model by model inside
:func:`gapbench.measures.shared.sharing`, so what the registered measures share (folded layers, operator
norms, margins, the σ searches of the PAC-Bayes measures) is computed once per model. Such a value is stored
with ``shared = 1``: its seconds are not what the quantity costs alone, so the cost test times it alone on
one model ('S:alone').
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, errors
from ..plugins import safe_evaluate
from ..progress import Ticker, interactive
from ..quantity import DEFAULT_DELTA, Quantity
from ..store import Store

SPLITS = ("S", "Sprime", "test", "S:alone")
NOT_APPLICABLE = "not_applicable"     # the quantity raised GapbenchError: it does not apply to this model


@dataclass(frozen=True)
class Value:
    """One evaluation: `value` (None on failure), `failure` kind and `message`, the seconds it took."""

    value: float | None
    seconds: float
    failure: str | None = None
    message: str = ""
    shared: bool = False              # computed with other quantities sharing intermediate results

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def broken(self) -> bool:
        """A failure that is the quantity's fault (not a model it declares it does not apply to)."""
        return self.failure is not None and self.failure != NOT_APPLICABLE


def code_digest(quantity: Quantity) -> str:
    """What identifies the quantity's code: the gapbench version for a built-in, else its source file's
    bytes (or its source text, or its origin when neither can be read)."""
    if quantity.builtin:
        return f"gapbench-{__version__}"
    try:
        source = Path(inspect.getsourcefile(quantity.fn)).read_bytes()
    except (TypeError, OSError):
        try:
            source = inspect.getsource(quantity.fn).encode()
        except (TypeError, OSError):
            source = quantity.origin.encode()
    return hashlib.sha256(source).hexdigest()[:16]


def quantity_key(quantity: Quantity) -> dict[str, str]:
    return {"name": quantity.name, "kind": quantity.kind, "origin": quantity.origin, "code": code_digest(quantity)}


def experiment_name(zoo) -> str:
    return f"evaluate:{zoo.name}"


def _signature(key: dict[str, str], model_id: str, split: str, delta: float) -> str:
    text = json.dumps({"quantity": key, "model": model_id, "split": split, "delta": delta}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def split_data(model, split: str):
    """The data a quantity is evaluated on for `split` (see the module docstring)."""
    if split in ("S", "S:alone"):
        return model.data.train
    if split == "test":
        return model.data.test
    mirrored = model.mirrored
    if mirrored is None:
        raise errors.GapbenchError(f"Model {model.id} of zoo '{model.zoo.name}' has no mirrored set S'; the "
                                   f"S' test runs on the zoo 'nk-hypersphere'.")
    return mirrored


def default_split(quantity: Quantity) -> str:
    """A held-out bound is evaluated on the test set (it bounds the error from points the model never saw);
    every other quantity on the training set S."""
    return "test" if quantity.meta.get("held_out") else "S"


def _failure_kind(outcome) -> str:
    failure = outcome.failure
    if failure.kind == "raised" and isinstance(getattr(errors, failure.exception, None), type) \
            and issubclass(getattr(errors, failure.exception), errors.GapbenchError):
        return NOT_APPLICABLE
    return failure.kind


class ValueCache:
    """Values of quantities on the models of one zoo: read from the store, computed (and stored) when absent.

    `computed` and `reused` count evaluations since construction (a rerun computes nothing new)."""

    def __init__(self, store: Store, zoo, delta: float = DEFAULT_DELTA):
        self.store, self.zoo, self.delta = store, zoo, delta
        self.experiment = experiment_name(zoo)
        self._stored = {run.signature: run for run in store.runs(self.experiment)}
        self.computed = 0
        self.reused = 0

    def values(self, quantity: Quantity, models, split: str, *, progress: bool = False) -> dict[str, Value]:
        """{model id: Value} of `quantity` on `split` of each model."""
        key = quantity_key(quantity)
        out, todo = {}, []
        for model in models:
            sig = _signature(key, model.id, split, self.delta)
            stored = self._stored.get(sig)
            if stored is not None:
                out[model.id] = _from_stored(stored)
                self.reused += 1
            else:
                todo.append((model, sig))
        if todo:
            # a bar per (quantity, zoo) on a terminal only: in a log, evaluate() writes one line per quantity
            ticker = Ticker(len(todo), f"{quantity.name} on {self.zoo.name} ({split})",
                            enabled=progress and interactive(), leave=False)
            try:
                for model, sig in todo:
                    ticker.begin(model.id[:12])
                    out[model.id] = self._compute(quantity, key, model, split, sig)
                    ticker.done(f"{model.id[:12]} ({ticker.item_seconds():.1f} s)")
            finally:
                ticker.close()
        return out

    def prefetch(self, quantities: list[Quantity], models, splits_of, *, progress: bool = False) -> None:
        """Compute and store every missing value of `quantities` on `models`, one model at a time with the
        shared quantities computed once (module docstring); splits_of(quantity) -> the splits to compute."""
        from ..measures.shared import sharing
        keys = [(q, quantity_key(q)) for q in quantities]
        todo = [(model, [(q, key, split, sig) for q, key in keys for split in splits_of(q)
                         if (sig := _signature(key, model.id, split, self.delta)) not in self._stored])
                for model in models]
        todo = [(model, jobs) for model, jobs in todo if jobs]
        ticker = Ticker(len(todo), f"registry on {self.zoo.name}", enabled=progress, leave=False)
        try:
            for model, jobs in todo:
                ticker.begin(model.id[:12])
                with sharing():
                    for quantity, key, split, sig in jobs:
                        self._compute(quantity, key, model, split, sig, shared=True)
                ticker.done(f"{model.id[:12]}: {len(jobs)} values ({ticker.item_seconds():.1f} s)")
        finally:
            ticker.close()

    def _compute(self, quantity: Quantity, key: dict[str, str], model, split: str, sig: str,
                 shared: bool = False) -> Value:
        data = split_data(model, split)
        outcome = safe_evaluate(quantity, model.model(), data, model.init(), delta=self.delta)
        config = {"quantity": key, "model": model.id, "split": split, "delta": self.delta, "zoo": self.zoo.name}
        flag = {"shared": 1.0} if shared else {}
        if outcome.ok:
            value = Value(float(outcome.value), outcome.seconds, shared=shared)
            self.store.record(self.experiment, sig, config,
                              {"value": value.value, "seconds": value.seconds, **flag},
                              status="done", seconds=value.seconds)
        else:
            value = Value(None, outcome.seconds, _failure_kind(outcome), outcome.failure.message, shared)
            self.store.record(self.experiment, sig, config, {"seconds": value.seconds, **flag}, status="failed",
                              reason=f"{value.failure}: {value.message}", seconds=value.seconds,
                              failure="deterministic")
        self.computed += 1
        self._stored[sig] = self.store.get(self.experiment, sig)
        return value


def _from_stored(run) -> Value:
    seconds = float(run.values.get("seconds", run.seconds or 0.0))
    shared = run.values.get("shared", 0.0) == 1.0
    if run.status == "done":
        return Value(float(run.values["value"]), seconds, shared=shared)
    kind, _, message = run.reason.partition(": ")
    return Value(None, seconds, kind, message, shared)
