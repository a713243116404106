"""kkb2017-linear-memorization: an overparameterized linear model fits any labels, and the interpolants
min-norm + c·v keep every training and test prediction while the norm grows without bound
(Kawaguchi, Kaelbling & Bengio, §3 / SPEC §4.8). Closed form: see gapbench.analysis.memorization.

v lies in the null space of the training features AND is orthogonal to the span of the evaluated test
features (SPEC's construction), so test predictions are identical by design: the point is that the norm,
which every norm-based bound grows with, says nothing about this model's test error.
"""

from __future__ import annotations

from ..errors import ConfigError
from . import register
from .analysis_jobs import memorization_job
from .base import Claim, Experiment
from .file_datasets import FILE_DATASETS, check_sizes, dataset_param, hp_dataset
from .params import choice, count, fraction, nonnegative


def points(p):
    check_sizes(p, "kkb2017-linear-memorization", train=("n_train",), test=("n_test",))
    _check_feature_dim(p)
    return [{"data": {"name": p["dataset"]},
             "hp": {"features": p["features"], "d_features": p["d_features"], "n_train": p["n_train"],
                    "n_test": p["n_test"], "label_noise": q, "c": c, "seed": s, **hp_dataset(p)}}
            for q in p["label_noise"] for c in p["c"] for s in range(p["seeds"])]


def _check_feature_dim(p):
    """The added direction must be orthogonal to every training and test feature vector: d_φ > n_train + n_test.
    d_φ is d_features for random ReLU features, the dataset's pixel count (784, or 3,072 for CIFAR-10) for pixels."""
    n = p["n_train"] + p["n_test"]
    if p["features"] == "pixels" and FILE_DATASETS[p["dataset"]].input_dim <= n:
        raise ConfigError(f"The 'features' parameter of kkb2017-linear-memorization cannot be 'pixels' with "
                          f"n_train + n_test = {n}: dataset '{p['dataset']}' has only "
                          f"{FILE_DATASETS[p['dataset']].input_dim} pixels, and the added direction must be "
                          f"orthogonal to every training and test image. Fix: --set features=random_relu, or "
                          f"lower n_train + n_test below {FILE_DATASETS[p['dataset']].input_dim}.")
    if p["features"] == "random_relu" and p["d_features"] <= n:
        raise ConfigError(f"The 'd_features' parameter of kkb2017-linear-memorization must exceed n_train + n_test "
                          f"= {n} (the added direction must be orthogonal to every training and test feature "
                          f"vector). Got {p['d_features']}. Fix: --set d_features={2 * n}")


def _groups(t):
    groups = {}
    for row in t.rows:
        groups.setdefault((row["hp.label_noise"], row["hp.seed"]), []).append(row)
    return groups


def _test_error_constant(t, p):
    spread = max(max(r["test_error"] for r in g) - min(r["test_error"] for r in g) for g in _groups(t).values())
    return spread <= 1e-9, spread, "max over (label noise, seed) of the test-error range across c (≤ 1e-9)"


def _norm_growth(t, p):
    growth = max(r["w_norm_ratio"] for r in t.rows)
    return growth >= 1e6, growth, "largest ‖W_c‖ / ‖W_min-norm‖ over c (≥ 1e6)"


def _random_labels_fit(t, p):
    rows = [r for r in t.rows if r["hp.label_noise"] == 1.0]
    if not rows:
        return False, None, "no run with label_noise = 1.0 in the grid"
    worst = max(r["train_error"] for r in rows)
    return worst == 0.0, worst, "max training error with fully random labels (must be 0)"


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    # the norms at large c coincide across noise levels: decreasing widths and open markers keep each visible
    for i, q in enumerate(sorted(set(t.column("hp.label_noise")))):
        sub = t.where(hp__label_noise=q, hp__seed=0)
        rows = sorted(sub.rows, key=lambda r: r["hp.c"])
        cs = [max(r["hp.c"], 1e-1) for r in rows]
        style = {"marker": "osD^v"[i % 5], "mfc": "none", "ms": 10 - 2 * (i % 3), "lw": 3.5 - 1.2 * (i % 3),
                 "label": f"label noise {q:g}"}
        ax1.plot(cs, [r["w_norm"] for r in rows], **style)
        ax2.plot(cs, [r["test_error"] for r in rows], **style)
    for ax, ylabel, title in ((ax1, "‖W‖_F", "norm grows without bound"),
                              (ax2, "test error", "test error does not move")):
        ax.set_xscale("log")
        ax.set_xlabel("c (c = 0 drawn at 0.1)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_yscale("log")


BASE = {"dataset": "mnist", "features": "random_relu", "c": [0.0, 1.0, 1e2, 1e4, 1e6, 1e8],
        "label_noise": [0.0, 0.5, 1.0]}

SPEC = {"dataset": dataset_param(), "features": choice("random_relu", "pixels"), "c": nonnegative(many=True),
        "label_noise": fraction(many=True), "d_features": count(), "n_train": count(), "n_test": count(),
        "seeds": count()}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="kkb2017-linear-memorization",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468 v5)",
    figure="§3, linear models: memorization and arbitrarily large norm",
    summary="Random-ReLU-feature linear regression on an MNIST subset (d_φ ≫ m) interpolates any labels; "
            "adding c·v with v orthogonal to all training and test features keeps every prediction while the "
            "norm grows by orders of magnitude.",
    presets={
        "smoke": {**BASE, "d_features": 600, "n_train": 100, "n_test": 200, "seeds": 1},
        "quick": {**BASE, "d_features": 4000, "n_train": 1000, "n_test": 2000, "seeds": 2},
        "paper": {**BASE, "d_features": 12000, "n_train": 2000, "n_test": 8000, "seeds": 3},
        "demo": {**BASE, "d_features": 3000, "n_train": 500, "n_test": 2000, "seeds": 1, "c": [0.0, 1.0, 1e4, 1e8]},
    },
    points=points,
    job=memorization_job,
    claims=(Claim("test_error_constant", "test error constant across c to 1e-9", _test_error_constant),
            Claim("norm_grows_1e6", "norm grows by ≥ 10⁶", _norm_growth),
            Claim("random_labels_memorized", "zero training error on random labels", _random_labels_fit)),
    plot=plot,
    notes={"smoke": "tiny subset, 600 random features", "quick": "1,000 training points, 4,000 features",
           "demo": "500 training points, 3,000 features, c ∈ {0, 1, 10⁴, 10⁸}, one draw",
           "paper": "KKB do not fix sizes; 2,000 training points, 12,000 features"},
))
