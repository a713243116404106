"""Registered paper experiments. Each module defines one :class:`Experiment` and registers it here."""

from __future__ import annotations

from ..registry import Registry
from .base import PRESETS, Claim, ClaimResult, Experiment
from .table import Table, loglog_slope, slope_of

EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(exp: Experiment) -> Experiment:
    """Register an experiment (used by the paper modules and by tests that define their own)."""
    EXPERIMENTS.register(exp.name, exp, paper=exp.paper, figure=exp.figure, reference=exp.paper)
    return exp


def get(name: str | Experiment) -> Experiment:
    return name if isinstance(name, Experiment) else EXPERIMENTS.get(name).obj


# The paper experiments register themselves on import (after `register` above exists).
from . import (  # noqa: E402, F401
    certify_budget,
    dr2017_binary_mnist,
    kkb2017_deep_paths,
    kkb2017_linear_memorization,
    kkb2017_random_labels,
    kkb2017_two_phase,
    kkb2017_validation,
    nk2019_fig1,
    nk2019_hypersphere,
    nk2019_linear,
    nk2019_slices,
    pbb2021_mnist,
)

__all__ = ["EXPERIMENTS", "PRESETS", "Claim", "ClaimResult", "Experiment", "Table", "get", "loglog_slope",
           "register", "slope_of"]
