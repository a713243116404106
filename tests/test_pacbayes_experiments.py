"""The PAC-Bayes experiments at their smoke presets and `gapbench certify --method pacbayes` on what they wrote:
the certificate recomputed from its stored terms by the slow references (tests/reference_bounds.py), the
union over F counted from the preset, S_prior and S_bound disjoint through the records, and every bad input
with its message."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from reference_bounds import binomial_inverse, kl_inverse
from torch import nn

import gapbench.experiments.pbb2021_mnist as pbb
from gapbench.cli import main
from gapbench.config import Runtime
from gapbench.errors import GapbenchError
from gapbench.experiments import get
from gapbench.experiments.dr2017_binary_mnist import PRIOR_VAR_BASE, PRIOR_VAR_PRECISION
from gapbench.experiments.execute import run_experiment
from gapbench.pacbayes import store
from gapbench.pacbayes.certificate import pacbayes_certificate
from gapbench.pacbayes.nets import probabilistic
from gapbench.pacbayes.splits import load_splits


@pytest.fixture(scope="module")
def pbb_smoke(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pbb")
    outcome = run_experiment("pbb2021-mnist", "smoke", out=out, runtime=Runtime(data_dir=str(data_dir)),
                             progress=False)
    return outcome, out


def _cli(*args):
    """(exit code, output with the CLI's line wrapping undone)."""
    outcome = CliRunner().invoke(main, [str(a) for a in args])
    return outcome.exit_code, " ".join(outcome.output.split())


def _verdicts_as_expected(outcome):
    """Each claim holds unless its experiment says why not at this preset (a measured fact)."""
    for claim, result in zip(get(outcome.experiment).claims, outcome.claims, strict=True):
        assert result.held == (outcome.preset not in claim.expected_not_held), (claim.name, result.detail)


def _posterior(row) -> Path:
    return Path(row["checkpoint"])


def test_certificate_recomputed_from_its_terms_with_the_union_over_the_grid(pbb_smoke):
    outcome, _ = pbb_smoke
    p = get("pbb2021-mnist").params("smoke")
    family = len(p["priors"]) * len(p["objectives"]) * len(p["prior_std"])     # every certificate looked at
    assert len(outcome.table.rows) == len(p["archs"]) * family
    for r in outcome.table.rows:
        n, draws, errors = int(r["n"]), int(r["n_draws"]), round(r["r_hat_mc"] * r["n_draws"])
        assert draws == n * p["passes"] and r["delta_mc"] + r["delta_pacbayes"] == pytest.approx(p["delta"])
        mc_upper = binomial_inverse(draws, errors, p["delta_mc"])
        budget = (r["kl"] + math.log(2 * math.sqrt(n) / (p["delta"] - p["delta_mc"])) + math.log(family)) / n
        assert r["kl_budget"] == pytest.approx(budget, rel=1e-9)
        assert r["certificate"] == pytest.approx(kl_inverse(mc_upper, budget), abs=1e-6)
        assert r["certificate"] >= r["r_hat_mc"]
        assert r["test_error"] == r["test_error_stochastic"]       # the certified classifier is Q, not its mean
    _verdicts_as_expected(outcome)


def test_s_prior_and_s_bound_disjoint_through_the_records(pbb_smoke, data_dir):
    outcome, _ = pbb_smoke
    for r in outcome.table.rows:
        ckpt = store.load(_posterior(r))
        data = load_splits(ckpt.split_spec, data_dir=str(data_dir))
        assert torch.equal(ckpt.bound_indices, data.bound.indices)
        if r["hp.prior"] == "data-free":
            assert ckpt.prior_points() is None and r["n_bound"] == r["n_train"]
            continue
        prior_indices, pool = ckpt.prior_points()
        assert pool == data.bound.pool == "mnist:train"
        assert not torch.isin(ckpt.bound_indices, prior_indices).any()
        assert len(prior_indices) + len(ckpt.bound_indices) == r["n_train"] == len(data.train)
        assert r["n_prior"] == len(prior_indices) == round(0.5 * r["n_train"])


def test_cli_certifies_the_smoke_checkpoint_as_a_new_user(pbb_smoke, data_dir):
    outcome, _ = pbb_smoke
    p = get("pbb2021-mnist").params("smoke")
    row = next(r for r in outcome.table.rows if r["hp.prior"] == "trained")
    family = int(row["hp.family_size"])
    proc = subprocess.run([sys.executable, "-m", "gapbench", "certify", str(_posterior(row)), "--method", "pacbayes",
                           "--passes", str(p["passes"]), "--family-size", str(family), "--json"],
                          capture_output=True, text=True, env={**os.environ, "GAPBENCH_DATA": str(data_dir)},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    cert = json.loads(proc.stdout)
    assert cert["risk"] == pytest.approx(row["certificate"], abs=1e-12)     # same draws: same seed, same passes
    assert any("checked disjoint" in s for s in cert["statements"])
    code, text = _cli("certify", _posterior(row), "--method", "pacbayes", "--passes", 2, "--data-dir", data_dir)
    assert code == 0 and "never the deterministic mean network" in text


def test_cli_refuses_a_deterministic_checkpoint(tmp_path, data_dir):
    outcome = run_experiment("certify-budget", "smoke", out=tmp_path, runtime=Runtime(data_dir=str(data_dir)),
                             progress=False)
    _verdicts_as_expected(outcome)
    det = next(r for r in outcome.table.rows if r["hp.method"] == "held-out")
    code, text = _cli("certify", det["checkpoint"], "--method", "pacbayes", "--data-dir", data_dir)
    assert code == 2 and "checkpoint of a deterministic network" in text
    assert "--method heldout" in text and "Traceback" not in text
    code, text = _cli("certify", det["checkpoint"], "--split", "val", "--data-dir", data_dir)     # the default method
    assert code == 0 and "headline" in text


def test_cli_refuses_delta_mc_not_below_delta(pbb_smoke, data_dir):
    row = pbb_smoke[0].table.rows[0]
    code, text = _cli("certify", _posterior(row), "--method", "pacbayes", "--delta", 0.035, "--delta-mc", 0.05,
                      "--data-dir", data_dir)
    assert code == 2 and "The '--delta-mc' parameter of gapbench certify must be a float in (0, --delta) = (0, 0.035)" \
        in text and "Got 0.05 instead" in text


def test_cli_refuses_a_prior_that_saw_s_bound(pbb_smoke, data_dir, tmp_path):
    row = next(r for r in pbb_smoke[0].table.rows if r["hp.prior"] == "trained")
    ckpt = store.load(_posterior(row))
    record = dict(ckpt.prior_record)
    record["train_indices"] = torch.cat([torch.as_tensor(record["train_indices"]), ckpt.bound_indices[:7]])
    bad = store.save(tmp_path / "posterior-bad.pt", kind="posterior", net=ckpt.net, model_config=ckpt.model_config,
                     input_shape=ckpt.input_shape, num_classes=ckpt.num_classes, prior_std=ckpt.prior_std,
                     split_spec=ckpt.split_spec, prior_record=record, bound_indices=ckpt.bound_indices,
                     training=ckpt.training, history=ckpt.history)
    code, text = _cli("certify", bad, "--method", "pacbayes", "--data-dir", data_dir)
    assert code == 2 and "depends on 7 of the" in text and "S_prior and S_bound are disjoint" in text


def test_overlapping_s_prior_and_s_bound_refused(data_dir):
    spec = pbb.split_spec(get("pbb2021-mnist").params("smoke"), "trained")
    data = load_splits(spec, data_dir=str(data_dir))
    net = probabilistic(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), prior_std=0.03)
    overlapping = (torch.cat([data.prior.indices, data.bound.indices[:3]]), data.bound.pool)
    with pytest.raises(GapbenchError, match="depends on 3 of the 200 points of S_bound"):
        pacbayes_certificate(net, data.bound, delta=0.035, prior_record=overlapping)


def test_tampered_and_prior_checkpoints_refused(pbb_smoke, data_dir, tmp_path):
    row = next(r for r in pbb_smoke[0].table.rows if r["hp.prior"] == "trained")
    prior = next(_posterior(row).parent.glob("prior-*.pt"))
    code, text = _cli("certify", prior, "--method", "pacbayes", "--data-dir", data_dir)
    assert code == 2 and "holds the prior trained on S_prior" in text
    payload = torch.load(_posterior(row), weights_only=True)
    key = next(k for k in payload["state_dict"] if k.endswith("mu"))
    payload["state_dict"][key] = payload["state_dict"][key] + 1
    torch.save(payload, tmp_path / "tampered.pt")
    code, text = _cli("certify", tmp_path / "tampered.pt", "--method", "pacbayes", "--data-dir", data_dir)
    assert code == 2 and "fails its checksum" in text


def test_a_model_with_learned_buffers_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(GapbenchError, match="fold_batchnorm"):
        probabilistic(model, prior_std=0.1)


def test_dr2017_smoke_claims(tmp_path, data_dir):
    outcome = run_experiment("dr2017-binary-mnist", "smoke", out=tmp_path, runtime=Runtime(data_dir=str(data_dir)),
                             progress=False)
    _verdicts_as_expected(outcome)
    row = outcome.table.rows[0]
    assert row["n_bound"] == row["n_train"] and row["hp.prior_std"] ** 2 == pytest.approx(
        PRIOR_VAR_BASE * math.exp(-row["hp.prior_var_j"] / PRIOR_VAR_PRECISION))


def test_dr2017_grid_pays_the_union_weight_at_each_variance():
    p = get("dr2017-binary-mnist").params("paper")
    for config in get("dr2017-binary-mnist").points(p):
        j = config["hp"]["prior_var_j"]
        variance = PRIOR_VAR_BASE * math.exp(-j / PRIOR_VAR_PRECISION)
        assert config["posterior"]["prior_std"] ** 2 == pytest.approx(variance)
        weight = 6 / (math.pi ** 2 * j ** 2) / len(p["objectives"])          # DR's δ_j, split over objectives
        assert 1 / config["certificate"]["family_size"] <= weight             # |F| pays at least that union
        assert config["split"]["binary"] and config["split"]["prior_fraction"] == 0.0


def test_certify_budget_points_hold_out_what_they_certify():
    exp = get("certify-budget")
    p = exp.params("paper")
    held = [c for c in exp.points(p) if "run" in c]
    assert sorted(c["run"]["data"]["n_val"] for c in held) == [1000, 5000, 10000, 20000]


def test_finished_jobs_and_checkpoints_are_reused(pbb_smoke, data_dir):
    outcome, out = pbb_smoke
    runtime = Runtime(data_dir=str(data_dir))
    again = run_experiment("pbb2021-mnist", "smoke", out=out, runtime=runtime, progress=False)
    assert again.runs_trained == 0 and again.runs_reused == len(outcome.table)        # rows from the store
    for path in out.glob("gapbench.sqlite*"):           # the store lost (a kill before commit): checkpoints remain
        path.unlink()
    rerun = run_experiment("pbb2021-mnist", "smoke", out=out, runtime=runtime, progress=False)
    assert rerun.runs_trained == len(outcome.table)
    for old, new in zip(outcome.table.rows, rerun.table.rows, strict=True):
        assert new["train_seconds"] == 0.0                                   # the posterior came from its checkpoint
        assert new["certificate"] == old["certificate"] and new["kl"] == old["kl"]
