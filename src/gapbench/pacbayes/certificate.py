"""The risk certificate of a trained PAC-Bayes posterior Q: a bound on the 0-1 risk of the STOCHASTIC classifier.

Q is a distribution over weights; the stochastic classifier predicts each point with a fresh draw w ~ Q, and
R_Q = E_{w~Q} E_{(x,y)} 1[h_w(x) ≠ y] is its risk. Nothing here bounds the risk of the mean network.
S_bound = the n points the bound is about (i.i.d., n ≥ 8); P = the prior, fixed independently of S_bound
(data-free, or trained on S_prior with S_prior ∩ S_bound = ∅; the posterior may train on anything). The
caller's δ is the TOTAL failure probability: δ = δ_PB + δ_MC, 0 < δ_MC < δ, δ_MC ≤ 1/2. Derivation:

1. Monte Carlo (the empirical Gibbs risk R̂_Q = (1/n) Σ_i p_i, p_i = Q[h_w(x_i) ≠ y_i], is not computable).
   K passes over S_bound, each prediction with its own weight draw w_ik ~ Q (mode="per_example"; a seeded
   generator independent of the points). Given S_bound the N = n·K indicators e_ik = 1[h_{w_ik}(x_i) ≠ y_i]
   are independent, e_ik ~ Bernoulli(p_i), so S = Σ e_ik has mean N·R̂_Q: a Poisson-binomial, not a binomial
   (the p_i differ). Hoeffding (1956, Thm 4): P[S ≤ b] ≤ P[Bin(N, R̂_Q) ≤ b] for every b ≤ N·R̂_Q − 1. The
   inversion fails exactly on {S ≤ b*}, b* = max{b : P[Bin(N, R̂_Q) ≤ b] < δ_MC}; since δ_MC ≤ 1/2, b* lies
   below the binomial median, which is ≥ ⌊N·R̂_Q⌋ (Kaas & Buhrman 1980), so b* ≤ N·R̂_Q − 1 and
   P[R̂_Q > Bin⁻(N, S, δ_MC)] = P[S ≤ b*] ≤ P[Bin(N, R̂_Q) ≤ b*] < δ_MC. The exact binomial tail inversion
   Bin⁻ (Langford 2005, Thm 3.3; gapbench.bounds.kl.binomial_inverse_upper) is tighter than PBB's
   kl⁻¹(R̂_MC, ln(2/δ′)/n_mc) over per-pass means (pbb/bounds.py L164-167), and N = n·K ≫ PBB's n_mc.
2. PAC-Bayes-kl (Maurer 2004, Thm 5; a [0, 1] loss, n ≥ 8): for each prior P_f of a family F fixed before
   S_bound is seen, with probability ≥ 1 − δ_PB/|F|, for all Q: kl(R̂_Q ‖ R_Q) ≤ (KL(Q ‖ P_f) + ln(2√n/δ_PB'))/n
   with δ_PB' = δ_PB/|F|. The union over F (every prior std of a grid, every objective, epoch count or
   hyperparameter chosen by looking at the certificate on S_bound) costs ln|F|:
       c = (KL(Q ‖ P) + ln(2√n/δ_PB) + ln|F|)/n.
3. kl⁻¹(·, c) is non-decreasing in its first argument and the two events fail with probability ≤ δ_MC + δ_PB:
       R_Q ≤ kl⁻¹(Bin⁻(N, S, δ_MC), c)        with probability ≥ 1 − δ over S_bound and the weight draws.
   Here δ is the total. PBB's paper states δ = 0.025 for step 2 and δ′ = 0.01 for step 1 (0.035 in all, with
   the two-sided ln(2/δ′)); PBB's code puts delta_test = 0.01 into both steps (pbb/bounds.py L164-174).

The same two steps bound the risk in bounded cross-entropy (p_min; values in [0, 1]): step 1 uses the Chernoff
bound in kl form for the mean of N independent [0, 1] variables (Hoeffding 1963, Thm 1: only independence
and the average mean are needed), R̂_CE ≤ kl⁻¹(mean, ln(1/δ_MC)/N). Each of the two certificates holds at δ
on its own, not both at once. A tie between the top logits counts as an error (margin ≤ 0), so the 0-1
certificate also covers ties.

References:
    Maurer, "A note on the PAC Bayesian theorem", arXiv:cs/0411099, 2004, Theorem 5.
    Hoeffding, "On the distribution of the number of successes in independent trials", Ann. Math. Stat. 27,
        1956, Theorem 4; "Probability inequalities for sums of bounded random variables", JASA 58, 1963, Thm 1.
    Kaas & Buhrman, "Mean, median and mode in binomial distributions", Statistica Neerlandica 34, 1980.
    Langford, "Tutorial on practical prediction theory for classification", JMLR 6, 2005, Thm 3.3.
    Pérez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvári, "Tighter risk certificates for neural networks",
        JMLR 22(227), 2021, §6 (the certificate; code mperezortiz/PBB, pbb/bounds.py L153-175).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ..bounds.kl import binomial_inverse_upper, kl_inverse_upper
from ..bounds.pacbayes import _check_delta_mc
from ..data.types import Split, as_xy
from ..errors import GapbenchError, check_positive_int, check_probability, param_error
from ..inference import EVAL_BATCH, eval_mode, margins_from_logits
from .objectives import DEFAULT_P_MIN, bounded_cross_entropy
from .prior import prior_statement

QUANTITY = "0-1 risk R_Q of the stochastic classifier Q (a fresh weight draw for every prediction)"
NOT_THE_MEAN = ("the certificate bounds the stochastic classifier Q, never the deterministic mean network; its "
                "test error is reported for comparison only")
REFERENCE = ("Maurer 2004 Thm 5 (PAC-Bayes-kl) after an exact binomial tail inversion of n·passes per-example "
             "weight draws (Hoeffding 1956 Thm 4), as in Pérez-Ortiz et al. 2021 with the δ split")


@dataclass(frozen=True)
class PacBayesCertificate:
    """R_Q ≤ `risk` with probability ≥ 1 − `delta` (module docstring); `terms` hold every component."""

    risk: float                         # the certificate on the 0-1 risk of Q
    risk_bounded_ce: float              # the certificate on Q's bounded cross-entropy risk (same δ, on its own)
    delta: float                        # the caller's total δ = delta_pacbayes + delta_mc
    terms: dict[str, float]
    test_error_stochastic: float | None  # Q's 0-1 error on test_data (one weight draw per point)
    test_error_mean: float | None       # the mean network's 0-1 error on test_data (NOT certified)
    statements: tuple[str, ...]         # what the certificate rests on
    quantity: str = QUANTITY
    reference: str = REFERENCE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        t = self.terms
        lines = [f"PAC-Bayes certificate: R_Q ≤ {self.risk:.4f} with probability ≥ {1 - self.delta:g} "
                 f"(0-1 risk of the stochastic classifier Q)",
                 f"  bounded cross-entropy risk ≤ {self.risk_bounded_ce:.4f} (p_min {t['p_min']:g})",
                 f"  Monte Carlo: R̂_MC = {t['r_hat_mc']:.5f} from N = {int(t['n_draws'])} draws "
                 f"({int(t['passes'])} passes over n = {int(t['n'])}), R̂_Q ≤ {t['r_hat_mc_upper']:.5f}",
                 f"  KL(Q‖P) = {t['kl']:.2f} nats, ln|F| = {t['log_family_size']:.3f}, kl budget "
                 f"{t['kl_budget']:.5f}",
                 f"  δ = {self.delta:g} = δ_PB {t['delta_pacbayes']:g} + δ_MC {t['delta_mc']:g}"]
        if self.test_error_stochastic is not None:
            lines.append(f"  test error: stochastic Q {self.test_error_stochastic:.4f}, mean network "
                         f"{self.test_error_mean:.4f} (not certified)")
        lines += [f"  - {s}" for s in self.statements]
        return "\n".join(lines)


def _check_mean_network(net: nn.Module, where: str) -> None:
    """Refuse floating-point buffers (BatchNorm running statistics): fitted to data, not drawn from Q, so no
    prior pays for them."""
    for name, buf in net.mean_network().named_buffers():
        if buf.is_floating_point():
            raise GapbenchError(f"The 'net' parameter of {where} has a mean network with a floating-point "
                                f"buffer '{name}' learned from data (e.g. BatchNorm running statistics). Such "
                                f"values are not weights drawn from Q, so KL(Q‖P) does not pay for them and no "
                                f"certificate holds. Fold BatchNorm into the weights first "
                                f"(gapbench.layers.fold_batchnorm) or use a network without BatchNorm.")


def _log_family_size(family_size: Any, where: str) -> float:
    if isinstance(family_size, bool) or not isinstance(family_size, int) or family_size < 1:
        raise param_error("family_size", where, "an int ≥ 1, the number of (prior, objective, hyperparameter) "
                          "choices made by looking at S_bound", family_size,
                          "Count every prior std of the grid and every choice made by comparing certificates; "
                          "1 when nothing was chosen on S_bound.")
    return math.log(family_size)          # exact for ints of any size (10**1000 included)


def _gibbs_draws(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, passes: int, gen: torch.Generator,
                 batch_size: int, p_min: float) -> tuple[int, float]:
    """Errors and summed bounded cross-entropy over `passes` passes, one weight draw per (example, pass).

    The n·passes rows (row r is example r mod n) are cut into batches of `batch_size`, so that a small S_bound
    still fills a batch; mode="per_example" gives every row its own draw whatever batch it lands in.
    """
    errors, ce, rows = 0, 0.0, len(y) * passes
    with eval_mode(net), torch.inference_mode():
        for start in range(0, rows, batch_size):
            idx = torch.arange(start, min(start + batch_size, rows), device=x.device) % len(y)
            out = net(x[idx], mode="per_example", generator=gen)
            errors += int((margins_from_logits(out, y[idx]) <= 0).sum())
            ce += float(bounded_cross_entropy(out, y[idx], p_min=p_min).double().sum())
    return errors, ce


def _test_errors(net: nn.Module, test_data: Any, gen: torch.Generator, batch_size: int,
                 where: str) -> tuple[float, float]:
    """Q's 0-1 test error (a weight draw per point) and the mean network's."""
    x, y = as_xy(test_data, where)
    y = y.to(x.device)
    wrong = {"per_example": 0, "mean": 0}
    with eval_mode(net), torch.inference_mode():
        for mode in wrong:
            for i in range(0, len(y), batch_size):
                out = net(x[i:i + batch_size], mode=mode, generator=gen)
                wrong[mode] += int((margins_from_logits(out, y[i:i + batch_size]) <= 0).sum())
    return wrong["per_example"] / len(y), wrong["mean"] / len(y)


def pacbayes_certificate(net: nn.Module, bound_data: Split | tuple[torch.Tensor, torch.Tensor], *, delta: float,
                         delta_mc: float | None = None, passes: int = 10, family_size: int = 1, seed: int = 0,
                         prior_record: Any = None, test_data: Any = None, batch_size: int = EVAL_BATCH,
                         p_min: float = DEFAULT_P_MIN) -> PacBayesCertificate:
    """Certificate on R_Q of the probabilistic network `net` (ProbNet contract) from S_bound = `bound_data`
    (module docstring). `prior_record`: how a data-dependent prior was made (a Run, a TrainedPrior, or
    (train_indices, pool)), checked disjoint from S_bound; None = a data-free prior."""
    where = "pacbayes_certificate()"
    delta = check_probability(delta, "delta", where)
    delta_mc = _check_delta_mc(delta_mc, delta, where)
    if delta_mc > 0.5:
        raise param_error("delta_mc", where, "at most 0.5 (the binomial-tail step needs it; module docstring)",
                          delta_mc, "Leave delta_mc unset for the default min(0.01, delta/2).")
    passes = check_positive_int(passes, "passes", where)
    batch_size = check_positive_int(batch_size, "batch_size", where)
    p_min = check_probability(p_min, "p_min", where)
    log_f = _log_family_size(family_size, where)
    x, y = as_xy(bound_data, where)
    n = int(y.shape[0])
    if n < 8:
        raise param_error("bound_data", where, "at least 8 points (Maurer's PAC-Bayes-kl theorem needs n ≥ 8)",
                          f"{n} points", "Certify on a larger S_bound.")
    _check_mean_network(net, where)
    prior_text = prior_statement(prior_record, bound_data, where)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    errors, ce_sum = _gibbs_draws(net, x, y.to(x.device), passes=passes, gen=gen, batch_size=batch_size,
                                  p_min=p_min)
    n_draws = n * passes
    with torch.no_grad():
        kl = float(net.kl())
    delta_pacbayes = delta - delta_mc
    budget = (kl + math.log(2 * math.sqrt(n) / delta_pacbayes) + log_f) / n
    r_upper = binomial_inverse_upper(n_draws, errors, delta_mc)
    ce_mean = min(ce_sum / n_draws, 1.0)
    ce_upper = kl_inverse_upper(ce_mean, math.log(1 / delta_mc) / n_draws)
    terms = {"r_hat_mc": errors / n_draws, "r_hat_mc_upper": r_upper, "kl": kl, "n": float(n),
             "n_draws": float(n_draws), "passes": float(passes), "delta_pacbayes": delta_pacbayes,
             "delta_mc": delta_mc, "log_family_size": log_f, "kl_budget": budget,
             "bounded_ce_mc": ce_mean, "bounded_ce_mc_upper": ce_upper, "p_min": p_min,
             "num_params": float(net.num_params())}
    test_q, test_mean = (None, None) if test_data is None else _test_errors(net, test_data, gen, batch_size, where)
    return PacBayesCertificate(kl_inverse_upper(r_upper, budget), kl_inverse_upper(ce_upper, budget), delta, terms,
                               test_q, test_mean, (prior_text, NOT_THE_MEAN,
                                                   "S_bound is an i.i.d. sample, n ≥ 8 (Maurer 2004, Thm 5)"))
