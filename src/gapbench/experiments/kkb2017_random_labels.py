"""kkb2017-random-labels: the apparent paradox. One architecture fits MNIST with any fraction of random
labels, its test error grows with the fraction, and a validation set still certifies it tightly
(Kawaguchi, Kaelbling & Bengio, §2-3 and §6 / SPEC §4.9)."""

from __future__ import annotations

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .file_datasets import check_sizes, dataset_param, hp_dataset
from .jobs import train_measure
from .params import count, fraction, positive
from .quantities import BoundSpec, MeasureSpec, quantities_json

NORMS = ("spectral_product", "frobenius_product", "path_norm_l2", "dist_from_init_fro", "bartlett2017_complexity")


def points(p):
    check_sizes(p, "kkb2017-random-labels", train=("n_train", "n_val"), test=("n_test",))
    family = len(p["label_noise"]) * p["seeds"]
    quantities = quantities_json([BoundSpec("heldout_binomial", split="val", params={"family_size": family},
                                            delta=0.05)] + [MeasureSpec(n) for n in NORMS])
    out = []
    for noise in p["label_noise"]:
        for seed in range(p["seeds"]):
            run = RunConfig(
                data=DataConfig(name=p["dataset"], n_train=p["n_train"], n_val=p["n_val"], label_noise=noise,
                                subset_seed=seed, label_seed=seed, n_test=p["n_test"]),
                model=ModelConfig(arch="mlp", depth=p["depth"], width=p["width"], bias=True, init_seed=seed),
                train=TrainConfig(loss="softmax_ce", lr=p["lr"], momentum=p["momentum"], batch_size=p["batch_size"],
                                  max_epochs=p["max_epochs"], stop="train_error", error_threshold=0.0,
                                  sgd_seed=seed))
            out.append({"hp": {"label_noise": noise, "seed": seed, "family_size": family, **hp_dataset(p)},
                        "run": to_dict(run), "quantities": quantities})
    return out


def _train_error(t, p):
    worst = max(t.column("train_error"))
    return worst <= 0.01, worst, "max training error over all label-noise fractions (≤ 0.01)"


def _test_error_increases(t, p):
    xs, med = t.median_by("hp.label_noise", "test_error")
    drops = [float(b - a) for a, b in zip(med, med[1:], strict=False)]
    worst = min(drops) if drops else float("nan")
    held = bool(drops) and worst >= -0.01 and med[-1] > med[0]
    return held, worst, ("smallest step of the median test error between consecutive label-noise fractions "
                         "(≥ −0.01, and the last above the first): " + ", ".join(f"{e:.3f}" for e in med))


def _bound_tracks(t, p):
    gaps = [r["heldout_binomial"] - r["test_error"] for r in t.rows]
    held = max(gaps) <= 0.03 and min(gaps) >= 0
    return held, max(gaps), (f"binomial bound − test error ranges over [{min(gaps):.4f}, {max(gaps):.4f}] "
                             f"(must be in [0, 0.03]; n_val = {p['n_val']})")


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    for column, label in (("train_error", "train error"), ("test_error", "test error"),
                          ("heldout_binomial", "validation bound (binomial, δ = 0.05)")):
        xs, med = t.median_by("hp.label_noise", column)
        ax1.plot(xs, med, marker="o", label=label)
    ax1.set_xlabel("fraction of random training labels")
    ax1.set_ylabel("error")
    ax1.set_title("memorization: zero training error at every noise level", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    for column in NORMS:
        xs, med = t.median_by("hp.label_noise", column)
        ax2.plot(xs, med / med[0], marker="o", label=column)
    ax2.set_yscale("log")
    ax2.set_xlabel("fraction of random training labels")
    ax2.set_ylabel("measure ÷ its value at noise 0")
    ax2.set_title("norm-based measures", fontsize=10)
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)


BASE = {"dataset": "mnist",
        "label_noise": [0.0, 0.2, 0.5, 0.8, 1.0], "seeds": 1, "n_val": 10000, "n_test": 10000, "depth": 2,
        "width": 512, "lr": 0.05, "momentum": 0.9, "batch_size": 64, "max_epochs": 200}

SPEC = {"dataset": dataset_param(),  # file_datasets.py
        "label_noise": fraction(many=True), "seeds": count(), "n_train": count(), "n_val": count(),
        "n_test": count(), "depth": count(0), "width": count(), "lr": positive(), "momentum": fraction(high_open=True),
        "batch_size": count(), "max_epochs": count()}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="kkb2017-random-labels",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468 v5)",
    figure="§2-3, the apparent paradox (random labels)",
    summary="The same network reaches zero training error at every fraction of random labels; its test error "
            "grows with the fraction, and the validation bound follows the test error within a few points.",
    presets={
        "smoke": {**BASE, "label_noise": [0.0, 1.0], "n_train": 100, "n_val": 1000, "n_test": 1000, "width": 64,
                  "depth": 1, "max_epochs": 100},
        "quick": {**BASE, "n_train": 1000},
        "demo": {**BASE, "n_train": 1000},
        "paper": {**BASE, "n_train": 10000, "seeds": 2, "width": 1024, "max_epochs": 400},
    },
    points=points,
    job=train_measure,
    claims=(Claim("memorizes", "train error ≤ 0.01 at every label-noise fraction", _train_error),
            Claim("test_error_increases", "test error increases with the label-noise fraction",
                  _test_error_increases),
            Claim("bound_tracks_test_error", "validation bound within 0.03 above the test error", _bound_tracks,
                  expected_not_held={"smoke": "100 training points leave a test error near 0.27 at p = 0, where "
                                              "the binomial bound on 1,000 validation points is itself ≈ 0.03 above "
                                              "the validation error; measured at p = 0: validation error 0.280, "
                                              "bound 0.309, test error 0.273, so bound − test error = 0.036"})),
    plot=plot,
    notes={"smoke": "100 training points, 2 noise levels", "quick": "1,000 training points",
           "demo": "as quick: 1,000 training points",
           "paper": "KKB use full MNIST; 10,000 training points keep zero training error reachable on CPU"},
))
