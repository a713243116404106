"""The verdicts of the five tests on hand-made families of models whose answer is known in closed form
(power laws in m, bounds above or below the test error); no training."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gapbench.evaluation.nk_tests import GROWS, m_test, margin_applies, sprime_test
from gapbench.evaluation.scores import SCORES, cost_test, ranking_test, validity_test
from gapbench.evaluation.values import Value
from gapbench.measures import MEASURES
from gapbench.quantity import builtin_quantity, declare, quantity_of

sys.path.insert(0, str(Path(__file__).parent))
import reference_ranking as ref  # noqa: E402

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


def quick_like_zoo(seed: int):
    """An in-memory zoo shaped like mnist-hparams' quick preset: MLPs (depth 1/3, width 64/256) and the CNN
    (depth 2, width 8) x lr x batch size x weight decay x 2 seeds = 80 models, of which 6 are capped (not
    among the zoo's models) and one more has no value of the measure."""
    rng = np.random.default_rng(seed)
    models = []
    for arch in ("mlp", "cnn"):
        shapes = itertools.product([1, 3], [64, 256]) if arch == "mlp" else [(2, 8)]
        for (depth, width), lr, batch, decay, s in itertools.product(shapes, [0.02, 0.1], [32, 128], [0.0, 5e-4],
                                                                      [0, 1]):
            hp = dict(dataset="mnist", arch=arch, depth=depth, width=width, lr=lr, batch_size=batch,
                      weight_decay=decay, n_train=500, seed=s)
            test_error = 0.05 + 0.1 * rng.random()
            models.append(SimpleNamespace(id=f"m{len(models)}", hp=hp, test_error=test_error, train_error=0.0,
                                          gap=test_error))
    capped = {3, 17, 40, 41, 66, 77}                         # 40, 41: both seeds of one MLP grid point
    models = [m for k, m in enumerate(models) if k not in capped]
    values = {m.id: Value(float(rng.random()), 0.1) for m in models}
    values[models[10].id] = Value(None, 0.1, "raised", "boom")
    return models, values


def test_ranking_computes_psi_and_pgdl_on_a_zoo_with_two_architectures_seeds_and_capped_models():
    models, values = quick_like_zoo(0)
    varied = ["arch", "batch_size", "dataset", "depth", "lr", "seed", "weight_decay", "width"]  # 'dataset' is
    result = ranking_test(_measure(), models, values, varied, n_test=2000,                   # constant: dropped
                          seeds_hint="e.g. more seeds")
    ok = [m for m in models if values[m.id].ok]
    hps = [{k: m.hp[k] for k in ("arch", "batch_size", "depth", "lr", "weight_decay", "width")} for m in ok]
    measure, gap = [values[m.id].value for m in ok], [m.gap for m in ok]
    psi, per_hp, groups = ref.psi(hps, measure, gap)
    assert result.n_models == 74 and result.n_failed == 1
    assert result.scores["gap"]["psi"] == pytest.approx(psi) and result.per_hp_psi == pytest.approx(per_hp)
    # 39 grid points: the MLPs' 31 (one lost both seeds) give 15 groups for depth and for width and 15 for
    # lr, batch size and weight decay; the CNN's 8 add 4 each to those three; the architecture never varies alone
    assert result.psi_groups == groups == {"arch": 0, "batch_size": 19, "depth": 15, "lr": 19,
                                           "weight_decay": 19, "width": 15}
    assert result.scores["gap"]["pgdl"] == pytest.approx(ref.pgdl_cmi(hps, measure, gap), rel=1e-9)
    test_error = [m.test_error for m in ok]
    assert result.scores["test_error"]["psi"] == pytest.approx(ref.psi(hps, measure, test_error)[0])
    # 2 seeds: no environment reaches ESS 12, and the worst, p90 and mean sign errors all say why
    assert set(result.reasons["gap"]) == {"sign_error", "sign_error_p90", "sign_error_mean"}
    assert all(result.scores[t][s] is None for t in ("gap", "test_error") for s in result.reasons["gap"])
    assert set(result.reasons["gap"].values()) == {
        "no environment passed the effective-sample-size filter ESS ≥ 12: at most 2 seeds per grid point give at "
        "most 4 model pairs per environment (ESS ≤ pairs, so ESS ≤ 4); it takes ≥ 4 seeds per grid point, "
        "e.g. more seeds"}
    assert result.sign_error_environments == {"gap": 0, "test_error": 0}


def test_ranking_reports_the_worst_p90_and_mean_sign_error_lower_is_better():
    # one hp, 4 values x 4 seeds whose models agree: each environment holds 16 model pairs of one loss, weight 1
    # (n_test None), ESS 16 ≥ 12. Per value pair: (0,1) 0, (0,2) 0, (0,3) 0, (1,2) 1, (1,3) 1/2 (measure tie),
    # (2,3) 0; both orders: 12 losses, 0 ×8, .5 ×2, 1 ×2: worst 1, p90 .5 + .9·.5 = .95, mean 3/12 = .25
    gap, measure = [0.1, 0.2, 0.3, 0.4], [1.0, 3.0, 2.0, 3.0]
    models = [SimpleNamespace(id=f"m{v}s{seed}", hp={"a": v, "seed": seed}, gap=gap[v], test_error=gap[v] + 0.01)
              for v in range(4) for seed in range(4)]
    values = {m.id: Value(measure[m.hp["a"]], 0.1) for m in models}
    result = ranking_test(_measure(), models, values, ["a", "seed"], n_test=None)
    for target in ("gap", "test_error"):
        scores = result.scores[target]
        assert (scores["sign_error"], scores["sign_error_p90"], scores["sign_error_mean"]) == \
            pytest.approx((1.0, 0.95, 0.25))
        assert not any(k.startswith("sign_error") for k in result.reasons[target])
    assert result.sign_error_environments == {"gap": 12, "test_error": 12}
    losses = [0.0] * 8 + [0.5] * 2 + [1.0] * 2
    assert ref.robust_summaries(losses) == pytest.approx({"max": 1.0, "p90": 0.95, "mean": 0.25})
    # higher_is_better: the measure is negated first, so every pair flips: losses 1 ×8, .5 ×2, 0 ×2
    margin = declare(kind="measure", higher_is_better=True)(lambda model, data, init=None: 0.0)
    flipped = ranking_test(_measure(margin), models, values, ["a", "seed"], n_test=None)
    assert flipped.oriented
    assert flipped.scores["gap"]["sign_error_mean"] == pytest.approx(0.75)
    assert flipped.scores["gap"]["sign_error_p90"] == pytest.approx(1.0)
    from gapbench.evaluation.scores import LOWER_IS_BETTER
    assert {"sign_error", "sign_error_p90", "sign_error_mean"} <= LOWER_IS_BETTER
    only_seeds = ranking_test(_measure(), models, values, ["seed"], n_test=None)
    assert {only_seeds.reasons["gap"][s] for s in ("sign_error", "sign_error_p90", "sign_error_mean")} == \
        {"no hyperparameter other than the seed varies over the models ranked"}


def test_the_test_set_size_comes_from_the_models_and_the_smallest_counts():
    from gapbench.evaluation.run import test_set_size

    def model(n_test, loaded=None):
        return SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(n_test=n_test)),
                               data=SimpleNamespace(test=[0] * (loaded or 0)))
    assert test_set_size([model(10_000), model(10_000)]) == 10_000
    assert test_set_size([model(10_000), model(None, loaded=2_000)]) == 2_000   # n_test unset: the whole split
    assert test_set_size([]) is None


