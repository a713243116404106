"""Deep paths (KKB §5): path weights w̄, path features z(x), their Gram matrix, and the two-phase net
(Theorem 7's gap decomposition built on them: :mod:`gapbench.analysis.theorem7`).

For a bias-free ReLU net with L weight layers W_1 … W_L, output k is a linear function of path weights:

    ŷ_k(x) = z(x)ᵀ w̄_k,   z_p(x) = x_{i_0} · Π_{l=1}^{L−1} σ_{l,i_l}(x),
    w̄_{k,p} = W_L[k, i_{L−1}] · … · W_1[i_1, i_0],

one coordinate per path p = (i_0, i_1, …, i_{L−1}) from an input unit to output k, σ_{l,i}(x) =
1[pre-activation of unit i of hidden layer l > 0]. Paths are ordered lexicographically with i_0 slowest
(``itertools.product``). z has d_x·Π_l n_l coordinates and is never materialized here except by
:func:`path_weights` / :func:`path_features`, which refuse nets above ``max_paths``. Everything else comes
from

    z(x)ᵀ z(x') = (xᵀx') · Π_l ⟨σ_l(x), σ_l(x')⟩                                  (:func:`gram`)

and from one forward pass of the |W|^p network (:func:`path_norms_per_output`).

Biases: a bias is an edge from a constant-1 unit. Path norms count those paths (|b|^p enters each layer of the
|·|^p forward pass); the path *features* and the Gram route support bias-free nets only (a hidden bias would
need a constant unit per layer), and raise an error that says to train with ``ModelConfig(bias=False)``.

:class:`TwoPhaseNet` (KKB v5 §5.3.1): the gates come from a gate net W_σ, the values from a value net W of the
same architecture; its output is linear in the value net's path weights, with features z̃(x) = x ∘ σ̄(x, W_σ).
Every function here accepts it (gates from ``model.gate``, w̄ from ``model.value``).

References:
    Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning", arXiv:1710.05468 v5, §5 and App. A4.
    Neyshabur, Salakhutdinov & Srebro, "Path-SGD", NeurIPS 2015 (path norm).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GapbenchError, check_positive_float, check_positive_int, param_error
from ..inference import logits
from ..layers import WeightLayer, weight_layers

GRAM_BATCH = 2048          # rows of x1 per block of the Gram matrix: (2048 × n2) float64 stays small
MAX_PATHS = 1_000_000      # largest number of paths path_weights / path_features will materialize


class TwoPhaseNet(nn.Module):
    """A ReLU net whose on/off pattern comes from a separate gate net (KKB v5 §5.3.1).

    `gate` and `value` are ``nn.Sequential`` nets of the same architecture (Flatten, Linear, Conv2d, ReLU,
    MaxPool2d, Dropout, Identity). Forward: both nets run side by side; at every ReLU the value activation is
    multiplied by the 0/1 gate 1[gate pre-activation > 0]; at every MaxPool2d the value activation is read at
    the positions the gate net's max-pool picked. With W_σ frozen, the output is linear in the value net's
    path weights w̄. The two nets are stored as given (:meth:`from_model` makes tied copies).
    """

    def __init__(self, gate: nn.Sequential, value: nn.Sequential):
        super().__init__()
        gate_kinds = [type(m) for m in gate]
        value_kinds = [type(m) for m in value]
        if gate_kinds != value_kinds:
            raise param_error("value", "TwoPhaseNet()", f"a net with the same layers as the gate net "
                              f"({[k.__name__ for k in gate_kinds]})", [k.__name__ for k in value_kinds],
                              "Build both nets from one architecture, e.g. TwoPhaseNet.from_model(model).")
        self.gate = gate.eval().requires_grad_(False)   # W_σ is frozen: no gradient, no dropout
        self.value = value

    @classmethod
    def from_model(cls, model: nn.Sequential) -> TwoPhaseNet:
        """Tied start: gate and value nets are two independent copies of `model` (which is left untouched)."""
        return cls(copy.deepcopy(model), copy.deepcopy(model))

    def train(self, mode: bool = True) -> TwoPhaseNet:
        super().train(mode)
        self.gate.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hg, hv = x, x
        for g, v in zip(self.gate, self.value, strict=True):
            if isinstance(g, nn.ReLU):
                on = hg > 0
                hg, hv = hg * on, hv * on
            elif isinstance(g, nn.MaxPool2d):
                hg, idx = F.max_pool2d(hg, g.kernel_size, g.stride, g.padding, g.dilation,
                                       ceil_mode=g.ceil_mode, return_indices=True)
                hv = hv.flatten(2).gather(2, idx.flatten(2)).reshape(idx.shape)
            elif isinstance(g, nn.Dropout):
                hv = v(hv)                                   # dropout acts on the value path only
            else:
                hg, hv = g(hg), v(hv)
        return hv


def _is_gated(model: nn.Module) -> bool:
    """A gated net: a :class:`TwoPhaseNet`, or any module with nn.Module attributes `gate` and `value`
    used the same way; :func:`gated_forward` checks the outputs either way."""
    return isinstance(getattr(model, "gate", None), nn.Module) and isinstance(getattr(model, "value", None),
                                                                               nn.Module)


def _value_net(model: nn.Module) -> nn.Module:
    return model.value if _is_gated(model) else model


def _gate_net(model: nn.Module) -> nn.Module:
    return model.gate if _is_gated(model) else model


def _check_chain(layers: list[WeightLayer], caller: str) -> None:
    """Consecutive weight layers must connect one-to-one (only ReLU/Flatten/Dropout in between)."""
    for prev, nxt in zip(layers, layers[1:], strict=False):
        if nxt.input_shape is None or prev.input_shape is None:   # MLP: Linear -> Linear always connects
            continue
        out_shape = _conv_out_shape(prev) if prev.kind == "conv" else (prev.out_features,)
        want = nxt.input_shape
        if tuple(out_shape) != tuple(want) and (nxt.kind == "conv" or math.prod(out_shape) != math.prod(want)
                                                or len(want) != 1):
            raise GapbenchError(f"{caller}: the modules between '{prev.name}' and '{nxt.name}' change the "
                                f"shape {tuple(out_shape)} to {tuple(want)} (a pooling layer). Paths through "
                                f"max-pooling are ill-defined (and average pooling does not commute with "
                                f"|·|^p); remove the "
                                f"pooling or use a net of Linear/Conv2d layers joined by ReLU/Flatten.")


def _conv_out_shape(layer: WeightLayer) -> tuple[int, int, int]:
    _, h, w = layer.input_shape
    kh, kw = layer.weight.shape[2:]
    (sh, sw), (ph, pw) = layer.stride, layer.padding
    return (layer.out_features, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


def path_norms_per_output(model: nn.Module, p: float = 2.0, *,
                          input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Per-output path norms ‖w̄_k‖_p = (Σ_{paths to output k} Π_{edges} |w|^p)^{1/p}, shape (K,), float64.

    One forward pass of the |·|^p network on an all-ones input: h_0 = 1, h_l = |W_l|^p h_{l−1} + |b_l|^p, and
    ‖w̄_k‖_p = (h_L)_k^{1/p}. A bias is an edge from a constant-1 unit, so paths that start at any bias unit
    are counted. Works for Linear/ReLU/Flatten nets, and for conv nets without pooling when `input_shape` (C,
    H, W) is given (conv with |W|^p; zero padding contributes no paths). For a :class:`TwoPhaseNet` the value
    net's weights are used. BatchNorm is folded first (:func:`gapbench.layers.weight_layers`).

    References: Neyshabur et al. 2015 (path norm); KKB v5 §5 (‖w̄_k‖₁, ‖w̄_k‖₂ of Theorems 7 and 8).
    """
    caller = "path_norms_per_output()"
    p = check_positive_float(p, "p", caller)
    layers = weight_layers(_value_net(model), caller=caller, input_shape=input_shape)
    if any(layer.kind == "conv" for layer in layers) and input_shape is None:
        raise param_error("input_shape", caller, "the (C, H, W) input shape for a net with Conv2d layers",
                          None,
                          "Pass input_shape=(C, H, W) without the batch dimension.")
    _check_chain(layers, caller)
    h = torch.ones((1, *(input_shape or (layers[0].weight.shape[1],))), dtype=torch.float64,
                   device=layers[0].weight.device)
    for layer in layers:
        weight = layer.weight.double().abs().pow(p)
        bias = None if layer.bias is None else layer.bias.double().abs().pow(p)
        if layer.kind == "conv":
            h = F.conv2d(h, weight, bias, stride=layer.stride, padding=layer.padding)
        else:
            h = F.linear(h.reshape(1, -1), weight, bias)
    return h.reshape(-1).pow(1.0 / p)


