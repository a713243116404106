"""kkb2017-validation: a held-out validation set certifies every model of a family, whatever its capacity
(Kawaguchi, Kaelbling & Bengio, §6 "generalization via validation" / SPEC §4.5).

A grid of MNIST models (width, depth, lr, training length, random-label fraction 0 / 0.5 / 1) is trained on
the training split minus n_val points; the n_val points (a uniformly random split of the training file,
gapbench.data.subsets) are never used for training or selection. Each model
gets the held-out bounds with |F| = the family size (the whole grid: every model is a member, checkpoints of
different lengths included) and with |F| = 10⁹ for comparison, and the norm-based measures, whose Kendall τ
with the test error is reported next to the validation bound's.
"""

from __future__ import annotations

import itertools

from scipy.stats import kendalltau

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .file_datasets import check_sizes, dataset_param, hp_dataset
from .jobs import train_measure
from .params import count, fraction, positive
from .quantities import BoundSpec, MeasureSpec, quantities_json

HELDOUT = ("heldout_binomial", "heldout_kl", "heldout_hoeffding", "heldout_empirical_bernstein",
           "heldout_bernstein")
NORMS = ("spectral_product", "frobenius_product", "path_norm_l2", "dist_from_init_fro",
         "bartlett2017_complexity", "neyshabur2018_complexity")
BIG_FAMILY = 10 ** 9


def _grid(p):
    return list(itertools.product(p["width"], p["depth"], p["lr"], p["epochs"], p["label_noise"]))


def _bounds(family: int, suffix: str) -> list[BoundSpec]:
    # heldout_bernstein: the assumption-free form (no assume_var)
    return [BoundSpec(name, as_=name + suffix, split="val", params={"family_size": family}, delta=0.05)
            for name in HELDOUT]


def points(p):
    check_sizes(p, "kkb2017-validation", train=("n_train", "n_val"), test=("n_test",))
    grid = _grid(p)
    family = len(grid)
    quantities = quantities_json(_bounds(family, "") + _bounds(BIG_FAMILY, "_F1e9") + [MeasureSpec(n) for n in NORMS])
    configs = []
    for width, depth, lr, epochs, noise in grid:
        run = RunConfig(
            data=DataConfig(name=p["dataset"], n_train=p["n_train"], n_val=p["n_val"], label_noise=noise,
                            subset_seed=p["seed"], label_seed=p["seed"], n_test=p["n_test"]),
            model=ModelConfig(arch="mlp", depth=depth, width=width, bias=True, init_seed=p["seed"]),
            train=TrainConfig(loss="softmax_ce", lr=lr, momentum=p["momentum"], batch_size=p["batch_size"],
                              max_epochs=epochs, stop="epochs", sgd_seed=p["seed"]))
        configs.append({"hp": {"width": width, "depth": depth, "lr": lr, "epochs": epochs, "label_noise": noise,
                               "family_size": family, "n_val": p["n_val"], **hp_dataset(p)},
                        "run": to_dict(run), "quantities": quantities})
    return configs


def _violations(t, p):
    checks = [(r[b], r["test_error"]) for r in t.rows for b in HELDOUT]
    bad = sum(1 for bound, test in checks if bound < test)
    frac = bad / len(checks)
    return frac <= 0.05, bad, (f"{bad} of {len(checks)} (model, bound) pairs with bound < test error "
                               "(≤ 5 % allowed at δ = 0.05)")


def _best_model_gap(t, p):
    best = min(t.rows, key=lambda r: r["val_error"])    # selected on the validation set, as |F| accounts for
    gap = best["heldout_binomial"] - best["test_error"]
    return gap <= 0.03, gap, (f"binomial bound {best['heldout_binomial']:.4f} − test error {best['test_error']:.4f} "
                              f"of the model with the lowest validation error (n_val = {p['n_val']}; ≤ 0.03)")


def kendall(t, column):
    tau = kendalltau(t.column(column), t.column("test_error")).statistic
    return float(tau)


