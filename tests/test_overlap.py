"""Held-out data must not be training data: certify(), bound('heldout_*') and the CLI check the training record."""

import dataclasses
import json

import pytest
import torch
from click.testing import CliRunner
from reference_bounds import argmax_model

import gapbench as gb
from gapbench.bounds import list_bounds
from gapbench.certificate import certify
from gapbench.cli import main
from gapbench.data import pool_id
from gapbench.data.types import Split
from gapbench.overlap import check_disjoint, training_record
from gapbench.trained import Run

torch.set_num_threads(1)
SPHERE = gb.DataConfig("hypersphere", n_train=40, n_val=30, n_test=50, options={"dim": 2})
HELD_OUT_BOUNDS = [e.name for e in list_bounds() if e.meta.get("held_out")]


@pytest.fixture(scope="module")
def sphere():
    return gb.load_data(SPHERE)


@pytest.fixture(scope="module")
def run(sphere):
    """A Run record trained (nominally) on SPHERE: the argmax model with SPHERE's training positions."""
    return Run(argmax_model(), {}, gb.RunConfig(data=SPHERE), sphere.train.indices)


def words(text: str) -> str:
    return " ".join(text.split())


def test_heldout_bounds_are_marked_held_out():
    assert sorted(HELD_OUT_BOUNDS) == ["heldout_bernstein", "heldout_binomial", "heldout_empirical_bernstein",
                                       "heldout_hoeffding", "heldout_kl"]


def test_certify_checks_a_held_out_split_and_says_so(sphere, run):
    """A generated validation / test split is a fresh draw: another pool than the training points'."""
    cert = certify(argmax_model(), sphere.val, run=run)
    pools = "'hypersphere:val(dim=2, r_inner=1.0, r_outer=1.2, subset_seed=0)', not from 'hypersphere:train("
    assert cert.held_out.startswith(f"checked: drawn from {pools}")
    assert cert.held_out.endswith("the pool of the 40 training points")
    assert f"held-out points: {cert.held_out}" in cert.format() and cert.as_dict()["held_out"] == cert.held_out
    assert cert.bounds == certify(argmax_model(), sphere.val).bounds     # the check never changes a value
    assert certify(argmax_model(), sphere.test, run=run).held_out.startswith("checked: drawn from "
                                                                             "'hypersphere:test(")


@pytest.mark.parametrize("split", ["train", "sprime"])
def test_certify_refuses_training_points(sphere, run, split):
    with pytest.raises(gb.GapbenchError, match=r"The held-out split '\w+' shares 40 of its 40 points with the "
                       r"40 training points of the model \(same source pool 'hypersphere:train\(.*\)'\), so no "
                       r"held-out bound is valid on it\. Use the test split \(--split test"):
        certify(argmax_model(), sphere.split(split), run=run)


def test_train_indices_with_their_pool_act_like_a_run(sphere, run):
    half = sphere.train.indices[:20]
    val_like = dataclasses.replace(sphere.train, indices=sphere.train.indices[20:], name="val")
    cert = certify(argmax_model(), val_like, train_indices=half, train_source=sphere.train.pool)
    assert cert.held_out == "checked: disjoint from the 20 training points"
    with pytest.raises(gb.GapbenchError, match="shares 1 of its 20 points with the 20 training points"):
        certify(argmax_model(), val_like, train_indices=sphere.train.indices[1:21],
                train_source=sphere.train.pool)


def test_without_a_record_the_certificate_states_its_assumption(sphere):
    expected = ("assumes the 30 points were not used to train or select f; pass run= or train_indices= to "
                "have it checked")
    for data in (sphere.val, sphere.val.as_tuple()):
        cert = certify(argmax_model(), data)
        assert cert.held_out == expected and f"held-out points: {expected}" in cert.format()


@pytest.mark.parametrize("kwargs, message", [
    ({"train_indices": torch.arange(3)}, "The 'train_source' parameter of certify() must name the pool the "
                                         "train_indices point into. Got None instead. Pass "
                                         "train_source=data.train.pool"),
    ({"train_source": "mnist:train"}, "certify() got train_source= without train_indices="),
    ({"train_indices": torch.rand(3), "train_source": "mnist:train"},
     "The 'train_indices' parameter of certify() must be integer positions in the training pool. Got Tensor"),
    ({"run": "run.pt"}, "The 'run' parameter of certify() must be a gapbench Run"),
])
def test_bad_records_are_refused(sphere, kwargs, message):
    with pytest.raises(gb.GapbenchError) as err:
        certify(argmax_model(), sphere.val, **kwargs)
    assert message in str(err.value)


def test_both_records_and_unverifiable_data_are_refused(sphere, run):
    with pytest.raises(gb.GapbenchError, match=r"got both run= and train_indices="):
        certify(argmax_model(), sphere.val, run=run, train_indices=torch.arange(3), train_source="x:train")
    with pytest.raises(gb.GapbenchError, match=r"is an \(x, y\) pair, whose points cannot be checked.*Pass the "
                       r"Split"):
        certify(argmax_model(), sphere.val.as_tuple(), run=run)
    no_pool = dataclasses.replace(sphere.val, pool="")
    with pytest.raises(gb.GapbenchError, match=r"does not say which pool its points come from"):
        certify(argmax_model(), no_pool, run=run)


def test_another_dataset_is_never_compared(sphere):
    mnist_run = Run(argmax_model(), {}, gb.RunConfig(data=gb.DataConfig("mnist", n_train=40)), torch.arange(40))
    with pytest.raises(gb.GapbenchError, match=r"comes from 'hypersphere:val\(.*\)', but the 40 training points "
                       r"come from 'mnist:train', another dataset"):
        certify(argmax_model(), sphere.val, run=mnist_run)


