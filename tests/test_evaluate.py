"""gapbench evaluate: a user's bound in a file outside the package through the five tests, from Python and the
CLI; reruns reuse every stored value; bad plugins are recorded while the others go on; the leaderboard.

The smoke zoos are built once per session in a temporary directory (about a minute on the 2-core CPU);
mnist-hparams varies width, learning rate and weight decay there so that Ψ and the PGDL score are defined.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gapbench as gb
from gapbench.cli import main
from gapbench.evaluation import TESTS
from gapbench.store import Store

ZOOS = ["mnist-hparams", "nk-m-sweep", "nk-hypersphere"]
HPARAMS = {"width": "16,32", "lr": "0.1,0.2", "weight_decay": "0,0.0005"}   # 8 grid points x 2 seeds
FAST_POOL = ["spectral_product", "frobenius_sum", "median_margin", "param_norm", "bartlett2017"]

USER_BOUND = '''
"""Training error plus Hoeffding's term: valid for a classifier fixed before the data, not for one trained
on it, so the validity test must flag it."""
import math
import torch
import gapbench as gb


def train_hoeffding(model, data, *, delta):
    x, y = data
    with torch.inference_mode():
        err = float((model(x).argmax(1) != y).double().mean())
    return gb.Bound(name="train_hoeffding", value=err + math.sqrt(math.log(1 / delta) / (2 * len(y))),
                    delta=delta, quantity="0-1 test error")
'''


@pytest.fixture(scope="session")
def zoo_out(tmp_path_factory, data_dir):
    from gapbench.zoo import build_zoo
    out = tmp_path_factory.mktemp("evaluate_zoos")
    build_zoo("mnist-hparams", "smoke", out=out, overrides=HPARAMS, progress=False, data_dir=str(data_dir))
    for name in ZOOS[1:]:
        build_zoo(name, "smoke", out=out, progress=False, data_dir=str(data_dir))
    return out


@pytest.fixture()
def out(zoo_out, tmp_path):
    """A private copy of the built zoos (store included), so each test starts from no stored evaluation."""
    copy = tmp_path / "out"
    shutil.copytree(zoo_out, copy)
    return copy


@pytest.fixture()
def user_bound(tmp_path) -> str:
    path = tmp_path / "elsewhere" / "my_bounds.py"
    path.parent.mkdir()
    path.write_text(USER_BOUND)
    return f"{path}:train_hoeffding"


def _slope(xs, ys) -> float:
    """Least squares of log y on log x, written out (not gapbench's loglog_slope)."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(((lx - lx.mean()) * (ly - ly.mean())).sum() / ((lx - lx.mean()) ** 2).sum())


def test_a_users_bound_in_a_file_goes_through_all_five_tests_from_python(out, user_bound):
    result = gb.evaluate(user_bound, zoos=ZOOS, out=out, rank=False, progress=False)
    card = result.cards[0]
    assert not result.failed and card.quantity["kind"] == "bound"
    assert set(card.verdicts()) == set(TESTS)
    assert not any(v.startswith("not run") for v in card.verdicts().values()), card.verdicts()
    # validity: train error + Hoeffding is below the test error of these overfit models
    assert card.tests["validity"]["mnist-hparams"].verdict.startswith("INVALID")
    for name in ("card", "figure", "report"):
        assert Path(card.paths[name]).is_file()
    assert Path(card.paths["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in Path(card.paths["report"]).read_text()
    assert json.loads(Path(card.paths["card"]).read_text())["verdicts"] == card.verdicts()


def test_the_m_test_and_s_prime_test_agree_with_values_recomputed_here(out, user_bound, zoo_out):
    from gapbench.inference import zero_one_error
    from gapbench.zoo import load_zoo
    card = gb.evaluate(user_bound, zoos=ZOOS, out=out, rank=False, progress=False).cards[0]
    bound = gb.resolve(user_bound)
    sweep = load_zoo(zoo_out, "nk-m-sweep").models(include_capped=True)
    by_m: dict[int, list[tuple[float, float]]] = {}
    for model in sweep:
        by_m.setdefault(model.m, []).append((bound(model.model(), model.data.train), model.test_error))
    ms = sorted(by_m)
    m_test = card.tests["m_test"]
    assert m_test.slope == pytest.approx(_slope(ms, [np.median([v for v, _ in by_m[m]]) for m in ms]), rel=1e-9)
    assert m_test.slope_test_error == pytest.approx(_slope(ms, [np.median([e for _, e in by_m[m]]) for m in ms]))
    assert m_test.slope_normalized is None          # a bound is not divided by γ√m
    sphere = load_zoo(zoo_out, "nk-hypersphere").models(include_capped=True)
    sprime = card.tests["sprime"]
    for i, model in enumerate(sphere):
        x, y = model.mirrored.x, model.mirrored.y
        expected = zero_one_error(model.model(), x, y) - model.test_error
        assert sprime.implied_eps_unif[i] == pytest.approx(expected)
        assert sprime.epsilon[i] == pytest.approx(sprime.value_s[i] - model.train_error)
    assert sprime.below == sum(e < i for e, i in zip(sprime.epsilon, sprime.implied_eps_unif, strict=True))


def test_the_cli_runs_a_users_bound_and_writes_the_three_files(out, user_bound):
    zoo_args = [arg for zoo in ZOOS for arg in ("--zoo", zoo)]
    result = CliRunner().invoke(main, ["evaluate", user_bound, *zoo_args, "--out", str(out), "--no-rank",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    for test in TESTS:
        assert test in result.output
    directory = out / "evaluate" / "train_hoeffding"
    assert sorted(p.name for p in directory.iterdir()) == ["card.json", "figure.png", "report.html"]
    as_json = CliRunner().invoke(main, ["evaluate", user_bound, *zoo_args, "--out", str(out), "--no-rank",
                                        "--json", "--no-progress"])
    assert json.loads(as_json.output)["cards"][0]["computed"] == 0


def test_a_rerun_computes_nothing_new_and_an_edited_file_is_recomputed(out, user_bound):
    first = gb.evaluate(user_bound, zoos=ZOOS, out=out, rank=False, progress=False).cards[0]
    again = gb.evaluate(user_bound, zoos=ZOOS, out=out, rank=False, progress=False).cards[0]
    assert first.computed > 0 and again.computed == 0 and again.reused == first.computed + first.reused
    assert again.verdicts() == first.verdicts()
    path = Path(user_bound.rpartition(":")[0])
    path.write_text(path.read_text().replace("(2 * len(y))", "(len(y))"))
    edited = gb.evaluate(user_bound, zoos=ZOOS, out=out, rank=False, progress=False).cards[0]
    assert edited.computed == first.computed


BAD = {
    "import_error.py": "import not_a_module_anywhere\n\ndef q(model, data, init=None):\n    return 1.0\n",
    "wrong_signature.py": "def q(model):\n    return 1.0\n",
    "raises.py": "def q(model, data, init=None) -> float:\n    raise RuntimeError('boom in the user measure')\n",
    "nan.py": "def q(model, data, init=None) -> float:\n    return float('nan')\n",
    "good.py": "def q(model, data, init=None) -> float:\n    return float(sum(p.detach().abs().sum() for p in "
               "model.parameters()))\n",
}


def test_bad_plugins_are_recorded_with_their_name_and_the_others_are_evaluated(out, tmp_path):
    for name, text in BAD.items():
        (tmp_path / name).write_text(text)
    specs = [f"{tmp_path / name}:q" for name in BAD]
    result = CliRunner().invoke(main, ["evaluate", *specs, "--zoo", "mnist-hparams", "--out", str(out),
                                       "--no-rank", "--no-progress"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "not_a_module_anywhere" in text and "import_error.py" in text
    assert "wrong_signature.py" in text and "signature" in text
    assert "boom in the user measure" in text and "[raised]" in text
    assert "[non_finite]" in text
    cards_written = [p for p in (out / "evaluate").iterdir() if (p / "card.json").is_file()]
    assert len(cards_written) == 3                # raises, nan, good: every quantity that could be loaded
    python = gb.evaluate(specs, zoos=["mnist-hparams"], out=out, rank=False, progress=False)
    assert [u["kind"] for u in python.unresolved] == ["import", "signature"]
    cards = {Path(c.quantity["origin"].rpartition(":")[0]).stem: c for c in python.cards}
    assert not cards["good"].failed and cards["good"].tests["ranking"]["mnist-hparams"].scores["gap"]["tau"] is not None
    assert cards["raises"].failed and {f["kind"] for f in cards["raises"].failures} == {"raised"}
    assert cards["nan"].failed and {f["kind"] for f in cards["nan"].failures} == {"non_finite"}
    stored = [r for r in Store(out / "gapbench.sqlite").runs("evaluate:mnist-hparams") if r.status == "failed"]
    assert any("boom in the user measure" in r.reason for r in stored)
    assert len(stored) == 2 * len(cards["raises"].failures)      # one row per model, for each bad measure


def test_the_leaderboard_ranks_every_quantity_of_the_pool_by_each_score(out, user_bound):
    result = gb.evaluate(user_bound, zoos=["mnist-hparams"], out=out, all=True, pool=FAST_POOL, progress=False)
    with open(result.leaderboard["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["quantity"] for r in rows) == sorted(FAST_POOL + ["train_hoeffding"])
    psi = [float(r["psi_gap"]) for r in rows if r["psi_gap"]]
    assert psi == sorted(psi, reverse=True) and psi
    assert "Top five by Ψ" in result.leaderboard["note"] and "PGDL" in result.leaderboard["note"]
    assert "none computable" not in result.leaderboard["note"]
    for column in ("psi_gap", "pgdl_gap"):                     # the CSV states the top five by each score
        by_rank = sorted((int(r[f"rank_{column}"]), float(r[column])) for r in rows if r[column])
        assert by_rank and [rank for rank, _ in by_rank] == [1 + sum(w > v for _, w in by_rank) for _, v in by_rank]
        assert [v for _, v in by_rank] == sorted((v for _, v in by_rank), reverse=True)
    html = Path(result.leaderboard["html"]).read_text()
    assert "Closing note" in html and "How our zoo differs" in html
    paper = {r["quantity"]: r for r in rows}
    assert "'log.prod.of.spec', Eq. (32) (same ranks)" in paper["spectral_product"]["paper_measure"]
    assert paper["frobenius_sum"]["paper_measure"] == "" and paper["train_hoeffding"]["paper_source"] == ""
    assert "<th>paper τ</th><th>paper Ψ</th><th>paper sign error</th>" in html
    assert "training cross-entropy ≤" in result.leaderboard["note"]
    mine = next(c for c in result.cards if c.quantity["name"] == "train_hoeffding")
    taus = {r["quantity"]: float(r["tau_gap"]) for r in rows if r["tau_gap"]}
    if "train_hoeffding" in taus:
        better = sum(t > taus["train_hoeffding"] for t in taus.values())
        assert mine.ranks["tau vs gap"] == {"rank": better + 1, "of": len(taus), "value": taus["train_hoeffding"]}
    for name in FAST_POOL:
        assert (out / "evaluate" / name / "card.json").is_file()
    # 2 seeds per grid point: no environment can pass the sign error's ESS ≥ 12, and every output says why
    why = ("at most 2 seeds per grid point give at most 4 model pairs per environment (ESS ≤ pairs, so ESS ≤ 4); "
           "it takes ≥ 4 seeds per grid point, e.g. gapbench zoo build mnist-hparams --preset coupled")
    signs = ("sign_error", "sign_error_p90", "sign_error_mean")      # the worst, 90th percentile and mean
    assert all(not r[f"{s}_gap"] and not r[f"rank_{s}_gap"] for r in rows for s in signs)
    assert why in result.leaderboard["note"] and "sign error mean</th>" in html
    card = json.loads((out / "evaluate" / "spectral_product" / "card.json").read_text())
    assert all(why in card["tests"]["ranking"]["mnist-hparams"]["reasons"]["gap"][s] for s in signs)
    assert card["tests"]["ranking"]["mnist-hparams"]["sign_error_environments"] == {"gap": 0, "test_error": 0}
    report = (out / "evaluate" / "spectral_product" / "report.html").read_text()
    assert why in report and "why no sign_error_mean vs gap" in report and "why no sign_error_p90 vs gap" in report


@pytest.mark.slow
def test_all_on_the_full_registry_writes_the_leaderboard(out):
    result = gb.evaluate(all=True, zoos=ZOOS, out=out, progress=False)
    with open(result.leaderboard["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(gb.list_measures()) + len(gb.list_bounds())


@pytest.mark.parametrize("args, message", [
    (["evaluate", "spectral_product", "--zoo", "nk-m-sweep"], "gapbench zoo build nk-m-sweep"),
    (["evaluate", "spectral_product", "--zoo", "no-such-zoo"], "Unknown zoo 'no-such-zoo'"),
    (["evaluate", "spectral_prodcut"], "Did you mean 'spectral_product'?"),
    (["evaluate", "/nowhere/at/all.py:q"], "does not exist"),
    (["evaluate"], "needs a measure or bound"),
    (["evaluate", "spectral_product", "--threads", "0"], "The 'threads' parameter of gapbench evaluate must be"),
])
def test_mistakes_in_the_command_exit_2_in_one_paragraph(args, message, tmp_path):
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "empty")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_the_s_prime_verdict_of_the_norm_complexities_is_nks_at_smoke(out):
    """NK: Bartlett's and Neyshabur's complexities, as bounds C / (γ√m), are at least the implied ε_unif."""
    result = gb.evaluate(["bartlett2017_complexity", "neyshabur2018_complexity"], zoos=["nk-hypersphere"],
                         out=out, rank=False, progress=False)
    for card in result.cards:
        sprime = card.tests["sprime"]
        assert sprime.verdict.startswith("consistent with uniform convergence"), sprime.verdict
        assert all(e >= i for e, i in zip(sprime.epsilon, sprime.implied_eps_unif, strict=True))


@pytest.mark.slow
def test_the_m_test_and_s_prime_test_reproduce_nk_for_bartlett_and_neyshabur(tmp_path, data_dir):
    """At NK's protocol (nk-m-sweep demo preset: batch 1, γ* = 10, m = 128 … 512; hypersphere quick): both
    complexities ÷ γ√m grow while the test error falls, and both are above the implied ε_unif."""
    from gapbench.zoo import build_zoo
    build_zoo("nk-m-sweep", "demo", out=tmp_path, progress=False, data_dir=str(data_dir))
    build_zoo("nk-hypersphere", "quick", out=tmp_path, progress=False, data_dir=str(data_dir))
    result = gb.evaluate(["bartlett2017_complexity", "neyshabur2018_complexity"],
                         zoos=["nk-m-sweep", "nk-hypersphere"], out=tmp_path, rank=False, progress=False)
    for card in result.cards:
        assert card.tests["m_test"].verdict == "grows while the error falls", card.tests["m_test"]
        assert card.tests["sprime"].verdict.startswith("consistent with uniform convergence")
        assert math.isfinite(card.tests["m_test"].slope_normalized)
