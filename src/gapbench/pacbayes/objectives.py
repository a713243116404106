"""Training objectives for PAC-Bayes posteriors (Pérez-Ortiz et al. 2021) and their bounded surrogate loss.

Every objective relaxes one statement: Maurer's PAC-Bayes-kl bound (2004, Thm 5; a [0, 1] loss, n ≥ 8 i.i.d.
points, prior P fixed before the points): with probability ≥ 1 − δ, for every posterior Q,

    kl(R̂_Q ‖ R_Q) ≤ c,     c = (KL(Q ‖ P) + ln(2√n/δ))/n.                                         (M)

Training replaces R̂_Q by a one-draw estimate of the bounded cross-entropy on a mini-batch (reparameterised,
differentiable) and multiplies KL by `kl_penalty` (λ; PBB's kl_penalty, 1 in the bound, 0.1 in PBB's
running example): the objective is a training device, and the certificate is computed afterwards with λ = 1.
n is the number of points the bound is about (PBB: n_posterior, the size of the set the posterior trains on,
pbb/utils.py L198 and pbb/bounds.py L150).

Bounded cross-entropy (PBB pbb/models.py L1097-1116 `output_transform` and pbb/bounds.py L58-63): the
log-probability of the true class is clamped below at ln p_min, so that

    ℓ(x, y) = −ln max(p_y, p_min) / ln(1/p_min) ∈ [0, 1],

a [0, 1] loss to which (M) applies. p_min = 1e-5 by default, as PBB runs it (running_example.py L14; the
PBBobj class default is 1e-4, pbb/bounds.py L43).

References:
    Maurer, "A note on the PAC Bayesian theorem", arXiv:cs/0411099, 2004, Theorem 5.
    Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári, "Tighter risk certificates for neural networks",
    JMLR 22(227), 2021, §3 (f_classic, f_quad) and §4 (bounded cross-entropy); code mperezortiz/PBB.
    Thiemann, Igel, Wintenberger & Seldin, "A strongly quasiconvex PAC-Bayesian bound", ALT 2017 (the
    refined Pinsker inequality behind f_quad).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..bounds.kl import kl_inverse_upper
from ..errors import check_positive_float, check_positive_int, check_probability
from ..registry import Registry

OBJECTIVES: Registry[Callable[..., torch.Tensor]] = Registry("objective", required=("reference",))
DEFAULT_P_MIN = 1e-5         # PBB running_example.py L14 (what PBB runs); PBBobj's default is 1e-4 (bounds.py L43)
GRAD_CLAMP = 1e-12           # kl⁻¹'s gradient is evaluated at q clamped into [GRAD_CLAMP, 1 − GRAD_CLAMP]


def bounded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, *, p_min: float = DEFAULT_P_MIN) -> torch.Tensor:
    """Per-example −ln max(p_y, p_min)/ln(1/p_min) ∈ [0, 1] (module docstring), differentiable in `logits`."""
    p_min = check_probability(p_min, "p_min", "bounded_cross_entropy()")
    log_p = torch.log_softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    return -torch.clamp(log_p, min=math.log(p_min)) / math.log(1 / p_min)


def kl_budget(kl: torch.Tensor, *, n: int, delta: float, kl_penalty: float = 1.0) -> torch.Tensor:
    """c = (λ·KL + ln(2√n/δ))/n, the right-hand side of (M) (PBB pbb/bounds.py L84, L99 without the 2)."""
    return (kl_penalty * kl + math.log(2 * math.sqrt(n) / delta)) / n


def _kl_partials(q: float, p: float) -> tuple[float, float]:
    """(∂kl(q‖p)/∂q, ∂kl(q‖p)/∂p) = (ln(q/p) − ln((1−q)/(1−p)), (p − q)/(p(1 − p)))."""
    return math.log(q / p) - math.log((1 - q) / (1 - p)), (p - q) / (p * (1 - p))


class KlInverse(torch.autograd.Function):
    """p = kl⁻¹(q, c) = max{p ∈ [q, 1] : kl(q ‖ p) ≤ c}, computed by bisection without autograd
    (:func:`gapbench.bounds.kl.kl_inverse_upper`), with the gradient of the implicit function theorem.

    Where p < 1, p solves F(q, p, c) = kl(q ‖ p) − c = 0 with ∂F/∂p = (p − q)/(p(1 − p)) > 0 (c > 0 ⇒ p > q), so
        ∂p/∂c = 1/∂_p kl = p(1 − p)/(p − q),     ∂p/∂q = −∂_q kl/∂_p kl,
        ∂_q kl = ln(q/p) − ln((1 − q)/(1 − p)) (< 0 for q < p, so p grows with q).
    Where p = 1 (kl(q ‖ 1) ≤ c) the inverse is constant: both gradients are 0. At c = 0 (p = q) ∂p/∂c is
    infinite; the objectives always have c ≥ ln(2√n/δ)/n > 0. q ∈ {0, 1} has ∂_q kl = ∓∞: the partials are
    evaluated at q clamped to [GRAD_CLAMP, 1 − GRAD_CLAMP].
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # noqa: D102
        q_val = min(max(float(q), 0.0), 1.0)          # a float32 mean of values in [0, 1] may round past them
        p = kl_inverse_upper(q_val, max(float(c), 0.0))
        ctx.save_for_backward(q, c)
        ctx.values = (q_val, p)
        return torch.as_tensor(p, dtype=q.dtype, device=q.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        q, c = ctx.saved_tensors
        q_val, p = ctx.values
        if p >= 1.0:
            return torch.zeros_like(q), torch.zeros_like(c)
        q_val = min(max(q_val, GRAD_CLAMP), 1 - GRAD_CLAMP)
        p = max(p, q_val + GRAD_CLAMP)
        d_q, d_p = _kl_partials(q_val, p)
        return grad * (-d_q / d_p), grad * (1 / d_p)


def kl_inverse(q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Differentiable kl⁻¹(q, c) for scalar tensors q ∈ [0, 1], c ≥ 0 (:class:`KlInverse`)."""
    return KlInverse.apply(torch.as_tensor(q), torch.as_tensor(c, dtype=torch.as_tensor(q).dtype))


@OBJECTIVES.register("f_classic", reference="Pérez-Ortiz et al. 2021, eq. (f_classic); PBB pbb/bounds.py L96-100")
def f_classic(risk: torch.Tensor, kl: torch.Tensor, *, n: int, delta: float, kl_penalty: float = 1.0) -> torch.Tensor:
    """R̂ + √(c/2), c = (λ·KL + ln(2√n/δ))/n.

    From (M) and Pinsker's inequality kl(q ‖ p) ≥ 2(p − q)²: 2(R − R̂)² ≤ c, so R ≤ R̂ + √(c/2)
    (McAllester's form with Maurer's ln(2√n/δ)).
    """
    return risk + torch.sqrt(kl_budget(kl, n=n, delta=delta, kl_penalty=kl_penalty) / 2)


@OBJECTIVES.register("f_quad", reference="Pérez-Ortiz et al. 2021, eq. (f_quad); PBB pbb/bounds.py L81-88")
def f_quad(risk: torch.Tensor, kl: torch.Tensor, *, n: int, delta: float, kl_penalty: float = 1.0) -> torch.Tensor:
    """(√(R̂ + c/2) + √(c/2))², c = (λ·KL + ln(2√n/δ))/n.

    From (M) and the refined Pinsker inequality kl(q ‖ p) ≥ (p − q)²/(2p) for q < p: (R − R̂)² ≤ 2R·c, a
    quadratic in √R whose larger root gives √R ≤ √(c/2) + √(R̂ + c/2).
    """
    half = kl_budget(kl, n=n, delta=delta, kl_penalty=kl_penalty) / 2
    return (torch.sqrt(risk + half) + torch.sqrt(half)) ** 2


@OBJECTIVES.register("f_kl_inverse", reference="Maurer 2004, Thm 5, inverted exactly (Pérez-Ortiz et al. 2021 "
                     "use the same inversion for the final certificate)")
def f_kl_inverse(risk: torch.Tensor, kl: torch.Tensor, *, n: int, delta: float,
                 kl_penalty: float = 1.0) -> torch.Tensor:
    """kl⁻¹(R̂, c), c = (λ·KL + ln(2√n/δ))/n: (M) itself, solved for R_Q, the tightest of the three
    (f_classic and f_quad are upper bounds on it by the two Pinsker inequalities); gradient by
    :class:`KlInverse`."""
    return kl_inverse(risk, kl_budget(kl, n=n, delta=delta, kl_penalty=kl_penalty))


def objective(name: str) -> Callable[..., torch.Tensor]:
    """The registered objective `name` (unknown names list the known ones)."""
    return OBJECTIVES.get(name).obj


def check_objective_args(n: int, delta: float, kl_penalty: float, where: str) -> None:
    """n ≥ 1 points, δ ∈ (0, 1), λ ≥ 0."""
    check_positive_int(n, "n_bound", where)
    check_probability(delta, "delta", where)
    check_positive_float(kl_penalty, "kl_penalty", where, allow_zero=True)
