"""Probabilistic layers: a factorised Gaussian posterior Q over every weight and bias, a fixed Gaussian prior P.

Each parameter tensor is a :class:`GaussianWeights`: the posterior N(mu, std²) with std = softplus(rho) (so
the std stays positive while mu and rho are trained freely, as in PBB), and the prior N(prior_mean,
prior_std²) held as buffers (fixed, saved with the state). :class:`ProbLinear` and :class:`ProbConv2d` hold
one for the weight and one for the bias (if any); their common forward is :class:`ProbLayer`'s.

Randomness: a layer's ``forward(x, mode, generator)`` draws only from the ``torch.Generator`` it is passed,
never from the global RNG (a CUDA net needs a CUDA generator); ``mode="mean"`` draws nothing. Modes:

- ``"per_example"``: every example of the batch gets its own independent weight draw W_i ~ Q.
- ``"shared"``: one weight draw for the whole batch (the reparameterisation trick as PBB does it).
- ``"mean"``: the deterministic network with the posterior means.

Why ``"per_example"`` is exact (the claim the Monte Carlo certificate rests on). Write the network as
layers f_1, …, f_L, each a weight layer (random) or a deterministic map (ReLU, max-pool, flatten). Claim:
for inputs x_1, …, x_n, the per-example outputs (y_1, …, y_n) have the same joint law as
(F(x_1; W_1), …, F(x_n; W_n)) with W_1, …, W_n i.i.d. ~ Q, i.e. each example evaluated by the whole network
with its own independent weight draw. Proof by induction over layers, on the joint law of the activations
h^l = (h^l_1, …, h^l_n) after layer l. For l = 0 both sides are the fixed inputs. Step: Q factorises over
layers, so in the explicit construction the weights of layer l+1 are independent of h^l (a function of
the inputs and layers ≤ l); the law of h^{l+1} given h^l is therefore the law of layer l+1 applied to
h^l with fresh weights, one draw per example, and it suffices that our layer samples from that same
conditional law (the joint law is the law of h^l times this conditional, by the chain rule).
- Deterministic layers: the same function on both sides.
- Linear, out = x·Wᵀ + b: given the input row x_i, unit j of example i is Σ_k x_ik W_ijk + b_ij, a linear
  combination of independent Gaussians (Q factorises over entries), hence exactly
  N(Σ_k x_ik μ_jk + μ_b,j, Σ_k x_ik² σ_jk² + σ_b,j²). Distinct units j use disjoint rows of W_i and distinct
  entries of b_i, so they are independent given x_i; distinct examples use independent draws W_i, so they
  are independent too. The conditional law of the whole (n × units) output given the input is thus the
  product of those normals, which is what the local reparameterisation draws:
  out = x·μ_Wᵀ + μ_b + sqrt(x²·σ_W²ᵀ + σ_b²) ⊙ ε with ε ~ N(0, I) of shape (n, units), i.i.d.
- Conv2d: a kernel is shared by all positions of one example, so two outputs of one channel at positions p
  and q have covariance Σ_k x_{p,k} x_{q,k} σ_jk² ≠ 0 given the input; a per-position local
  reparameterisation would make them independent, a different law (and after a max-pool or the next layer
  a different output distribution). So this layer draws one kernel per example, W_i = μ + σ ⊙ ε_i, and
  applies all n kernels in one grouped convolution (the batch reshaped into channels, groups = n): the
  output of example i is exactly conv(x_i; W_i), the explicit construction itself.
Hence the claim for every l, in particular the logits. Consequence (used by the certificate): K passes over
n points with fresh draws from the generator give n·K independent Bernoulli error indicators; given the
sample, indicator (i, k) has mean P_{W~Q}[error on x_i], so their average has mean the empirical Gibbs risk.

KL(Q‖P) is the closed form for Gaussians, summed over entries:
KL(N(μ, σ²) ‖ N(m, s²)) = ln(s/σ) + (σ² + (μ − m)²) / (2 s²) − 1/2 (PBB's ``Gaussian.compute_kl``).

References:
    Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári, Tighter risk certificates for neural networks,
    JMLR 2021 (code mperezortiz/PBB, pbb/models.py: Gaussian, ProbLinear, ProbConv2d).
    Kingma, Salimans & Welling, Variational dropout and the local reparameterization trick, NeurIPS 2015.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GapbenchError, param_error

MODES = ("per_example", "shared", "mean")
# Floor of the per-example pre-activation variance: it is 0 only when a bias-free unit sees an all-zero input
# (then the output is exactly the mean), and sqrt'(0) = ∞ would turn that zero into NaN gradients. The
# added std, 1e-15, is far below float32 resolution of any non-zero pre-activation.
VAR_FLOOR = 1e-30


def inverse_softplus(std: torch.Tensor) -> torch.Tensor:
    """rho with softplus(rho) = std: rho = std + ln(1 − e^{−std}), computed in float64 (no underflow)."""
    std64 = std.to(torch.float64)
    return (std64 + torch.log(-torch.expm1(-std64))).to(std.dtype)


def check_mode(mode: str, where: str) -> None:
    if mode not in MODES:
        raise param_error("mode", where, f"one of {list(MODES)}", mode)


def check_generator(mode: str, generator: torch.Generator | None, where: str) -> None:
    if mode != "mean" and not isinstance(generator, torch.Generator):
        raise param_error("generator", where, f"a torch.Generator in mode {mode!r} (draws never use the global "
                          f"RNG)", generator, "Pass generator=torch.Generator().manual_seed(seed), or "
                          "mode='mean' for the deterministic mean network.")


def _as_std(value: torch.Tensor | float, like: torch.Tensor, param: str) -> torch.Tensor:
    std = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(std).all()) or not bool((std > 0).all()):
        bad = value if not torch.is_tensor(value) else f"a tensor with min {float(std.min()):g}"
        raise param_error(param, "GaussianWeights", "finite and > 0 (a std, not a variance)", bad)
    return std.expand(like.shape).clone()


class GaussianWeights(nn.Module):
    """Posterior N(mu, softplus(rho)²) and prior N(prior_mean, prior_std²) over one parameter tensor.

    `posterior_std`, `prior_mean` and `prior_std` broadcast to `posterior_mean`'s shape (scalars allowed);
    all are copied, so the caller's tensors are never aliased.
    """

    def __init__(self, posterior_mean: torch.Tensor, posterior_std: torch.Tensor | float,
                 prior_mean: torch.Tensor, prior_std: torch.Tensor | float):
        super().__init__()
        mean = posterior_mean.detach()
        self.mu = nn.Parameter(mean.clone())
        self.rho = nn.Parameter(inverse_softplus(_as_std(posterior_std, mean, "posterior_std")))
        prior = torch.as_tensor(prior_mean, dtype=mean.dtype, device=mean.device).detach()
        self.register_buffer("prior_mean", prior.expand(mean.shape).clone())
        self.register_buffer("prior_std", _as_std(prior_std, mean, "prior_std"))
        self.frozen: tuple[torch.Tensor, torch.Tensor] | None = None  # (std, var): see freeze()

    def freeze(self, on: bool) -> None:
        """Compute (std, var) once and reuse them in forwards run without autograd, until freeze(False)."""
        with torch.no_grad():
            std = F.softplus(self.rho)
            self.frozen = (std, std.square()) if on else None

    def _use_frozen(self) -> bool:
        return self.frozen is not None and not torch.is_grad_enabled()

    def std(self) -> torch.Tensor:
        return self.frozen[0] if self._use_frozen() else F.softplus(self.rho)

    def var(self) -> torch.Tensor:
        return self.frozen[1] if self._use_frozen() else F.softplus(self.rho).square()

    def sample(self, generator: torch.Generator, batch: tuple[int, ...] = ()) -> torch.Tensor:
        """mu + std ⊙ ε, ε ~ N(0, I) of shape (*batch, *mu.shape) from `generator` (differentiable)."""
        eps = torch.randn((*batch, *self.mu.shape), generator=generator, dtype=self.mu.dtype,
                          device=self.mu.device)
        return torch.addcmul(self.mu, self.std(), eps)

    def kl(self) -> torch.Tensor:
        """KL(Q‖P) summed over entries: ln(s/σ) + (σ² + (μ − m)²)/(2s²) − 1/2."""
        std = self.std()
        ratio = (std.square() + (self.mu - self.prior_mean).square()) / (2 * self.prior_std.square())
        return (torch.log(self.prior_std / std) + ratio - 0.5).sum()


class ProbLayer(nn.Module, ABC):
    """A weight layer out = op(x; W, b) with W, b ~ Q: the mode checks and the 'mean' and 'shared' forwards are
    common; a subclass gives the deterministic op (:meth:`_op`) and its exact per-example draw (module doc)."""

    def __init__(self, weight: GaussianWeights, bias: GaussianWeights | None, dims: int, what: str):
        super().__init__()
        if weight.mu.dim() != dims:
            raise GapbenchError(f"{type(self).__name__} needs a {dims}-D {what}; got shape {tuple(weight.mu.shape)}.")
        self.weight, self.bias = weight, bias

    def kl(self) -> torch.Tensor:
        return self.weight.kl() + (self.bias.kl() if self.bias is not None else 0.0)

    def forward(self, x: torch.Tensor, mode: str = "per_example",
                generator: torch.Generator | None = None) -> torch.Tensor:
        check_mode(mode, f"{type(self).__name__}.forward()")
        check_generator(mode, generator, f"{type(self).__name__}.forward()")
        bias = self.bias
        if mode == "mean":
            return self._op(x, self.weight.mu, None if bias is None else bias.mu)
        if mode == "shared":                       # one draw for the batch: the weight's, then the bias's
            return self._op(x, self.weight.sample(generator), None if bias is None else bias.sample(generator))
        return self._per_example(x, generator)

    @abstractmethod
    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The deterministic layer with this weight and bias."""

    @abstractmethod
    def _per_example(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Outputs with the law of an independent weight draw per example (module doc), from `generator`."""


class ProbLinear(ProbLayer):
    """A Linear layer with a Gaussian posterior and prior over its weight (out, in) and bias (out,)."""

    def __init__(self, weight: GaussianWeights, bias: GaussianWeights | None = None):
        super().__init__(weight, bias, 2, "weight (out, in)")

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)

    def _per_example(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The local reparameterisation: x·μ_Wᵀ + μ_b + sqrt(x²·σ_W²ᵀ + σ_b²) ⊙ ε."""
        bias = self.bias
        mean = F.linear(x, self.weight.mu, None if bias is None else bias.mu)
        var = F.linear(x.square(), self.weight.var(), None if bias is None else bias.var())
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        if torch.is_grad_enabled():
            return torch.addcmul(mean, var.clamp_min(VAR_FLOOR).sqrt(), eps)
        return mean.addcmul_(var.clamp_min_(VAR_FLOOR).sqrt_(), eps)   # Monte Carlo passes: no new buffers


class ProbConv2d(ProbLayer):
    """A Conv2d (groups = 1) with a Gaussian posterior and prior over its kernel and bias."""

    def __init__(self, weight: GaussianWeights, bias: GaussianWeights | None = None, *,
                 stride: tuple[int, int] | int = 1, padding: tuple[int, int] | int | str = 0,
                 dilation: tuple[int, int] | int = 1):
        super().__init__(weight, bias, 4, "kernel (out, in, kh, kw)")
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
            groups: int = 1) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def _per_example(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One kernel per example, all n applied in one grouped convolution (groups = n)."""
        n, channels = x.shape[:2]
        kernels = self.weight.sample(generator, (n,))                  # (n, out, in, kh, kw): one per example
        out_channels = kernels.shape[1]
        out = self._op(x.reshape(1, n * channels, *x.shape[2:]), kernels.flatten(0, 1), None, groups=n)
        out = out.reshape(n, out_channels, *out.shape[2:])
        if self.bias is not None:
            out = out + self.bias.sample(generator, (n,))[:, :, None, None]
        return out