def _fc_weights(net: nn.Module, caller: str) -> list[torch.Tensor]:
    """Float64 weight matrices of a bias-free fully connected net, in forward order."""
    layers = weight_layers(net, caller=caller)
    for layer in layers:
        if layer.kind != "linear":
            raise GapbenchError(f"{caller} supports fully connected ReLU nets only; layer '{layer.name}' "
                                f"is a Conv2d. Use path_norms_per_output() for conv nets, or an MLP.")
        if layer.bias is not None:
            raise GapbenchError(f"{caller} needs a bias-free net (the path features z(x) = x ∘ σ̄(x) have no "
                                f"constant units); layer '{layer.name}' has a bias. Train with "
                                f"ModelConfig(bias=False).")
    _check_chain(layers, caller)
    return [layer.weight.double() for layer in layers]


def gated_forward(model: nn.Module, x: torch.Tensor, *,
                  caller: str = "gated_forward()") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs ŷ (n, K) and the 0/1 gates σ_l(x) (n, n_l) of every hidden layer, all float64.

    Recomputes the net from its weights (gates from the gate net of a :class:`TwoPhaseNet`) and checks the
    outputs against ``model(x)``, so a net that is not a chain Linear → ReLU → … → Linear is refused.
    """
    gate_w = _fc_weights(_gate_net(model), caller)
    value_w = _fc_weights(_value_net(model), caller) if _is_gated(model) else gate_w
    hg = hv = x.detach().reshape(x.shape[0], -1).double().cpu()
    gates = []
    for wg, wv in zip(gate_w[:-1], value_w[:-1], strict=True):
        pre = hg @ wg.T
        on = (pre > 0).double()
        hg = pre * on
        hv = (hv @ wv.T) * on if wv is not wg else hg
        gates.append(on)
    out = hv @ value_w[-1].T
    reference = logits(model, x).double().cpu()
    tolerance = 1e-4 * (1.0 + float(out.abs().max())) if out.numel() else 0.0   # float32 model vs float64
    mismatch = reference.shape != out.shape or (
        reference.numel() > 0 and float((reference - out).abs().max()) > tolerance)
    if mismatch:
        raise GapbenchError(f"{caller}: the model's outputs differ from those of a chain Linear → ReLU → … → "
                            f"Linear built from its weight layers. Deep-path quantities need a plain "
                            f"bias-free ReLU MLP (models.mlp(..., bias=False)) or a TwoPhaseNet of such "
                            f"nets.")
    return out, gates


def gram(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix of the path features, K_ij = z(x1_i)ᵀ z(x2_j) = (x1_iᵀ x2_j) · Π_l ⟨σ_l(x1_i), σ_l(x2_j)⟩.

    Shape (n1, n2), float64, computed block by block without materializing z. Bias-free FC ReLU nets and
    :class:`TwoPhaseNet` (gates from the gate net) only. `x2=None` means x2 = x1.

    References: KKB v5 §5 (the path representation ŷ_k(x) = z(x)ᵀ w̄_k).
    """
    _, feats1 = gram_factors(model, x1, caller="gram()")
    feats2 = feats1 if x2 is None else gram_factors(model, x2, caller="gram()")[1]
    return gram_from_features(feats1, feats2)


