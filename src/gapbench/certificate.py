"""Certify a trained model's test error from held-out data: the tightest valid bound and the classic ones.

    certify(model, data, delta=0.05, family_size=1) -> Certificate

counts the k errors (margin ≤ 0) of the model on the n held-out points once and reports, each at confidence
1 − δ and for a family of |F| = family_size candidate models (SPEC §3.2, :mod:`gapbench.bounds.heldout`):
heldout_binomial (the exact binomial tail inversion, the headline: the tightest valid bound), heldout_kl,
heldout_hoeffding, heldout_empirical_bernstein, and heldout_bernstein with var = 1/4 (the largest variance of
any 0-1 loss, so the assumption always holds). :func:`check_disjoint` refuses a held-out split that shares
points with the training set recorded in a checkpoint.

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
from .errors import GapbenchError, check_positive_int, check_probability

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

    @property
    def tightest(self) -> str:
        """Name of the smallest bound value (always the binomial one; checked, not assumed)."""
        return min(self.bounds, key=lambda name: self.bounds[name].value)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "errors": self.errors, "empirical_error": self.empirical_error,
                "delta": self.delta, "family_size": self.family_size, "headline": self.headline,
                "tightest": self.tightest,
                "bounds": {name: b.as_dict() for name, b in self.bounds.items()}}

    def format(self) -> str:
        """A text table: one row per bound, the headline marked."""
        lines = [f"held-out points n = {self.n}, errors k = {self.errors}, empirical error = "
                 f"{self.empirical_error:.5f}",
                 f"with probability ≥ {1 - self.delta:g} (δ = {self.delta:g}, family size |F| = "
                 f"{self.family_size}), the 0-1 population error is at most:",
                 f"  {'bound':<30}{'value':>10}{'slack':>10}"]
        for name, b in self.bounds.items():
            mark = "  <- tightest valid bound" if name == self.headline else ""
            lines.append(f"  {name:<30}{b.value:>10.5f}{b.terms['slack']:>10.5f}{mark}")
        return "\n".join(lines)


def certify(model: nn.Module, data: Split | tuple[torch.Tensor, torch.Tensor], *, delta: float = 0.05,
            family_size: int = 1) -> Certificate:
    """All held-out bounds for `model` on the held-out `data` (never used for training or selection beyond a
    family of `family_size` models)."""
    where = "certify()"
    delta = check_probability(delta, "delta", where)
    family_size = check_positive_int(family_size, "family_size", where)
    n, k = count_errors(model, _as_pair(data, where))
    bounds = {name: heldout_bound(name, n, k, delta=delta, family_size=family_size,
                                  var=ZERO_ONE_MAX_VAR if name == "heldout_bernstein" else None)
              for name in BOUND_NAMES}
    return Certificate(n, k, k / n, delta, family_size, bounds)


def check_disjoint(train_indices: torch.Tensor, split: Split, *, train_source: str = "train") -> None:
    """Raise when the held-out `split` shares points with the training points of a checkpoint.

    Indices are positions in a source pool; only a split drawn from the same pool as the training points
    (``split.source == train_source``, 'train' for every built-in dataset) can overlap.
    """
    if split.source != train_source:
        return
    train = torch.as_tensor(train_indices).reshape(-1).cpu()
    held = split.indices.reshape(-1).cpu()
    overlap = int(torch.isin(held, train).sum())
    if overlap:
        raise GapbenchError(f"The held-out split '{split.name or split.source}' shares {overlap} of its "
                            f"{len(held)} points with the {len(train)} training points recorded in the "
                            f"checkpoint (same source pool '{split.source}'), so no held-out bound is valid "
                            f"on it. Use --split test, or a validation split disjoint from training.")
