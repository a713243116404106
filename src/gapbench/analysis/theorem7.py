"""KKB Theorem 7 for a fixed trained net: the generalization gap under squared loss as an exact identity in
the path weights w̄_k, the target directions v_k and the eigenpairs of G = E[zzᵀ] − (1/m)Σ_i z_i z_iᵀ
(:func:`gap_decomposition`), computed from the Gram matrix of :mod:`gapbench.analysis.deep_paths` without
ever materializing the path features z.

References:
    Kawaguchi, Kaelbling & Bengio, "Generalization in Deep Learning", arXiv:1710.05468 v5, §5, Theorem 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import check_positive_int, param_error
from .deep_paths import gram_factors, gram_from_features, path_norms_per_output, psd_basis, targets

MAX_POINTS = 6000          # largest N + m for gap_decomposition: the Gram matrix is (N+m)², eigh is O((N+m)³)


def _signed_gram_eigen(kernel: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of G = Zᵀ diag(weights) Z from K = Z Zᵀ alone: eigenvalues λ_j (r,) and coefficients
    C (n, r) with unit eigenvectors u_j = Zᵀ C[:, j]. With Z = Q_r Λ^{1/2} Vᵀ, G = V B Vᵀ for the r×r
    symmetric B = Λ^{1/2} Q_rᵀ diag(weights) Q_r Λ^{1/2} = P M Pᵀ, so λ = diag(M) and C = Q_r Λ^{−1/2} P.
    The range of G lies in span{z_i}, so these are all its nonzero eigenpairs (plus possibly some zeros)."""
    vectors, eigenvalues = psd_basis(kernel)
    root = eigenvalues.sqrt()
    reduced = root[:, None] * (vectors.T @ (weights[:, None] * vectors)) * root[None, :]
    lam, rotation = torch.linalg.eigh((reduced + reduced.T) / 2)
    return lam, vectors @ (rotation / root[:, None])


@dataclass(frozen=True)
class GapDecomposition:
    """Theorem 7 of KKB for a fixed f: both sides of the identity and every factor (tensors are float64).

    path_norms[k] = ‖w̄_k‖₂, v_norms[k] = ‖v_k‖, cosines[k] = cos θ(w̄_k, v_k) (0 when either vector is 0),
    cross_terms[k] = −2‖v_k‖‖w̄_k‖cos θ(w̄_k, v_k), quadratic_terms[k] = ‖w̄_k‖² Σ_j λ_j cos² θ(w̄_k, u_j)
    (over all j), eigenvalues = every eigenvalue λ_j of G on span{z_i}, sorted by |λ| (largest first),
    top_mass[k, j] = cos² θ(w̄_k, u_j) for the first top_k of them.
    """

    lhs: float                      # R[f] − R_S[f], squared loss computed from the outputs
    rhs: float                      # c_y + Σ_k (cross_terms[k] + quadratic_terms[k])
    population_risk: float          # R[f] = mean over the population sample of ‖ŷ − y‖²
    train_risk: float               # R_S[f] = mean over the m training points of ‖ŷ − y‖²
    c_y: float
    path_norms: torch.Tensor
    v_norms: torch.Tensor
    cosines: torch.Tensor
    cross_terms: torch.Tensor
    quadratic_terms: torch.Tensor
    eigenvalues: torch.Tensor
    top_mass: torch.Tensor

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}


