"""fit_many(): many small MLPs of one architecture trained together as one stacked model.

M models that share architecture and training hyper-parameters (they may differ in ``init_seed``,
``sgd_seed`` and their training subsets) are held as stacked weights W_l ∈ R^{M×out×in}; a training step
is, for every layer, one batched matmul ``torch.baddbmm`` over the M models, so one Python-level step
(and one autograd graph) serves all M models and the small per-model matmuls become one larger kernel.
The loss is Σ_i mean-loss_i, so model i's gradient is exactly its own. Each model keeps its own SGD order
(its own generator seeded by its ``sgd_seed``), its own momentum buffer (``torch.optim.SGD`` convention:
buf ← g on the first step, buf ← μ·buf + g after; g includes weight_decay·W), and its own stop rule: a
model that meets its rule, or diverges, is frozen (its updates are skipped) and its epoch and step counts
are recorded, while the others go on. The per-model result equals sequential :func:`fit` up to float32
summation order.

``torch.bmm`` was preferred over ``torch.func.functional_call`` + ``vmap`` because it has no per-call
functional-transform overhead on CPU and gives the same kernels; ``gapbench bench`` reports the speed-up
over training the models one after another.

Falls back to sequential :func:`fit` (:func:`stack_reason` says why) when the configs cannot share one
stacked model: different architectures or hyper-parameters other than seeds, a non-MLP architecture,
training sets of different sizes or shapes (their epochs would not align), or batch size 1 (the fused
batch-1 path is faster than stacking matrix-vector products).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import torch
from torch import nn

from ..config import RunConfig, Runtime
from ..data.types import Dataset
from ..errors import param_error
from ..models import build_model
from ..progress import PLAIN_INTERVAL_S, Ticker
from ..trained import Run, seeded_source
from .loop import fit, validate_train_config
from .losses import Loss, get_loss
from .stop import divergence_reason, epoch_metrics, eval_divergence_reason, stop_reason


def stack_reason(cfgs: list[RunConfig], datasets: list[Dataset]) -> str:
    """'' when `cfgs` / `datasets` can be trained as one stacked model, else the reason they cannot."""
    if len(cfgs) < 2:
        return "fewer than two configs"
    first = cfgs[0]
    if first.model.arch != "mlp":
        return f"architecture '{first.model.arch}' is not 'mlp'"
    if first.train.batch_size == 1:
        return "batch size 1 uses the fused batch-1 path"
    for c in cfgs[1:]:
        if dataclasses.replace(c.model, init_seed=0) != dataclasses.replace(first.model, init_seed=0):
            return "model configs differ in more than init_seed"
        if dataclasses.replace(c.train, sgd_seed=0) != dataclasses.replace(first.train, sgd_seed=0):
            return "training configs differ in more than sgd_seed"
    d0 = datasets[0]
    for d in datasets[1:]:
        if (len(d.train), d.input_shape, d.num_classes) != (len(d0.train), d0.input_shape, d0.num_classes):
            return "training splits differ in size, input shape or number of classes"
    return ""


class StackedMLP:
    """M MLPs as stacked parameters; trains them together with per-model masking of updates.

    The step is written out instead of taped by autograd (h_0 = x, z_l = h_{l-1} W_lᵀ + b_l, h_l = relu(z_l),
    f = z_L, all batched over the M models):

        δ_L = M · ∂(Σ_i mean-loss_i)/∂f           (``loss.grad`` on the (M·B) rows divides by M·B)
        ∂W_l = δ_lᵀ h_{l-1},  ∂b_l = Σ_B δ_l,  δ_{l-1} = (δ_l W_l) ∘ 1[h_{l-1} > 0]

    With plain SGD (momentum 0, weight decay 0) and every model active, the update is fused into the
    weight-gradient GEMM, W_l ← W_l − lr · δ_lᵀ h_{l-1} (``baddbmm_``: no gradient tensor is written and read
    back); δ_l W_l is computed before that update. Otherwise the gradients are formed and :meth:`_update`
    applies momentum, weight decay and the frozen-model mask.
    """

    def __init__(self, models: list[nn.Sequential], cfg: RunConfig, loss: Loss):
        per_model = [[m for m in model if isinstance(m, nn.Linear)] for model in models]
        self.weights = [torch.stack([ls[l].weight.detach() for ls in per_model])
                        for l in range(len(per_model[0]))]
        has_bias = per_model[0][0].bias is not None
        self.biases = [torch.stack([ls[l].bias.detach() for ls in per_model]) if has_bias else None
                       for l in range(len(per_model[0]))]
        self.params = self.weights + [b for b in self.biases if b is not None]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)
        self.tc, self.loss = cfg.train, loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (M, B, K) of the M models on their own inputs x (M, B, d)."""
        return self._activations(x)[-1]

    def _activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h_0 = x, h_1, ..., h_{L-1}, f]: every layer's input, then the logits."""
        hs = [x]
        last = len(self.weights) - 1
        for l, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = hs[-1]
            z = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b[:, None, :], h,
                                                                                  w.transpose(1, 2))
            hs.append(z.relu_() if l < last else z)
        return hs

    @torch.no_grad()
    def epoch(self, xs: torch.Tensor, ys: torch.Tensor, orders: torch.Tensor,
              active: torch.Tensor) -> torch.Tensor:
        """One epoch for every model in its own order (M, n); only models with `active` True are updated.

        Returns the per-step minibatch losses (steps, M), each before its step's update.
        """
        num, n = orders.shape
        flat_x, flat_y = xs.reshape(num * n, -1), ys.reshape(num * n)
        offsets = (torch.arange(num, device=xs.device) * n)[:, None]   # model i's rows start at i·n
        bs = self.tc.batch_size
        losses = torch.empty(math.ceil(n / bs), num, device=xs.device)
        frozen = (~active).nonzero().squeeze(1)
        fused = not (self.tc.momentum or self.tc.weight_decay or frozen.numel())
        for s, start in enumerate(range(0, n, bs)):
            rows = (orders[:, start:start + bs] + offsets).flatten()
            y = flat_y.index_select(0, rows)
            hs = self._activations(flat_x.index_select(0, rows).view(num, -1, flat_x.shape[1]))
            out = hs.pop().flatten(0, 1)
            losses[s] = self.loss.per_example(out, y).view(num, -1).mean(dim=1)
            delta = self.loss.grad(out, y).mul_(num).view(num, -1, out.shape[1])
            grads = self._backward(hs, delta, fused)
            if not fused:
                self._update(grads, frozen)
        return losses

    def _backward(self, hs: list[torch.Tensor], delta: torch.Tensor, fused: bool) -> list[torch.Tensor]:
        """Backpropagate δ_L through the layers; with `fused`, apply the SGD step in place and return []."""
        lr, num_layers = self.tc.lr, len(self.weights)
        weight_grads, bias_grads = [None] * num_layers, [None] * num_layers
        for l in range(num_layers - 1, -1, -1):
            w, b, h = self.weights[l], self.biases[l], hs[l]
            prev = torch.bmm(delta, w) if l > 0 else None               # δ_l W_l, with W_l before its update
            if fused:
                w.baddbmm_(delta.transpose(1, 2), h, alpha=-lr)
                if b is not None:
                    b.sub_(delta.sum(dim=1), alpha=lr)
            else:
                weight_grads[l] = torch.bmm(delta.transpose(1, 2), h)
                bias_grads[l] = None if b is None else delta.sum(dim=1)
            if l > 0:
                delta = prev.masked_fill_(h <= 0, 0.0)                  # ReLU'(z) = 1[h > 0], as autograd
        return [] if fused else weight_grads + [g for g in bias_grads if g is not None]

    @torch.no_grad()
    def _update(self, grads: tuple[torch.Tensor, ...], frozen: torch.Tensor) -> None:
        tc = self.tc
        for j, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if tc.weight_decay:
                g = g.add(p, alpha=tc.weight_decay)
            if tc.momentum:
                buf = self.momentum_buffers[j]
                if buf is None:
                    buf = self.momentum_buffers[j] = g.clone()
                else:
                    buf.mul_(tc.momentum).add_(g)
                g = buf
            if frozen.numel():  # frozen models get no update (index_fill, not 0·g: a failed model's g is nan)
                g = g.index_fill(0, frozen, 0.0)
            p.sub_(g, alpha=tc.lr)

    @torch.no_grad()
    def logits(self, xs: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Logits (M, n, K) of every model on its whole training split, under inference mode."""
        with torch.inference_mode():
            return torch.cat([self.forward(xs[:, i:i + chunk]) for i in range(0, xs.shape[1], chunk)], dim=1)

    @torch.no_grad()
    def write_back(self, models: list[nn.Sequential]) -> None:
        """Copy each model's slice of the stacked parameters into its nn.Module."""
        for i, model in enumerate(models):
            linears = [m for m in model if isinstance(m, nn.Linear)]
            for l, lin in enumerate(linears):
                lin.weight.copy_(self.weights[l][i])
                if lin.bias is not None:
                    lin.bias.copy_(self.biases[l][i])


def fit_many(cfgs: list[RunConfig], datasets: Dataset | list[Dataset], *, runtime: Runtime | None = None,
             progress: bool = False, stacked: bool = True,
             on_epoch: Callable[[dict], None] | None = None) -> list[Run]:
    """Train every config in `cfgs` (model i on ``datasets[i].train``, or all on one Dataset).

    Uses one stacked model when :func:`stack_reason` allows it (and `stacked` is True); otherwise calls
    :func:`fit` for each config in turn. Returns the Runs in the order of `cfgs`; each Run's ``seconds`` is
    the wall-clock time of the whole stacked training, and ``extra['engine']`` says which path ran.
    `progress` and `on_epoch` are fit()'s; a stacked epoch's event has 'training' (models still training)
    and no 'train_error'.
    """
    runtime = runtime or Runtime()
    if isinstance(datasets, Dataset):
        datasets = [datasets] * len(cfgs)
    if len(datasets) != len(cfgs):
        raise param_error("datasets", "fit_many()", f"one Dataset or a list of {len(cfgs)} Datasets",
                          f"a list of {len(datasets)}", "Pass one Dataset per config.")
    for c in cfgs:
        validate_train_config(c, "fit_many()")
    reason = stack_reason(cfgs, datasets) if stacked else "stacking disabled"
    if reason:
        runs = [fit(c, d, runtime=runtime, progress=progress, on_epoch=on_epoch)
                for c, d in zip(cfgs, datasets, strict=True)]
        for r in runs:
            r.extra["not_stacked"] = reason
        return runs
    return _fit_stacked(cfgs, datasets, runtime.device, progress, on_epoch)


def _fit_stacked(cfgs: list[RunConfig], datasets: list[Dataset], device: str, progress: bool,
                 on_epoch: Callable[[dict], None] | None) -> list[Run]:
    tc, d0 = cfgs[0].train, datasets[0]
    models = [build_model(c.model, d0.input_shape, d0.num_classes).to(device) for c in cfgs]
    runs = [Run(model=m, init_state={k: v.detach().clone() for k, v in m.state_dict().items()}, config=c,
                train_indices=d.train.indices, status="max_epochs",
                reason=f"stop rule '{tc.stop}' not met within {tc.max_epochs} epochs",
                extra={"engine": "StackedMLP", "stack_size": len(cfgs)},
                init_source=seeded_source(c.model.init_seed))
            for m, c, d in zip(models, cfgs, datasets, strict=True)]
    loss = get_loss(tc.loss)
    net = StackedMLP(models, cfgs[0], loss)
    xs = torch.stack([d.train.x.reshape(len(d.train), -1) for d in datasets]).to(device)
    ys = torch.stack([d.train.y for d in datasets]).to(device)
    gens = [torch.Generator().manual_seed(c.train.sgd_seed) for c in cfgs]
    active = torch.ones(len(cfgs), dtype=torch.bool)
    t0 = time.perf_counter()
    ticker = Ticker(tc.max_epochs + 1, f"fit_many x{len(cfgs)}", enabled=progress, every_s=PLAIN_INTERVAL_S,
                    leave=False)
    for epoch in range(tc.max_epochs + 1):
        if not bool(active.any()):
            break
        step_losses = None
        if epoch > 0:
            orders = torch.stack([torch.randperm(len(d0.train), generator=g) if a else
                                  torch.arange(len(d0.train)) for g, a in zip(gens, active.tolist(),
                                                                             strict=True)])
            step_losses = net.epoch(xs, ys, orders.to(device), active)
        out = net.logits(xs)
        for i in active.nonzero().squeeze(1).tolist():
            _advance(runs[i], i, epoch, step_losses, out[i], ys[i], loss, t0, active)
        event = {"kind": "epoch", "epoch": epoch, "max_epochs": tc.max_epochs, "training": int(active.sum()),
                 "seconds": time.perf_counter() - t0}
        ticker.done(f"epoch {epoch}/≤{tc.max_epochs}, {event['training']} of {len(cfgs)} models training")
        if on_epoch is not None:
            on_epoch(event)
    ticker.close()
    net.write_back(models)
    for r in runs:
        r.seconds = time.perf_counter() - t0
        r.model.eval()
    return runs


def _advance(run: Run, i: int, epoch: int, step_losses: torch.Tensor | None, out: torch.Tensor,
             y: torch.Tensor, loss: Loss, t0: float, active: torch.Tensor) -> None:
    """Record model i's epoch and freeze it (active[i] = False) when it diverged or met its stop rule."""
    tc = run.config.train
    sgd_loss = float("nan")
    if step_losses is not None:
        run.epochs, first = epoch, run.steps + 1
        run.steps += step_losses.shape[0]
        reason = divergence_reason(step_losses[:, i], first, epoch)
        if reason:
            run.status, run.reason, active[i] = "failed", reason, False
            return
        sgd_loss = float(step_losses[:, i].mean())
    metrics = epoch_metrics(out, y, loss, tc.target_margin)
    run.history.append({"epoch": epoch, **metrics, "sgd_loss": sgd_loss, "seconds": time.perf_counter() - t0})
    reason = eval_divergence_reason(metrics, epoch)
    if reason:
        run.status, run.reason, active[i] = "failed", reason, False
        return
    reason = stop_reason(metrics, tc, epoch)
    if reason:
        run.status, run.reason, active[i] = "converged", reason, False
