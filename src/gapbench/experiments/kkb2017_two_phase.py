"""kkb2017-two-phase: two-phase training (Kawaguchi, Kaelbling & Bengio, v5 §5.3.1 and App. A4; SPEC §4.7).

For each α the gate weights are learned on the first α·m points, frozen, and the value weights trained on all
m points; the test accuracy is compared with standard training of the same architecture with the same seeds.
The 'last_layer' variant (features frozen after phase 1, only the last layer retrained) is kept for
comparison and carries the rigorous `linear_margin` bound on the (1 − α)·m points phase 1 never saw; the
two-phase net carries KKB's Theorem 8 with plug-in constants (an estimate, labelled so).
The paper's MNIST model is a CNN (two conv 32/64@5×5 + max-pool blocks, FC 1024 with dropout 0.5); the quick
preset uses a bias-free MLP on a subset (Theorem 8's Gram route needs a fully connected net).
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from ..errors import check_choice
from . import register
from .base import Claim, Experiment

MODES = ("standard", "two_phase", "last_layer")
PAPER_MNIST_RATIO = (0.999, 1.0006)   # KKB v5 §5.3.1: two-phase ÷ standard test accuracy on MNIST, every α


def points(p):
    check_choice(p["phase1_budget"], "phase1_budget", "kkb2017-two-phase (--set phase1_budget=...)",
                 ("epochs", "steps"))
    out = []
    for seed in range(p["seeds"]):
        run = RunConfig(
            data=DataConfig(name=p["dataset"], n_train=p["n_train"], subset_seed=seed, n_test=p["n_test"]),
            model=ModelConfig(arch=p["arch"], depth=p["depth"], width=p["width"], bias=p["bias"], init_seed=seed,
                              options={"fc_width": p["fc_width"], "dropout": p["dropout"]} if p["arch"] == "cnn"
                              else {}),
            train=TrainConfig(loss="softmax_ce", lr=p["lr"], momentum=p["momentum"], batch_size=p["batch_size"],
                              max_epochs=p["epochs"], stop="epochs", sgd_seed=seed))
        # The baseline's hp hold only what changes it, so every phase-1 budget and bound setting shares one
        # stored standard run per seed (and compares against the very same model).
        common = {"seed": seed, "epochs": p["epochs"]}
        two_phase = {**common, "phase1_budget": p["phase1_budget"], "n_population": p["n_population"],
                     "theorem8_max_paths": p["theorem8_max_paths"],
                     "theorem8": p["arch"] == "mlp" and not p["bias"]}
        out.append({"hp": {**common, "mode": "standard", "alpha": 1.0}, "run": to_dict(run)})
        for mode in MODES[1:]:
            for alpha in p["alpha"]:
                out.append({"hp": {**two_phase, "mode": mode, "alpha": alpha}, "run": to_dict(run)})
    return out


def ratios(t, mode="two_phase"):
    """(alpha, median over seeds of accuracy(mode, α) / accuracy(standard))."""
    base = {r["hp.seed"]: r["test_accuracy"] for r in t.rows if r["hp.mode"] == "standard"}
    by_alpha = {}
    for r in t.rows:
        if r["hp.mode"] == mode and r["hp.seed"] in base:
            by_alpha.setdefault(r["hp.alpha"], []).append(r["test_accuracy"] / base[r["hp.seed"]])
    alphas = sorted(by_alpha)
    return alphas, [float(np.median(by_alpha[a])) for a in alphas]


def _ratio_claim(t, p):
    alphas, rs = ratios(t)
    if not rs:
        return False, None, "no two-phase runs with a matching standard baseline"
    worst = min(rs)
    return worst >= 0.998, worst, ("two-phase ÷ standard test accuracy per α: "
                                   + ", ".join(f"{a:g}: {r:.4f}" for a, r in zip(alphas, rs, strict=True))
                                   + " (paper, MNIST: {} … {}; threshold 0.998)".format(*PAPER_MNIST_RATIO))


def _bound_valid(t, p):
    rows = [r for r in t.rows if r.get("linear_margin") is not None]
    if not rows:
        return False, None, "no last-layer runs with α < 1 (the bound needs points phase 1 never saw)"
    bad = [r for r in rows if r["linear_margin"] < r["test_error"]]
    tightest = min(r["linear_margin"] for r in rows)
    return not bad, tightest, (f"linear_margin ≥ test error for {len(rows) - len(bad)} of {len(rows)} last-layer "
                               f"models; tightest bound {tightest:.3f}")


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    for mode, label in (("two_phase", "two-phase (gates frozen)"), ("last_layer", "last layer only")):
        alphas, rs = ratios(t, mode)
        ax1.plot(alphas, rs, marker="o", label=label)
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.axhspan(*PAPER_MNIST_RATIO, color="gray", alpha=0.2, label="range KKB report (MNIST)")
    ax1.set_xlabel("α (fraction of the training set used to learn the gates)")
    ax1.set_ylabel("test accuracy ÷ standard training")
    ax1.set_title("two-phase vs standard training", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    for mode, column, label in (("last_layer", "linear_margin", "linear_margin bound (rigorous)"),
                                ("last_layer", "test_error", "test error, last layer"),
                                ("two_phase", "test_error", "test error, two-phase")):
        by_alpha = {}
        for r in t.rows:
            if r["hp.mode"] == mode and r.get(column) is not None:
                by_alpha.setdefault(r["hp.alpha"], []).append(r[column])
        alphas = sorted(by_alpha)
        line, = ax2.plot(alphas, [float(np.median(by_alpha[a])) for a in alphas], marker="o",
                         label=label + (" (median over seeds)" if p["seeds"] > 1 else ""))
        if p["seeds"] > 1:    # every seed, faintly, behind its median
            ax2.scatter([a for a in alphas for _ in by_alpha[a]], [v for a in alphas for v in by_alpha[a]],
                        s=8, color=line.get_color(), alpha=0.35)
    standard = [r["test_error"] for r in t.rows if r["hp.mode"] == "standard"]
    if standard:
        ax2.axhline(float(np.median(standard)), color="k", lw=0.8, ls="--", label="test error, standard")
    ax2.axhline(1.0, color="r", lw=1, ls="--", label="error = 1: a bound is vacuous above")
    ax2.set_yscale("log")
    ax2.set_xlabel("α")
    ax2.set_ylabel("error / bound")
    ax2.set_title("bound on the (1 − α)·m unseen points", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(True, alpha=0.3)


ALPHAS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
MLP = {"dataset": "mnist", "arch": "mlp", "depth": 2, "width": 256, "bias": False, "fc_width": 0, "dropout": 0.0,
       "lr": 0.05, "momentum": 0.5, "batch_size": 64, "epochs": 10,
       # phase 1 runs `epochs` epochs over S_αm ('epochs') or as many SGD steps as `epochs` epochs over m
       # ('steps'); KKB do not state the split [verify]
       "phase1_budget": "epochs", "n_train": 5000, "n_test": 10000,
       "n_population": 1000, "seeds": 1, "alpha": [0.05, 0.1, 0.2, 0.5, 1.0],
       # Theorem 8's C_yz, γ²_yz are exact maxima over explicit path features only when d_z ≤ this many paths;
       # above it, valid upper bounds from |z̃_p| ≤ ‖x‖_∞ (see bounds/theorem8.py). Enumeration is slow on CPU.
       "theorem8_max_paths": 100_000}

EXPERIMENT = register(Experiment(
    name="kkb2017-two-phase",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468 v5)",
    figure="§5.3.1 and App. A4, two-phase training (Theorem 8)",
    summary="Learning the ReLU/max-pool gates on a fraction α of the data, freezing them, and training the "
            "rest on all the data costs almost no test accuracy, and makes a probabilistic bound on the unseen "
            "part possible.",
    presets={
        "smoke": {**MLP, "n_train": 300, "n_test": 1000, "width": 32, "epochs": 2, "alpha": [0.2, 1.0],
                  "n_population": 200},
        "quick": MLP,
        "demo": MLP,
        "paper": {**MLP, "arch": "cnn", "width": 32, "bias": True, "fc_width": 1024, "dropout": 0.5, "lr": 0.01,
                  "n_train": 60000, "epochs": 10, "alpha": ALPHAS,
                  "seeds": 3},   # one seed's test accuracy moves by ~0.1 %, the size of the effect measured
    },
    points=points,
    job="gapbench.two_phase:two_phase_job",
    claims=(Claim("accuracy_ratio", "two-phase ÷ standard test accuracy ≥ 0.998 at every α", _ratio_claim,
                  expected_not_held={
                      "smoke": "a width-32 MLP trained 2 epochs on 300 points is far from converged; measured "
                               "ratio 0.873 at α = 0.2 (phase 1 sees 60 points)",
                      **dict.fromkeys(("quick", "demo"),
                                      "the bias-free MLP on 5,000 points: measured ratio 0.973 at α = 0.05 … "
                                      "0.982 at α = 0.5 (one seed) on the 2-core CPU"),
                      "paper": "measured on one H100 (README): median ratio 0.9967 at α = 0.05 and 0.1, below "
                               "the 0.998 threshold; KKB report 0.999 … 1.0006"}),
            Claim("rigorous_bound_valid", "the rigorous bound is ≥ the test error", _bound_valid)),
    plot=plot,
    notes={"smoke": "tiny MLP, two α",
           "quick": "bias-free MLP 784-256-256-10 on 5,000 MNIST points (not the paper's CNN)",
           "demo": "as quick: bias-free MLP 784-256-256-10 on 5,000 MNIST points",
           "paper": "the paper's CNN on full MNIST, SGD lr 0.01 momentum 0.5"},
))
