"""nk2019-hypersphere: a one-hidden-layer ReLU net separates two concentric spheres, generalizes, and yet
misclassifies the mirrored training set S' entirely (Nagarajan & Kolter 2019, §4 / SPEC §4.2).

S' moves every training point to the other sphere and flips its label; S' has the same distribution as S,
so ε_unif ≥ (error of h_S on S') − (test error of h_S) lower-bounds the tightest algorithm-dependent
two-sided uniform-convergence bound (NK's lemma). Presets: 'paper' (poster: d = 1000, radii 1/1.1, width
100,000, six m from 2,048 to 65,536 — GPU scale; batch, lr and γ* are not stated there, the blog's are used),
'blog' (NK's blog notebook: d = 500, radii 1/1.2, width 10,000, lr 0.5, batch 64, γ* = 8, test 4,096).
"""

from __future__ import annotations

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .jobs import train_measure
from .params import choice, count, fraction, positive
from .plotting import loglog_panel
from .table import slope_of


def run_config(p, m: int, seed: int) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="hypersphere", n_train=m, n_test=p["n_test"], subset_seed=seed,
                        options={"dim": p["dim"], "r_inner": p["r_inner"], "r_outer": p["r_outer"]}),
        model=ModelConfig(arch="mlp", depth=1, width=p["width"], bias=True, init=p["init"], init_seed=seed),
        train=TrainConfig(loss="sigmoid_ce", lr=p["lr"], batch_size=p["batch_size"], max_epochs=p["max_epochs"],
                          stop="margin", target_margin=p["gamma"], margin_fraction=p["margin_fraction"],
                          sgd_seed=seed))


def points(p):
    return [{"hp": {"n_train": m, "seed": s, "dim": p["dim"], "width": p["width"]},
             "run": to_dict(run_config(p, m, s))}
            for m in p["m"] for s in range(p["seeds"])]


def _test_error_decreases(t, p):
    slope = slope_of(t, "hp.n_train", "test_error")
    return slope < 0, slope, "log-log slope of the median test error in m (must be < 0)"


def _sprime(t, p):
    worst = min(t.column("sprime_error"))
    return worst >= 0.95, worst, "min over runs of the error of h_S on S' (≥ 0.95)"


def plot(t, fig, p):
    ax1, ax2 = fig.subplots(1, 2)
    loglog_panel(ax1, t, "hp.n_train", [("sprime_error", "error on S'"), ("test_error", "test error"),
                                         ("train_error", "train error")],
                 title="h_S on S, S' and fresh test data", ylabel="error", logy=False)
    ax1.set_ylim(-0.05, 1.05)
    loglog_panel(ax2, t, "hp.n_train", [("uc_lower_bound", "ε_unif ≥ err(S') − test error")],
                 title="lower bound on two-sided uniform convergence", ylabel="ε_unif lower bound", logy=False)
    ax2.set_ylim(-0.05, 1.05)


def slopes(t):
    return {"test_error": slope_of(t, "hp.n_train", "test_error")}


BLOG = {"m": [1024, 2048, 4096, 8192], "seeds": 1, "dim": 500, "r_inner": 1.0, "r_outer": 1.2, "width": 10000,
        "lr": 0.5, "batch_size": 64, "gamma": 8.0, "margin_fraction": 0.99, "max_epochs": 200,
        "n_test": 4096, "init": "torch_default"}

SPEC = {"m": count(many=True), "seeds": count(), "dim": count(2), "r_inner": positive(), "r_outer": positive(),
        "width": count(), "lr": positive(), "batch_size": count(), "gamma": positive(),
        "margin_fraction": fraction(low_open=True), "max_epochs": count(), "n_test": count(),
        "init": choice("torch_default", "glorot_uniform")}  # models.INITS (importing it would load torch)

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="nk2019-hypersphere",
    paper="Nagarajan & Kolter 2019, Uniform convergence may be unable to explain generalization in deep learning",
    figure="§4, the hypersphere experiment (S' and the failure of uniform convergence)",
    summary="Test error falls with m while the mirrored training set S' is misclassified almost entirely, so "
            "every two-sided uniform-convergence bound for this algorithm is nearly vacuous.",
    presets={
        "smoke": {**BLOG, "m": [64, 128], "dim": 50, "width": 100, "max_epochs": 50, "n_test": 512},
        "quick": {**BLOG, "m": [256, 512, 1024, 2048], "dim": 200, "width": 1000, "n_test": 2048},
        "demo": {**BLOG, "m": [256, 512, 1024, 2048], "dim": 200, "width": 1000, "n_test": 2048},
        "blog": BLOG,
        "paper": {**BLOG, "m": [2048, 4096, 8192, 16384, 32768, 65536], "dim": 1000, "r_outer": 1.1,
                  "width": 100000},
    },
    points=points,
    job=train_measure,
    claims=(Claim("test_error_decreases", "test error decreases with m", _test_error_decreases),
            Claim("sprime_error_ge_095", "error on S' ≥ 0.95 at every m", _sprime,
                  expected_not_held={"smoke": "d = 50, width 100 is a plumbing check (preset note), far from NK's "
                                              "d = 500, width 10,000; measured min error on S' 0.61"})),
    plot=plot,
    statistics=slopes,
    notes={"smoke": "d = 50, width 100: plumbing only", "quick": "d = 200, width 1,000, m = 256 … 2,048",
           "demo": "as quick: d = 200, width 1,000, m = 256 … 2,048 (the blog's d = 500, width 10,000 is slower)",
           "blog": "NK's blog notebook settings", "paper": "poster settings; GPU scale (width 100,000)"},
))
