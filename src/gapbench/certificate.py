"""Certify a trained model's test error from held-out data: the exact binomial bound and the classic ones.

    certify(model, data, delta=0.05, family_size=1) -> Certificate

counts the k errors (margin ≤ 0) of the model on the n held-out points once and reports, each at confidence
1 − δ and for a family of |F| = family_size candidate models (SPEC §3.2, :mod:`gapbench.bounds.heldout`):
heldout_binomial (the exact binomial tail inversion), heldout_kl, heldout_hoeffding,
heldout_empirical_bernstein, and heldout_bernstein in its assumption-free form (Var = R(1 − R) solved for R),
or KKB's form with an assumed variance bound when `assume_var` is passed (the certificate then prints the
assumption). Given the model's training record (``run=``, or ``train_indices=`` with ``train_source=``) it
refuses a split that shares points with the training set (:mod:`gapbench.overlap`); without one, the
certificate states the assumption it rests on.

The headline is chosen in advance, not as a minimum over bounds each at δ (a min over m bounds would hold
only at m·δ): it is the binomial one, the exact tail inversion, which every other assumption-free bound here
upper-bounds (Chernoff and Bernstein bound the same exact tail). The Certificate checks that it is ≤ every
other assumption-free bound up to the bisection tolerance.

References: Langford 2005 (test-set bound); Kawaguchi, Kaelbling & Bengio 2017, §6 Proposition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .bounds.heldout import ASSUMPTIONS, bound_from_counts, check_assumed_variance, count_errors
from .bounds.kl import TOL
from .bounds.types import Bound
from .data.types import Split, as_xy
from .errors import check_positive_int, check_probability
from .overlap import held_out_statement, training_record

HEADLINE = "heldout_binomial"
HEADLINE_SLACK = 2 * TOL         # the headline and the kl bound each sit ≤ TOL above their exact values
LARGE_FAMILY = 10 ** 15          # family sizes above this print as 10^x
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
    headline: str = HEADLINE                 # chosen in advance: the exact binomial tail inversion
    held_out: str = ""                       # 'checked: disjoint from ...' or the assumption it rests on

    def __post_init__(self) -> None:
        top = self.bounds.get(self.headline)
        if top is None:
            return
        for name, b in self.bounds.items():
            if b.assumptions == ASSUMPTIONS and top.value > b.value + HEADLINE_SLACK:
                raise RuntimeError(f"Certificate: the headline {self.headline} = {top.value!r} exceeds "
                                   f"{name} = {b.value!r}, an assumption-free bound it must never exceed; "
                                   f"this is a bug in gapbench.bounds, please report it.")

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "errors": self.errors, "empirical_error": self.empirical_error,
                "delta": self.delta, "family_size": self.family_size,
                "log_family_size": math.log(self.family_size), "headline": self.headline,
                "headline_value": self.bounds[self.headline].value if self.headline in self.bounds else None,
                "held_out": self.held_out,
                "bounds": {name: b.as_dict() for name, b in self.bounds.items()}}

    def notes(self) -> list[str]:
        """What a reader must know beyond the table: bounds below k/n, and assumptions beyond held-out-ness."""
        out = []
        for name, b in self.bounds.items():
            if b.terms.get("below_empirical"):
                out.append(f"{name} = {b.value:.5f} is below the empirical error {self.empirical_error:.5f}: "
                           f"at δ = {self.delta:g} the statement holds only with probability "
                           f"{1 - self.delta:g}, so it is weak, not a contradiction.")
            out += [f"{name} {extra}" for extra in b.assumptions[len(ASSUMPTIONS):]]
        return out

    def format(self) -> str:
        """A text table: one row per bound, the headline marked, then the notes."""
        size = (f"10^{math.log10(self.family_size):.2f}" if self.family_size > LARGE_FAMILY
                else str(self.family_size))
        lines = [f"held-out points n = {self.n}, errors k = {self.errors}, empirical error = "
                 f"{self.empirical_error:.5f}",
                 f"held-out points: {self.held_out}",
                 f"with probability ≥ {1 - self.delta:g} (δ = {self.delta:g}, family size |F| = {size}), "
                 f"the 0-1 population error is at most:",
                 f"  {'bound':<30}{'value':>10}{'slack':>10}"]
        for name, b in self.bounds.items():
            mark = "  <- headline (exact binomial tail, chosen in advance)" if name == self.headline else ""
            lines.append(f"  {name:<30}{b.value:>10.5f}{b.terms['slack']:>10.5f}{mark}")
        lines += [f"note: {note}" for note in self.notes()]
        return "\n".join(lines)


def certify(model: nn.Module, data: Split | tuple[torch.Tensor, torch.Tensor], *, delta: float = 0.05,
            family_size: int = 1, assume_var: float | None = None, run: Any = None,
            train_indices: Any = None, train_source: str | None = None) -> Certificate:
    """All held-out bounds for `model` on the held-out `data` (never used for training or selection beyond a
    family of `family_size` models); `assume_var` switches heldout_bernstein to KKB's assumed-variance form.

    The model's training record, ``run=`` (a Run) or ``train_indices=`` with ``train_source=`` (the pool
    they point into, ``data.train.pool``), has `data` (then a Split) checked disjoint from the training
    points; an overlap raises. Without a record the certificate says that it assumes disjointness.
    """
    where = "certify()"
    delta = check_probability(delta, "delta", where)
    family_size = check_positive_int(family_size, "family_size", where)
    assume_var = check_assumed_variance(assume_var, where)
    pair = as_xy(data, where)                 # n ≥ 1 points: with δ and |F| checked, L = ln(|F|/δ) > 0 below
    record = training_record(run, train_indices, train_source, where=where)
    held_out = held_out_statement(data, int(pair[1].shape[0]), record, where=where)
    n, k = count_errors(model, pair)
    log_term = math.log(family_size) - math.log(delta)      # L, as log_confidence computes it
    bounds = {name: bound_from_counts(name, n, k, log_term, delta, family_size,
                                      assume_var if name == "heldout_bernstein" else None)
              for name in BOUND_NAMES}
    return Certificate(n, k, k / n, delta, family_size, bounds, held_out=held_out)

