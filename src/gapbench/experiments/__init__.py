"""Registered paper experiments. Each module defines one :class:`Experiment` and registers it here."""

from __future__ import annotations

from ..registry import Registry
from .base import PRESETS, Claim, ClaimResult, Experiment
from .table import Table, loglog_slope, slope_of

EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(exp: Experiment) -> Experiment:
    """Register an experiment (used by the paper modules and by tests that define their own)."""
    EXPERIMENTS.add(exp.name, exp, paper=exp.paper, figure=exp.figure, reference=exp.paper)
    return exp


def get(name: str | Experiment) -> Experiment:
    return name if isinstance(name, Experiment) else EXPERIMENTS.get(name).obj


BUILTIN = ("nk2019_fig1", "nk2019_hypersphere", "nk2019_slices", "nk2019_linear", "kkb2017_validation",
           "kkb2017_random_labels", "kkb2017_deep_paths", "kkb2017_two_phase",
           "kkb2017_linear_memorization")


def _load_builtin() -> None:
    import importlib
    for module in BUILTIN:
        importlib.import_module(f"{__name__}.{module}")


_load_builtin()

__all__ = ["EXPERIMENTS", "PRESETS", "Claim", "ClaimResult", "Experiment", "Table", "get", "loglog_slope",
           "register", "slope_of"]
