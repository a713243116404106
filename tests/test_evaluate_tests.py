"""The verdicts of the five tests on hand-made families of models whose answer is known in closed form
(power laws in m, bounds above or below the test error); no training."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from gapbench.evaluation.nk_tests import GROWS, m_test, margin_applies, sprime_test
from gapbench.evaluation.scores import cost_test, ranking_test, validity_test
from gapbench.evaluation.values import Value
from gapbench.measures import MEASURES
from gapbench.quantity import builtin_quantity, quantity_of

COMPLEXITY = builtin_quantity(MEASURES.get("bartlett2017_complexity"), "measure")


def _measure(fn=None):
    return quantity_of(fn or (lambda model, data, init=None: 0.0), name="m", origin="test", spec="m",
                       kind="measure")


def _bound():
    return quantity_of(lambda model, data, *, delta: None, name="b", origin="test", spec="b", kind="bound")


def _models(ms, test_error, **extra):
    return [SimpleNamespace(id=f"{m}-{i}", m=m, test_error=test_error(m), train_error=0.0, values=extra,
                            gap=test_error(m), hp={"m": m, "seed": i}) for i, m in enumerate(ms)]


MS = [128, 256, 512, 1024]


def test_a_complexity_growing_faster_than_root_m_grows_while_the_error_falls():
    models = _models(MS, lambda m: m ** -0.4)
    values = {x.id: Value(10.0 * x.m ** 0.7, 0.1) for x in models}      # C / (γ√m) ∝ m^0.2
    result = m_test(COMPLEXITY, models, values, gamma=10.0)
    assert margin_applies(COMPLEXITY)
    assert result.slope == pytest.approx(0.7) and result.slope_normalized == pytest.approx(0.2)
    assert result.slope_test_error == pytest.approx(-0.4)
    assert result.verdict == GROWS
    assert result.normalized[0] == pytest.approx(10.0 * 128 ** 0.7 / (10.0 * math.sqrt(128)))


def test_dividing_by_gamma_root_m_decides_for_a_complexity_and_not_for_a_bound():
    models = _models(MS, lambda m: m ** -0.4)
    values = {x.id: Value(x.m ** 0.3, 0.1) for x in models}             # raw slope 0.3, ÷ √m: −0.2
    assert m_test(COMPLEXITY, models, values, gamma=10.0).verdict == "falls with the error"
    bound = m_test(_bound(), models, values, gamma=10.0)
    assert bound.verdict == GROWS and bound.slope_normalized is None


def test_an_error_that_does_not_fall_makes_the_m_test_inconclusive_and_failures_are_counted():
    models = _models(MS, lambda m: 0.1)
    values = {x.id: Value(float(x.m), 0.1) for x in models}
    values[models[0].id] = Value(None, 0.1, "raised", "boom")
    result = m_test(_measure(), models, values, gamma=None)
    assert result.verdict.startswith("inconclusive") and result.n_failed == 1 and result.m == MS[1:]


def test_the_s_prime_test_compares_each_epsilon_with_the_implied_eps_unif():
    models = _models([64, 128], lambda m: 0.1, sprime_error=0.9)         # implied ε_unif = 0.8
    for model, train in zip(models, (0.0, 0.05), strict=True):
        model.train_error = train
    above = {x.id: Value(x.train_error + 0.85, 0.1) for x in models}
    sprime = {x.id: Value(1.0, 0.1) for x in models}
    held = sprime_test(_bound(), models, above, sprime, None)
    assert held.implied_eps_unif == pytest.approx([0.8, 0.8]) and held.epsilon == pytest.approx([0.85, 0.85])
    assert held.verdict.startswith("consistent with uniform convergence") and held.below == 0
    below = {models[0].id: Value(0.5, 0.1), models[1].id: Value(0.95, 0.1)}
    low = sprime_test(_bound(), models, below, sprime, None)
    assert low.below == 1 and low.verdict.startswith("below NK's limit on 1 of 2")
    plain = sprime_test(_measure(), models, above, sprime, None)
    assert plain.verdict.startswith("not applicable") and plain.epsilon == [None, None]


def test_validity_says_invalid_only_when_violations_exceed_delta_at_95_percent():
    models = _models([100] * 40, lambda m: 0.3)
    too_low = {x.id: Value(0.2, 0.1) for x in models}
    assert validity_test(models, too_low, 0.05).verdict.startswith("INVALID: 40 of 40")
    fine = {x.id: Value(0.5, 0.1) for x in models}
    assert validity_test(models, fine, 0.05).verdict == "valid on every model (40)"
    one = dict(fine) | {models[0].id: Value(0.2, 0.1)}                   # 1/40: CP lower end 0.0006 < δ
    result = validity_test(models, one, 0.05)
    assert result.verdict.startswith("violations within δ") and result.largest_violation == pytest.approx(0.1)


def test_ranking_negates_a_higher_is_better_measure_and_reports_why_a_score_is_missing():
    margin = builtin_quantity(MEASURES.get("median_margin"), "measure")
    models = _models([100, 200, 300, 400], lambda m: 1.0 / m)
    values = {x.id: Value(float(x.m), 0.1) for x in models}            # larger margin, smaller gap
    result = ranking_test(margin, models, values, ["seed"], n_test=1000)
    assert result.oriented and result.scores["gap"]["tau"] == pytest.approx(1.0)
    assert result.scores["gap"]["psi"] is None and "seed" in result.reasons["gap"]["psi"]


def test_cost_is_the_median_over_successful_timings():
    values = [Value(1.0, 2.0), Value(1.0, 4.0), Value(None, 100.0, "raised", "x"), Value(1.0, 3.0)]
    result = cost_test(COMPLEXITY, values)
    assert result.seconds_per_model == 3.0 and result.needs == ("data", "init")


def _row(name, psi, pgdl, tau, sharpness=False):
    return {"quantity": name, "psi_gap": psi, "pgdl_gap": pgdl, "tau_gap": tau, "sharpness": sharpness}


def test_the_closing_note_is_computed_from_the_scores():
    from gapbench.evaluation.leaderboard import closing_note
    rows = [_row("jiang2020_pacbayes_flatness", 0.5, 0.2, 0.4, True), _row("spectral_product", 0.1, 0.05, -0.3),
            _row("frobenius_product", -0.1, 0.01, 0.2), _row("median_margin", 0.3, None, 0.1)]
    note = " ".join(closing_note(rows, {}))
    assert "Top five by Ψ (vs the gap): jiang2020_pacbayes_flatness (0.5), median_margin (0.3), " \
           "spectral_product (0.1), frobenius_product (-0.1)." in note
    assert "Top five by the PGDL score: jiang2020_pacbayes_flatness (0.2), spectral_product (0.05)" in note
    assert "measures lead (best by Ψ: jiang2020_pacbayes_flatness; 1 of the top five" in note
    assert "1 of 2 correlate negatively" in note
    flipped = [_row("spectral_product", 0.9, 0.3, -0.3), *rows[:1]]
    note = " ".join(closing_note(flipped, {}))
    assert "do not lead (best by Ψ: spectral_product" in note and "all correlate negatively" in note
