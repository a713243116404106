"""Certify a trained model's test error from held-out data: the tightest valid bound and the classic ones.

    certify(model, data, delta=0.05, family_size=1) -> Certificate

counts the k errors (margin ≤ 0) of the model on the n held-out points once and reports, each at confidence
1 − δ and for a family of |F| = family_size candidate models (SPEC §3.2, :mod:`gapbench.bounds.heldout`):
heldout_binomial (the exact binomial tail inversion, the headline: the tightest valid bound), heldout_kl,
heldout_hoeffding, heldout_empirical_bernstein, and heldout_bernstein with var = 1/4 (the largest variance of
any 0-1 loss, so the assumption always holds). Given the model's training record (``run=``, or
``train_indices=`` with ``train_source=``) it refuses a split that shares points with the training set
(:mod:`gapbench.overlap`); without one, the certificate states the assumption it rests on.

References: Langford 2005 (test-set bound); Kawaguchi, Kaelbling & Bengio 2017, §6 Proposition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .bounds import _as_pair
from .bounds.heldout import count_errors, heldout_bound
from .bounds.types import Bound
from .data.types import Split
from .errors import check_positive_int, check_probability
from .overlap import held_out_statement, training_record

ZERO_ONE_MAX_VAR = 0.25          # Var of a {0, 1} loss is p(1 − p) ≤ 1/4
HEADLINE = "heldout_binomial"
BOUND_NAMES = ("heldout_binomial", "heldout_kl", "heldout_hoeffding", "heldout_empirical_bernstein",
               "heldout_bernstein")


@dataclass(frozen=True)
class Certificate:
    """Held-out bounds on one model's 0-1 population error."""

    n: int                                   # held-out points used
    errors: int                              # k: points with margin ≤ 0
    empirical_error: float                   # k / n
    delta: float
    family_size: int
    bounds: dict[str, Bound] = field(default_factory=dict)
    headline: str = HEADLINE                 # the tightest valid bound (binomial tail inversion)
    held_out: str = ""                       # 'checked: disjoint from ...' or the assumption it rests on

    @property
    def tightest(self) -> str:
        """Name of the smallest bound value (always the binomial one; checked, not assumed)."""
        return min(self.bounds, key=lambda name: self.bounds[name].value)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "errors": self.errors, "empirical_error": self.empirical_error,
                "delta": self.delta, "family_size": self.family_size, "headline": self.headline,
                "tightest": self.tightest, "held_out": self.held_out,
                "bounds": {name: b.as_dict() for name, b in self.bounds.items()}}

    def format(self) -> str:
        """A text table: one row per bound, the headline marked."""
        lines = [f"held-out points n = {self.n}, errors k = {self.errors}, empirical error = "
                 f"{self.empirical_error:.5f}",
                 f"held-out points: {self.held_out}",
                 f"with probability ≥ {1 - self.delta:g} (δ = {self.delta:g}, family size |F| = "
                 f"{self.family_size}), the 0-1 population error is at most:",
                 f"  {'bound':<30}{'value':>10}{'slack':>10}"]
        for name, b in self.bounds.items():
            mark = "  <- tightest valid bound" if name == self.headline else ""
            lines.append(f"  {name:<30}{b.value:>10.5f}{b.terms['slack']:>10.5f}{mark}")
        return "\n".join(lines)


def certify(model: nn.Module, data: Split | tuple[torch.Tensor, torch.Tensor], *, delta: float = 0.05,
            family_size: int = 1, run: Any = None, train_indices: Any = None,
            train_source: str | None = None) -> Certificate:
    """All held-out bounds for `model` on the held-out `data` (never used for training or selection beyond a
    family of `family_size` models).

    The model's training record, ``run=`` (a Run) or ``train_indices=`` with ``train_source=`` (the pool
    they point into, ``data.train.pool``), has `data` (then a Split) checked disjoint from the training
    points; an overlap raises. Without a record the certificate says that it assumes disjointness.
    """
    where = "certify()"
    delta = check_probability(delta, "delta", where)
    family_size = check_positive_int(family_size, "family_size", where)
    pair = _as_pair(data, where)
    record = training_record(run, train_indices, train_source, where=where)
    held_out = held_out_statement(data, int(pair[1].shape[0]), record, where=where)
    n, k = count_errors(model, pair)
    bounds = {name: heldout_bound(name, n, k, delta=delta, family_size=family_size,
                                  var=ZERO_ONE_MAX_VAR if name == "heldout_bernstein" else None)
              for name in BOUND_NAMES}
    return Certificate(n, k, k / n, delta, family_size, bounds, held_out=held_out)

