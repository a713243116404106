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

from ..errors import check_choice, param_error
from ..models import init_weights
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


PHASE1_BUDGETS = ("epochs", "steps")
PHASE2_INITS = ("warm", "fresh")


def normalized(data, mean: float, std: float):
    """A copy of `data` whose inputs (every split) are (x − mean)/std: fixed constants, not statistics of S,
    so the gates learned on S_αm stay independent of S ∖ S_αm (PyTorch's MNIST example: 0.1307, 0.3081)."""
    if not std > 0:
        raise param_error("normalize", "kkb2017-two-phase", "[mean, std] with std > 0", [mean, std],
                          "Pass e.g. --set normalize=[0.1307,0.3081], or null for raw [0, 1] pixels.")

    def scale(split):
        return None if split is None else dataclasses.replace(split, x=(split.x - mean) / std)
    return dataclasses.replace(data, train=scale(data.train), test=scale(data.test), val=scale(data.val),
                               extra={k: scale(v) for k, v in data.extra.items()})


def phase2_start(phase1_model: nn.Module, mode: str, init: str, cfg) -> nn.Module:
    """The net phase 2 trains. 'warm' (KKB §5.3.1: w̄ keeps training from w_{S_αm}): the phase-1 weights.
    'fresh': the trainable part (the whole value net, or the last layer) restarts from a new draw of the
    config's init scheme with the run's init seed; the gates (or frozen features) stay at phase 1's weights."""
    check_choice(init, "phase2_init", "kkb2017-two-phase", PHASE2_INITS)
    net = gated_from(phase1_model) if mode == "two_phase" else freeze_all_but_last(phase1_model)
    if init == "fresh":
        target = net.value if mode == "two_phase" else [m for m in net if isinstance(m, _LAYERWISE)][-1]
        init_weights(target, cfg.model.init, cfg.model.init_seed)
    return net


def epoch_budgets(p, m: int, count: int) -> dict[str, int]:
    """Epochs of each training run. Standard: `standard_epochs` (default 2·`epochs`) over the m points.
    Phase 1: `epochs` over S_αm ('epochs') or round(`epochs`·m/αm), the SGD steps of `epochs` epochs over m
    ('steps'). Phase 2: `phase2_epochs` (default `epochs`) over the m points. [verify: KKB v5 state 1000
    epochs for App. A1's Tables 2 and 3 only; Fig. 2's budgets are not stated.]"""
    epochs = int(p["epochs"])
    budget = p.get("phase1_budget", "epochs")
    check_choice(budget, "phase1_budget", "kkb2017-two-phase", PHASE1_BUDGETS)
    return {"standard": int(p.get("standard_epochs") or 2 * epochs),
            "phase1": epochs if budget == "epochs" else max(1, round(epochs * m / count)),
            "phase2": int(p.get("phase2_epochs") or epochs)}
