"""Every registered experiment runs end to end at its smoke preset, and its outputs are well formed."""

import csv
import json
import re

import pytest

from gapbench.config import Runtime
from gapbench.experiments import EXPERIMENTS, PRESETS
from gapbench.experiments.execute import run_experiment

NEEDS_MNIST = {"nk2019-fig1", "kkb2017-validation", "kkb2017-random-labels", "kkb2017-deep-paths",
               "kkb2017-two-phase", "kkb2017-linear-memorization", "pbb2021-mnist", "dr2017-binary-mnist",
               "certify-budget"}


@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_smoke_preset_end_to_end(name, tmp_path, request):
    if name in NEEDS_MNIST:
        request.getfixturevalue("data_dir")          # skips with a reason when MNIST is not available
    outcome = run_experiment(name, "smoke", out=tmp_path, runtime=Runtime(), progress=False)
    assert outcome.runs_failed == 0, [r.get("reason") for r in outcome.table.rows]
    assert outcome.missing == 0 and outcome.runs_trained == len(outcome.table) > 0
    exp_dir = tmp_path / name
    summary = json.loads((exp_dir / "summary.json").read_text())
    assert summary["experiment"] == name and summary["preset"] == "smoke"
    assert len(summary["claims"]) == len(EXPERIMENTS.get(name).obj.claims) > 0
    for claim in summary["claims"]:
        assert set(claim) >= {"name", "held", "value", "detail"} and isinstance(claim["held"], bool)
    with open(exp_dir / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(outcome.table)
    assert any(key.startswith("hp.") for key in rows[0]) and "test_error" in rows[0]
    assert (exp_dir / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (exp_dir / "figure.pdf").read_bytes()[:5] == b"%PDF-"
    page = (exp_dir / "report.html").read_text()
    assert "data:image/png;base64," in page and all(c["name"] in page for c in summary["claims"])


def test_every_experiment_declares_the_standard_presets():
    for entry in EXPERIMENTS:
        assert set(PRESETS) <= set(entry.obj.presets), entry.name
        assert "demo" in entry.obj.presets and entry.obj.notes.get("demo"), f"{entry.name}: gapbench demo's preset"
        assert entry.obj.paper and entry.obj.figure and entry.obj.claims


def test_demo_writes_one_combined_report(tmp_path):
    from gapbench.demo import run_demo

    path = run_demo(out=tmp_path, runtime=Runtime(progress=False), names=("nk2019-linear", "kkb2017-deep-paths"),
                    preset="smoke")
    page = path.read_text()
    assert path == tmp_path / "report.html" and page.count("data:image/png;base64,") == 2
    assert "<i>smoke</i> preset" in page
    for name in ("nk2019-linear", "kkb2017-deep-paths"):      # the summary table links every section
        assert re.search(rf"<tr><td><a href='#{name}'>{name}</a></td><td>smoke</td><td class='\w+'>\d/\d</td>",
                         page) and f'<section id="{name}">' in page
    assert page.count("<table class='params'>") == 2 and not re.search(r"<(h\d)[^>]*>\s*</\1>", page)
    assert (tmp_path / "nk2019-linear" / "summary.json").exists()


def test_two_phase_budgets_share_one_standard_baseline():
    from gapbench.experiments.execute import jobs_for
    exp = EXPERIMENTS.get("kkb2017-two-phase").obj
    by_budget = {b: jobs_for(exp, exp.params("smoke", {"phase1_budget": b})) for b in ("epochs", "steps")}
    standard = {b: {j.signature for j in jobs if j.config["hp"]["mode"] == "standard"}
                for b, jobs in by_budget.items()}
    others = {b: {j.signature for j in jobs if j.config["hp"]["mode"] != "standard"} for b, jobs in by_budget.items()}
    assert standard["epochs"] == standard["steps"] and len(standard["epochs"]) == 1
    assert not others["epochs"] & others["steps"]


@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_job_is_a_module_level_function_that_pickles_by_reference(name):
    import pickle
    job = EXPERIMENTS.get(name).obj.job
    assert callable(job) and job.__module__.startswith("gapbench.experiments.")
    assert pickle.loads(pickle.dumps(job)) is job
