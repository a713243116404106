"""The report and the figures as a user sees them: the summary table, NOT-held claims in red with why,
parameters as a table, no empty headings, and each figure's reference lines and legends."""

import dataclasses
import re

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gapbench.config import Runtime  # noqa: E402
from gapbench.experiments import EXPERIMENTS  # noqa: E402
from gapbench.experiments.base import Claim  # noqa: E402
from gapbench.experiments.execute import STORE_NAME, run_experiment  # noqa: E402
from gapbench.experiments.table import Table  # noqa: E402
from gapbench.report import duration, html_page, params_table, section, summary_table  # noqa: E402
from gapbench.store import Store  # noqa: E402

EMPTY_HEADING = re.compile(r"<(h[1-6])[^>]*>\s*(<small>[^<]*</small>)?\s*</\1>")


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    first = run_experiment("nk2019-linear", "smoke", out=out, runtime=Runtime(progress=False), progress=False)
    again = run_experiment("nk2019-linear", "smoke", out=out, runtime=Runtime(progress=False), progress=False)
    return out, first, again


def test_single_report_opens_with_a_linked_summary_and_params_table(linear_run):
    out, first, _ = linear_run
    page = (out / "nk2019-linear" / "report.html").read_text()
    summary = page[page.index("<table class='summary'>"):page.index("<section")]
    assert "<a href='#nk2019-linear'>nk2019-linear</a>" in summary and 'id="nk2019-linear"' in page
    assert "<td>smoke</td>" in summary and re.search(r"<td class='(held|not)'>\d/3</td>", summary)
    assert "<table class='params'>" in page and "<pre>" not in page
    assert "<tr><td>m</td><td>16, 32, 64</td></tr>" in page
    assert not EMPTY_HEADING.search(page)


def test_rerun_keeps_the_original_training_time(linear_run):
    out, first, again = linear_run
    stored = sum(r.seconds for r in Store(out / STORE_NAME).runs("nk2019-linear"))
    assert first.runs_trained == 3 and again.runs_trained == 0 and again.runs_reused == 3
    assert stored > 0 and again.training_seconds == pytest.approx(stored) == pytest.approx(first.training_seconds)
    page = (out / "nk2019-linear" / "report.html").read_text()
    assert f"<td>{duration(stored)}</td><td>0 / 3 / 0</td>" in page
    assert again.summary()["training_seconds"] == pytest.approx(stored, abs=0.01)


def test_not_held_claims_are_red_with_detail_and_expectation(linear_run):
    _, first, _ = linear_run
    exp = EXPERIMENTS.get("nk2019-linear").obj
    never = Claim("never", "a claim that cannot hold", lambda t, p: (False, 2.0, "two is not below one"),
                  expected_not_held={"smoke": "smoke is too small for it"})
    unexpected = Claim("also_never", "another", lambda t, p: (False, None, "no luck"))
    exp = dataclasses.replace(exp, claims=exp.claims + (never, unexpected))
    claims = [c.evaluate(first.table, first.params) for c in exp.claims]
    outcome = dataclasses.replace(first, claims=claims)
    page = html_page(exp.name, [section(exp, outcome, b"")], summary_table([(exp, outcome)]))
    misses = re.findall(r"<li class='not'>(.*?)</li>", page)
    assert len(misses) == sum(not c.held for c in claims) >= 2
    assert any("<b>never</b> NOT held (2; two is not below one). Expected at the smoke preset: smoke is too small "
               "for it" in m for m in misses)
    assert any("<b>also_never</b> NOT held (n/a; no luck). Not expected at the smoke preset." in m for m in misses)
    assert re.search(r"<td class='not'>\d/5</td>", page) and "li.not{color:#b00000}" in page
    assert page.count("<tr class='not'><td>NOT held</td>") == len(misses)


def test_params_table_and_duration_read_as_a_person_would():
    text = params_table({"m": [16, 32], "options": {"dim": 20, "r": 1.5}, "none": {}, "lr": 0.05})
    assert "<td>m</td><td>16, 32</td>" in text and "<td>options</td><td>dim=20; r=1.5</td>" in text
    assert "<td>none</td><td>(none)</td>" in text and "<td>lr</td><td>0.05</td>" in text
    assert [duration(s) for s in (3.21, 23.4, 1500, 3725)] == ["3.2 s", "23 s", "25 min 0 s", "1 h 02 min"]


def test_expected_not_held_names_real_presets_and_claims():
    for entry in EXPERIMENTS:
        for claim in entry.obj.claims:
            assert set(claim.expected_not_held) <= set(entry.obj.presets), (entry.name, claim.name)
            assert all(len(reason) > 20 for reason in claim.expected_not_held.values()), (entry.name, claim.name)


