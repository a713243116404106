"""Test-only probabilistic networks implementing the ProbNet contract that gapbench.pacbayes codes against:
net(x, mode="per_example" | "shared" | "mean", generator=None) -> logits, net.kl(), net.mean_network(),
net.num_params(). Written plainly (explicit per-example weight draws) so that the tests of the objectives,
the training loop and the certificate do not depend on gapbench.pacbayes.layers."""

import math

import torch
from torch import nn


def gaussian_kl(mean_q, std_q, mean_p, std_p):
    """Σ KL(N(mean_q, std_q²) ‖ N(mean_p, std_p²)) over coordinates, differentiable."""
    return (torch.log(std_p / std_q) + (std_q ** 2 + (mean_q - mean_p) ** 2) / (2 * std_p ** 2) - 0.5).sum()


class GaussianLinear(nn.Module):
    """Q = N(mean, softplus(rho)²) over the weights (classes × inputs) and bias of one linear layer, prior
    N(prior_mean, prior_std²) on every coordinate."""

    def __init__(self, d_in: int, classes: int, *, prior_std: float, seed: int = 0, posterior_std: float = None):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        prior_mean = 0.1 * torch.randn(classes, d_in + 1, generator=gen, dtype=torch.float64)
        self.register_buffer("prior_mean", prior_mean)
        self.prior_std = prior_std
        std = prior_std if posterior_std is None else posterior_std
        self.mean = nn.Parameter(prior_mean.clone())
        self.rho = nn.Parameter(torch.full_like(prior_mean, math.log(math.expm1(std))))

    def std(self) -> torch.Tensor:
        return nn.functional.softplus(self.rho)

    def forward(self, x: torch.Tensor, mode: str = "per_example", generator=None) -> torch.Tensor:
        x1 = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
        if mode == "mean":
            return x1 @ self.mean.T
        shape = (len(x), *self.mean.shape) if mode == "per_example" else self.mean.shape
        eps = torch.randn(shape, generator=generator, dtype=torch.float64)
        weights = self.mean + self.std() * eps
        if mode == "per_example":
            return torch.einsum("bcd,bd->bc", weights, x1)
        return x1 @ weights.T

    def kl(self) -> torch.Tensor:
        return gaussian_kl(self.mean, self.std(), self.prior_mean, torch.tensor(self.prior_std, dtype=torch.float64))

    def mean_network(self) -> nn.Module:
        layer = nn.utils.skip_init(nn.Linear, self.mean.shape[1] - 1, self.mean.shape[0]).double()  # no RNG
        with torch.no_grad():
            layer.weight.copy_(self.mean[:, :-1])
            layer.bias.copy_(self.mean[:, -1])
        return layer

    def num_params(self) -> int:
        return self.mean.numel()


class GaussianThreshold(nn.Module):
    """The threshold classifier h_w(x) = 1[x > w] on x ∈ ℝ, Q = N(posterior_mean, posterior_std²) over w,
    prior N(0, prior_std²): logits (0, x − w), so the prediction is 1 exactly when x > w. The empirical Gibbs
    risk of a point is a normal cdf (exact_point_risk) and R_Q an integral against the data law."""

    def __init__(self, posterior_mean: float, posterior_std: float, prior_std: float = 1.0):
        super().__init__()
        self.posterior_mean, self.posterior_std, self.prior_std = posterior_mean, posterior_std, prior_std

    def forward(self, x: torch.Tensor, mode: str = "per_example", generator=None) -> torch.Tensor:
        x = x.reshape(-1).double()
        if mode == "mean":
            w = torch.full_like(x, self.posterior_mean)
        else:
            eps = torch.randn(len(x) if mode == "per_example" else 1, generator=generator, dtype=torch.float64)
            w = (self.posterior_mean + self.posterior_std * eps).expand_as(x)
        return torch.stack([torch.zeros_like(x), x - w], dim=1)

    def kl(self) -> torch.Tensor:
        s, p = self.posterior_std, self.prior_std
        return torch.tensor(math.log(p / s) + (s ** 2 + self.posterior_mean ** 2) / (2 * p ** 2) - 0.5)

    def mean_network(self) -> nn.Module:
        return nn.Identity()

    def num_params(self) -> int:
        return 1


class WithBatchNorm(GaussianLinear):
    """A GaussianLinear whose mean network carries BatchNorm running statistics (to be refused)."""

    def mean_network(self) -> nn.Module:
        return nn.Sequential(super().mean_network(), nn.BatchNorm1d(self.mean.shape[0]).double())


def hash_bits(member: int, x: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random 0/1 function of (member, x) (the fractional part of a scaled sine)."""
    value = torch.sin(x.double() * 12.9898 + torch.as_tensor(member, dtype=torch.float64) * 78.233) * 43758.5453
    return (value - torch.floor(value)) > 0.5


class HashMember(nn.Module):
    """Member `member` of a finite family of classifiers, each a point mass Q_f = P_f on a fixed pseudo-random
    function h_f of x (KL = 0): with labels independent of x, every member's risk is exactly 1/2."""

    def __init__(self, member: int):
        super().__init__()
        self.member = member

    def forward(self, x: torch.Tensor, mode: str = "per_example", generator=None) -> torch.Tensor:
        bit = hash_bits(self.member, x.reshape(-1)).double()
        return torch.stack([1 - bit, bit], dim=1)

    def kl(self) -> torch.Tensor:
        return torch.tensor(0.0)

    def mean_network(self) -> nn.Module:
        return nn.Identity()

    def num_params(self) -> int:
        return 0
