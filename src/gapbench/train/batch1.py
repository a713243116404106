"""The fused batch-1 SGD path for ReLU MLPs (the NK 2019 paper protocol), without autograd.

For one example x with one-hot target t, an MLP h_0 = x, z_l = W_l h_{l-1} + b_l, h_l = relu(z_l)
(l < L), f = z_L has the exact SGD step

    δ_L = ∂ℓ/∂z_L                     (the registered loss's gradient, e.g. (sigmoid(f) − t)/K)
    g_{l-1} = W_lᵀ δ_l,  δ_{l-1} = g_{l-1} ∘ 1[z_{l-1} > 0]
    W_l ← W_l − lr · δ_l h_{l-1}ᵀ     (one rank-1 update),  b_l ← b_l − lr · δ_l

which is what autograd + ``torch.optim.SGD`` computes at batch size 1 (ReLU'(0) = 0, as in PyTorch).

Two implementations, chosen automatically (``Run.extra['engine']`` names the one that ran):

- :class:`Batch1Engine`, a compiled kernel (numba) that runs a whole epoch in one call. At batch 1 a step is
  memory-bound (the NK net's weights are ≈ 20 MB fp32), so the kernel minimizes passes over the weights.
  It holds each W_l *transposed* (row j of W_lᵀ = the weights leaving input unit j) and
  (1) forward: z_l = b_l + Σ_{j: h_j ≠ 0} h_j · W_lᵀ[j, :], skipping the rows of inactive inputs
      (ReLU zeros: about half of every hidden layer; the zero pixels of MNIST, about 80 %, in layer 1);
  (2) backward and update in ONE pass: for every j with h_j ≠ 0, g_j = ⟨W_lᵀ[j, :], δ_l⟩ with the row
      *before* its update, then W_lᵀ[j, :] −= lr · h_j · δ_l. Rows with h_j = 0 are skipped entirely: their
      update is lr · 0 · δ_l = 0 and their δ_{l-1,j} is 0 (h_j = relu(z_j) = 0 ⟺ z_j ≤ 0). Each row's g_j
      uses only its own old row, so the in-place update never feeds a later g.
  Traffic per hidden layer per step: ≈ 3 p passes over W_l (p = fraction of active inputs) against 6 for
  autograd + SGD and 3 for the torch path below. The kernel's transposed copy of the weights is packed
  from the model at the start of each epoch() and written back at its end (≈ 10 ms each for the NK net).
  Compiled once with ``cache=True`` (numba writes next to this file, or in its user-wide cache dir when
  that is read-only); summation order differs from torch's (``fastmath`` reassociation), so results agree
  with the plain loop to float32 rounding, not bit for bit. IEEE NaN/inf semantics are kept (no ``nnan``
  / ``ninf`` flags), so a diverging run still produces non-finite losses.
- :class:`Batch1TorchEngine`, pure torch (``mv``, ``addr_`` on preallocated buffers): the fallback when numba
  is missing or fails to compile, the model is not float32 on the CPU, or the loss has no kernel formula.

Measured (``gapbench bench``, 784-1024×5-10, sigmoid CE, 2 shared cores): plain 106–163 steps/s, torch path
≈ 460, kernel ≈ 1300 (transposed layout) vs ≈ 910 for the same kernel on the untransposed (out × in)
layout (which must read all of W_l in the forward and scatters into g in the backward). Rejected for the
torch path: deferring the rank-1 updates into one rank-k GEMM every k steps (the matrix-vector products
then miss the cache) and gathering the active units with ``embedding_bag`` / ``index_add_`` (gathers cost
as much as the dense passes they replace).

The path applies to plain SGD (momentum 0, weight decay 0) on ``nn.Sequential`` models made only of
``Flatten``, ``Linear`` and ``ReLU``; :func:`fusable_reason` says why a model or config does not qualify.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..errors import check_choice, param_error
from .losses import Loss

KERNELS = ("auto", "numba", "torch")
LOSS_CODES = {"sigmoid_ce": 0, "softmax_ce": 1, "squared": 2}  # the δ_L formulas of _epoch_kernel
# reassociation (vectorized dot products) and fused multiply-add, but IEEE NaN/inf: divergence must show
FASTMATH = {"reassoc", "contract", "nsz"}
SIGNATURE = "void(f4[::1], f4[::1], i8[::1], b1, f4[:, ::1], i8[::1], i8[::1], f4, i8, f4[:, ::1])"


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


def _epoch_kernel(wt, b, dims, has_bias, x, y, order, lr, loss_code, out):  # noqa: PLR0912, C901
    """One SGD step per index of `order` on the MLP held in flat buffers (compiled by numba).

    wt: every W_lᵀ (dims[l] × dims[l+1], row-major) one after another; b: every b_l (empty without
    biases); dims: d_0 … d_L; x (n, d_0), y (n,): the data; out (len(order), d_L): each step's logits,
    before its update. δ_L per loss_code (K = d_L, t = onehot(y)): 0 sigmoid_ce (sigmoid(f) − t)/K,
    1 softmax_ce softmax(f) − t, 2 squared 2(f − t).
    """
    num_layers = dims.shape[0] - 1
    num_classes = dims[num_layers]
    w_off = np.zeros(num_layers + 1, np.int64)   # W_lᵀ starts at wt[w_off[l]]
    a_off = np.zeros(num_layers + 1, np.int64)   # h_l starts at act[a_off[l]] (h_0 = x)
    b_off = np.zeros(num_layers + 1, np.int64)   # b_l starts at b[b_off[l]]
    for l in range(num_layers):
        w_off[l + 1] = w_off[l] + dims[l] * dims[l + 1]
        a_off[l + 1] = a_off[l] + dims[l]
        b_off[l + 1] = b_off[l] + dims[l + 1]
    act = np.empty(a_off[num_layers] + num_classes, np.float32)
    width = dims.max()
    delta, grad = np.empty(width, np.float32), np.empty(width, np.float32)
    for s in range(order.shape[0]):
        row = order[s]
        act[:dims[0]] = x[row]
        for l in range(num_layers):                  # forward: z_l = b_l + Σ_{h_j ≠ 0} h_j W_lᵀ[j, :]
            n_in, n_out = dims[l], dims[l + 1]
            h_in, z = act[a_off[l]:a_off[l] + n_in], act[a_off[l + 1]:a_off[l + 1] + n_out]
            if has_bias:
                z[:] = b[b_off[l]:b_off[l] + n_out]
            else:
                z[:] = 0.0
            for j in range(n_in):
                h = h_in[j]
                if h != 0.0:
                    w_row = wt[w_off[l] + j * n_out:w_off[l] + (j + 1) * n_out]
                    for k in range(n_out):
                        z[k] += h * w_row[k]
            if l < num_layers - 1:
                for k in range(n_out):
                    if z[k] < 0.0:
                        z[k] = 0.0
        f = act[a_off[num_layers]:a_off[num_layers] + num_classes]
        target = y[row]
        out[s, :] = f
        if loss_code == 0:                           # sigmoid_ce
            for k in range(num_classes):
                delta[k] = (1.0 / (1.0 + np.exp(-f[k])) - (1.0 if k == target else 0.0)) / num_classes
        elif loss_code == 1:                         # softmax_ce
            top = f.max()
            total = 0.0
            for k in range(num_classes):
                delta[k] = np.exp(f[k] - top)
                total += delta[k]
            for k in range(num_classes):
                delta[k] = delta[k] / total - (1.0 if k == target else 0.0)
        else:                                        # squared
            for k in range(num_classes):
                delta[k] = 2.0 * (f[k] - (1.0 if k == target else 0.0))
        for l in range(num_layers - 1, -1, -1):      # backward + update, one pass over the active rows
            n_in, n_out = dims[l], dims[l + 1]
            h_in, d = act[a_off[l]:a_off[l] + n_in], delta[:n_out]
            if has_bias:
                b_l = b[b_off[l]:b_off[l] + n_out]
                for k in range(n_out):
                    b_l[k] -= lr * d[k]
            for j in range(n_in):
                h = h_in[j]
                if h != 0.0:
                    w_row, step = wt[w_off[l] + j * n_out:w_off[l] + (j + 1) * n_out], lr * h
                    if l > 0:
                        dot = np.float32(0.0)
                        for k in range(n_out):
                            w = w_row[k]
                            dot += w * d[k]
                            w_row[k] = w - step * d[k]
                        grad[j] = dot                # h_j ≠ 0 ⟺ z_j > 0: δ_{l-1,j} = g_j
                    else:
                        for k in range(n_out):
                            w_row[k] -= step * d[k]
                elif l > 0:
                    grad[j] = 0.0
            delta, grad = grad, delta


@functools.cache
def load_kernel() -> tuple[Callable | None, str]:
    """(the compiled epoch kernel, '') or (None, why it is unavailable); compiles or loads it once."""
    try:
        import numba
    except ImportError as err:
        return None, f"numba is not importable ({err})"
    options = dict(fastmath=FASTMATH, nogil=True)
    try:
        try:
            return numba.njit(SIGNATURE, cache=True, **options)(_epoch_kernel), ""
        except RuntimeError:  # no writable cache location: compile in memory
            return numba.njit(SIGNATURE, **options)(_epoch_kernel), ""
    except Exception as err:  # noqa: BLE001 - any compiler failure means: use the torch path
        return None, f"numba failed to compile the batch-1 kernel ({type(err).__name__}: {err})"


def kernel_reason(model: nn.Sequential, loss: Loss) -> str:
    """'' when the compiled kernel can train `model` with `loss`, else the reason it cannot."""
    params = list(model.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return "the kernel needs float32 parameters on the CPU"
    if len({m.bias is None for m in model if isinstance(m, nn.Linear)}) > 1:
        return "the kernel needs biases on every Linear layer or on none"
    if loss.name not in LOSS_CODES:
        return f"the kernel has no gradient formula for loss '{loss.name}'"
    return load_kernel()[1]


class Batch1Engine:
    """Trains `model` (in place) with batch-1 SGD through the compiled kernel; one call runs one epoch.

    ``Batch1Engine(...)`` returns a :class:`Batch1TorchEngine` instead when ``kernel='torch'`` or, with
    ``kernel='auto'``, when :func:`kernel_reason` says the kernel cannot run (kept in ``.kernel_reason``).
    """

    def __new__(cls, model: nn.Sequential, lr: float, loss: Loss, num_classes: int, kernel: str = "auto"):
        check_choice(kernel, "kernel", "Batch1Engine()", KERNELS)
        reason = "kernel='torch' was asked for" if kernel == "torch" else kernel_reason(model, loss)
        if reason and kernel == "numba":
            raise param_error("kernel", "Batch1Engine()", "'auto' or 'torch' here", kernel,
                              f"The compiled kernel cannot run: {reason}.")
        if reason:
            return Batch1TorchEngine(model, lr, loss, num_classes, reason)
        return super().__new__(cls)

    def __init__(self, model: nn.Sequential, lr: float, loss: Loss, num_classes: int, kernel: str = "auto"):
        linears = [m for m in model if isinstance(m, nn.Linear)]
        self.weights = [m.weight.detach() for m in linears]           # share storage with the model
        self.biases = [m.bias.detach() for m in linears if m.bias is not None]
        self.lr, self.loss, self.num_classes = float(lr), loss, num_classes
        self.kernel, self.kernel_reason = load_kernel()[0], ""
        self.dims = np.array([linears[0].in_features] + [m.out_features for m in linears], np.int64)
        self.flat_weights = torch.empty(sum(w.numel() for w in self.weights))
        self.flat_biases = torch.empty(sum(b.numel() for b in self.biases))

    def _transposed_views(self) -> list[torch.Tensor]:
        views, start = [], 0
        for w in self.weights:
            views.append(self.flat_weights[start:start + w.numel()].view(w.shape[1], w.shape[0]))
            start += w.numel()
        return views

    @torch.no_grad()
    def epoch(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """One SGD step per index in `order`; returns the per-step losses (before each step's update)."""
        views = self._transposed_views()
        for view, w in zip(views, self.weights, strict=True):
            view.copy_(w.t())
        if self.biases:
            torch.cat(self.biases, out=self.flat_biases)
        x = x.reshape(x.shape[0], -1).to(torch.float32).contiguous()
        out = torch.empty(order.numel(), self.num_classes)
        self.kernel(self.flat_weights.numpy(), self.flat_biases.numpy(), self.dims, bool(self.biases),
                    x.numpy(), y.to(torch.int64).contiguous().numpy(),
                    order.to(torch.int64).contiguous().numpy(), np.float32(self.lr),
                    LOSS_CODES[self.loss.name], out.numpy())
        for view, w in zip(views, self.weights, strict=True):
            w.copy_(view.t())
        for b, new in zip(self.biases, self.flat_biases.split([b.numel() for b in self.biases]), strict=True):
            b.copy_(new)
        return self.loss.per_example(out, y[order])


class Batch1TorchEngine:
    """The pure-torch batch-1 engine (any device and dtype): ``mv`` + in-place ``addr_``, no autograd."""

    def __init__(self, model: nn.Sequential, lr: float, loss: Loss, num_classes: int,
                 kernel_reason: str = ""):
        linears = [m for m in model if isinstance(m, nn.Linear)]
        self.weights = [m.weight.detach() for m in linears]           # share storage with the model
        self.biases = [None if m.bias is None else m.bias.detach() for m in linears]
        self.lr, self.loss, self.num_classes = float(lr), loss, num_classes
        self.kernel_reason = kernel_reason                           # why the compiled kernel did not run
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
