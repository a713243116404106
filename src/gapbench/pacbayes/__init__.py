"""PAC-Bayes certificates for stochastic networks (issue 11 Part 2): probabilistic networks with a Gaussian
posterior and prior per parameter, evaluated with an independent weight draw per example."""

from .layers import MODES, GaussianWeights, ProbConv2d, ProbLinear
from .nets import ProbNet, predict_errors, probabilistic

__all__ = ["MODES", "GaussianWeights", "ProbConv2d", "ProbLinear", "ProbNet", "predict_errors", "probabilistic"]
