"""Property-based tests of every held-out bound over (n, k, δ, |F|): equal to a 50-digit mpmath reference,
monotone where the theory says so, ≥ k/n where the theory says so, never NaN.

Ranges: n ∈ [1, 10⁶] (log-uniform, so small n is drawn as often as large), k ∈ [0, n], δ ∈ [1e-300, 1)
(uniform and log-uniform) and |F| ∈ [1, 10**1000] (small ints and powers of ten), so δ/|F| goes far below
the smallest float.
"""

import math

import mpmath
import pytest
import reference_bounds as ref
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gapbench.bounds import heldout as ho
from gapbench.bounds.kl import TOL, binomial_inverse_beta, binomial_inverse_upper

HELDOUT = ("heldout_binomial", "heldout_kl", "heldout_hoeffding", "heldout_bernstein",
           "heldout_empirical_bernstein")
BISECTION_TOL = 2 * TOL      # binomial, kl: the upper end of a bracket ≤ TOL wide, plus float rounding
FORMULA_REL = 1e-12          # closed forms: float64 rounding of a handful of operations
FAST = settings(max_examples=40, deadline=None)

n_values = st.floats(0, 6).map(lambda e: min(10**6, max(1, int(10**e))))
deltas = st.one_of(st.floats(1e-300, 1, exclude_max=True), st.floats(0, 300).map(lambda e: 10.0 ** -e))
deltas = deltas.filter(lambda d: 1e-300 <= d < 1)
families = st.one_of(st.integers(1, 10**6), st.integers(0, 1000).map(lambda e: 10**e))


@st.composite
def cases(draw):
    n = draw(n_values)
    return n, draw(st.integers(0, n)), draw(deltas), draw(families)


def log_level(delta, family_size):
    """ln(δ/|F|), finite for any |F| (δ/|F| itself may not be a float)."""
    return math.log(delta) - math.log(family_size)


def value(name, n, k, delta, family_size, assume_var=None):
    result = ho.heldout_bound(name, n, k, delta=delta, family_size=family_size, assume_var=assume_var).value
    assert not math.isnan(result), (name, n, k, delta, family_size)
    return result


@pytest.mark.parametrize("name", [n for n in HELDOUT if n != "heldout_binomial"])
@FAST
@given(case=cases())
def test_equals_the_mpmath_reference(name, case):
    n, k, delta, family_size = case
    got = value(name, n, k, delta, family_size)
    want = ref.mp_heldout(name, n, k, delta, family_size)
    if name == "heldout_kl":
        assert want <= got <= want + BISECTION_TOL  # never below the exact value
    else:
        assert got == pytest.approx(float(want), rel=FORMULA_REL, abs=1e-15)


@settings(max_examples=40, deadline=None)
@given(case=cases(), assume_var=st.floats(1e-12, 1.0))
def test_kkb_bernstein_with_an_assumed_variance_equals_the_reference(case, assume_var):
    n, k, delta, family_size = case
    got = value("heldout_bernstein", n, k, delta, family_size, assume_var)
    want = ref.mp_heldout("heldout_bernstein", n, k, delta, family_size, assume_var)
    assert got == pytest.approx(float(want), rel=FORMULA_REL)
    if assume_var >= 0.25:  # a valid assumption for any 0-1 loss: never tighter than the assumption-free form
        assert got >= value("heldout_bernstein", n, k, delta, family_size) - 1e-12


@settings(max_examples=25, deadline=None)
@given(case=cases())
def test_binomial_equals_its_definition_at_50_digits(case):
    n, k, delta, family_size = case
    got = value("heldout_binomial", n, k, delta, family_size)
    assert ref.mp_binomial_brackets(n, k, delta, family_size, got, BISECTION_TOL), (got, case)
    if log_level(delta, family_size) > math.log(1e-300):  # representable: the closed form (isf) agrees
        assert got == pytest.approx(binomial_inverse_beta(n, k, delta / family_size), abs=1e-9)


