"""Held-out bounds at the edges: astronomical |F|, n = 1, k ∈ {0, n}, δ down to the smallest subnormal,
the assumed-variance Bernstein form, and the closed-form (Beta isf) binomial inversion."""

import math

import pytest
from scipy import stats

from gapbench.bounds import heldout as ho
from gapbench.bounds.kl import binomial_inverse_beta, binomial_inverse_log, binomial_inverse_upper, binomial_log_cdf
from gapbench.errors import GapbenchError

HELDOUT = tuple(ho.REFS)
SMALLEST_SUBNORMAL = 5e-324


@pytest.mark.parametrize("name", HELDOUT)
@pytest.mark.parametrize("n,k", [(1, 0), (1, 1), (7, 0), (7, 7), (10**6, 0), (10**6, 10**6), (10**6, 1234)])
@pytest.mark.parametrize("delta", [0.5, 1e-300, SMALLEST_SUBNORMAL])
@pytest.mark.parametrize("family_size", [1, 10**1000])
def test_every_edge_gives_a_valid_number(name, n, k, delta, family_size):
    b = ho.heldout_bound(name, n, k, delta=delta, family_size=family_size)
    assert not math.isnan(b.value) and b.value >= k / n
    # finite everywhere except Maurer–Pontil's 7C·L/(3(n − 1)) at n = 1, which is +∞ (vacuous, documented)
    assert math.isfinite(b.value) or (name == "heldout_empirical_bernstein" and n == 1)
    assert b.terms["log_family_size"] == pytest.approx(math.log(family_size))
    assert b.terms["log_confidence"] == pytest.approx(math.log(family_size) - math.log(delta))


def test_astronomical_family_in_log_space():
    # k = 0: Bin⁻ = 1 − (δ/|F|)^(1/n) exactly, here 1 − exp(−L/n) with L = 1000·ln 10 + ln 20
    log_term = 1000 * math.log(10) - math.log(0.05)
    assert ho.heldout_binomial_value(10**6, 0, 0.05, 10**1000) == pytest.approx(-math.expm1(-log_term / 10**6),
                                                                               rel=1e-9)
    assert ho.hoeffding_slack(10**6, 0.05, 10**1000) == pytest.approx(math.sqrt(log_term / 2e6), rel=1e-14)
    assert ho.heldout_binomial_value(1000, 0, 0.05, 10**1000) > ho.heldout_binomial_value(1000, 0, 0.05, 10**999)


def test_log_cdf_below_float_underflow():
    # P[Bin(1000, 0.9) ≤ 0] = 0.1^1000: scipy's log(cdf) is −inf, the log-space sum is exact
    assert stats.binom.logcdf(0, 1000, 0.9) == -math.inf
    assert binomial_log_cdf(0, 1000, 0.9) == pytest.approx(1000 * math.log(0.1), rel=1e-12)
    # k = 2: ln[C(1000,2)·0.9²·0.1⁹⁹⁸ + 1000·0.9·0.1⁹⁹⁹ + 0.1¹⁰⁰⁰] by hand
    terms = [math.log(math.comb(1000, i)) + i * math.log(0.9) + (1000 - i) * math.log(0.1) for i in range(3)]
    top = max(terms)
    assert binomial_log_cdf(2, 1000, 0.9) == pytest.approx(top + math.log(sum(math.exp(t - top) for t in terms)),
                                                           rel=1e-12)


def test_beta_isf_where_ppf_of_one_minus_delta_fails():
    # 1 − 1e-20 rounds to 1 and beta.ppf(1) = 1; isf keeps the level: Bin⁻(10⁶, 0, δ) = 1 − δ^(1e-6)
    assert stats.beta.ppf(1 - 1e-20, 1, 10**6) == 1.0
    exact = -math.expm1(math.log(1e-20) / 10**6)
    assert binomial_inverse_beta(10**6, 0, 1e-20) == pytest.approx(exact, rel=1e-9)
    assert binomial_inverse_upper(10**6, 0, 1e-20) == pytest.approx(exact, rel=1e-7)
    assert binomial_inverse_log(10**6, 0, -1e4) == pytest.approx(-math.expm1(-1e4 / 10**6), rel=1e-7)
    with pytest.raises(GapbenchError, match=r"The 'log_delta' parameter of binomial_inverse_log\(\) must be a "
                                            r"finite float < 0"):
        binomial_inverse_log(10, 1, 0.0)


def test_assumed_variance_is_an_assumption_about_r():
    """The issue's example: assume_var = 1e-6 at k = 480 of n = 1000 gives 0.482, below the exact binomial
    bound 0.507 (impossible for a valid assumption-free bound); the default form stays above it."""
    binomial = ho.heldout_binomial_value(1000, 480, 0.05)
    assumed = ho.heldout_bound("heldout_bernstein", 1000, 480, delta=0.05, assume_var=1e-6)
    free = ho.heldout_bound("heldout_bernstein", 1000, 480, delta=0.05)
    assert assumed.value == pytest.approx(0.482, abs=5e-4) and binomial == pytest.approx(0.507, abs=5e-4)
    assert assumed.value < binomial < free.value
    assert assumed.terms["var_assumed"] == 1e-6 and "var_assumed" not in free.terms
    assert any(a.startswith("assumes Var ≤ 1e-06") for a in assumed.assumptions)
    assert not any("Var" in a for a in free.assumptions)
    # the free form is never looser than KKB's with the always-valid var = 1/4 (p(1 − p) ≤ 1/4)
    quarter = ho.heldout_bound("heldout_bernstein", 1000, 480, delta=0.05, assume_var=0.25)
    assert free.value <= quarter.value


def test_assumption_free_bernstein_solves_its_inequality():
    n, k, delta = 500, 40, 0.01
    p = ho.heldout_bernstein_value(n, k, delta)
    log_term = -math.log(delta)
    gap = p - k / n - 2 * log_term / (3 * n) - math.sqrt(2 * p * (1 - p) * log_term / n)
    assert abs(gap) < 1e-12  # p is a root: equality at the largest admissible p
    assert ho.heldout_bernstein_value(n, n, delta) == 1.0 and ho.heldout_bernstein_value(1, 1, 0.5) == 1.0  # a ≥ 1


def test_big_family_is_accepted_but_not_a_float():
    with pytest.raises(GapbenchError, match=r"The 'family_size' parameter of heldout_kl\(\) must be an int >= 1\. "
                                            r"Got 1e\+100 instead\."):
        ho.heldout_bound("heldout_kl", 10, 1, delta=0.05, family_size=1e100)