def gap_decomposition(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                      population: tuple[torch.Tensor, torch.Tensor], *, top_k: int = 10,
                      max_points: int = MAX_POINTS) -> GapDecomposition:
    """Theorem 7 of KKB (squared loss), an exact identity for the fixed trained f:

        R[f] − R_S[f] = c_y + Σ_k ( −2‖v_k‖‖w̄_k‖ cos θ(w̄_k, v_k) + ‖w̄_k‖² Σ_j λ_j cos² θ(w̄_k, u_j) ),

    with ℓ = ‖ŷ − y‖², ŷ the model output and y the one-hot vector of the label (or a given (n, K) target),
    G = E[zzᵀ] − (1/m)Σ_i z_i z_iᵀ = Σ_j λ_j u_j u_jᵀ, v_k = E[y_k z] − (1/m)Σ_i y_ik z_i and
    c_y = E‖y‖² − (1/m)Σ_i ‖y_i‖². `train` = (x, y) holds the m training points; E is the mean over the
    `population` sample (x, y) of N held-out points standing in for the distribution, so the identity is exact
    for that sample. (The paper writes v with the opposite sign and +2‖v‖‖w̄‖cos: the same identity.)

    Computed without z: stack the N population and m training points with weights d = (1/N, …, −1/m, …) and
    Gram K (:func:`~gapbench.analysis.deep_paths.gram`); then v_k = Zᵀ(d ∘ y_k), ‖v_k‖² = (d ∘ y_k)ᵀ K (d ∘ y_k),
    v_kᵀw̄_k = (d ∘ y_k)ᵀ ŷ_k (since Z w̄_k = ŷ_k), G = Zᵀ diag(d) Z has its eigenpairs from K (see
    ``_signed_gram_eigen``) and w̄_kᵀu_j = ŷ_kᵀ C[:, j]. The Gram matrix is (N+m)² float64 and eigh costs
    O((N+m)³), hence N + m ≤ `max_points`. Bias-free FC ReLU nets or
    :class:`~gapbench.analysis.deep_paths.TwoPhaseNet`.

    References: Kawaguchi, Kaelbling & Bengio, arXiv:1710.05468 v5, §5, Theorem 7.
    """
    caller = "gap_decomposition()"
    top_k = check_positive_int(top_k, "top_k", caller)
    (x_tr, y_tr), (x_pop, y_pop) = train, population
    m = check_positive_int(len(x_tr), "train", caller)
    n_pop = check_positive_int(len(x_pop), "population", caller)
    if m + n_pop > check_positive_int(max_points, "max_points", caller):
        raise param_error("population", caller, f"a sample with N + m <= max_points={max_points} points "
                          f"(the Gram matrix is (N+m)² and its eigendecomposition O((N+m)³))",
                          f"N={n_pop} with m={m}",
                          "Subsample the population (or train) set, or raise max_points.")
    out_pop, feats_pop = gram_factors(model, x_pop, caller=caller)
    out_tr, feats_tr = gram_factors(model, x_tr, caller=caller)
    num_out = out_tr.shape[1]
    y_all = torch.cat([targets(y_pop, num_out, caller), targets(y_tr, num_out, caller)])
    out_all = torch.cat([out_pop, out_tr])
    feats = [torch.cat([fp, ft]) for fp, ft in zip(feats_pop, feats_tr, strict=True)]
    kernel = gram_from_features(feats, feats)
    d = torch.cat([torch.full((n_pop,), 1.0 / n_pop, dtype=torch.float64),
                   torch.full((m,), -1.0 / m, dtype=torch.float64)])

    losses = ((out_all - y_all) ** 2).sum(1)
    population_risk, train_risk = float(losses[:n_pop].mean()), float(losses[n_pop:].mean())
    c_y = float(d @ (y_all ** 2).sum(1))
    coef_v = d[:, None] * y_all                                           # v_k = Zᵀ coef_v[:, k]
    v_norms = torch.einsum("ik,ij,jk->k", coef_v, kernel, coef_v).clamp_min(0.0).sqrt()
    v_dot_w = (coef_v * out_all).sum(0)                                   # v_kᵀ w̄_k
    path_norms = path_norms_per_output(model, 2.0)
    denom = v_norms * path_norms
    cosines = torch.where(denom > 0, v_dot_w / torch.where(denom > 0, denom, 1.0), 0.0)
    lam, coeffs = _signed_gram_eigen(kernel, d)
    order = lam.abs().argsort(descending=True)
    lam, coeffs = lam[order], coeffs[:, order]
    norm_sq = path_norms ** 2
    mass = (out_all.T @ coeffs) ** 2 / torch.where(norm_sq > 0, norm_sq, 1.0)[:, None]   # cos² θ(w̄_k, u_j)
    cross = -2.0 * v_norms * path_norms * cosines
    quadratic = norm_sq * (mass * lam[None, :]).sum(1)
    return GapDecomposition(lhs=population_risk - train_risk, rhs=c_y + float((cross + quadratic).sum()),
                            population_risk=population_risk, train_risk=train_risk, c_y=c_y,
                            path_norms=path_norms, v_norms=v_norms, cosines=cosines, cross_terms=cross,
                            quadratic_terms=quadratic, eigenvalues=lam, top_mass=mass[:, :top_k])
