"""Model zoos: smoke builds of every zoo, reuse on rerun, export/import, the ZooModel fields and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from gapbench.cli import main
from gapbench.errors import GapbenchError
from gapbench.experiments.execute import run_experiment
from gapbench.inference import logits, zero_one_error
from gapbench.zoo import ZOOS, build_zoo, export_zoo, import_zoo, load_zoo
from gapbench.zoo.build import jobs_of

SMOKE = {"n_test": "300"}                        # mnist-hparams smoke: 4 MLPs on 100 points, seeds stacked
FIG1 = {"m": "16,32", "width": "16", "depth": "1", "max_epochs": "10", "n_test": "200"}
SPHERE = {"m": "32,64", "dim": "10", "width": "20", "max_epochs": "20", "n_test": "128"}


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    return build_zoo("mnist-hparams", "smoke", out=out, overrides=SMOKE, progress=False, data_dir=str(data_dir))


def test_mnist_hparams_smoke_trains_every_model_to_the_loss_threshold(built):
    assert built.build == {"trained": 2, "reused": 0, "failed": 0}          # 2 grid points x 2 seeds
    assert len(built) == 4 and built.counts() == {"converged": 4, "max_epochs": 0, "failed": 0, "missing": 0,
                                                  "total": 4}
    assert built.varied == ["seed", "width"]
    for model in built:
        assert model.run.extra["engine"] == "StackedMLP"                    # the seeds trained as one model
        x, y = model.data.train.x, model.data.train.y
        ce = float(F.cross_entropy(logits(model.model(), x), y))          # recomputed, not the stored value
        assert ce <= 0.01 * (1 + 1e-4), (model.id, ce)
        assert model.run.config.train.stop == "loss" and model.run.config.train.loss_threshold == 0.01


def test_provenance_names_data_pools_checksums_and_code(built):
    prov = built.provenance
    assert prov["datasets"] == ["mnist"] and prov["pools"] == ["mnist:test", "mnist:train"]
    assert set(prov["checksums"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert all(len(digest) == 64 for digest in prov["checksums"].values())
    assert prov["gapbench"] and "git_sha" in prov


def test_zoo_model_fields_agree_with_the_model_and_its_data(built):
    for model in built:
        net, data = model.model(), model.data
        assert not net.training and model.m == len(data.train) == 100
        train, test = zero_one_error(net, data.train.x, data.train.y), zero_one_error(net, data.test.x, data.test.y)
        assert model.train_error == pytest.approx(train, abs=1e-12)
        assert model.gap == pytest.approx(test - train, abs=1e-12)
        assert model.id == model.checkpoint.stem == model.run.signature
        assert model.mirrored is None and model.stop_reason == "converged" and model.data is data   # cached
        init = model.init()
        assert all(torch.equal(init.state_dict()[k], v) for k, v in model.run.init_state.items())
        first = next(iter(model.run.init_state))
        assert not torch.equal(init.state_dict()[first], net.state_dict()[first])
        assert model.hp["seed"] == model.config.model.init_seed == model.config.data.subset_seed


def test_rerun_reuses_every_stored_model(built, data_dir):
    mtimes = {m.id: m.checkpoint.stat().st_mtime_ns for m in built}
    again = build_zoo("mnist-hparams", "smoke", out=built.out, overrides=SMOKE, progress=False,
                      data_dir=str(data_dir))
    assert again.build == {"trained": 0, "reused": 2, "failed": 0}
    assert {m.id: m.checkpoint.stat().st_mtime_ns for m in again} == mtimes
    loaded = load_zoo(built.out, "mnist-hparams")
    assert [m.id for m in loaded] == [m.id for m in built] and loaded.params == built.params


def test_capped_models_are_recorded_and_left_out_by_default(data_dir, tmp_path):
    zoo = build_zoo("mnist-hparams", "smoke", out=tmp_path, progress=False, data_dir=str(data_dir),
                    overrides={**SMOKE, "max_epochs": "1", "lr": "0.001", "width": "8"})
    assert len(zoo) == 0 and zoo.counts()["max_epochs"] == 2
    capped = zoo.models(include_capped=True)
    assert [m.stop_reason for m in capped] == ["max_epochs"] * 2 and all(m.capped for m in capped)


def test_diverged_models_are_counted_as_failed_and_never_included(data_dir, tmp_path):
    zoo = build_zoo("mnist-hparams", "smoke", out=tmp_path, progress=False, data_dir=str(data_dir),
                    overrides={**SMOKE, "max_epochs": "5", "lr": "1e30"})
    assert zoo.counts()["failed"] == 4 and zoo.models(include_capped=True) == []
    assert all(m.values["failed"] == 1.0 and "test_error" not in m.values for m in zoo.all_models)


def test_export_import_gives_the_same_models_and_nothing_retrains(built, data_dir, tmp_path):
    export_zoo(built, tmp_path / "export")
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert [e["id"] for e in manifest["models"]] == [m.id for m in built]
    assert manifest["models"][0]["stop_reason"] == "converged" and len(manifest["models"][0]["sha256"]) == 64
    imported = import_zoo(tmp_path / "export", tmp_path / "elsewhere")
    again = load_zoo(tmp_path / "elsewhere", "mnist-hparams", data_dir=str(data_dir))
    x = built.all_models[0].data.test.x[:64]
    for a, b in zip(built, again, strict=True):
        assert (a.id, a.hp, a.test_error, a.train_error) == (b.id, b.hp, b.test_error, b.train_error)
        assert torch.equal(logits(a.model(), x), logits(b.model(), x))
    assert imported.provenance == built.provenance
    rebuilt = build_zoo("mnist-hparams", "smoke", out=tmp_path / "elsewhere", overrides=SMOKE, progress=False,
                        data_dir=str(data_dir))
    assert rebuilt.build["trained"] == 0
    with pytest.raises(GapbenchError, match="already holds a zoo export"):
        export_zoo(built, tmp_path / "export")


def test_a_tampered_checkpoint_is_refused_and_nothing_is_imported(built, tmp_path):
    export_zoo(built, tmp_path / "export")
    victim = tmp_path / "export" / "checkpoints" / f"{built.all_models[1].id}.pt"
    payload = bytearray(victim.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    victim.write_bytes(bytes(payload))
    with pytest.raises(GapbenchError, match=rf"checkpoint '{victim}' of zoo export .* does not match"):
        import_zoo(tmp_path / "export", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_nk_m_sweep_shares_the_runs_of_nk2019_fig1(data_dir, tmp_path):
    zoo = build_zoo("nk-m-sweep", "smoke", out=tmp_path, overrides=FIG1, progress=False, data_dir=str(data_dir))
    assert zoo.build == {"trained": 2, "reused": 0, "failed": 0}
    models = zoo.models(include_capped=True)
    assert [(m.m, m.hp["draw"]) for m in models] == [(16, "a"), (16, "b"), (32, "a"), (32, "b")]
    assert models[0].run.config.model.init_seed == models[1].run.config.model.init_seed       # one init per pair
    assert models[0].config.data.subset_seed != models[1].config.data.subset_seed
    for model in models:
        net = model.model()
        assert model.test_error == pytest.approx(zero_one_error(net, model.data.test.x, model.data.test.y))
    outcome = run_experiment("nk2019-fig1", "smoke", overrides=FIG1, out=tmp_path, progress=False, write=False)
    assert (outcome.runs_trained, outcome.runs_reused) == (0, 2)


def test_nk_hypersphere_models_carry_s_and_the_mirrored_s_prime(tmp_path):
    zoo = build_zoo("nk-hypersphere", "smoke", out=tmp_path, overrides=SPHERE, progress=False)
    models = zoo.models(include_capped=True)
    assert sorted(m.m for m in models) == [32, 64]
    for model in models:
        train, mirrored = model.data.train, model.mirrored
        assert len(mirrored) == len(train) and torch.equal(mirrored.y, 1 - train.y)
        radius = train.x.norm(dim=1)                   # smoke radii 1 and 1.2: S' swaps every point's sphere
        other = torch.where(torch.isclose(radius, torch.tensor(1.0)), torch.tensor(1.2), torch.tensor(1.0))
        assert torch.allclose(mirrored.x.norm(dim=1), other, atol=1e-5)
        assert model.values["sprime_error"] == pytest.approx(zero_one_error(model.model(), mirrored.x, mirrored.y))


def test_every_preset_of_every_zoo_expands_to_jobs():
    for entry in ZOOS:
        for preset in entry.obj.presets:
            assert jobs_of(entry.obj, entry.obj.params(preset)), (entry.name, preset)
    zdef = ZOOS.get("mnist-hparams").obj
    models = {preset: sum(len(zdef.members(job.config, None, None)) for job in jobs_of(zdef, zdef.params(preset)))
              for preset in ("smoke", "quick", "paper")}
    assert models["smoke"] == 4 and 24 <= models["quick"] <= 100 and models["paper"] >= 243


def test_the_coupled_preset_is_an_mlp_grid_whose_environments_can_pass_the_papers_ess_filter():
    import numpy as np

    from gapbench.ranking import robust_sign_error, seeds_needed
    from gapbench.ranking.coupled import PAPER_MIN_ESS, PAPER_N_TEST
    zdef = ZOOS.get("mnist-hparams").obj
    p = zdef.params("coupled")
    varied = ("depth", "width", "lr", "batch_size", "weight_decay")
    members = [m for job in jobs_of(zdef, p) for m in zdef.members(job.config, None, None)]
    assert p["archs"] == ["mlp"] and all(len(p[hp]) == 2 for hp in varied) and p["n_train"] == [500]
    assert len(jobs_of(zdef, p)) == 2 ** 5 and p["seeds"] == 7 and len(members) == 32 * 7
    assert p["n_test"] == PAPER_N_TEST and {m.run["data"]["n_test"] for m in members} == {PAPER_N_TEST}
    # with equal weights (n_test=None: every pair 1) each environment holds 7·7 = 49 model pairs, ESS 49 ≥ 12:
    # all 5 hps x 16 unordered environments x 2 orders are kept; the quick preset's 2 seeds give ESS 4
    for preset, kept in (("coupled", 5 * 16 * 2), ("quick", 0)):
        members = [m for job in jobs_of(zdef, zdef.params(preset)) for m in zdef.members(job.config, None, None)]
        hps = [{k: v for k, v in m.hp.items() if k in (*varied, "arch")} for m in members]
        hps = [{k: v for k, v in h.items() if len({repr(g[k]) for g in hps}) > 1} for h in hps]
        gap = np.arange(len(hps)) / len(hps)
        result = robust_sign_error(hps, gap, gap, n_test=None)
        assert len(result.env_losses["all"]) == kept
        assert result.env_pairs["all"].max() == zdef.params(preset)["seeds"] ** 2
    assert p["seeds"] >= seeds_needed(PAPER_MIN_ESS) > zdef.params("quick")["seeds"]


def test_bad_values_are_refused_with_the_parameter_named():
    zdef = ZOOS.get("mnist-hparams").obj
    with pytest.raises(GapbenchError, match="The 'lr' parameter of zoo 'mnist-hparams' must be a non-empty list"):
        zdef.params("smoke", {"lr": "0"})
    with pytest.raises(GapbenchError, match="Unknown --set key 'widht'.*Did you mean 'width'"):
        zdef.params("smoke", {"widht": "3"})
    with pytest.raises(GapbenchError, match="asks for more images than dataset 'cifar10' has"):
        zdef.points(zdef.params("smoke", {"dataset": "cifar10", "n_train": "60000"}))


def test_cli_build_list_show_export_import(data_dir, tmp_path):
    runner = CliRunner()
    out, dest, other = str(tmp_path / "out"), str(tmp_path / "export"), str(tmp_path / "other")
    args = ["zoo", "build", "mnist-hparams", "--preset", "smoke", "--set", "n_test=300", "--out", out,
            "--no-progress", "--data-dir", str(data_dir)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "4 models met the stop rule, 0 capped" in result.output and "2 trained, 0 reused" in result.output
    listed = runner.invoke(main, ["zoo", "list", "--out", out])
    assert "nk-hypersphere" in listed.output and "mnist-hparams    smoke    4 models" in listed.output
    shown = runner.invoke(main, ["zoo", "show", "mnist-hparams", "--out", out, "--json"])
    assert shown.exit_code == 0 and len(json.loads(shown.output)["models"]) == 4
    assert runner.invoke(main, ["zoo", "export", "mnist-hparams", dest, "--out", out]).exit_code == 0
    imported = runner.invoke(main, ["zoo", "import", dest, "--out", other])
    assert imported.exit_code == 0 and "imported mnist-hparams (smoke): 4 models" in imported.output
    shutil.rmtree(tmp_path / "other")


@pytest.mark.parametrize("args, message", [
    (["zoo", "build", "mnist-hparam"], "Unknown zoo 'mnist-hparam'. Did you mean 'mnist-hparams'?"),
    (["zoo", "build", "mnist-hparams", "--preset", "smoke", "--set", "seeds=0"],
     "The 'seeds' parameter of zoo 'mnist-hparams' must be an int >= 1. Got 0 instead."),
    (["zoo", "build", "mnist-hparams", "--set", "lr"], "The --set option must be key=value."),
    (["zoo", "show", "nk-m-sweep"], "No zoo 'nk-m-sweep' is built in"),
    (["zoo", "import", "{tmp}/nowhere"], "is not a directory"),
    (["zoo", "import", "{tmp}"], "is not a zoo export: it has no manifest.json"),
])
def test_cli_errors_are_one_paragraph_and_exit_2(args, message, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in " ".join(result.output.split()), result.output
