"""nk2019-fig1: norm-based bounds grow with the training-set size m while the test error falls
(Nagarajan & Kolter 2019, Fig. 1; SPEC §4.1).

Protocol (NK's poster/slides and released code): 784 → 5 × 1024 ReLU → 10, no biases, Glorot-uniform init,
plain SGD lr 0.1, batch size 1 (the paper; the released script's example uses 64), sigmoid cross-entropy on
one-hot targets averaged over batch × classes, stop when ≥ 99 % of the training set has margin ≥ γ* = 10;
training sets drawn with replacement from the first 55,000 training images; for each m two training sets
from the same initialization. Every protocol choice is a preset key (`--set batch_size=64`, `loss=squared`,
`gamma_rule=median`, `depth=3`, ...).
"""

from __future__ import annotations

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .file_datasets import check_sizes, dataset_param, hp_dataset
from .jobs import train_pair
from .params import choice, count, flag, fraction, nonnegative, positive
from .plotting import loglog_panel
from .quantities import MeasureSpec, PerLayerSpec, QuantitySpec, quantities_json
from .table import slope_of

COMPLEXITIES = ("bartlett2017_complexity", "neyshabur2018_complexity")


def run_config(p, m: int, pair: int) -> RunConfig:
    return RunConfig(
        data=DataConfig(name=p["dataset"], n_train=m, pool_size=p["pool_size"], replace=p["replace"],
                        augment_noise=p["augment_noise"], subset_seed=2 * pair, n_test=p["n_test"]),
        model=ModelConfig(arch="mlp", depth=p["depth"], width=p["width"], bias=False, init="glorot_uniform",
                          init_seed=pair),
        train=TrainConfig(loss=p["loss"], lr=p["lr"], batch_size=p["batch_size"], max_epochs=p["max_epochs"],
                          stop="margin", target_margin=p["gamma"], margin_fraction=p["margin_fraction"],
                          sgd_seed=pair))


def quantities(p, m: int) -> list[QuantitySpec]:
    out = [MeasureSpec("dist_from_init_fro"), MeasureSpec("spectral_product"), PerLayerSpec("dist_from_init_fro")]
    for name in COMPLEXITIES:
        out.append(MeasureSpec(name))
        out.append(MeasureSpec(name, as_=f"{name}_normalized",
                               params={"normalize": "gamma_sqrt_m", "gamma": p["gamma"]}))
        out.append(MeasureSpec(name, as_=f"{name}_normalized_median",
                               params={"normalize": "gamma_sqrt_m", "gamma": "median"}))
    return out


def points(p):
    check_sizes(p, "nk2019-fig1", train=("pool_size",), test=("n_test",))   # m may exceed the pool (replace)
    return [{"hp": {"n_train": m, "pair": pair, "batch_size": p["batch_size"], "loss": p["loss"],
                    "depth": p["depth"], "width": p["width"], "gamma": p["gamma"], **hp_dataset(p)},
             "run": to_dict(run_config(p, m, pair)), "pair_subset_seed": 2 * pair + 1,
             "quantities": quantities_json(quantities(p, m))}
            for m in p["m"] for pair in range(p["pairs"])]


def _col(p, name):
    return f"{name}_normalized_median" if p["gamma_rule"] == "median" else f"{name}_normalized"


def _slope_claim(column_fn, sign, what):
    def check(t, p):
        column = column_fn(p)
        slope = slope_of(t, "hp.n_train", column)
        held = slope < 0 if sign < 0 else slope > 0
        return held, slope, f"log-log slope of {column} in m ({what})"
    return check


def _between_vs_init(t, p):
    ratios = [r["dist_between_fro"] / r["dist_from_init_fro"] for r in t.rows]
    worst = max(max(ratios), 1 / min(ratios))
    return worst <= 3, worst, "max over m of the factor between ‖W_a − W_b‖_F and ‖W_a − Z‖_F (≤ 3)"


def _converged(t, p):
    frac = sum(r["converged"] * r.get("converged_b", 1.0) for r in t.rows) / len(t)
    return frac == 1.0, frac, f"fraction of pairs that reached the stop rule (margin {p['gamma']:g})"