@pytest.mark.parametrize("name", HELD_OUT_BOUNDS)
def test_every_heldout_bound_takes_the_record(sphere, run, name):
    params = {"assume_var": 0.25} if name == "heldout_bernstein" else {}
    checked = gb.bound(name, argmax_model(), sphere.val, delta=0.05, run=run, **params)
    assumed = gb.bound(name, argmax_model(), sphere.val, delta=0.05, **params)
    assert checked.value == assumed.value
    assert checked.assumptions[-1].startswith("checked: drawn from 'hypersphere:val(")
    assert assumed.assumptions[-1].startswith("assumes the 30 points were not used to train or select f")
    with pytest.raises(gb.GapbenchError, match=r"shares 40 of its 40 points with the 40 training points"):
        gb.bound(name, argmax_model(), sphere.train, delta=0.05, run=run, **params)


def test_other_bounds_do_not_take_a_record(sphere, run):
    with pytest.raises(gb.GapbenchError, match=r"The parameter\(s\) \['run'\] of bound\('linear_margin'\) are "
                       r"not accepted"):
        gb.bound("linear_margin", argmax_model(), sphere.train, delta=0.05, run=run)


def content_overlap(a: Split, b: Split) -> int:
    """How many rows of b are (exactly) rows of a: the overlap by content, independent of indices and pools."""
    return int((torch.cdist(b.x.double(), a.x.double()) == 0).any(1).sum())


@pytest.mark.parametrize("name, options", [("hypersphere", {"dim": 3}), ("nk_linear", {"D": 8})])
@pytest.mark.parametrize("change", [{}, {"n_train": 60}, {"label_noise": 0.5}, {"subset_seed": 1},
                                    {"options": {"test_seed": 4}}, {"n_val": 10}])
def test_the_check_finds_every_overlap_by_content(name, options, change):
    """Reference: compare points, not indices. Whatever two loads differ in, every point a split shares with
    the training set is caught, and a split said to be 'checked' shares none."""
    base = gb.DataConfig(name, n_train=40, n_val=20, n_test=30, options=options)
    other = dataclasses.replace(base, **{**change, "options": {**options, **change.get("options", {})}})
    trained, data = gb.load_data(base), gb.load_data(other)
    record = training_record(Run(None, {}, gb.RunConfig(data=base), trained.train.indices), where="test")
    for split in (data.train, data.val, data.test, data.extra["sprime"]):
        shared = content_overlap(trained.train, split) if split.name != "sprime" else None
        try:
            check_disjoint(record.indices, split, train_pool=record.pool)
        except gb.GapbenchError:
            continue
        assert shared in (0, None), (split.name, shared)
        assert split.name != "sprime" or split.pool != pool_id(base, "train")


def test_cli_certify_refuses_the_training_split(tmp_path):
    cfg = gb.RunConfig(data=SPHERE, model=gb.ModelConfig(width=4), train=gb.TrainConfig(stop="epochs",
                                                                                       max_epochs=1))
    path = gb.save_checkpoint(tmp_path / "run.pt", gb.fit(cfg))
    result = CliRunner().invoke(main, ["certify", str(path), "--split", "train"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "shares 40 of its 40 points with the 40 training points of the model" in words(result.output)
    result = CliRunner().invoke(main, ["certify", str(path), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "held-out points: checked: drawn from 'hypersphere:val(" in result.output


def test_fit_refuses_data_from_another_pool(sphere):
    cfg = gb.RunConfig(data=dataclasses.replace(SPHERE, subset_seed=1), train=gb.TrainConfig(max_epochs=1))
    with pytest.raises(gb.GapbenchError, match=r"The 'data' parameter of fit\(\) must be loaded from cfg.data, "
                       r"whose training pool is 'hypersphere:train\(.*subset_seed=1\)'\. Got data from "
                       r"'hypersphere:train\(.*subset_seed=0\)' instead\. Pass gb.load_data\(cfg.data\)"):
        gb.fit(cfg, sphere)


def test_cli_certify_assume_var_is_printed_and_checked(tmp_path):
    """--assume-var switches heldout_bernstein to KKB's assumed-variance form, says so, and is range-checked
    under its own name; without it the Bernstein row is the assumption-free one."""
    cfg = gb.RunConfig(data=SPHERE, model=gb.ModelConfig(width=4), train=gb.TrainConfig(stop="epochs",
                                                                                       max_epochs=1))
    path = gb.save_checkpoint(tmp_path / "run.pt", gb.fit(cfg))
    free = CliRunner().invoke(main, ["certify", str(path), "--split", "val", "--json"])
    assumed = CliRunner().invoke(main, ["certify", str(path), "--split", "val", "--json", "--assume-var", "1e-4"])
    assert free.exit_code == assumed.exit_code == 0, (free.output, assumed.output)
    free_b = json.loads(free.output)["bounds"]["heldout_bernstein"]
    assumed_b = json.loads(assumed.output)["bounds"]["heldout_bernstein"]
    assert assumed_b["value"] < free_b["value"]
    assert any(a.startswith("assumes Var ≤ 0.0001") for a in assumed_b["assumptions"])
    bad = CliRunner().invoke(main, ["certify", str(path), "--split", "val", "--assume-var", "-1"])
    assert bad.exit_code == 2 and "'--assume-var'" in bad.output and "Traceback" not in bad.output