def _norms_do_not_order(t, p):
    taus = {n: kendall(t, n) for n in NORMS}
    bound_tau = kendall(t, "heldout_binomial")
    best_norm = max(taus, key=lambda n: taus[n])
    detail = (f"Kendall τ with test error: heldout_binomial {bound_tau:.3f}; "
              + ", ".join(f"{n} {v:.3f}" for n, v in taus.items()))
    return all(v < bound_tau for v in taus.values()), taus[best_norm], detail


def kendall_taus(t):
    return {f"kendall_tau_{n}": kendall(t, n) for n in NORMS + ("heldout_binomial",)}


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    tests = t.column("test_error")
    for name, marker in zip(HELDOUT, "os^vD", strict=True):
        ax1.scatter(tests, t.column(name), s=14, marker=marker, label=f"{name} (|F| = {t.rows[0]['hp.family_size']})")
    ax1.scatter(tests, t.column("heldout_binomial_F1e9"), s=14, marker="x", label="heldout_binomial (|F| = 10⁹)")
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="bound = test error")
    ax1.set_xlabel("test error")
    ax1.set_ylabel("upper bound from the validation set")
    ax1.set_title("held-out bounds vs test error, one point per model", fontsize=10)
    ax1.legend(fontsize=7)
    ax1.grid(True, alpha=0.3)
    taus = kendall_taus(t)
    names = list(taus)
    ax2.barh(range(len(names)), [taus[n] for n in names])
    ax2.set_yticks(range(len(names)), [n.removeprefix("kendall_tau_") for n in names], fontsize=8)
    ax2.set_xlabel("Kendall τ with test error across the family")
    ax2.set_title("which quantity orders the models like their test error?", fontsize=10)
    ax2.axvline(0, color="k", lw=0.5)


BASE = {"dataset": "mnist",
        "n_val": 10000, "n_test": 10000, "seed": 0, "momentum": 0.9, "batch_size": 64, "label_noise": [0.0, 0.5, 1.0]}

SPEC = {"dataset": dataset_param(),  # file_datasets.py
        "n_train": count(), "n_val": count(), "n_test": count(), "seed": count(0), "momentum": fraction(high_open=True),
        "batch_size": count(), "label_noise": fraction(many=True), "width": count(many=True),
        "depth": count(0, many=True), "lr": positive(many=True), "epochs": count(many=True)}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="kkb2017-validation",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468 v5)",
    figure="§6, Proposition (generalization via validation)",
    summary="Held-out bounds are valid and tight for every model of a family, memorizing ones included, "
            "while norm-based measures do not order the models by test error.",
    presets={
        "smoke": {**BASE, "n_train": 300, "n_val": 1000, "n_test": 1000, "width": [32], "depth": [1],
                  "lr": [0.05], "epochs": [2], "label_noise": [0.0, 1.0]},
        "quick": {**BASE, "n_train": 3000, "width": [128, 512], "depth": [1, 2], "lr": [0.02], "epochs": [3, 15]},
        "demo": {**BASE, "n_train": 3000, "width": [128, 512], "depth": [1], "lr": [0.02], "epochs": [3, 15]},
        "paper": {**BASE, "n_train": 50000, "width": [256, 1024], "depth": [1, 3], "lr": [0.01, 0.05],
                  "epochs": [1, 5, 20]},
    },
    points=points,
    job=train_measure,
    claims=(Claim("bounds_hold", "every bound ≥ test error (≤ 5 % exceptions at δ = 0.05)", _violations),
            Claim("best_model_tight", "binomial bound − test error ≤ 0.03 for the selected model", _best_model_gap),
            Claim("norms_do_not_order", "no norm measure orders models better than the validation bound",
                  _norms_do_not_order)),
    plot=plot,
    statistics=kendall_taus,
    statistics_label="across the family,",
    notes={"smoke": "tiny plumbing check", "quick": "3,000 training points, 24 models",
           "demo": "3,000 training points, 12 models (one hidden layer)",
           "paper": "full MNIST (50,000 train / 10,000 validation), 72 models"},
))
