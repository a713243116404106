"""KKB two-phase training (arXiv v5 §5.3.1, App. A4; SPEC §4.7).

Two copies of a network: the *gate* net W_σ decides every ReLU's on/off state and every max-pool's choice,
and the *value* net W computes the output through those gates. Phase 1 trains the ordinary (tied) network on
the first α·m points S_αm; then W_σ is frozen and only W keeps training, on all m points. With the gates fixed,
the output is linear in the value net's path weights w̄, and z̃(x) = x̄ ∘ σ̄(x, W_σ) does not depend on the
(1 − α)·m points phase 1 never saw: the premise of KKB's Theorem 8.

The 'last_layer' variant (the seed summary's reading) freezes every layer but the last after phase 1. The
experiment's job (both phases, the bounds on S ∖ S_αm) is gapbench.experiments.analysis_jobs.two_phase_job.
"""

from __future__ import annotations

import copy
import dataclasses

from torch import nn

from .deep_paths import TwoPhaseNet

_LAYERWISE = (nn.Linear, nn.Conv2d)


def gated_from(model: nn.Sequential) -> TwoPhaseNet:
    """The two-phase net at the end of phase 1: gates (frozen) and values both start at the trained weights."""
    return TwoPhaseNet.from_model(model)


def freeze_all_but_last(model: nn.Sequential) -> nn.Sequential:
    """A copy of `model` whose only trainable parameters are those of its last weight layer."""
    model = copy.deepcopy(model)
    last = [m for m in model if isinstance(m, _LAYERWISE)][-1]
    for module in model:
        module.requires_grad_(module is last)
    return model


def first_points(data, count: int):
    """The dataset restricted to its first `count` training points (S_αm: the draw order is already random)."""
    train = data.train
    head = dataclasses.replace(train, x=train.x[:count], y=train.y[:count], indices=train.indices[:count])
    return dataclasses.replace(data, train=head)


def rest_points(data, count: int):
    """The training points after the first `count`: S ∖ S_αm, the points phase 1 never saw."""
    train = data.train
    return dataclasses.replace(train, x=train.x[count:], y=train.y[count:], indices=train.indices[count:],
                               name="train_rest")
