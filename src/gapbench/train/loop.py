"""fit(): train one model with SGD under a stop rule, and the plain (autograd) training loop.

Protocol. The model is built from ``cfg.model`` (init seed ``cfg.model.init_seed``) or loaded from
``init_state``; the initial state is kept in the Run. Each epoch draws a fresh permutation of the training
split from a ``torch.Generator`` seeded once with ``cfg.train.sgd_seed`` and takes ⌈n / batch_size⌉ steps
(the last, partial batch is kept). Dropout masks, which ``nn.Dropout`` draws from torch's global generator,
come from that generator forked and seeded from ``sgd_seed`` (stream :data:`DROPOUT_STREAM`) for the
duration of fit(): a run with dropout is the same whichever runs came before it in the process, and the
caller's global generator is left as it was. The stop rule (:mod:`.stop`) is checked on the full training split at
epoch 0 (before any step) and after every epoch. A non-finite minibatch loss marks the run 'failed' with the
step and the value; the epoch in which it happened is finished first (per-step losses are checked at the
epoch's end, so the hot loop never synchronizes), and the sweep calling fit() goes on.

Engines. Batch size 1 on a Flatten/Linear/ReLU MLP with plain SGD uses the fused batch-1 path
(:mod:`.batch1`); everything else uses the plain loop: autograd + ``torch.optim.SGD`` (same momentum and
weight-decay conventions). ``engine='plain'`` forces the plain loop.

Threads: fit() does not change ``torch.get_num_threads()`` (a process-wide setting); the worker pool sets
it from ``Runtime.threads``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..config import RunConfig, Runtime
from ..data.types import Dataset
from ..errors import check_choice, param_error
from ..inference import logits
from ..models import build_model
from ..progress import PLAIN_INTERVAL_S, Ticker
from ..trained import Run, seeded_source, unknown_source
from .batch1 import Batch1Engine, fusable_reason
from .losses import Loss, get_loss
from .stop import divergence_reason, epoch_metrics, eval_divergence_reason, stop_reason

ENGINES = ("auto", "plain", "batch1")
DROPOUT_STREAM = 0x44524F50   # 'DROP': the seed sequence [sgd_seed, this] seeds the dropout masks


def validate_train_config(cfg: RunConfig, where: str = "fit()") -> None:
    """What a TrainConfig cannot check itself (its fields' ranges are checked once, when it is built): that its
    loss is a registered one (train.losses)."""
    get_loss(cfg.train.loss)


class PlainEngine:
    """Autograd + torch.optim.SGD, one minibatch at a time (any architecture)."""

    def __init__(self, model: nn.Module, cfg: RunConfig, loss: Loss):
        tc = cfg.train
        self.model, self.loss, self.batch_size = model, loss, tc.batch_size
        trainable = [p for p in model.parameters() if p.requires_grad]   # frozen parts (two-phase gates) stay put
        self.optimizer = torch.optim.SGD(trainable, lr=tc.lr, momentum=tc.momentum,
                                         weight_decay=tc.weight_decay)

    def epoch(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """One SGD step per minibatch of `order`; returns the minibatch losses (before each update)."""
        self.model.train()
        losses = torch.empty(math.ceil(order.numel() / self.batch_size), device=x.device)
        for s, start in enumerate(range(0, order.numel(), self.batch_size)):
            idx = order[start:start + self.batch_size]
            loss = self.loss.mean(self.model(x[idx]), y[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses[s] = loss.detach()
        return losses


def make_engine(model: nn.Module, cfg: RunConfig, loss: Loss, num_classes: int, engine: str = "auto"):
    """The training engine for (model, cfg): 'auto' picks batch1 when it applies, else plain."""
    check_choice(engine, "engine", "fit()", ENGINES)
    reason = fusable_reason(model, cfg.train)
    if engine == "batch1" and reason:
        raise param_error("engine", "fit()", "'auto' or 'plain' for this run", engine,
                          f"The fused batch-1 path does not apply: {reason}.")
    if engine != "plain" and not reason:
        return Batch1Engine(model, cfg.train.lr, loss, num_classes)
    return PlainEngine(model, cfg, loss)


def fit(cfg: RunConfig, data: Dataset, *, runtime: Runtime | None = None, progress: bool = False,
        init_state: dict[str, torch.Tensor] | None = None, engine: str = "auto",
        model: nn.Module | None = None, init_source: dict | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> Run:
    """Train the model `cfg` describes on ``data.train`` and return the Run (never raises on divergence).

    Args:
        cfg: data, model and training configuration (seeds: model.init_seed, train.sgd_seed).
        data: the dataset; only ``data.train`` is used for training and for the stop rule.
        runtime: operational settings (``device``).
        progress: show progress over epochs on stderr (gapbench.progress: a bar on a terminal, else a
            plain line at most every few seconds).
        init_state: start from this state_dict instead of ``build_model``'s initialization.
        engine: 'auto' (batch1 where it applies), 'plain' (force autograd) or 'batch1' (require fused).
        model: train a copy of this module instead of building one from ``cfg.model`` (e.g. a two-phase
            net whose gates are frozen); parameters with ``requires_grad=False`` are not updated. The
            Run's config still describes the architecture; its init_state is this model's state.
        init_source: where `init_state` or `model` came from (run.source_from_run for another run's weights),
            recorded as Run.init_source; ignored (the seed is recorded) when neither is given, and
            {"kind": "unknown"} when they are given without it.
        on_epoch: called after every evaluation with {'kind': 'epoch', 'epoch', 'max_epochs', 'train_error',
            'loss', 'seconds'} (e.g. gapbench.progress.report, so a sweep shows the epochs of its jobs).

    Returns:
        Run with status 'converged' (stop rule met), 'max_epochs' or 'failed' (non-finite loss), its reason,
        epochs and steps taken, and history: one dict per evaluation with epoch, loss (full pass),
        sgd_loss (mean minibatch loss of the epoch; nan at epoch 0), train_error, margin_fraction, seconds.
    """
    validate_train_config(cfg)
    tc, device = cfg.train, (runtime or Runtime()).device
    model_given = model is not None
    if model is None:
        model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    else:
        model = copy.deepcopy(model).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    from_config = init_state is None and not model_given
    init_source = seeded_source(cfg.model.init_seed) if from_config else (init_source or unknown_source())
    start_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = data.train.x.to(device), data.train.y.to(device)
    loss = get_loss(tc.loss)
    trainer = make_engine(model, cfg, loss, data.num_classes, engine)
    gen = torch.Generator().manual_seed(tc.sgd_seed)
    run = Run(model=model, init_state=start_state, config=cfg, train_indices=data.train.indices,
              status="max_epochs", reason=f"stop rule '{tc.stop}' not met within {tc.max_epochs} epochs",
              extra={"engine": type(trainer).__name__}, init_source=init_source)
    ticker = Ticker(tc.max_epochs + 1, f"fit {run.signature}", enabled=progress, every_s=PLAIN_INTERVAL_S,
                    leave=False)
    try:
        with _dropout_rng(model, tc.sgd_seed, device):
            _train(run, trainer, x, y, gen, loss, ticker, on_epoch)
    finally:
        ticker.close()
    model.eval()
    return run


@contextlib.contextmanager
def _dropout_rng(model: nn.Module, sgd_seed: int, device) -> Iterator[None]:
    """Within the block, torch's global generator (the one nn.Dropout draws from) is seeded from
    [sgd_seed, DROPOUT_STREAM], and restored afterwards; nothing changes for a model without dropout."""
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
        yield
        return
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    seed = int(np.random.SeedSequence([sgd_seed, DROPOUT_STREAM]).generate_state(1, dtype=np.uint64)[0])
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _train(run: Run, trainer, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, loss: Loss,
           ticker: Ticker, on_epoch: Callable[[dict], None] | None) -> None:
    """The epochs of fit(): train, evaluate, record history, stop (fills `run` in place)."""
    tc, model, device = run.config.train, run.model, x.device
    t0 = time.perf_counter()
    for epoch in range(tc.max_epochs + 1):
        sgd_loss = float("nan")
        if epoch > 0:
            step_losses = trainer.epoch(x, y, torch.randperm(len(y), generator=gen).to(device))
            run.epochs, first = epoch, run.steps + 1
            run.steps += step_losses.numel()
            reason = divergence_reason(step_losses, first, epoch)
            if reason:
                run.status, run.reason = "failed", reason
                break
            sgd_loss = float(step_losses.mean())
        metrics = epoch_metrics(logits(model, x), y, loss, tc.target_margin)
        run.history.append({"epoch": epoch, **metrics, "sgd_loss": sgd_loss,
                            "seconds": time.perf_counter() - t0})
        _announce(run, ticker, on_epoch)
        reason = eval_divergence_reason(metrics, epoch)
        if reason:
            run.status, run.reason = "failed", reason
            break
        reason = stop_reason(metrics, tc, epoch)
        if reason:
            run.status, run.reason = "converged", reason
            break
    run.seconds = time.perf_counter() - t0


def _announce(run: Run, ticker: Ticker, on_epoch: Callable[[dict], None] | None) -> None:
    """Tell the progress display and `on_epoch` about the epoch just recorded in run.history."""
    last = run.history[-1]
    event = {"kind": "epoch", "epoch": last["epoch"], "max_epochs": run.config.train.max_epochs,
             "train_error": last.get("train_error"), "loss": last.get("loss"), "seconds": last["seconds"]}
    ticker.done(f"epoch {event['epoch']}/≤{event['max_epochs']}, train err {event['train_error']:.3f}")
    if on_epoch is not None:
        on_epoch(event)