def plot(t, fig, p):
    axes = fig.subplots(2, 2).ravel()
    loglog_panel(axes[0], t, "hp.n_train", [("test_error", "test error")], title="test error",
                 ylabel="test error")
    loglog_panel(axes[1], t, "hp.n_train", [("dist_from_init_fro", "‖W − Z‖_F"),
                                             ("dist_between_fro", "‖W − W̃‖_F (two draws)")],
                 title="distance from initialization", ylabel="Frobenius distance")
    loglog_panel(axes[2], t, "hp.n_train", [(_col(p, n), n.replace("_complexity", "")) for n in COMPLEXITIES],
                 title=f"bounds ÷ (γ√m), γ = {'median margin' if p['gamma_rule'] == 'median' else p['gamma']}",
                 ylabel="complexity / (γ√m)")
    loglog_panel(axes[3], t, "hp.n_train", [("spectral_product", "Π‖W_l‖₂")], title="spectral product",
                 ylabel="Π‖W_l‖₂")


def slopes(t):
    cols = ["test_error", "dist_from_init_fro", "dist_between_fro", "spectral_product"]
    cols += [f"{n}_normalized" for n in COMPLEXITIES] + [f"{n}_normalized_median" for n in COMPLEXITIES]
    return {c: slope_of(t, "hp.n_train", c) for c in cols}


PAPER = {"dataset": "mnist", "m": [2 ** k for k in range(7, 16)], "pairs": 1, "depth": 5, "width": 1024, "lr": 0.1,
         "batch_size": 1, "loss": "sigmoid_ce", "gamma": 10.0, "margin_fraction": 0.99, "gamma_rule": "target",
         "max_epochs": 200, "pool_size": 55000, "replace": True, "augment_noise": 0.01, "n_test": 10000}

SPEC = {"dataset": dataset_param(),  # file_datasets.py
        "m": count(many=True), "pairs": count(), "depth": count(0), "width": count(), "lr": positive(),
        "batch_size": count(), "loss": choice("softmax_ce", "sigmoid_ce", "squared"),  # train.LOSSES (no torch here)
        "gamma": positive(), "margin_fraction": fraction(low_open=True),
        "gamma_rule": choice("target", "median"), "max_epochs": count(), "n_test": count(), "pool_size": count(),
        "replace": flag(), "augment_noise": nonnegative()}
PLUMBING = {"smoke": "the smoke preset is a plumbing check, not the phenomenon (preset note: 2 hidden layers of "
                     "64, m = 32, 64); measured slopes −0.03 (Bartlett) and −0.04 (Neyshabur) there"}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="nk2019-fig1",
    paper="Nagarajan & Kolter 2019, Uniform convergence may be unable to explain generalization in deep learning",
    figure="Fig. 1 (bounds vs training-set size on MNIST)",
    summary="As m grows the test error falls, but the distance from initialization and the norm-based bounds "
            "(Bartlett et al. 2017, Neyshabur et al. 2018), normalized by γ√m, grow.",
    presets={
        "smoke": {**PAPER, "m": [32, 64], "depth": 2, "width": 64, "gamma": 2.0, "max_epochs": 30,
                  "n_test": 1000},
        "quick": {**PAPER, "m": [128, 256, 512, 1024]},
        "demo": {**PAPER, "m": [128, 256, 512]},
        "paper": PAPER,
    },
    points=points,
    job=train_pair,
    claims=(
        Claim("test_error_decreases", "test-error slope < 0 (paper: −0.43)",
              _slope_claim(lambda p: "test_error", -1, "paper: −0.43")),
        Claim("dist_from_init_increases", "distance-from-init slope > 0",
              _slope_claim(lambda p: "dist_from_init_fro", +1, "must be > 0")),
        Claim("bartlett_increases", "Bartlett et al. complexity ÷ γ√m slope > 0",
              _slope_claim(lambda p: _col(p, "bartlett2017_complexity"), +1, "must be > 0"),
              expected_not_held=PLUMBING),
        Claim("neyshabur_increases", "Neyshabur et al. complexity ÷ γ√m slope > 0",
              _slope_claim(lambda p: _col(p, "neyshabur2018_complexity"), +1, "must be > 0"),
              expected_not_held=PLUMBING),
        Claim("two_draws_within_3x", "‖W − W̃‖ within a factor 3 of ‖W − Z‖ at every m", _between_vs_init),
        Claim("stop_rule_reached", "every run reached the margin stop rule", _converged),
    ),
    plot=plot,
    statistics=slopes,
    notes={"smoke": "2 hidden layers of 64, γ* = 2, m = 32, 64: a plumbing check, not the phenomenon",
           "quick": "the paper's protocol (batch 1, γ* = 10) at m = 128 … 1024, one pair of draws",
           "paper": "m = 128 … 32,768, one pair of draws per m",
           "demo": "the paper's protocol (batch 1, γ* = 10) at m = 128, 256, 512 only: slopes from 3 points"},
))
