"""Theorem 8 of KKB (two-phase training): a bound on R[f] − R_{S∖S_αm}[f] from path norms and six constants.

Two-phase model: gates W_σ learned on S_αm (the first α·m points) and then frozen, so the path features
z̃(x) = x̄ ∘ σ̄(x, W_σ) do not depend on the other m_σ = (1 − α)·m points; the path weights w̄ (value net) are
trained on all m points. With squared loss ℓ = ‖ŷ − y‖² (y the one-hot label vector), d_z = dim z̃ = d_x·Π_l
n_l and d_y the number of outputs, with probability ≥ 1 − δ over S∖S_αm:

    R[f] − R_{S∖S_αm}[f] ≤ β₁·Σ_k ‖w̄_k‖₂² + 2β₂·Σ_k ‖w̄_k‖₁ + β₃,
    β₁ = 2C_zz·ln(3d_z/δ)/(3m_σ) + sqrt(2γ²_zz·ln(3d_z/δ)/m_σ),
    β₂ = 2C_yz·ln(6d_y·d_z/δ)/(3m_σ) + sqrt(2γ²_yz·ln(6d_y·d_z/δ)/m_σ),
    β₃ = 2C_y·ln(3/δ)/(3m_σ) + sqrt(2γ²_y·ln(3/δ)/m_σ),

where, for every i > αm, G⁽ⁱ⁾ = E[z̃z̃ᵀ] − z̃_i z̃_iᵀ, V⁽ⁱ⁾_kp = y_ik z̃_ip − E[y_k z̃_p], c⁽ⁱ⁾ = E‖y‖² −
‖y_i‖² and C_zz ≥ λ_max(G⁽ⁱ⁾), γ²_zz ≥ ‖E[(G⁽ⁱ⁾)²]‖₂, C_yz ≥ max_kp |V⁽ⁱ⁾_kp|, γ²_yz ≥ max_kp E[(V⁽ⁱ⁾_kp)²],
C_y ≥ |c⁽ⁱ⁾|, γ²_y ≥ E[(c⁽ⁱ⁾)²]. The pairing β₁ ↔ Σ‖w̄_k‖₂² and β₂ ↔ Σ‖w̄_k‖₁ follows the proof (inequality
C.1: the quadratic term w̄ᵀG w̄ ≤ λ_max·‖w̄‖₂², the linear term vᵀw̄ ≤ max|v|·‖w̄‖₁); the printed theorem
swaps the two norms.

Derivation of the β's. With ŷ_k = z̃ᵀw̄_k, expanding the square and averaging over i > αm gives the exact
identity (Ḡ, v̄, c̄ the means of G⁽ⁱ⁾, V⁽ⁱ⁾, c⁽ⁱ⁾ over the m_σ points)

    R[f] − R_{S∖S_αm}[f] = Σ_k w̄_kᵀ Ḡ w̄_k + 2 Σ_k v̄_kᵀ w̄_k + c̄
                         ≤ λ_max(Ḡ)·Σ_k ‖w̄_k‖₂² + 2 max_kp |v̄_kp|·Σ_k ‖w̄_k‖₁ + c̄,

which holds for every w̄ at once (w̄ depends on S∖S_αm, so only w̄-free events may be used). The G⁽ⁱ⁾, V⁽ⁱ⁾,
c⁽ⁱ⁾ are i.i.d. over i and centred (z̃ is fixed by S_αm). Three events, δ/3 each (union: total δ):
  β₁: matrix Bernstein (Tropp 2012, "User-friendly tail bounds for sums of random matrices", Thm 1.4 / 6.1),
      d_z-dimensional, R = C_zz ≥ λ_max(G⁽ⁱ⁾), σ² = ‖Σ_i E[(G⁽ⁱ⁾)²]‖ ≤ m_σγ²_zz: P[λ_max(Σ_i G⁽ⁱ⁾) ≥ m_σt] ≤
      d_z·exp(−(m_σt)²/2 / (m_σγ²_zz + C_zz·m_σt/3)); one-sided, so d_z·exp(·) = δ/3, L = ln(3d_z/δ).
  β₂: scalar Bernstein per coordinate (k, p), |V⁽ⁱ⁾_kp| ≤ C_yz, E[(V⁽ⁱ⁾_kp)²] ≤ γ²_yz: P[|v̄_kp| ≥ t] ≤
      2·exp(−(m_σt)²/2 / (m_σγ²_yz + C_yz·m_σt/3)); two-sided over d_y·d_z coordinates → 2d_y·d_z events,
      2d_y·d_z·exp(·) = δ/3, L = ln(6d_y·d_z/δ).
  β₃: scalar Bernstein, one-sided, c⁽ⁱ⁾ ≤ C_y, E[(c⁽ⁱ⁾)²] ≤ γ²_y: exp(·) = δ/3, L = ln(3/δ).
Each tail equals its share of δ at the root t of m_σt² / (2γ² + 2Ct/3) = L, i.e.
t = CL/(3m_σ) + sqrt((CL/(3m_σ))² + 2γ²L/m_σ) ≤ 2CL/(3m_σ) + sqrt(2γ²L/m_σ) (sqrt(a + b) ≤ √a + √b); the β's
are this closed form, which is at most twice the root. The 2 under β₂'s root is Bernstein's: an earlier
version (and SPEC text) had sqrt(γ²_yz·L/m_σ), up to 1 − 1/√2 ≈ 29 % too small (issue 11).

The constants either come from the user (then the result is a bound under the stated assumptions) or are
estimated from a held-out population sample (then it is a plug-in estimate, *not* a bound, flagged
``is_estimate=True``). ln d_z is computed in log space (d_z is astronomically large for real nets).

References: Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning", arXiv:1710.05468 v5, §5.3.1,
Theorem 8 and its proof (App. C, inequality C.1); Tropp, "User-friendly tail bounds for sums of random
matrices", FoCM 2012, Thm 1.4 (matrix Bernstein; Thm 6.1 for the one-sided λ_max form).
The β's are implemented as derived above from the cited inequalities, whatever constants the printed
theorem shows. Its proof writes m for m_σ in the third term, read here as m_σ (the sum is over the m_σ points
of S∖S_αm).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..analysis import deep_paths as dp
from ..errors import GapbenchError, check_positive_float, check_positive_int, check_probability
from . import BOUNDS
from .types import Bound

CONSTANTS = ("c_zz", "gamma2_zz", "c_yz", "gamma2_yz", "c_y", "gamma2_y")
FEATURE_CHUNK = 1 << 22    # float64 entries per block of explicit path features (32 MiB)
BISECTION_STEPS = 200      # halvings of the secular-equation bracket: far past float64 resolution
REFERENCE = ("Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning, arXiv:1710.05468 v5, Theorem 8 "
             "(two-phase training) with the norm pairing of its proof, inequality C.1")
QUANTITY = "squared-loss generalization gap R[f] − R_{S∖S_αm}[f] of the two-phase net"
ASSUMPTIONS = (
    "squared loss ℓ = ‖ŷ − y‖² with y the one-hot vector of the label",
    "the gates (gate net W_σ) were learned on S_αm only and then frozen, so z̃ is independent of S∖S_αm",
    "the m_σ points of S∖S_αm (the data passed in) are i.i.d. from the distribution and independent of S_αm",
    "for every i > αm: C_zz ≥ λ_max(G⁽ⁱ⁾), γ²_zz ≥ ‖E[(G⁽ⁱ⁾)²]‖₂, C_yz ≥ max|V⁽ⁱ⁾_kp|, "
    "γ²_yz ≥ max E[(V⁽ⁱ⁾_kp)²], C_y ≥ |c⁽ⁱ⁾|, γ²_y ≥ E[(c⁽ⁱ⁾)²]",
)


def theorem8_betas(constants: dict[str, float], *, m_sigma: int, log_dz: float, d_y: int,
                   delta: float) -> tuple[float, float, float]:
    """(β₁, β₂, β₃) of Theorem 8 exactly as in the module docstring; ln d_z is passed in log space."""
    log_zz = math.log(3.0) + log_dz - math.log(delta)                 # ln(3 d_z / δ)
    log_yz = math.log(6.0 * d_y) + log_dz - math.log(delta)           # ln(6 d_y d_z / δ)
    log_y = math.log(3.0 / delta)                                     # ln(3 / δ)
    c = constants
    beta1 = 2 * c["c_zz"] * log_zz / (3 * m_sigma) + math.sqrt(2 * c["gamma2_zz"] * log_zz / m_sigma)
    beta2 = 2 * c["c_yz"] * log_yz / (3 * m_sigma) + math.sqrt(2 * c["gamma2_yz"] * log_yz / m_sigma)
    beta3 = 2 * c["c_y"] * log_y / (3 * m_sigma) + math.sqrt(2 * c["gamma2_y"] * log_y / m_sigma)
    return beta1, beta2, beta3


def _lambda_max_minus_rank_one(alpha: torch.Tensor, coords: torch.Tensor,
                               residual_sq: torch.Tensor) -> torch.Tensor:
    """λ_max(M − z_i z_iᵀ) for every row i, with M = V diag(alpha) Vᵀ (alpha ≥ 0, V orthonormal),
    z_i = V a_i + ρ_i e_i (e_i ⟂ span V), coords = a (n, r), residual_sq = ρ² (n,).

    In the basis (V, e_i) the matrix is A − b bᵀ with A = diag(alpha, 0), b = (a_i, ρ_i); its largest
    eigenvalue lies in [A_(2), A_(1)] (interlacing) and is the root there of the secular equation 1 − Σ_j
    b_j²/(A_j − μ) = 0, which decreases in μ between the two poles; found by bisection (A_(1) itself when the
    root is absent).
    """
    diag = torch.cat([alpha, alpha.new_zeros(1)])
    weights = torch.cat([coords ** 2, residual_sq[:, None]], dim=1)
    top = diag.sort(descending=True).values
    hi = torch.full((coords.shape[0],), float(top[0]), dtype=torch.float64)
    lo = torch.full_like(hi, float(top[1]) if top.numel() > 1 else float(top[0]))
    if float(top[0]) == float(lo[0]):
        return hi
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        secular = 1.0 - (weights / (diag[None, :] - mid[:, None])).sum(1)
        lo, hi = torch.where(secular > 0, mid, lo), torch.where(secular > 0, hi, mid)
    return (lo + hi) / 2


def _path_feature_constants(model: nn.Module, heldout: tuple, population: tuple, y_pop: torch.Tensor,
                            y_held: torch.Tensor, max_paths: int) -> tuple[float, float, bool]:
    """(C_yz, γ²_yz, exact): exact plug-in maxima over every path p from explicit z̃ when d_z ≤ max_paths; else
    the upper bounds |z̃_p(x)| ≤ ‖x‖_∞: C_yz ≤ max_ik |y_ik|·‖x_i‖_∞ + max_k E[|y_k|·‖x‖_∞] and
    γ²_yz ≤ max_k E[y_k²·‖x‖²_∞] (a variance is at most the second moment)."""
    (x_held, _), (x_pop, _) = heldout, population
    if dp.log_num_paths(model) <= math.log(max_paths):
        n_paths = round(math.exp(dp.log_num_paths(model)))
        chunk = max(1, FEATURE_CHUNK // n_paths)
        mean = second = None
        for start in range(0, len(x_pop), chunk):
            z = dp.path_features(model, x_pop[start:start + chunk], max_paths=max_paths)
            y = y_pop[start:start + chunk]
            mean = (y.T @ z) if mean is None else mean + y.T @ z                  # Σ y_k z_p
            second = (y.T ** 2 @ z ** 2) if second is None else second + y.T ** 2 @ z ** 2
        mean, second = mean / len(x_pop), second / len(x_pop)
        c_yz = 0.0
        for start in range(0, len(x_held), chunk):
            z = dp.path_features(model, x_held[start:start + chunk], max_paths=max_paths)
            y = y_held[start:start + chunk]
            for k in range(mean.shape[0]):
                c_yz = max(c_yz, float((y[:, k:k + 1] * z - mean[k]).abs().max()))
        return c_yz, float((second - mean ** 2).max()), True
    sup_held = x_held.detach().reshape(len(x_held), -1).double().abs().amax(1).cpu()
    sup_pop = x_pop.detach().reshape(len(x_pop), -1).double().abs().amax(1).cpu()
    c_yz = float((y_held.abs() * sup_held[:, None]).max() + (y_pop.abs() * sup_pop[:, None]).mean(0).max())
    return c_yz, float((y_pop ** 2 * sup_pop[:, None] ** 2).mean(0).max()), False


def plugin_constants(model: nn.Module, heldout: tuple[torch.Tensor, torch.Tensor],
                     population: tuple[torch.Tensor, torch.Tensor], *,
                     max_paths: int = dp.MAX_PATHS) -> dict[str, float]:
    """Plug-in values of the six constants of Theorem 8, with E the mean over the `population` sample and
    i over the points of `heldout` (S∖S_αm). Adds 'yz_exact' = 1.0 when C_yz, γ²_yz are exact maxima.

    Gram route (no z̃): K_pp = Q Λ Qᵀ gives an orthonormal basis V = Z_popᵀ Q Λ^{−1/2} of span{z̃(x_pop)} in
    which E[z̃z̃ᵀ] = diag(Λ/N); z̃_i has coordinates a_i = Λ^{−1/2} Qᵀ K_p,i and residual ρ_i² = K_ii −
    ‖a_i‖², whence C_zz = max_i λ_max(G⁽ⁱ⁾) (secular equation), and ‖E[(G⁽ⁱ⁾)²]‖₂ = ‖E[‖z̃‖² z̃z̃ᵀ] −
    (E[z̃z̃ᵀ])²‖₂ = ‖Λ^{1/2} Qᵀ diag(K_pp,ii / N) Q Λ^{1/2} − diag(Λ/N)²‖₂. C_yz, γ²_yz are maxima over single
    path coordinates and need explicit z̃ (see ``_path_feature_constants``). C_y = max_i |E‖y‖² − ‖y_i‖²|,
    γ²_y = Var(‖y‖²).
    """
    caller = "kkb2017_theorem8()"
    (x_held, y_held), (x_pop, y_pop) = heldout, population
    check_positive_int(len(x_pop), "population", caller, minimum=2)
    _, feats_pop = dp.gram_factors(model, x_pop, caller=caller)
    out_held, feats_held = dp.gram_factors(model, x_held, caller=caller)
    n_pop = len(x_pop)
    k_pp = dp.gram_from_features(feats_pop, feats_pop)
    k_ph = dp.gram_from_features(feats_pop, feats_held)
    k_hh = torch.ones(len(x_held), dtype=torch.float64)
    for f in feats_held:
        k_hh = k_hh * (f ** 2).sum(1)                                   # K_ii = ‖x_i‖² Π_l ‖σ_l(x_i)‖²
    vectors, lam = dp.psd_basis(k_pp)
    coords = (vectors.T @ k_ph).T / lam.sqrt()[None, :]
    residual_sq = (k_hh - (coords ** 2).sum(1)).clamp_min(0.0)
    c_zz = float(_lambda_max_minus_rank_one(lam / n_pop, coords, residual_sq).max())
    root = lam.sqrt()
    fourth = root[:, None] * (vectors.T @ (k_pp.diagonal()[:, None] / n_pop * vectors)) * root[None, :]
    spread = fourth - torch.diag((lam / n_pop) ** 2)
    gamma2_zz = float(torch.linalg.eigvalsh((spread + spread.T) / 2).abs().max())

    num_out = out_held.shape[1]
    t_pop, t_held = dp.targets(y_pop, num_out, caller), dp.targets(y_held, num_out, caller)
    c_yz, gamma2_yz, exact = _path_feature_constants(model, heldout, population, t_pop, t_held, max_paths)
    sq_pop, sq_held = (t_pop ** 2).sum(1), (t_held ** 2).sum(1)
    c_y = float((sq_pop.mean() - sq_held).abs().max())
    gamma2_y = float(((sq_pop.mean() - sq_pop) ** 2).mean())
    return {"c_zz": c_zz, "gamma2_zz": gamma2_zz, "c_yz": c_yz, "gamma2_yz": gamma2_yz, "c_y": c_y,
            "gamma2_y": gamma2_y, "yz_exact": float(exact)}


def kkb2017_theorem8(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, delta: float,
                     population: tuple[torch.Tensor, torch.Tensor] | None = None,
                     max_paths: int = dp.MAX_PATHS, **constants: float) -> Bound:
    """Theorem 8 of KKB on `data` = (x, y), the m_σ points of S∖S_αm, for a bias-free FC ReLU net or a
    :class:`~gapbench.analysis.deep_paths.TwoPhaseNet` (w̄ from its value net, gates from its gate net).

    Give either all six constants ``c_zz, gamma2_zz, c_yz, gamma2_yz, c_y, gamma2_y`` (a bound under the
    listed assumptions), or ``population=(x, y)``, a held-out sample standing in for the distribution, from
    which they are estimated (:func:`plugin_constants`; the result is a plug-in estimate, not a bound).
    """
    caller = "kkb2017_theorem8()"
    delta = check_probability(delta, "delta", caller)
    unknown = sorted(set(constants) - set(CONSTANTS))
    if unknown:
        raise GapbenchError(f"kkb2017_theorem8() got unknown parameter(s) {unknown}. Known: "
                            f"{', '.join(CONSTANTS)}, population, max_paths.")
    if population is None and set(constants) != set(CONSTANTS):
        raise GapbenchError(f"kkb2017_theorem8() needs all six constants {', '.join(CONSTANTS)} or a "
                            f"population=(x, y) sample to estimate them; got "
                            f"{sorted(constants) or 'neither'}. Pass all six, or population=(x, y).")
    if population is not None and constants:
        raise GapbenchError("kkb2017_theorem8() takes either the six constants or population=(x, y), "
                            "not both. "
                            f"Got population and {sorted(constants)}.")
    x, y = data
    m_sigma = check_positive_int(len(x), "data", caller)
    if population is None:
        given = {k: check_positive_float(constants[k], k, caller, allow_zero=True) for k in CONSTANTS}
        extra: dict[str, float] = {}
    else:
        estimated = plugin_constants(model, (x, y), population, max_paths=max_paths)
        given = {k: estimated[k] for k in CONSTANTS}
        extra = {"yz_exact": estimated["yz_exact"]}
    log_dz = dp.log_num_paths(model)
    d_y = int(dp.path_norms_per_output(model, 2.0).shape[0])
    beta1, beta2, beta3 = theorem8_betas(given, m_sigma=m_sigma, log_dz=log_dz, d_y=d_y, delta=delta)
    sum_l2_sq = float((dp.path_norms_per_output(model, 2.0) ** 2).sum())
    sum_l1 = float(dp.path_norms_per_output(model, 1.0).sum())
    value = beta1 * sum_l2_sq + 2 * beta2 * sum_l1 + beta3
    terms = {"beta1": beta1, "beta2": beta2, "beta3": beta3, "sum_path_norm_l2_sq": sum_l2_sq,
             "sum_path_norm_l1": sum_l1, "log_dz": log_dz, "d_y": float(d_y), "m_sigma": float(m_sigma),
             **given, **extra}
    if population is None:
        return Bound("kkb2017_theorem8", value, delta, QUANTITY, terms, REFERENCE,
                     ASSUMPTIONS)
    return Bound("kkb2017_theorem8 (plug-in estimate, not a bound)", value, delta, QUANTITY, terms,
                 REFERENCE,
                 (*ASSUMPTIONS[:3], "the six constants are plug-in estimates from a held-out population "
                  "sample "
                  "(E = its mean, i over S∖S_αm): this is an estimate, not a bound"), is_estimate=True)


BOUNDS.register("kkb2017_theorem8", kkb2017_theorem8, quantity=QUANTITY, reference=REFERENCE,
                needs=("model", "data", "delta"))
