"""kkb2017-two-phase: two-phase training (Kawaguchi, Kaelbling & Bengio, v5 §5.3.1 and App. A4; SPEC §4.7).

For each α the gate weights are learned on the first α·m points, frozen, and the value weights trained on all
m points; the test accuracy is compared with standard training of the same architecture with the same seeds.
The 'last_layer' variant (features frozen after phase 1, only the last layer retrained) is kept for
comparison and carries the rigorous `linear_margin` bound on the (1 − α)·m points phase 1 never saw; the
two-phase net carries KKB's Theorem 8 with plug-in constants (an estimate, labelled so).
The paper's MNIST model is a CNN (conv 32@5×5 + max-pool + ReLU, twice; FC 1024 with dropout 0.5); the quick
preset uses a bias-free MLP on a subset (Theorem 8's Gram route needs a fully connected net).
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from ..errors import ConfigError
from . import register
from .analysis_jobs import two_phase_job
from .base import Claim, Experiment
from .file_datasets import check_sizes, dataset_param, hp_dataset
from .params import Param, choice, count, flag, fraction, nonnegative, positive

MODES = ("standard", "two_phase", "last_layer")
PAPER_MNIST_RATIO = (0.999, 1.0006)   # KKB v5 §5.3.1: two-phase ÷ standard test accuracy on MNIST, every α


def points(p):
    check_sizes(p, "kkb2017-two-phase", train=("n_train",), test=("n_test",))
    empty = [alpha for alpha in p["alpha"] if round(alpha * p["n_train"]) < 1]   # two_phase.py rounds the same way
    if empty:
        raise ConfigError(f"The 'alpha' parameter of experiment 'kkb2017-two-phase' must leave phase 1 at least "
                          f"one of the n_train={p['n_train']} points (round(alpha * n_train) >= 1). Got {empty} "
                          f"instead. Use alpha >= {1 / p['n_train']:.3g} or a larger n_train.")
    out = []
    for seed in range(p["seeds"]):
        run = RunConfig(
            data=DataConfig(name=p["dataset"], n_train=p["n_train"], subset_seed=seed, n_test=p["n_test"]),
            model=ModelConfig(arch=p["arch"], depth=p["depth"], width=p["width"], bias=p["bias"], init_seed=seed,
                              init=p["init"], options=_cnn_options(p) if p["arch"] == "cnn" else {}),
            train=TrainConfig(loss="softmax_ce", lr=p["lr"], momentum=p["momentum"], batch_size=p["batch_size"],
                              max_epochs=p["epochs"], stop="epochs", sgd_seed=seed))
        # The baseline's hp hold only what changes it, so every phase-1 budget and bound setting shares one
        # stored standard run per seed (and compares against the very same model).
        common = {"seed": seed, "epochs": p["epochs"], **_protocol(p, SHARED_PROTOCOL), **hp_dataset(p)}
        two_phase = {**common, **_protocol(p, TWO_PHASE_PROTOCOL), "phase1_budget": p["phase1_budget"],
                     "n_population": p["n_population"],
                     "theorem8_max_paths": p["theorem8_max_paths"],
                     "theorem8": p["arch"] == "mlp" and not p["bias"]}
        standard = {**common, **_protocol(p, STANDARD_PROTOCOL), "mode": "standard", "alpha": 1.0}
        out.append({"hp": standard, "run": to_dict(run)})
        for mode in p["modes"]:
            for alpha in p["alpha"]:
                out.append({"hp": {**two_phase, "mode": mode, "alpha": alpha}, "run": to_dict(run)})
    return out


# Protocol parameters added for issue 16 with the values that reproduce the earlier protocol: a job's hp (and
# its model options) carry one only when it differs from this default, so stored signatures stay valid.
SHARED_PROTOCOL = {"normalize": None}          # None: raw pixels in [0, 1]; [mean, std]: (x − mean)/std
STANDARD_PROTOCOL = {"standard_epochs": None}   # None: 2·epochs over the m points
TWO_PHASE_PROTOCOL = {"phase2_epochs": None,    # None: `epochs` over the m points
                      "phase2_init": "warm"}    # 'warm': from phase 1's weights (KKB); 'fresh': re-initialized
CNN_DEFAULTS = {"conv2_width": None,            # None: 2·width channels in the second conv (KKB: 32, as the first)
                "padding": "same"}              # 'same' (28→14→7) or 'valid' (28→24→12→8→4); KKB do not say


def _protocol(p, defaults):
    return {k: p[k] for k, default in defaults.items() if p.get(k, default) != default}


def _cnn_options(p):
    return {"fc_width": p["fc_width"], "dropout": p["dropout"], **_protocol(p, CNN_DEFAULTS)}


def ratio_samples(t, mode="two_phase") -> dict[float, list[float]]:
    """{α: accuracy(mode, α, seed) / accuracy(standard, seed) for every seed with both runs}."""
    base = {r["hp.seed"]: r["test_accuracy"] for r in t.rows if r["hp.mode"] == "standard"}
    by_alpha = {}
    for r in t.rows:
        if r["hp.mode"] == mode and r["hp.seed"] in base:
            by_alpha.setdefault(r["hp.alpha"], []).append(r["test_accuracy"] / base[r["hp.seed"]])
    return by_alpha


def _ratio_claim(t, p):
    by_alpha = ratio_samples(t)
    if not by_alpha:
        return False, None, "no two-phase runs with a matching standard baseline"
    medians = {a: float(np.median(v)) for a, v in by_alpha.items()}
    spread = {a: f" ({min(v):.4f}–{max(v):.4f}, {len(v)} seeds)" if len(v) > 1 else ""
              for a, v in by_alpha.items()}
    worst = min(medians.values())
    return worst >= 0.998, worst, ("two-phase ÷ standard test accuracy per α, median over seeds: "
                                   + ", ".join(f"{a:g}: {medians[a]:.4f}{spread[a]}" for a in sorted(medians))
                                   + " (paper, MNIST: {} … {}; threshold 0.998)".format(*PAPER_MNIST_RATIO))


def _bound_valid(t, p):
    rows = [r for r in t.rows if r.get("linear_margin") is not None]
    if not rows:
        return False, None, "no last-layer runs with α < 1 (the bound needs points phase 1 never saw)"
    bad = [r for r in rows if r["linear_margin"] < r["test_error"]]
    tightest = min(r["linear_margin"] for r in rows)
    return not bad, tightest, (f"linear_margin ≥ test error for {len(rows) - len(bad)} of {len(rows)} last-layer "
                               f"models; tightest bound {tightest:.3f}")


def _plot_over_seeds(ax, by_alpha: dict[float, list[float]], label: str, seeds: int) -> None:
    """The median over seeds at each α as a line, and with several seeds every seed faintly behind it."""
    alphas = sorted(by_alpha)
    line, = ax.plot(alphas, [float(np.median(by_alpha[a])) for a in alphas], marker="o",
                    label=label + (" (median over seeds)" if seeds > 1 else ""))
    if seeds > 1:
        ax.scatter([a for a in alphas for _ in by_alpha[a]], [v for a in alphas for v in by_alpha[a]],
                   s=8, color=line.get_color(), alpha=0.35)


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    for mode, label in (("two_phase", "two-phase (gates frozen)"), ("last_layer", "last layer only")):
        by_alpha = ratio_samples(t, mode)
        if not by_alpha:        # a mode the preset does not train (the ablation: two-phase only)
            continue
        _plot_over_seeds(ax1, by_alpha, label, p["seeds"])
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
        _plot_over_seeds(ax2, by_alpha, label, p["seeds"])
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
       "phase1_budget": "epochs", **SHARED_PROTOCOL, **STANDARD_PROTOCOL, **TWO_PHASE_PROTOCOL, **CNN_DEFAULTS,
       "init": "torch_default", "modes": list(MODES[1:]), "n_train": 5000, "n_test": 10000,
       "n_population": 1000, "seeds": 1, "alpha": [0.05, 0.1, 0.2, 0.5, 1.0],
       # Theorem 8's C_yz, γ²_yz are exact maxima over explicit path features only when d_z ≤ this many paths;
       # above it, valid upper bounds from |z̃_p| ≤ ‖x‖_∞ (see bounds/theorem8.py). Enumeration is slow on CPU.
       "theorem8_max_paths": 100_000}

SPEC = {"dataset": dataset_param(), "arch": choice("mlp", "cnn"), "depth": count(0), "width": count(), "bias": flag(),
        "fc_width": count(0), "dropout": fraction(high_open=True), "lr": positive(),
        "momentum": fraction(high_open=True), "batch_size": count(), "epochs": count(),
        "phase1_budget": choice("epochs", "steps"), "n_train": count(), "n_test": count(), "n_population": count(),
        "seeds": count(), "alpha": fraction(low_open=True, many=True),  # phase-1 share of the data, in (0, 1]
        "theorem8_max_paths": count(),
        # KKB protocol parameters (None: the old behaviour, see SHARED_PROTOCOL ... CNN_DEFAULTS above)
        "normalize": nonnegative(many=True, optional=True), "standard_epochs": count(optional=True),
        "phase2_epochs": count(optional=True), "phase2_init": choice("warm", "fresh"),
        "conv2_width": count(optional=True), "padding": choice("same", "valid"),
        "init": choice("torch_default", "glorot_uniform"),      # models.INITS (importing it would load torch)
        "modes": Param(str, many=True, choices=MODES[1:])}

# KKB v5 App. B (MNIST), with what the text leaves open read from PyTorch's MNIST example, whose lr 0.01,
# momentum 0.5 and max-pool-then-ReLU order App. B repeats [verify each: batch 64 (App. A1's m̄ = 64),
# 'valid' padding, torch's default init, Normalize(0.1307, 0.3081)]. Epochs: App. B gives 1000 for the base
# models of Tables 2–3, whose MNIST (ND) error 0.53 % is §5.3.1's base accuracy 99.47 %; the same count is
# read as each phase's and the baseline's budget [verify]. Fig. 2's number of runs is not stated: 3 seeds.
KKB_PAPER = {**MLP, "arch": "cnn", "width": 32, "conv2_width": 32, "padding": "valid", "bias": True,
             "fc_width": 1024, "dropout": 0.5, "lr": 0.01, "momentum": 0.5, "batch_size": 64,
             "init": "torch_default", "normalize": [0.1307, 0.3081], "n_train": 60000, "epochs": 1000,
             "standard_epochs": 1000, "phase2_epochs": 1000, "phase2_init": "warm", "alpha": ALPHAS,
             "seeds": 3}   # one seed's test accuracy moves by ~0.1 %, the size of the effect measured
# Reduced-scale KKB protocol for the CPU ablation, sized to converge: KKB's layout at width 8/8/128 on 3,000
# points, 30 epochs per phase and for the baseline, two-phase only. KKB's 1000 epochs are out of a CPU's reach,
# and at a CPU's epoch count their momentum 0.5 leaves the baseline short of convergence (2,000 points, 60
# epochs, seed 0: train error 0.55 %, test accuracy still rising, 0.9555 → 0.9600 over epochs 45–60); momentum
# 0.9 at 3,000 points reaches 0–0.23 % training error by epoch 30 (seed 0: test accuracy 0.969–0.974 over
# epochs 24–30), while lr 0.05 with momentum 0.9 (4,000 points) stays at 1.5–2.4 % over epochs 19–25. A
# standard run takes 18–33 s on the shared 2-core CPU, one variant (3 seeds, α = 0.05 and 0.2) 2–6 min. At
# this scale phase 1 sees 150 and 600 points (KKB's α = 0.05: 3,000), so it ranks the protocol differences;
# it does not reproduce KKB's ratios. Run it once per entry of ABLATION_VARIANTS (as --set overrides, None
# as 'none'); the 'standard' baseline is shared by every variant that leaves its hp unchanged, the two-phase
# runs by 'standard_double'.
ABLATION = {**KKB_PAPER, "width": 8, "conv2_width": 8, "fc_width": 128, "momentum": 0.9, "n_train": 3000,
            "n_test": 10000, "epochs": 30, "standard_epochs": 30, "phase2_epochs": 30, "alpha": [0.05, 0.2],
            "modes": ["two_phase"]}
ABLATION_VARIANTS = {                 # one difference from the ablation preset (KKB's protocol) at a time
    "kkb": {},
    "phase1_steps": {"phase1_budget": "steps"},          # phase 1: as many SGD steps as `epochs` over m
    "standard_double": {"standard_epochs": 2 * ABLATION["epochs"]},    # the old baseline: 2·epochs
    "phase2_fresh": {"phase2_init": "fresh"},            # value net re-initialized for phase 2
    "raw_pixels": {"normalize": None},                   # the old preprocessing: [0, 1] pixels
    "conv2_double": {"conv2_width": 2 * ABLATION["width"]},             # the old second conv: 2·width channels
    "same_padding": {"padding": "same"},                 # the old padding
    # also parameters, not in the list: "init" ('glorot_uniform'), "momentum" (KKB's 0.5) and the epochs
}

EXPERIMENT = register(Experiment(
    spec=SPEC,
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
        "paper": KKB_PAPER,
        "ablation": ABLATION,
    },
    points=points,
    job=two_phase_job,
    claims=(Claim("accuracy_ratio", "two-phase ÷ standard test accuracy ≥ 0.998 at every α", _ratio_claim,
                  expected_not_held={
                      "smoke": "a width-32 MLP trained 2 epochs on 300 points is far from converged; measured "
                               "ratio 0.873 at α = 0.2 (phase 1 sees 60 points)",
                      **dict.fromkeys(("quick", "demo"),
                                      "the bias-free MLP on 5,000 points: measured ratio 0.973 at α = 0.05 … "
                                      "0.982 at α = 0.5 (one seed) on the 2-core CPU"),
                      "paper": "measured on one H100 (README) with the earlier protocol (10 epochs per phase, raw "
                               "pixels): median ratio 0.9967 at α = 0.05 and 0.1, below the 0.998 threshold; KKB "
                               "report 0.999 … 1.0006; the preset's current protocol (KKB's) needs a GPU, not run",
                      "ablation": "measured on the 2-core CPU, 3 seeds, baselines at train error ≤ 0.53 %: median "
                                  "ratio 0.9971 at α = 0.05 (seeds 0.9956–0.9977) and 0.9937 at α = 0.2 "
                                  "(0.9925–0.9987), ≥ 0.999 from α = 0.6 on (README); phase 1 sees 150 and 600 "
                                  "points, KKB's at α = 0.05 3,000"}),
            Claim("rigorous_bound_valid", "the rigorous bound is ≥ the test error", _bound_valid,
                  expected_not_held={"ablation": "the ablation trains two-phase models only: no last-layer "
                                                 "model, no bound to check"})),
    plot=plot,
    notes={"smoke": "tiny MLP, two α",
           "quick": "bias-free MLP 784-256-256-10 on 5,000 MNIST points (not the paper's CNN)",
           "demo": "as quick: bias-free MLP 784-256-256-10 on 5,000 MNIST points",
           "paper": "KKB's MNIST (ND) protocol: their CNN on full MNIST, SGD lr 0.01 momentum 0.5, 1000 epochs "
                    "per phase and for the baseline [verify]",
           "ablation": "KKB's protocol at reduced scale for the CPU (CNN 8/8/128, 3,000 points, 30 epochs per "
                       "phase and for the baseline, momentum 0.9 so that the baseline converges); vary one "
                       "difference at a time (ABLATION_VARIANTS, as --set overrides)"},
))