def gram_factors(model: nn.Module, x: torch.Tensor, *,
                 caller: str = "gram_factors()") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs ŷ (n, K) and the Gram factors [x (n, d_x), σ_1(x), …, σ_{L−1}(x)], all float64 on the CPU."""
    out, gates = gated_forward(model, x, caller=caller)
    return out, [x.detach().reshape(x.shape[0], -1).double().cpu(), *gates]


def gram_from_features(feats1: list[torch.Tensor], feats2: list[torch.Tensor]) -> torch.Tensor:
    """Π_f (F1_f F2_fᵀ) over matching factor lists from :func:`gram_factors`, in blocks of GRAM_BATCH rows."""
    blocks = []
    for start in range(0, feats1[0].shape[0], GRAM_BATCH):
        block = None
        for f1, f2 in zip(feats1, feats2, strict=True):
            term = f1[start:start + GRAM_BATCH] @ f2.T
            block = term if block is None else block * term
        blocks.append(block)
    return torch.cat(blocks) if blocks else torch.zeros((0, feats2[0].shape[0]), dtype=torch.float64)


def log_num_paths(model: nn.Module) -> float:
    """ln d_z = ln d_x + Σ_l ln n_l: the log of the number of paths to one output (dim z), in log space."""
    weights = _fc_weights(_value_net(model), "log_num_paths()")
    return math.log(weights[0].shape[1]) + sum(math.log(w.shape[0]) for w in weights[:-1])


def _check_size(model: nn.Module, max_paths: int, caller: str) -> None:
    max_paths = check_positive_int(max_paths, "max_paths", caller)
    log_p = log_num_paths(model)
    if log_p > math.log(max_paths):
        raise param_error("model", caller, f"a net with at most max_paths={max_paths} paths per output",
                          f"a net with {math.exp(log_p):.3g} paths",
                          "Use a tiny net, or the Gram route (gram(), gap_decomposition()) for real nets.")


def path_weights(model: nn.Module, *, max_paths: int = MAX_PATHS) -> torch.Tensor:
    """Explicit path weights w̄, shape (K, P), float64: w̄_{k,p} = W_L[k, i_{L−1}] · … · W_1[i_1, i_0], paths in
    ``itertools.product`` order over (i_0, …, i_{L−1}). Tiny bias-free FC nets only (P ≤ max_paths)."""
    _check_size(model, max_paths, "path_weights()")
    weights = _fc_weights(_value_net(model), "path_weights()")
    table = torch.ones(weights[0].shape[1], dtype=torch.float64)      # (i_0,)
    for w in weights:                                                 # append axis i_l with W_l[i_l, i_{l−1}]
        table = table.unsqueeze(-1) * w.T.reshape((1,) * (table.dim() - 1) + tuple(w.T.shape))
    return table.reshape(-1, weights[-1].shape[0]).T.contiguous()


def path_features(model: nn.Module, x: torch.Tensor, *, max_paths: int = MAX_PATHS) -> torch.Tensor:
    """Explicit path features z(x), shape (n, P), float64: z_p(x) = x_{i_0} Π_l σ_{l,i_l}(x), in the path
    order of :func:`path_weights` (tiny nets only)."""
    _check_size(model, max_paths, "path_features()")
    _, gates = gated_forward(model, x, caller="path_features()")
    table = x.detach().reshape(x.shape[0], -1).double().cpu()
    for gate in gates:
        table = table.unsqueeze(-1) * gate.reshape((gate.shape[0],) + (1,) * (table.dim() - 1) + (-1,))
    return table.reshape(x.shape[0], -1)


def targets(y: torch.Tensor, num_outputs: int, caller: str) -> torch.Tensor:
    """Float64 target vectors: the one-hot vector of an integer label, or a given (n, K) float target."""
    if y.dim() == 1 and not torch.is_floating_point(y):
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_outputs):
            raise param_error("y", caller, f"integer labels in [0, {num_outputs})",
                              f"labels in [{int(y.min())}, {int(y.max())}]")
        return F.one_hot(y.long().cpu(), num_outputs).double()
    if y.dim() == 2 and y.shape[1] == num_outputs:
        return y.detach().double().cpu()
    raise param_error("y", caller,
                      f"integer labels of shape (n,) or float targets of shape (n, {num_outputs})",
                      f"a {y.dtype} tensor of shape {tuple(y.shape)}")


def psd_basis(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal eigenvectors Q_r and eigenvalues λ_r > 0 of a PSD Gram matrix K = Z Zᵀ, dropping those
    below n·eps·λ_max (numerically zero). Then V = Zᵀ Q_r λ_r^{−1/2} is an orthonormal basis of span{z_i}."""
    eigenvalues, vectors = torch.linalg.eigh(kernel)
    top = float(eigenvalues.max()) if eigenvalues.numel() else 0.0
    keep = eigenvalues > kernel.shape[0] * torch.finfo(torch.float64).eps * max(top, 0.0)
    return vectors[:, keep], eigenvalues[keep]
