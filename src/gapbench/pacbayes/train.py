"""Training a PAC-Bayes posterior (PBB's SGD loop) and a data-dependent prior on S_prior only.

`train_probabilistic` minimises a registered objective (:mod:`gapbench.pacbayes.objectives`) of the
mini-batch bounded cross-entropy of one reparameterised weight draw and of KL(Q ‖ P), with SGD with momentum
as PBB (pbb/utils.py L212 `optim.SGD(net.parameters(), lr, momentum)`; `trainPNNet`). `train_prior` trains a
deterministic network on S_prior with dropout and SGD as PBB (pbb/utils.py L161-165, `trainNNet`: plain
cross-entropy of log-softmax outputs, pbb/models.py L1150). Both train a deep copy: the caller's network is
never changed. All randomness (shuffling, weight draws, dropout masks) comes from one generator seeded with
`seed`.

Defaults, from PBB (mperezortiz/PBB at the stored snapshot):
    posterior: lr 0.001, momentum 0.95 (running_example.py L16-17), batch 250 (L7), epochs 100 (pbb/utils.py
    L24 `train_epochs=100`; the running example uses 10), kl_penalty 1 (pbb/utils.py L24), δ 0.025 (L23),
    p_min 1e-5 (running_example.py L14), objective f_quad (pbb/bounds.py L43).
    prior: lr 0.005, momentum 0.99 (running_example.py L18-19; pbb/utils.py L23 defaults 0.01 and 0.95),
    dropout 0.2 (pbb/utils.py L25, running_example.py L25-31), epochs 20 (pbb/utils.py L25; the running
    example uses 70 for a learnt prior).

n in the objective is `n_bound`, the size of the set the certificate will be computed on (PBB uses the size
of the posterior's training set, pbb/utils.py L198; the two coincide when both are the same set).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.types import Split, as_xy
from ..errors import check_positive_float, check_positive_int, check_probability, param_error
from ..inference import margins_from_logits
from ..progress import note
from ..trained import unknown_source
from .objectives import DEFAULT_P_MIN, bounded_cross_entropy, check_objective_args
from .objectives import objective as get_objective

MODES = ("per_example", "shared")


@dataclass
class ProbabilisticTraining:
    """A trained copy of the probabilistic network and one dict per epoch (objective, bounded_ce, error, kl)."""

    net: nn.Module
    history: list[dict[str, float]]


@dataclass
class TrainedPrior:
    """A deterministic network trained on S_prior, with the record the certificate checks against S_bound:
    the positions `train_indices` of its points in the pool `pool` (Split.pool) with `source` (Split.source),
    and where its initial weights came from (a :mod:`gapbench.trained` init_source record)."""

    model: nn.Module
    train_indices: torch.Tensor
    pool: str
    source: str
    init_source: dict[str, Any] = field(default_factory=unknown_source)
    history: list[dict[str, float]] = field(default_factory=list)


def _batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device):
    order = torch.randperm(n, generator=gen, device=gen.device).to(device)
    return order.split(batch_size)


def train_probabilistic(net: nn.Module, data: Split | tuple[torch.Tensor, torch.Tensor], *,
                        objective: str = "f_quad", n_bound: int, delta: float = 0.025, kl_penalty: float = 1.0,
                        lr: float = 0.001, momentum: float = 0.95, epochs: int = 100, batch_size: int = 250,
                        p_min: float = DEFAULT_P_MIN, seed: int = 0, mode: str = "per_example",
                        progress: bool = False) -> ProbabilisticTraining:
    """Train a copy of `net` (the ProbNet contract: net(x, mode=, generator=), net.kl()) on `data` by SGD with
    momentum on the objective `objective` (module docstring); returns the copy and its per-epoch history."""
    where = "train_probabilistic()"
    loss_of = get_objective(objective)
    check_objective_args(n_bound, delta, kl_penalty, where)
    lr = check_positive_float(lr, "lr", where)
    momentum = check_probability(momentum, "momentum", where, open_low=False)
    epochs = check_positive_int(epochs, "epochs", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    if mode not in MODES:
        raise param_error("mode", where, f"one of {list(MODES)} (a weight draw per example or per batch)", mode)
    x, y = as_xy(data, where)
    y = y.to(x.device)
    net = copy.deepcopy(net)
    net.train()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    history = []
    for epoch in range(1, epochs + 1):
        sums = {"objective": 0.0, "bounded_ce": 0.0, "error": 0.0}
        for idx in _batches(len(y), batch_size, gen, x.device):
            out = net(x[idx], mode=mode, generator=gen)
            ce = bounded_cross_entropy(out, y[idx], p_min=p_min).mean()
            loss = loss_of(ce, net.kl(), n=n_bound, delta=delta, kl_penalty=kl_penalty)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for key, value in (("objective", loss), ("bounded_ce", ce)):
                sums[key] += float(value.detach()) * len(idx)
            sums["error"] += float((margins_from_logits(out.detach(), y[idx]) <= 0).sum())
        with torch.no_grad():
            row = {"epoch": float(epoch), **{k: v / len(y) for k, v in sums.items()}, "kl": float(net.kl())}
        history.append(row)
        if progress:
            note(f"epoch {epoch}/{epochs}: objective {row['objective']:.4f}, bounded CE {row['bounded_ce']:.4f}, "
                 f"0-1 error {row['error']:.4f}, KL {row['kl']:.1f}")
    return ProbabilisticTraining(net, history)


def _dropout_hooks(model: nn.Module, dropout: float, gen: torch.Generator) -> list[Any]:
    """Inverted dropout (mask from `gen`) on the input of every weight layer but the first: PBB's nets drop
    each hidden layer's output (pbb/models.py L500-509), the same thing since the mask commutes with ReLU."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]

    def drop(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if not module.training or dropout == 0.0:
            return inputs
        x = inputs[0]
        keep = torch.rand(x.shape, generator=gen, device=gen.device).to(x.device) >= dropout
        return (x * keep / (1 - dropout), *inputs[1:])
    return [layer.register_forward_pre_hook(drop) for layer in layers[1:]]


def train_prior(model: nn.Module, prior_data: Split, *, lr: float = 0.005, momentum: float = 0.99,
                epochs: int = 20, dropout: float = 0.2, batch_size: int = 250, seed: int = 0,
                init_source: dict[str, Any] | None = None) -> TrainedPrior:
    """Train a copy of the deterministic `model` on S_prior = `prior_data` only (cross-entropy, SGD with
    momentum, dropout; defaults in the module docstring). `init_source` says where `model`'s weights came
    from (default: not recorded). The result's record lets the certificate check S_bound ∩ S_prior = ∅."""
    where = "train_prior()"
    if not isinstance(prior_data, Split):
        raise param_error("prior_data", where, "a Split (it records which points the prior sees, so that the "
                          "certificate can check they are disjoint from S_bound)", type(prior_data).__name__,
                          "Pass dataset.split(...) or another Split of the prior's points.")
    lr = check_positive_float(lr, "lr", where)
    momentum = check_probability(momentum, "momentum", where, open_low=False)
    dropout = check_probability(dropout, "dropout", where, open_low=False)
    epochs = check_positive_int(epochs, "epochs", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    x, y = prior_data.x, prior_data.y.to(prior_data.x.device)
    model = copy.deepcopy(model)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    hooks = _dropout_hooks(model, dropout, gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    history = []
    model.train()
    try:
        for epoch in range(1, epochs + 1):
            total, wrong = 0.0, 0
            for idx in _batches(len(y), batch_size, gen, x.device):
                out = model(x[idx])
                loss = nn.functional.cross_entropy(out, y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                wrong += int((margins_from_logits(out.detach(), y[idx]) <= 0).sum())
            history.append({"epoch": float(epoch), "loss": total / len(y), "error": wrong / len(y)})
    finally:
        for hook in hooks:
            hook.remove()
    model.eval()
    return TrainedPrior(model, prior_data.indices.detach().cpu().clone(), prior_data.pool, prior_data.source,
                        dict(init_source) if init_source is not None else unknown_source(), history)