def test_the_seeds_hint_names_a_preset_with_enough_seeds_else_a_set():
    from gapbench.evaluation.run import seeds_hint
    from gapbench.zoo import ZOOS
    zdef = ZOOS.get("mnist-hparams").obj
    assert seeds_hint(SimpleNamespace(name="mnist-hparams", definition=zdef, params=zdef.params("quick"))) == \
        "e.g. gapbench zoo build mnist-hparams --preset coupled"
    few = SimpleNamespace(name="z", definition=SimpleNamespace(presets={"quick": {"seeds": 2}}), params={"seeds": 2})
    assert seeds_hint(few) == "e.g. gapbench zoo build z --set seeds=4"
    assert seeds_hint(SimpleNamespace(name="z", definition=SimpleNamespace(presets={"q": {}}), params={})) == ""


def test_the_leaderboard_note_says_why_the_sign_error_is_missing():
    from gapbench.evaluation.leaderboard import sign_error_gaps
    why = "no environment passed the effective-sample-size filter ESS ≥ 12: ..."
    rows = [{"sign_error_gap": None, "sign_error_gap_why": why}, {"sign_error_gap": 0.5, "sign_error_gap_why": ""},
            {"sign_error_gap": None, "sign_error_gap_why": why}]
    assert sign_error_gaps(rows) == [f"Sign error (robust, 90th percentile and mean over environments) n/a for 2 of "
                                     f"3 quantities: {why}."]
    assert sign_error_gaps(rows[1:2]) == []


def test_cost_is_the_median_over_successful_timings():
    values = [Value(1.0, 2.0), Value(1.0, 4.0), Value(None, 100.0, "raised", "x"), Value(1.0, 3.0)]
    result = cost_test(COMPLEXITY, values)
    assert result.seconds_per_model == 3.0 and result.needs == ("data", "init")