def _figure(name, rows, params=None):
    exp = EXPERIMENTS.get(name).obj
    fig = plt.figure(figsize=(12, 7.5))
    exp.plot(Table.of(rows), fig, params or {})
    return fig


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_linear_test_error_axis_shows_the_threshold():
    rows = [{"hp.n_train": m, "hp.seed": 0, "test_error": 1e-5 * k, "sprime_error": 1.0, "train_error": 0.0,
             "w_norm": m ** 0.5} for k, m in enumerate((16, 32, 64))]
    fig = _figure("nk2019-linear", rows)
    ax = fig.axes[1]
    low, high = ax.get_ylim()
    assert low <= 0 and 0.01 < high <= 0.05 and ax.get_yscale() == "linear"   # not zoomed into 1e-5 noise
    assert any(list(line.get_ydata()) == [0.01, 0.01] for line in ax.get_lines())
    assert "claim threshold 0.01" in _legend_texts(ax)
    plt.close(fig)


def test_deep_paths_identity_sides_are_both_visible():
    rows = [{"hp.n_train": m, "hp.seed": 0, "thm7_lhs": g, "thm7_rhs": g, "path_norm_l2": 5.0, "v_norm": 7.0,
             "lambda_1": -300.0, "lambda_2": 200.0} for m, g in ((50, 0.13), (100, 0.07))]
    fig = _figure("kkb2017-deep-paths", rows)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    lhs = next(v for k, v in lines.items() if k.startswith("R − R_S"))
    rhs = next(v for k, v in lines.items() if k.startswith("Theorem 7 RHS"))
    assert lhs.get_linestyle() == "-" and lhs.get_marker() in (None, "None", "")
    assert rhs.get_linestyle() == "None" and rhs.get_marker() == "o" and rhs.get_markerfacecolor() == "none"
    assert any("coincide" in t for t in _legend_texts(fig.axes[0]))
    plt.close(fig)


def test_two_phase_bound_panel_has_the_vacuous_line():
    rows = [{"hp.seed": 0, "hp.mode": "standard", "hp.alpha": 1.0, "test_accuracy": 0.9, "test_error": 0.1}]
    rows += [{"hp.seed": 0, "hp.mode": mode, "hp.alpha": a, "test_accuracy": 0.88, "test_error": 0.12,
              "linear_margin": 1.3 if mode == "last_layer" else None}
             for mode in ("two_phase", "last_layer") for a in (0.2, 1.0)]
    fig = _figure("kkb2017-two-phase", rows, {"seeds": 1})
    ax = fig.axes[1]
    ones = [line for line in ax.get_lines() if list(line.get_ydata()) == [1.0, 1.0]]
    assert len(ones) == 1 and ones[0].get_linestyle() == "--" and "vacuous above" in ones[0].get_label()
    assert any("vacuous above" in t for t in _legend_texts(ax))
    plt.close(fig)


def test_slices_panels_have_axes_and_both_legends(tmp_path):
    res = 8
    grid = (np.add.outer(np.arange(res), np.arange(res)) > res).astype(np.uint8)
    checkpoint = tmp_path / "run.pt"
    np.savez(str(checkpoint) + ".slices.npz", **{f"{k}_{part}": v for k in ("train", "test") for part, v in
                                                 (("net", grid), ("sphere", grid.T), ("a", [1.0, 0.0]),
                                                  ("b", [0.0, 1.0]))})
    rows = [{"hp.seed": 0, "checkpoint": str(checkpoint), "near_train_disagreement_fitted": 0.3,
             "near_test_disagreement_fitted": 0.1}]
    fig = _figure("nk2019-slices", rows, {"r_outer": 1.3})
    for ax in fig.axes[:2]:
        assert ax.get_xlabel() and ax.get_ylabel() and len(ax.get_xticks()) and len(ax.get_yticks())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"training points", "test points"} <= set(labels)
    assert sum("class" in label for label in labels) == 2
    plt.close(fig)


def test_caption_lines_fit_the_figure(linear_run):
    from gapbench.report import CAPTION_CHARS, render_figure
    _, first, _ = linear_run
    exp = EXPERIMENTS.get("nk2019-linear").obj
    long = Claim("long_detail", "x", lambda t, p: (True, 1.0, "a very long detail " * 30))
    exp = dataclasses.replace(exp, claims=(long,))
    outcome = dataclasses.replace(first, claims=[long.evaluate(first.table, first.params)])
    fig = render_figure(exp, outcome)
    caption = fig.texts[-1].get_text().splitlines()
    assert max(map(len, caption)) <= CAPTION_CHARS and caption[0].startswith("nk2019-linear (smoke preset)")
    assert caption[-2].startswith("HELD: long_detail") and caption[-1].startswith("    ")   # two lines, no more
    assert caption[-1].endswith("...")
    plt.close(fig)
