"""The result type of every bound."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A valid upper bound on a population quantity, holding with probability ≥ 1 − delta.

    `value` includes every constant. `terms` holds the pieces that combine into `value` (empirical term,
    slack, complexity, union-bound cost ...). `quantity` says what is bounded, e.g. "0-1 test error of f".
    `assumptions` lists what must hold for the guarantee (e.g. "held-out points not used for training or
    selection beyond the family of size |F|"); a plug-in estimate is flagged with `is_estimate=True` and is
    then *not* a bound.
    """

    name: str
    value: float
    delta: float
    quantity: str
    terms: dict[str, float] = field(default_factory=dict)
    reference: str = ""
    assumptions: tuple[str, ...] = ()
    is_estimate: bool = False

    @property
    def vacuous(self) -> bool:
        """A bound on a 0-1 error is vacuous when it is ≥ 1 (it then says nothing)."""
        return not math.isfinite(self.value) or self.value >= 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "delta": self.delta, "quantity": self.quantity,
                "terms": dict(self.terms), "reference": self.reference, "vacuous": self.vacuous,
                "assumptions": list(self.assumptions), "is_estimate": self.is_estimate}
