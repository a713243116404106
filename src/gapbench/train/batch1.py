"""The fused batch-1 SGD path for ReLU MLPs (the NK 2019 paper protocol), without autograd.

For one example x with one-hot target t, an MLP h_0 = x, z_l = W_l h_{l-1} + b_l, h_l = relu(z_l)
(l < L), f = z_L has the exact SGD step

    δ_L = ∂ℓ/∂z_L                     (the registered loss's gradient, e.g. (sigmoid(f) − t)/K)
    g_{l-1} = W_lᵀ δ_l,  δ_{l-1} = g_{l-1} ∘ 1[z_{l-1} > 0]
    W_l ← W_l − lr · δ_l h_{l-1}ᵀ     (one rank-1 update: ``addr_``),  b_l ← b_l − lr · δ_l

which is what autograd + ``torch.optim.SGD`` computes at batch size 1 (ReLU'(0) = 0, as in PyTorch).
Why it is faster: at batch 1 the step is memory-bound. The eager loop reads W_l in the forward and in the
backward, writes a gradient tensor, and the optimizer reads W_l and the gradient and writes W_l (≈ 6 passes
over each matrix, plus autograd's per-op bookkeeping). Here the backward product ``W_lᵀ δ_l`` is followed
at once by the in-place rank-1 update of the same, still cache-resident, matrix, there is no gradient
tensor, every intermediate lives in a preallocated buffer, and there is no autograd graph.

Measured and rejected (see ``gapbench bench``): deferring the rank-1 updates and applying them as one
rank-k GEMM every k steps (the forward/backward matrix-vector products then miss the cache on every layer),
and exploiting ReLU/input sparsity with ``embedding_bag`` / ``index_add_`` (gathers cost as much as the
dense passes they replace on this CPU).

The path applies to plain SGD (momentum 0, weight decay 0) on ``nn.Sequential`` models made only of
``Flatten``, ``Linear`` and ``ReLU``; :func:`fusable_reason` says why a model or config does not qualify.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import TrainConfig
from .losses import Loss


def fusable_reason(model: nn.Module, tc: TrainConfig) -> str:
    """'' when the fused batch-1 path applies to (model, tc), else the reason it does not."""
    if tc.batch_size != 1:
        return f"batch_size is {tc.batch_size}, not 1"
    if tc.momentum != 0 or tc.weight_decay != 0:
        return "the fused path implements plain SGD only (momentum 0, weight_decay 0)"
    if not isinstance(model, nn.Sequential):
        return f"model is a {type(model).__name__}, not an nn.Sequential"
    kinds = [type(m) for m in model]
    if any(k not in (nn.Flatten, nn.Linear, nn.ReLU) for k in kinds):
        return "model has layers other than Flatten/Linear/ReLU"
    expected = [nn.Linear, nn.ReLU] * (kinds.count(nn.Linear) - 1) + [nn.Linear]
    if [k for k in kinds if k is not nn.Flatten] != expected:
        return "model is not an alternating Linear/ReLU stack ending in a Linear"
    return ""


class Batch1Engine:
    """Trains `model` (in place) with batch-1 SGD; one Python call runs one epoch in a given order."""

    def __init__(self, model: nn.Sequential, lr: float, loss: Loss, num_classes: int):
        linears = [m for m in model if isinstance(m, nn.Linear)]
        self.weights = [m.weight.detach() for m in linears]           # share storage with the model
        self.biases = [None if m.bias is None else m.bias.detach() for m in linears]
        self.lr = float(lr)
        self.loss = loss
        self.num_classes = num_classes
        # preallocated activations h_l (l = 1..L) and backward buffers g_{l-1} (l = 2..L)
        self.h = [torch.empty(w.shape[0], dtype=w.dtype, device=w.device) for w in self.weights]
        self.g = [torch.empty(w.shape[1], dtype=w.dtype, device=w.device) for w in self.weights]

    @torch.no_grad()
    def epoch(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """One SGD step per index in `order`; returns the per-step losses (before each step's update)."""
        x = x.reshape(x.shape[0], -1)
        out = torch.empty(order.numel(), self.num_classes, dtype=x.dtype, device=x.device)
        for s, i in enumerate(order.tolist()):
            self._step(x[i], y[i:i + 1], out[s])
        return self.loss.per_example(out, y[order])

    def _step(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> None:
        weights, biases, h, g = self.weights, self.biases, self.h, self.g
        last = len(weights) - 1
        inputs = [x]
        for l, w in enumerate(weights):
            z = torch.mv(w, inputs[-1], out=h[l])
            if biases[l] is not None:
                z.add_(biases[l])
            if l < last:
                z.relu_()
            inputs.append(z)
        out.copy_(h[last])
        delta = self.loss.grad(h[last][None], y)[0]
        for l in range(last, -1, -1):
            w = weights[l]
            if l > 0:
                prev = torch.mv(w.t(), delta, out=g[l])
            w.addr_(delta, inputs[l], alpha=-self.lr)
            if biases[l] is not None:
                biases[l].add_(delta, alpha=-self.lr)
            if l > 0:
                delta = prev.mul_(inputs[l] > 0)