def _row(name, psi, pgdl, tau, sharpness=False):
    return {"quantity": name, "psi_gap": psi, "pgdl_gap": pgdl, "tau_gap": tau, "sharpness": sharpness}


def test_the_leaderboard_rows_carry_their_rank_by_every_score():
    from gapbench.evaluation.leaderboard import with_ranks
    rows = [dict(_row("a", 0.1, 0.3, 0.2), sign_error_gap=0.4), dict(_row("b", None, 0.5, 0.1), sign_error_gap=0.2),
            dict(_row("c", 0.7, 0.1, None), sign_error_gap=None)]
    for r in rows:
        r.update({f"{score}_test_error": None for score in SCORES}, sign_error_p90_gap=None, sign_error_mean_gap=None)
    ranked = {r["quantity"]: r for r in with_ranks(rows)}
    assert [ranked[q]["rank_psi_gap"] for q in "abc"] == [2, None, 1]
    assert [ranked[q]["rank_pgdl_gap"] for q in "abc"] == [2, 1, 3]
    assert [ranked[q]["rank_sign_error_gap"] for q in "abc"] == [2, 1, None]     # lower is better
    assert "rank_psi_gap" not in rows[0]                                          # the input is not mutated


def _sign_rows():
    """Three quantities tied at the worst environment (1.0) that the p90 and the mean tell apart, and one
    without a sign error (no environment passed)."""
    rows = []
    for name, worst, p90, mean in (("a", 1.0, 0.96, 0.26), ("b", 1.0, 1.0, 0.53), ("c", 1.0, 0.94, 0.41),
                                   ("d", None, None, None)):
        row = dict(_row(name, 0.1, 0.1, 0.1), kind="measure", sign_error_gap=worst, sign_error_p90_gap=p90,
                   sign_error_mean_gap=mean, sign_error_environments_gap=None if worst is None else 50,
                   sign_error_gap_why="" if worst is not None else "no environment passed: ...")
        row.update({f"{score}_test_error": None for score in SCORES})
        row.update({c: None for c in ("paper_tau", "paper_psi", "paper_sign_error")}, paper_measure="")
        rows.append(row)
    return rows


def test_the_leaderboard_ranks_the_p90_and_mean_sign_errors_lower_first():
    from gapbench.evaluation.leaderboard import _table, csv_text, sorted_rows, with_ranks
    ranked = {r["quantity"]: r for r in with_ranks(_sign_rows())}
    assert [ranked[q]["rank_sign_error_gap"] for q in "abcd"] == [1, 1, 1, None]   # tied at the worst: all 1st
    assert [ranked[q]["rank_sign_error_p90_gap"] for q in "abcd"] == [2, 3, 1, None]
    assert [ranked[q]["rank_sign_error_mean_gap"] for q in "abcd"] == [1, 3, 2, None]
    assert [r["quantity"] for r in sorted_rows(_sign_rows(), "sign_error_mean_gap")] == list("acbd")
    header = csv_text(list(ranked.values())).splitlines()[0].split(",")
    assert {"sign_error_p90_gap", "sign_error_mean_gap", "rank_sign_error_p90_gap", "rank_sign_error_mean_gap",
            "sign_error_p90_test_error", "rank_sign_error_mean_test_error",
            "sign_error_environments_gap"} <= set(header)
    assert "<tr><td>1</td><td>a</td>" in _table(list(ranked.values()), "sign_error_gap")   # the tie in the table
    assert "<tr><td>1</td><td>b</td>" in _table(list(ranked.values()), "sign_error_gap")
    html = _table(list(ranked.values()), "sign_error_mean_gap")
    assert "<th>sign error (worst)</th><th>sign error p90</th><th>sign error mean</th>" in html
    assert "<td>1</td><td>0.96</td><td>0.26</td>" in html
    assert html.index("<td>a</td>") < html.index("<td>c</td>") < html.index("<td>b</td>") < html.index("<td>d</td>")


def test_a_cards_rank_by_the_p90_and_mean_sign_error_counts_the_lower_values():
    from gapbench.evaluation.run import rank_against

    def card(name, worst, p90, mean):
        scores = {"gap": {"tau": None, "psi": None, "pgdl": None, "sign_error": worst, "sign_error_p90": p90,
                          "sign_error_mean": mean}}
        return SimpleNamespace(quantity={"name": name}, tests={"ranking": {"z": SimpleNamespace(scores=scores)},
                                                               "cost": SimpleNamespace(seconds_per_model=None)})
    cards = [card("a", 1.0, 0.96, 0.26), card("b", 1.0, 1.0, 0.53), card("c", 1.0, 0.94, 0.41)]
    assert rank_against(cards[0], cards) == {
        "sign_error vs gap": {"rank": 1, "of": 3, "value": 1.0},          # a tie: none is lower
        "sign_error_p90 vs gap": {"rank": 2, "of": 3, "value": 0.96},
        "sign_error_mean vs gap": {"rank": 1, "of": 3, "value": 0.26}}
    assert rank_against(cards[1], cards)["sign_error_mean vs gap"]["rank"] == 3


