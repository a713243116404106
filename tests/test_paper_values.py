"""The paper values beside the leaderboard: every key a registered measure, every number cited, the
'same ranks' relations true on real networks, and the columns shown in the leaderboard's CSV and HTML."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

import gapbench as gb
from gapbench.errors import GapbenchError
from gapbench.evaluation import leaderboard, paper_values
from gapbench.evaluation.paper_values import COUNTERPARTS, PARTIAL, VALUES, check_values, paper_columns
from gapbench.evaluation.scores import SCORES

REGISTERED = {entry.name: entry for entry in gb.list_measures()}
CITED = {"score": "tau", "paper": "Jiang et al. 2020", "dataset": "CIFAR-10", "value": -0.25,
         "source": "https://example.org/paper", "table": "Table 5", "column": "τ (overall)"}


def test_every_counterpart_is_a_registered_measure_and_every_jiang_form_has_one():
    assert set(COUNTERPARTS) <= set(REGISTERED)
    own = {name for name in REGISTERED if name.startswith("jiang2020_")}
    assert own <= set(COUNTERPARTS)
    assert {c["relation"] for c in COUNTERPARTS.values()} <= {"identical", "same ranks"}


@pytest.mark.parametrize("name", sorted(n for n, c in COUNTERPARTS.items()
                                        if c["relation"] == "identical" or n == "dist_from_init_fro"))
def test_the_counterparts_equation_is_the_one_the_measure_is_registered_with(name):
    counterpart = COUNTERPARTS[name]
    assert f"Eq. {counterpart['equation']}" in REGISTERED[name].reference
    if name.startswith("jiang2020_"):
        assert f"({counterpart['name']})" in REGISTERED[name].reference


def test_the_stored_values_are_registered_and_cited():
    check_values(VALUES, frozenset(REGISTERED))
    for name, entries in VALUES.items():
        for entry in entries:
            assert all(entry[field] for field in ("paper", "dataset", "source", "table", "column")), name
            low, high = (0.0, 1.0) if entry["score"] == "sign_error" else (-1.0, 1.0)
            assert low <= entry["value"] <= high, (name, entry)


def test_a_paper_without_values_records_where_they_were_looked_for():
    with_values = {entry["paper"] for entries in VALUES.values() for entry in entries}
    for paper in paper_values.PAPERS:
        assert paper in with_values or len(paper_values.SEARCHED.get(paper, ())) >= 2, paper


def test_a_partial_match_is_registered_has_no_counterpart_and_says_what_differs():
    assert set(PARTIAL) <= set(REGISTERED)
    assert not set(PARTIAL) & set(COUNTERPARTS)
    for name, why in PARTIAL.items():
        assert "Jiang et al. '" in why and "Eq. (" in why, name
        cols = paper_columns(name)
        assert cols["paper_measure"] == "" and cols["paper_partial"] == why
        assert all(cols[f"paper_{score}"] is None for score in ("tau", "psi", "sign_error"))


@pytest.mark.parametrize("values, message", [
    ({"no_such_measure": [CITED]}, "'no_such_measure' is not a registered measure"),
    ({"spectral_sum": [CITED]}, "'spectral_sum' has values but no entry in COUNTERPARTS"),
    ({"spectral_product": [{**CITED, "source": ""}]}, "without its citation: source missing"),
    ({"spectral_product": [{k: v for k, v in CITED.items() if k not in ("table", "column")}]},
     "without its citation: table, column missing"),
    ({"spectral_product": [{**CITED, "value": math.nan}]}, "must be a finite number. Got nan instead"),
    ({"spectral_product": [{**CITED, "score": "rho"}]}, "The 'score' field of paper_values['spectral_product'] "
                                                        "must be one of ['tau', 'psi', 'sign_error']"),
    ({"spectral_product": [{**CITED, "paper": "Someone 2021"}]}, "The 'paper' field"),
    ({"spectral_product": [{**CITED, "value": 1.5}]}, "must lie in [-1, 1] for a tau score. Got 1.5 instead"),
    ({"spectral_product": [{**CITED, "score": "psi", "value": -1.01}]}, "must lie in [-1, 1] for a psi score"),
    ({"spectral_product": [{**CITED, "score": "sign_error", "value": -0.25}]},
     "must lie in [0, 1] for a sign_error score. Got -0.25 instead"),
])
def test_a_value_without_its_citation_or_key_is_refused(values, message):
    with pytest.raises(GapbenchError) as err:
        check_values(values, frozenset(REGISTERED))
    assert message in str(err.value)


def _mlps(count: int, seed: int = 0) -> list[tuple[nn.Module, nn.Module]]:
    """(trained-like, init) pairs of small MLPs whose layers differ in scale and in how close to rank one they
    are, so that spectral and Frobenius norms order them differently."""
    gen = torch.Generator().manual_seed(seed)

    def weight(shape):
        spike = torch.randn(shape[0], 1, generator=gen) @ torch.randn(1, shape[1], generator=gen)
        mix, scale = (float(u) for u in torch.rand(2, generator=gen))
        return (mix * spike + (1 - mix) * torch.randn(shape, generator=gen)) * (0.2 + scale)

    def net(widths):
        layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        for layer in layers:
            layer.weight.data = weight(layer.weight.shape)
            layer.bias.data = torch.randn(layer.bias.shape, generator=gen) * 0.1
        return nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])

    out = []
    for i in range(count):
        widths = [6, 5 + i % 3, 4, 3]
        out.append((net(widths), net(widths)))
    return out


@pytest.mark.parametrize("ours, theirs", [("spectral_product", "jiang2020_log_prod_of_spec"),
                                          ("frobenius_product", "jiang2020_log_prod_of_fro"),
                                          ("dist_from_init_fro", "jiang2020_fro_dist"),
                                          ("path_norm_l2", "jiang2020_path_norm")])
def test_a_same_ranks_counterpart_orders_networks_as_the_papers_measure_does(ours, theirs):
    assert COUNTERPARTS[ours]["relation"] == "same ranks"
    assert COUNTERPARTS[ours]["name"] == COUNTERPARTS[theirs]["name"]
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    data = (x, torch.arange(8) % 3)
    pairs = _mlps(7)
    a = [gb.measure(ours, model, data, init=init) for model, init in pairs]
    b = [gb.measure(theirs, model, data, init=init) for model, init in pairs]
    assert len(set(a)) == len(a)
    assert kendalltau(a, b).statistic == pytest.approx(1.0)


def test_paper_columns_show_a_read_value_with_its_citation(monkeypatch):
    monkeypatch.setitem(VALUES, "spectral_product", [CITED])
    cols = paper_columns("spectral_product")
    assert cols["paper_tau"] == -0.25 and cols["paper_psi"] is None
    assert "log.prod.of.spec', Eq. (32) (same ranks)" in cols["paper_measure"]
    assert cols["paper_source"] == "tau: Jiang et al. 2020, Table 5, τ (overall), CIFAR-10 (https://example.org/paper)"
    assert paper_columns("spectral_sum")["paper_measure"] == "" and paper_columns(None)["paper_source"] == ""
    assert paper_columns("jiang2020_path_norm")["paper_source"].startswith("not transcribed")


def _row(name: str, tau: float | None) -> dict:
    scores = {f"{s}_{t}": None for s in SCORES for t in ("gap", "error")}
    return {"quantity": name, "kind": "measure", **scores, "tau_gap": tau, **paper_columns(name)}


def test_the_leaderboard_csv_and_html_carry_the_paper_columns(monkeypatch):
    monkeypatch.setitem(VALUES, "spectral_product", [CITED])
    rows = [_row("spectral_product", 0.3), _row("jiang2020_path_norm", 0.1), _row("median_margin", 0.2)]
    csv_text = leaderboard.csv_text(rows)
    header, first = csv_text.splitlines()[:2]
    assert {"paper_measure", "paper_tau", "paper_psi", "paper_sign_error", "paper_source"} <= set(header.split(","))
    assert ",-0.25," in first and "Table 5" in first
    html = leaderboard._table(rows, "tau_gap")
    assert "<th>paper τ</th><th>paper Ψ</th><th>paper sign error</th>" in html
    assert "<td>-0.25</td><td>—</td><td>—</td>" in html
    assert "&#x27;path.norm&#x27;, Eq. (44) (identical): not transcribed" in html
    assert html.count("<td></td><td></td><td></td><td></td>") == 1      # median_margin: no counterpart


def test_the_leaderboard_says_why_a_partial_match_has_no_paper_score():
    rows = [_row("param_norm", 0.3), _row("median_margin", 0.2)]
    assert "paper_partial" in leaderboard.csv_text(rows).splitlines()[0].split(",")
    html = leaderboard._table(rows, "tau_gap")
    assert "<td></td><td></td><td></td><td>not comparable: Jiang et al. &#x27;param.norm&#x27;, Eq. (42)" in html
    assert html.count("<td></td><td></td><td></td><td></td>") == 1


class _Zoo:
    provenance = {"datasets": ["mnist"]}
    preset = "quick"

    def __init__(self, varied, size=80):
        self.varied, self.size = varied, size
        self.params = {"archs": ["mlp", "cnn"], "seeds": 2, "loss_threshold": 0.01, "max_epochs": 200,
                       "n_train": [500]}

    def __len__(self):
        return self.size


def test_the_note_on_our_zoo_names_its_stop_rule_size_architectures_and_seeds():
    note = leaderboard.zoo_difference({"mnist-hparams": _Zoo(["width", "lr", "seed"])})
    assert ("'mnist-hparams' (quick preset): 80 models on mnist, varying width, lr, seed, architectures mlp and "
            "cnn, 2 seed(s) per grid point, each stopped at training cross-entropy ≤ 0.01 or after 200 epochs "
            "(capped models left out), trained on 500 points") in note
    assert "dropout and optimizer" in note and paper_values.JIANG in note and paper_values.DZIUGAITE in note
    assert ("Ours: 80 models, far fewer than theirs, no depth or batch_size or weight_decay or dropout or "
            "optimizer axis") in note


def test_the_note_names_only_the_axes_our_zoos_lack():
    axes = ["depth", "width", "batch_size", "lr", "weight_decay", "dropout"]
    note = leaderboard.zoo_difference({"a": _Zoo(axes, size=3000), "b": _Zoo(["optimizer"], size=2000)})
    assert "Ours: 5000 models, fewer than theirs, so the paper columns" in note
    assert "axis" not in note
    assert "Ours:" not in leaderboard.zoo_difference({"nk-m-sweep": _Zoo(["m"])})
