"""PAC-Bayes training and certificates for probabilistic networks (Pérez-Ortiz et al. 2021, beyond PBB's
Monte Carlo step).

    import gapbench as gb
    prior = gb.pacbayes.train_prior(model, data.split("prior"))               # S_prior only
    trained = gb.pacbayes.train_probabilistic(net, data.train, objective="f_quad", n_bound=len(s_bound))
    cert = gb.pacbayes.certify(trained.net, s_bound, delta=0.025, prior_record=prior, test_data=data.test)

Names load lazily (no side effects at import); no public name is also the name of a submodule.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "certify": ("certificate", "pacbayes_certificate"),
    "pacbayes_certificate": ("certificate", "pacbayes_certificate"),
    "PacBayesCertificate": ("certificate", "PacBayesCertificate"),
    "train_probabilistic": ("train", "train_probabilistic"),
    "train_prior": ("train", "train_prior"),
    "TrainedPrior": ("train", "TrainedPrior"),
    "ProbabilisticTraining": ("train", "ProbabilisticTraining"),
    "bounded_cross_entropy": ("objectives", "bounded_cross_entropy"),
    "objective": ("objectives", "objective"),
    "OBJECTIVES": ("objectives", "OBJECTIVES"),
    "kl_inverse": ("objectives", "kl_inverse"),
    "probabilistic": ("nets", "probabilistic"),
    "ProbNet": ("nets", "ProbNet"),
    "predict_errors": ("nets", "predict_errors"),
    "pbb_cnn": ("nets", "pbb_cnn"),
    "pbb_fcn": ("nets", "pbb_fcn"),
    "MODES": ("layers", "MODES"),
    "GaussianWeights": ("layers", "GaussianWeights"),
    "ProbConv2d": ("layers", "ProbConv2d"),
    "ProbLinear": ("layers", "ProbLinear"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'gapbench.pacbayes' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
