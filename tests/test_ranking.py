"""The ranking scores (gapbench.ranking): hand-computed cases with the arithmetic written out, slow literal
references (tests/reference_ranking.py), invariances, and clear errors."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapbench.errors import GapbenchError
from gapbench.ranking import granulated_psi, hoeffding_weight, kendall_tau, pgdl_score, robust_sign_error, validity
from gapbench.ranking.bound_validity import significant

sys.path.insert(0, str(Path(__file__).parent))
import reference_ranking as ref  # noqa: E402

LOG2_3 = math.log2(3)


# ---- Kendall τ ---------------------------------------------------------------------------------------------

def test_kendall_tau_by_hand():
    # 4 models, 6 pairs; only (model 1, model 2) is discordant (gap 3 > 2, measure 2 < 3): τ = (5 − 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


def test_kendall_tau_of_the_gap_itself_is_one_and_of_its_negation_minus_one():
    gap = np.random.default_rng(0).random(30)
    assert kendall_tau(gap, gap) == pytest.approx(1.0)
    assert kendall_tau(-gap, gap) == pytest.approx(-1.0)


def test_kendall_tau_of_a_random_measure_is_near_zero():
    rng = np.random.default_rng(1)
    # sd of τ under independence ≈ sqrt(2(2n+5) / (9n(n−1))) ≈ 0.03 at n = 500: 0.15 is 5 sd
    assert abs(kendall_tau(rng.random(500), rng.random(500))) < 0.15


def test_kendall_tau_refuses_a_constant_measure_and_nan():
    with pytest.raises(GapbenchError, match=r"'measure' parameter of kendall_tau\(\) is constant"):
        kendall_tau([2, 2, 2], [1, 2, 3])
    with pytest.raises(GapbenchError, match=r"'gap' parameter of kendall_tau\(\) must be finite at every model. "
                                            r"Got 'nan at model 1'"):
        kendall_tau([1, 2, 3], [1, float("nan"), 3])


# ---- granulated Ψ ------------------------------------------------------------------------------------------

# a ∈ {0, 1, 2}, b ∈ {0, 1}: six models
PSI_HPS = [dict(a=a, b=b) for b in (0, 1) for a in (0, 1, 2)]
PSI_GAP = [0.1, 0.2, 0.3, 0.5, 0.4, 0.6]
PSI_MEASURE = [1, 3, 2, 5, 6, 7]


def test_granulated_psi_by_hand():
    # ψ_a: group b=0, gaps (.1,.2,.3), measures (1,3,2): pairs a0–a1 +, a0–a2 +, a1–a2 − → τ = 1/3;
    #      group b=1, gaps (.5,.4,.6), measures (5,6,7): a0–a1 −, a0–a2 +, a1–a2 + → τ = 1/3; ψ_a = 1/3.
    # ψ_b: groups a=0 (.1→.5, 1→5), a=1 (.2→.4, 3→6), a=2 (.3→.6, 2→7): all concordant, τ = 1 each; ψ_b = 1.
    # Ψ = (1/3 + 1) / 2 = 2/3.
    result = granulated_psi(PSI_HPS, PSI_MEASURE, PSI_GAP)
    assert result.per_hp == pytest.approx({"a": 1 / 3, "b": 1.0})
    assert result.groups == {"a": 2, "b": 3}
    assert result.psi == pytest.approx(2 / 3)


def test_granulated_psi_skips_groups_of_one_model_on_an_incomplete_grid():
    # drop model (a=2, b=1): ψ_a's group b=1 is now (.5,.4) vs (5,6): τ = −1, so ψ_a = (1/3 − 1)/2 = −1/3;
    # ψ_b's group a=2 has a single model and is skipped: ψ_b = mean(1, 1) = 1; Ψ = 1/3.
    result = granulated_psi(PSI_HPS[:5], PSI_MEASURE[:5], PSI_GAP[:5])
    assert result.per_hp == pytest.approx({"a": -1 / 3, "b": 1.0})
    assert result.groups == {"a": 2, "b": 2}
    assert result.psi == pytest.approx(1 / 3)


def random_grid_case(seed: int, sizes: dict[str, int], ties: bool = False):
    rng = np.random.default_rng(seed)
    hps = ref.grid(sizes)
    draw = (lambda: rng.integers(0, 4, len(hps)).astype(float)) if ties else (lambda: rng.random(len(hps)))
    return hps, draw(), draw()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(),
       sizes=st.fixed_dictionaries({"a": st.integers(2, 3), "b": st.integers(2, 3), "c": st.integers(1, 2)}))
def test_granulated_psi_matches_the_literal_eq4(seed, ties, sizes):
    sizes = {k: v for k, v in sizes.items() if v > 1}
    hps, measure, gap = random_grid_case(seed, sizes, ties)
    expected_psi, expected_per_hp = ref.psi(hps, measure, gap)
    result = granulated_psi(hps, measure, gap)
    assert result.psi == pytest.approx(expected_psi)
    assert result.per_hp == pytest.approx(expected_per_hp)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_tau_and_psi_are_invariant_to_a_strictly_increasing_transform_of_the_measure(seed):
    hps, measure, gap = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    transformed = np.exp(3 * measure) + measure**3 - 7      # strictly increasing on [0, 1]
    assert kendall_tau(transformed, gap) == pytest.approx(kendall_tau(measure, gap))
    assert granulated_psi(hps, transformed, gap).psi == pytest.approx(granulated_psi(hps, measure, gap).psi)


def test_psi_of_the_gap_is_one_and_of_a_random_measure_near_zero():
    hps, measure, gap = random_grid_case(2, {"a": 4, "b": 4, "c": 4, "d": 3})
    assert granulated_psi(hps, gap, gap).psi == pytest.approx(1.0)
    # 192 models; each ψ_i averages 48 group τ's: the sd of Ψ is ≈ 0.05, so 0.2 is 4 sd
    assert abs(granulated_psi(hps, measure, gap).psi) < 0.2


def test_psi_refuses_repeats():
    with pytest.raises(GapbenchError, match=r"'hps' parameter of granulated_psi\(\) must be one model per "
                                            r"hyperparameter combination.*Average the repeats"):
        granulated_psi([dict(a=0), dict(a=1), dict(a=1)], [1, 2, 3], [1, 2, 3])


# ---- PGDL conditional mutual information --------------------------------------------------------------------

def pgdl_hand_case():
    # a, b, c ∈ {0, 1}; gap = 4a + 2b + c (all distinct); measure = 4a + 2b − c (c ranked the wrong way).
    hps = ref.grid({"a": 2, "b": 2, "c": 2})
    gap = [4 * h["a"] + 2 * h["b"] + h["c"] for h in hps]
    measure = [4 * h["a"] + 2 * h["b"] - h["c"] for h in hps]
    return hps, measure, gap


def test_pgdl_score_by_hand():
    # Two 2x2 tables recur (rows gap +/−, columns measure +/−, over the 4 ordered pairs of a cell):
    #   a "mixed" one such as [[0,1],[1,2]]: p = (0, 1/4, 1/4, 1/2), marginals (1/4, 3/4) both ways,
    #     MI0 = 2·(1/4)·log2((1/4)/(3/16)) + (1/2)·log2((1/2)/(9/16)) = (1/2)log2(4/3) + (1/2)log2(8/9)
    #         = 2.5 − 1.5·log2 3,   H0 = H(1/4, 3/4) = 2 − 0.75·log2 3;
    #   a "perfect" one such as [[1,0],[0,3]]: MI = H = H0. A cell whose 4 pairs share one sign: MI = H = 0.
    mi0, h0 = 2.5 - 1.5 * LOG2_3, 2 - 0.75 * LOG2_3
    # {a, b}: 16 cells (a_i, a_j, b_i, b_j), pairs vary in c. If 4Δa + 2Δb ≠ 0 it dominates ±Δc: one sign,
    #   MI = H = 0 (12 cells). The 4 cells with Δa = Δb = 0: self-pairs (−,−)×2, c 1 vs 0 (+,−), 0 vs 1 (−,+):
    #   mixed. Score = (4·MI0/16) / (4·H0/16) = MI0/H0.
    ab = mi0 / h0
    # {a, c}: pairs vary in b. Δa ≠ 0 (8 cells): one sign. Δa = 0, Δc = 0 (4 cells): self-pairs (−,−)×2,
    #   b 1 vs 0 (+,+), 0 vs 1 (−,−): perfect. Δa = 0, Δc = ±1 (4 cells): Δb = 0 gives (±,∓)×2 and
    #   Δb = ±1 follows 2Δb: mixed. Score = ((4·H0 + 4·MI0)/16) / (8·H0/16) = 1/2 + MI0/(2·H0).
    ac = 0.5 + mi0 / (2 * h0)
    # {b, c}: pairs vary in a; a 1 vs 0 gives (+,+), 0 vs 1 (−,−) in every cell. Δb = Δc = 0 (4 cells):
    #   self-pairs (−,−)×2: perfect. Δb = 0, Δc = ±1 (4 cells): mixed. Δb ≠ 0 (8 cells): 2Δb dominates:
    #   perfect. Score = ((12·H0 + 4·MI0)/16) / H0 = 3/4 + MI0/(4·H0).
    bc = 0.75 + mi0 / (4 * h0)
    result = pgdl_score(*pgdl_hand_case())
    assert result.per_set == pytest.approx({("a", "b"): ab, ("a", "c"): ac, ("b", "c"): bc})
    assert result.score == pytest.approx(ab) and ab == pytest.approx(0.151066, abs=1e-6)


def test_pgdl_score_matches_the_literal_scoring_loop_on_the_hand_case():
    assert pgdl_score(*pgdl_hand_case()).score == pytest.approx(ref.pgdl_cmi(*pgdl_hand_case()), rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(),
       sizes=st.fixed_dictionaries({"a": st.integers(2, 3), "b": st.integers(2, 3), "c": st.integers(2, 3),
                                    "d": st.integers(1, 2)}))
def test_pgdl_score_matches_the_literal_scoring_loop(seed, ties, sizes):
    sizes = {k: v for k, v in sizes.items() if v > 1}
    hps, measure, gap = random_grid_case(seed, sizes, ties)
    assert pgdl_score(hps, measure, gap).score == pytest.approx(ref.pgdl_cmi(hps, measure, gap), rel=1e-9,
                                                                abs=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans())
def test_pgdl_score_is_symmetric_in_negating_both_and_invariant_to_increasing_transforms(seed, ties):
    hps, measure, gap = random_grid_case(seed, {"a": 2, "b": 3, "c": 2}, ties)
    score = pgdl_score(hps, measure, gap).score
    assert pgdl_score(hps, -measure, -gap).score == pytest.approx(score, abs=1e-12)
    assert pgdl_score(hps, np.exp(measure) * 5 + 1, gap).score == pytest.approx(score, abs=1e-12)


def test_pgdl_score_of_the_gap_is_maximal_and_of_a_random_measure_near_zero():
    hps, measure, gap = random_grid_case(3, {"a": 3, "b": 3, "c": 3, "d": 2})
    assert pgdl_score(hps, gap, gap).score == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in pgdl_score(hps, 2 * gap + 1, gap).per_set.values())
    assert 0 <= pgdl_score(hps, measure, gap).score < 0.05


def test_pgdl_score_refuses_what_the_scoring_program_refuses():
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=r"'hps' parameter of pgdl_score\(\) must be a complete grid of "
                                            r"8 combinations \(2 x 2 x 2\). Got '7 combinations'"):
        pgdl_score(hps[:7], measure[:7], gap[:7])
    with pytest.raises(GapbenchError, match=r"one model per hyperparameter combination"):
        pgdl_score(hps + hps[:1], measure + [0], gap + [0])
    with pytest.raises(GapbenchError, match=r"must be dicts with at least 3 varied hyperparameter"):
        pgdl_score(ref.grid({"a": 2, "b": 2}), [1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(GapbenchError, match=r"'gap' parameter of pgdl_score\(\) orders no pair"):
        pgdl_score(hps, measure, [0.5] * 8)


# ---- robust sign error ---------------------------------------------------------------------------------------

def test_robust_sign_error_by_hand_without_noise_filtering():
    # models 00, 10, 01, 11 (a, b); environments where a varies: (00,10): gap .1→.2, measure 1→2: loss 0;
    # (01,11): gap .3→.25, measure 3→3 (tie): loss 1/2. Where b varies: (00,01): .1→.3, 1→3: 0; (10,11):
    # .2→.25, 2→3: 0. Each appears in both orders.
    hps = ref.grid({"a": 2, "b": 2})           # order: 00, 01, 10, 11
    gap = [0.1, 0.3, 0.2, 0.25]
    measure = [1, 3, 2, 3]
    result = robust_sign_error(hps, measure, gap, n_test=None, min_ess=1)
    assert sorted(result.env_losses["a"]) == [0, 0, 0.5, 0.5]
    assert sorted(result.env_losses["b"]) == [0, 0, 0, 0]
    assert result.summary("mean") == pytest.approx({"a": 0.25, "b": 0.0, "all": 0.125})
    # p90 of the 8 losses (0 x 6, .5 x 2): position 0.9·7 = 6.3 lies between two 0.5's
    assert result.summary("p90")["all"] == pytest.approx(0.5)
    assert result.worst == 0.5


def test_robust_sign_error_by_hand_with_hoeffding_weights_and_the_ess_filter():
    # a single hp, two seeds per value; n = 1000 test points. Pairs (a=0 seed, a=1 seed):
    #   gaps .10/.20 (Δ .1): w_H = (1 − 2e^{−2·1000·.05²})² = (1 − 2e^{−5})², measures 1/2 concordant: loss 0
    #   gaps .10/.50 (Δ .4): w_H = (1 − 2e^{−80})², measures 1/3: loss 0
    #   gaps .30/.20 (Δ .1): w_H = (1 − 2e^{−5})², measures 1.5/2 (gap down, measure up): loss 1
    #   gaps .30/.50 (Δ .2): w_H = (1 − 2e^{−20})², measures 1.5/3: loss 0
    # weights w = w_H − 1/2; env loss = w₃ / Σw; ESS = (Σw)² / Σw² ≈ 3.997.
    hps = [dict(a=0), dict(a=0), dict(a=1), dict(a=1)]
    gap, measure = [0.10, 0.30, 0.20, 0.50], [1, 1.5, 2, 3]
    w = [(1 - 2 * math.exp(-2 * 1000 * d**2)) ** 2 - 0.5 for d in (0.05, 0.2, 0.05, 0.1)]
    env = w[2] / sum(w)
    ess = sum(w) ** 2 / sum(x * x for x in w)
    assert 3.99 < ess < 4
    kept = robust_sign_error(hps, measure, gap, n_test=1000, min_ess=3.99)
    assert kept.env_losses["a"] == pytest.approx([env, env]) and env == pytest.approx(0.24312, abs=1e-5)
    assert len(robust_sign_error(hps, measure, gap, n_test=1000, min_ess=4).env_losses["a"]) == 0
    assert math.isnan(robust_sign_error(hps, measure, gap, n_test=1000, min_ess=4).worst)


def test_hoeffding_weight_by_hand():
    # Δ = 0.02, n = 10 000: 2·exp(−2·10⁴·0.01²) = 2e^{−2}; w = (1 − 2e^{−2})²
    assert hoeffding_weight(np.array([0.02]), 10_000)[0] == pytest.approx((1 - 2 * math.exp(-2)) ** 2)
    assert hoeffding_weight(np.array([0.0]), 10_000)[0] == 0.0


@pytest.mark.parametrize("n_test,error_1,error_2", [(200, 0.3, 0.5), (1000, 0.1, 0.2), (500, 0.02, 0.12)])
def test_hoeffding_weight_lower_bounds_the_monte_carlo_probability_both_errors_are_within_half_the_gap(
        n_test, error_1, error_2):
    # Two test errors measured on n points each (binomial / n); Hoeffding: each lies within Δ/2 of its mean
    # with probability ≥ 1 − 2·exp(−2n(Δ/2)²), both (independent test sets) with ≥ w_H(Δ); then the measured
    # order is the true one. 20 000 draws: the frequency's sd is < 0.004.
    rng = np.random.default_rng(n_test)
    half = (error_2 - error_1) / 2
    measured_1 = rng.binomial(n_test, error_1, 20_000) / n_test
    measured_2 = rng.binomial(n_test, error_2, 20_000) / n_test
    both_within = (np.abs(measured_1 - error_1) < half) & (np.abs(measured_2 - error_2) < half)
    weight = hoeffding_weight(np.array([error_2 - error_1]), n_test)[0]
    assert 0.5 < weight <= both_within.mean() + 0.01
    assert (measured_1 < measured_2).mean() >= weight - 0.01


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), repeats=st.integers(1, 3),
       n_test=st.sampled_from([None, 200, 2000]), min_ess=st.sampled_from([0.5, 1.0, 2.0]))
def test_robust_sign_error_matches_the_literal_environment_loops(seed, ties, repeats, n_test, min_ess):
    hps, _, _ = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    hps = hps * repeats                                       # seeds: equal dicts
    rng = np.random.default_rng(seed)
    measure = rng.integers(0, 4, len(hps)).astype(float) if ties else rng.random(len(hps))
    gap = rng.random(len(hps)) * 0.3
    expected = ref.robust_losses(hps, measure, gap, n_test, min_ess)
    result = robust_sign_error(hps, measure, gap, n_test=n_test, min_ess=min_ess)
    for name, losses in expected.items():
        assert sorted(result.env_losses[name]) == pytest.approx(losses)


def test_robust_sign_error_of_the_gap_is_zero_and_of_its_negation_one():
    hps, _, gap = random_grid_case(4, {"a": 3, "b": 2, "c": 2})
    # 4 seeds per combination: 16 pairs of weight 1 per environment, ESS 16 ≥ the paper's 12
    hps, gap = hps * 4, np.tile(gap, 4) + np.repeat([0.0, 0.01, 0.02, 0.03], len(gap))
    assert len(robust_sign_error(hps, gap, gap, n_test=None).env_losses["all"]) == 2 * (3 * 4 + 6 + 6)
    # (unordered environments: a varies, 3 value pairs x 4 (b, c); b varies, 6 (a, c); c varies, 6; both orders)
    assert robust_sign_error(hps, gap, gap, n_test=None).worst == 0.0
    assert robust_sign_error(hps, -gap, gap, n_test=None).summary("mean")["all"] == 1.0


# ---- validity ----------------------------------------------------------------------------------------------

def test_validity_by_hand():
    # bound vs test error: .5 ≥ .3; .2 < .25 (violation by .05); 1.2 ≥ .1; inf ≥ .2.
    # k = 1 of 4; vacuous: 1.2 and inf, 2/4; bound − error = (.2, −.05, 1.1, inf): median (.2 + 1.1)/2 = .65.
    # Clopper–Pearson at 95%, k = 1: lower = 1 − 0.975^{1/4} (Beta(1, 4) quantile in closed form).
    result = validity([0.5, 0.2, 1.2, np.inf], [0.3, 0.25, 0.1, 0.2])
    assert (result.n_models, result.violations, result.violation_rate) == (4, 1, 0.25)
    assert result.largest_violation == pytest.approx(0.05)
    assert result.vacuity == 0.5 and result.median_tightness == pytest.approx(0.65)
    assert result.ci_low == pytest.approx(1 - 0.975 ** 0.25)
    assert (result.ci_low, result.ci_high) == pytest.approx(ref.clopper_pearson(1, 4, 0.95))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 1000), confidence=st.sampled_from([0.9, 0.95, 0.99]))
def test_validity_interval_matches_beta_quantiles_and_covers_the_rate(n, seed, confidence):
    rng = np.random.default_rng(seed)
    test_error, bound = rng.random(n), rng.random(n) * 1.5
    result = validity(bound, test_error, confidence=confidence)
    assert result.violations == int((bound < test_error).sum())
    assert (result.ci_low, result.ci_high) == pytest.approx(ref.clopper_pearson(result.violations, n, confidence))
    assert result.ci_low <= result.violation_rate <= result.ci_high


def test_significant_violations_by_hand():
    # n = 100 test points, N = 2 models, confidence 0.9: δ/N = 0.05. Model 0: 10 errors, bound 0.02; the
    # one-sided lower limit is the 5 % quantile of Beta(10, 91) ≈ 0.0545 > 0.02: significant. Model 1: 10
    # errors, bound 0.08 < 0.1 (a violation) but above 0.0545: not significant.
    lower = ref.clopper_pearson(10, 100, 0.9)[0]             # its two-sided 90 % lower end = 5 % quantile
    assert 0.05 < lower < 0.06
    result = validity([0.02, 0.08], [0.1, 0.1], confidence=0.9, n_test=100)
    assert result.violations == 2 and result.significant_violations == 1
    assert validity([0.02, 0.08], [0.1, 0.1]).significant_violations is None
    with pytest.raises(GapbenchError, match=r"'test_error' parameter of validity\(\) must be error counts over "
                                            r"n_test = 100 points"):
        validity([0.5], [0.1234], n_test=100)


def test_significant_violations_of_valid_bounds_are_rare_by_monte_carlo():
    # bounds equal to the true errors (valid, tight) of 20 models, 2 000 simulated test sets of 300 points:
    # the fraction of test sets that flag any model must be ≤ δ = 0.1 (plus 3 sd of the estimate, 0.02).
    rng = np.random.default_rng(7)
    true_error = rng.uniform(0.01, 0.4, 20)
    measured = rng.binomial(300, true_error, size=(2000, 20)) / 300
    flagged = [significant(true_error, row, 300, 0.1, "validity()") > 0 for row in measured]   # validity's core
    assert np.mean(flagged) <= 0.1 + 0.02


def test_validity_without_violation_and_its_errors():
    result = validity([0.5, 0.2], [0.1, 0.2])             # a bound equal to the test error holds
    assert result.violations == 0 and result.largest_violation == 0.0 and result.ci_low == 0.0
    with pytest.raises(GapbenchError, match=r"'test_error' parameter of validity\(\) must be errors in \[0, 1\]"):
        validity([0.5, 0.6], [0.1, 1.2])
    with pytest.raises(GapbenchError, match=r"'bound' parameter of validity\(\) must be a 1-d array of floats, "
                                            r"\+inf allowed, no NaN"):
        validity([0.5, float("nan")], [0.1, 0.2])
    with pytest.raises(GapbenchError, match=r"'confidence' parameter of validity\(\) must be a float in \(0, 1\)"):
        validity([0.5], [0.1], confidence=95)


# ---- common input errors -----------------------------------------------------------------------------------

SCORES = [(granulated_psi, "granulated_psi"), (pgdl_score, "pgdl_score"), (robust_sign_error, "robust_sign_error")]


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_length_mismatches(score, name):
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=rf"'gap' parameter of {name}\(\) must be an array of length 8 "
                                            r"\(one value per model\). Got 'length 7'"):
        score(hps, measure, gap[:7])
    with pytest.raises(GapbenchError, match=rf"'hps' parameter of {name}\(\) must be a list of 8 dicts"):
        score(hps[:7], measure, gap)


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_a_hyperparameter_with_a_single_value(score, name):
    hps, measure, gap = pgdl_hand_case()
    hps = [dict(h, width=64) for h in hps]
    with pytest.raises(GapbenchError, match=rf"hyperparameter 'width' in the 'hps' parameter of {name}\(\) "
                                            r"takes a single value \(64\) across all 8 models.*drop 'width'"):
        score(hps, measure, gap)


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_mismatched_keys_and_nan(score, name):
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=rf"'hps' parameter of {name}\(\) must be dicts with the same keys"):
        score(hps[:7] + [dict(a=0, b=0)], measure, gap)
    with pytest.raises(GapbenchError, match=rf"'measure' parameter of {name}\(\) must be finite at every model"):
        score(hps, measure[:7] + [float("inf")], gap)


@pytest.mark.parametrize("score", [score for score, _ in SCORES])
def test_scores_do_not_mutate_their_inputs(score):
    hps, measure, gap = pgdl_hand_case()
    measure_arr, gap_arr = np.array(measure, float), np.array(gap, float)
    hps_before = [dict(h) for h in hps]
    score(hps, measure_arr, gap_arr)
    assert hps == hps_before
    assert measure_arr.tolist() == measure and gap_arr.tolist() == gap