@pytest.mark.parametrize("name", HELDOUT)
@FAST
@given(case=cases())
def test_monotone_in_k_delta_and_family(name, case):
    n, k, delta, family_size = case
    here = value(name, n, k, delta, family_size)
    if k < n and not (name == "heldout_empirical_bernstein" and k >= n / 2):
        # empirical Bernstein is not monotone in k above n/2: its V_n = k(n − k)/(n(n − 1)) falls there
        assert here <= value(name, n, k + 1, delta, family_size) + BISECTION_TOL
    assert here <= value(name, n, k, delta, family_size * 10) + BISECTION_TOL
    looser = delta / 2 if delta / 2 > 0 else None
    if looser:
        assert here <= value(name, n, k, looser, family_size) + BISECTION_TOL


@pytest.mark.parametrize("name", HELDOUT)
@FAST
@given(case=cases())
def test_nonincreasing_in_n_at_fixed_error_rate(name, case):
    n, k, delta, family_size = case
    assume(2 * n <= 10**6)
    if name == "heldout_binomial":
        # beyond the median (δ/|F| > 1/2) the value can sit below k/n (see the next test)
        assume(log_level(delta, family_size) <= math.log(0.5))
    assert value(name, 2 * n, 2 * k, delta, family_size) <= value(name, n, k, delta, family_size) + BISECTION_TOL


@pytest.mark.parametrize("name", HELDOUT)
@FAST
@given(case=cases())
def test_at_least_the_empirical_error_where_theory_says_so(name, case):
    n, k, delta, family_size = case
    bound = ho.heldout_bound(name, n, k, delta=delta, family_size=family_size)
    assert bound.terms["below_empirical"] == float(bound.value < k / n)
    # Bin⁻(n, k, δ') < k/n can occur only when δ' > 1/2: k is the median of Bin(n, k/n) (np an integer), so
    # P[Bin(n, k/n) ≤ k] ≥ 1/2 ≥ δ' puts k/n inside {p : P[Bin(n, p) ≤ k] ≥ δ'}. Every other bound is k/n plus
    # a nonnegative slack (or the largest p of a set that contains k/n).
    if name != "heldout_binomial" or log_level(delta, family_size) <= math.log(0.5):
        assert bound.value >= k / n and not bound.terms["below_empirical"]


def test_the_binomial_bound_does_fall_below_k_over_n_when_delta_is_near_one():
    bound = ho.heldout_bound("heldout_binomial", 10, 5, delta=0.99)
    assert bound.value < 0.5 and bound.terms["below_empirical"] == 1.0


@FAST
@given(case=cases())
def test_headline_is_below_every_assumption_free_bound(case):
    n, k, delta, family_size = case
    binomial = value("heldout_binomial", n, k, delta, family_size)
    for name in HELDOUT[1:]:
        assert binomial <= value(name, n, k, delta, family_size) + BISECTION_TOL, name


def test_reference_binomial_cdf_matches_a_direct_sum():
    """The 50-digit cdf used above, against the plain term-by-term sum of every pmf term."""
    with mpmath.workdps(50):
        for n, k, p in [(30, 4, 0.5), (30, 20, 0.3), (200, 0, 0.01), (200, 199, 0.999)]:
            direct = mpmath.fsum(mpmath.binomial(n, i) * mpmath.mpf(p) ** i * (1 - mpmath.mpf(p)) ** (n - i)
                                 for i in range(k + 1))
            assert abs(ref.mp_binomial_cdf(n, k, p) - direct) < mpmath.mpf(10) ** -45


def test_beta_form_rounds_to_one_where_scipy_gives_nan():
    # n = 5, k = 2, δ = 5e-108: 1 − p ≈ (δ/10)^(1/3) ≈ 1.7e-36, far below float spacing at 1 (Hypothesis found it)
    assert binomial_inverse_beta(5, 2, 5e-108) == 1.0 == binomial_inverse_upper(5, 2, 5e-108)
