"""The CLI as a user drives it: outputs, reuse, JSON, and one-paragraph errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from gapbench.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_run_writes_outputs_and_reuses(tmp_path):
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--json", "--no-progress")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["runs_trained"] == 3 and summary["runs_reused"] == 0
    assert {c["name"] for c in summary["claims"]} == {"test_error_small", "sprime_all_wrong", "w_norm_slope_half"}
    exp_dir = tmp_path / "nk2019-linear"
    for name in ("figure.png", "figure.pdf", "results.csv", "summary.json", "report.html"):
        assert (exp_dir / name).stat().st_size > 0, name
    header = (exp_dir / "results.csv").read_text().splitlines()[0].split(",")
    assert {"hp.n_train", "test_error", "sprime_error", "w_norm"} <= set(header)
    stored = json.loads((exp_dir / "summary.json").read_text())
    assert stored["experiment"] == "nk2019-linear" and stored["preset"] == "smoke"
    assert "<img src=\"data:image/png;base64," in (exp_dir / "report.html").read_text()
    code, out = invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--json", "--no-progress")
    again = json.loads(out)
    assert again["runs_trained"] == 0 and again["runs_reused"] == 3
    assert again["claims"] == summary["claims"]


def test_report_and_export_use_the_store_only(tmp_path):
    invoke("run", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--no-progress")
    code, out = invoke("report", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--json")
    assert code == 0 and json.loads(out)["runs_trained"] == 0
    code, out = invoke("export", "nk2019-linear", "--preset", "smoke", "--out", tmp_path, "--csv",
                       tmp_path / "x.csv")
    assert code == 0 and len((tmp_path / "x.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("args, message", [
    (("run", "nk2019-linaer"), "Unknown experiment 'nk2019-linaer'. Did you mean 'nk2019-linear'?"),
    (("run", "nk2019-linear", "--preset", "quik"), "Unknown preset 'quik' for experiment 'nk2019-linear'. "
                                                   "Did you mean 'quick'?"),
    (("run", "nk2019-linear", "--set", "sedes=3"), "Unknown --set key 'sedes' for experiment 'nk2019-linear'. "
                                                   "Did you mean 'seeds'? Known keys:"),
    (("run", "nk2019-fig1", "--set", "widht=5"), "Did you mean 'width'? Known keys: augment_noise, batch_size"),
    (("run", "nk2019-linear", "--set", "m=a,b"), "The --set value for 'm' must be a comma-separated list of int"),
    (("run", "nk2019-linear", "--set", "m"), "The --set option must be key=value. Got 'm' instead."),
    (("run", "nk2019-linear", "--workers", "0"), "The 'workers' parameter of gapbench run must be an int >= 1"),
])
def test_user_errors_are_one_paragraph(tmp_path, args, message):
    code, out = invoke(*args, "--out", tmp_path)
    assert code == 2
    assert message in " ".join(out.split())
    assert "Traceback" not in out


def test_errors_exit_2_without_traceback_in_a_real_process(tmp_path):
    env = dict(os.environ, GAPBENCH_DATA=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-m", "gapbench.cli", "run", "kkb2017-random-labels", "--preset",
                           "smoke", "--out", str(tmp_path), "--no-progress"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr and "GAPBENCH_DATA" in proc.stderr


def test_list_shows_every_registry():
    code, out = invoke("list")
    assert code == 0
    for word in ("nk2019-fig1", "heldout_binomial", "spectral_product", "mnist"):
        assert word in out