def test_the_closing_note_ranks_by_the_p90_and_mean_sign_error_and_counts_the_ties_at_the_worst():
    from gapbench.evaluation.leaderboard import closing_note, sign_error_ranking
    rows = _sign_rows()
    assert sign_error_ranking(rows) == [
        "Sign error vs the gap over the 50 environments that pass the ESS filter, quantities computed from the "
        "training set (lower is better): the robust score (worst environment) is 1 at best, for 3 of 3 "
        "quantities; top five by the 90th percentile of the environment losses: c (0.94), a (0.96), b (1); by "
        "their mean (the average-case counterpart): a (0.26), c (0.41), b (0.53)."]
    assert sign_error_ranking(rows[3:]) == []
    note = closing_note(rows, {})
    assert sign_error_ranking(rows)[0] in note
    assert "Sign error (robust, 90th percentile and mean over environments) n/a for 1 of 4 quantities: no " \
           "environment passed: ...." in note
    rows[0]["held_out"] = True                 # a held-out bound is ranked apart, as by Ψ
    assert "for 2 of 2 quantities; top five by the 90th percentile of the environment losses: c (0.94), b (1)" \
        in " ".join(closing_note(rows, {}))


def test_the_closing_note_is_computed_from_the_scores():
    from gapbench.evaluation.leaderboard import closing_note
    rows = [_row("jiang2020_pacbayes_flatness", 0.5, 0.2, 0.4, True), _row("spectral_product", 0.1, 0.05, -0.3),
            _row("frobenius_product", -0.1, 0.01, 0.2), _row("median_margin", 0.3, None, 0.1)]
    note = " ".join(closing_note(rows, {}))
    assert "Top five by Ψ (vs the gap), quantities computed from the training set: jiang2020_pacbayes_flatness " \
           "(0.5), median_margin (0.3), spectral_product (0.1), frobenius_product (-0.1)." in note
    assert "Top five by the PGDL score, same quantities: jiang2020_pacbayes_flatness (0.2), spectral_product " \
           "(0.05)" in note
    assert "measures lead (best by Ψ: jiang2020_pacbayes_flatness; 1 of the top five" in note
    assert "1 of 2 correlate negatively" in note
    flipped = [_row("spectral_product", 0.9, 0.3, -0.3), *rows[:1]]
    note = " ".join(closing_note(flipped, {}))
    assert "do not lead (best by Ψ: spectral_product" in note and "all correlate negatively" in note


def test_ranking_verdict_names_each_score_once():
    """Without Ψ the verdict gives τ alone, not τ twice; with Ψ it gives both."""
    from gapbench.evaluation.scores import ranking_test
    from gapbench.evaluation.values import Value
    from gapbench.plugins import resolve

    class Model:
        def __init__(self, i, hp):
            self.id, self.hp, self.gap, self.test_error = f"m{i}", hp, 0.1 * i, 0.2 + 0.1 * i

    quantity = resolve("param_norm")
    flat = [Model(i, {"seed": i}) for i in range(4)]
    values = {m.id: Value(float(i), 0.1) for i, m in enumerate(flat)}
    verdict = ranking_test(quantity, flat, values, ["seed"], n_test=None).verdict
    assert verdict.count("τ =") == 1 and "Ψ" not in verdict
    grid = [Model(i, {"lr": lr, "width": w}) for i, (lr, w) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)])]
    values = {m.id: Value(float(i), 0.1) for i, m in enumerate(grid)}
    verdict = ranking_test(quantity, grid, values, ["lr", "width"], n_test=None).verdict
    assert verdict.count("τ =") == 1 and verdict.count("Ψ =") == 1


def test_held_out_bounds_are_ranked_apart_in_the_closing_note():
    """A held-out bound sees the test points the gap is measured on: it must not take a training-set
    measure's place in the top five (nor decide whether sharpness measures lead)."""
    from gapbench.evaluation.leaderboard import closing_note
    rows = [dict(_row("heldout_binomial", 0.96, 0.9, 0.8), held_out=True),
            _row("pacbayes_sharpness", 0.4, 0.1, 0.3, True), _row("spectral_product", 0.1, 0.05, 0.2)]
    note = " ".join(closing_note(rows, {}))
    assert "training set: pacbayes_sharpness (0.4), spectral_product (0.1)." in note
    assert "measures lead (best by Ψ: pacbayes_sharpness" in note
    assert "ranked apart): by Ψ heldout_binomial (0.96); by the PGDL score heldout_binomial (0.9)." in note
