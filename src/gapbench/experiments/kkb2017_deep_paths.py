"""kkb2017-deep-paths: Theorem 7, the exact squared-loss gap identity in the deep-path representation,
on trained bias-free ReLU nets (Kawaguchi, Kaelbling & Bengio, §5 / SPEC §3.3, §4.6).

Each model is trained with the squared loss on one-hot targets; the population expectation is the average
over n_population held-out test points (the identity is exact for that sample). Reported per model: both
sides, the path norm ‖w̄‖, ‖v‖, the mean cosine between w̄_k and v_k, the top eigenvalues of G, and c_y.
"""

from __future__ import annotations

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .file_datasets import check_sizes, dataset_param
from .jobs import train_measure
from .params import count, mapping, positive
from .plotting import loglog_panel
from .quantities import DecompositionSpec, quantities_json
from .table import slope_of


def points(p):
    check_sizes(p, "kkb2017-deep-paths", train=("m",), test=("n_population",))   # no replacement: m <= file
    out = []
    for m in p["m"]:
        for seed in range(p["seeds"]):
            options = dict(p["data_options"])
            run = RunConfig(
                data=DataConfig(name=p["dataset"], n_train=m, subset_seed=seed, n_test=p["n_population"],
                                options=options),
                model=ModelConfig(arch="mlp", depth=p["depth"], width=p["width"], bias=False,
                                  init="glorot_uniform", init_seed=seed),
                train=TrainConfig(loss="squared", lr=p["lr"], batch_size=p["batch_size"], max_epochs=p["max_epochs"],
                                  stop="epochs", sgd_seed=seed))
            out.append({"hp": {"n_train": m, "seed": seed, "dataset": p["dataset"]}, "run": to_dict(run),
                        "quantities": quantities_json([DecompositionSpec(
                            "thm7", population="test", n_population=p["n_population"], split="train",
                            top_k=5)])})
    return out


def _identity(t, p):
    worst = max(r["thm7_abs_diff"] / max(1.0, abs(r["thm7_lhs"])) for r in t.rows)
    return worst <= 1e-6, worst, "max over models of |LHS − RHS| / max(1, |LHS|) (≤ 1e-6)"


def plot(t, fig, p):
    axes = fig.subplots(1, 3)
    # the two sides coincide to 1e-6, so one is a line and the other large open markers on top of it
    loglog_panel(axes[0], t, "hp.n_train",
                 [("thm7_lhs", "R − R_S (direct), line"), ("thm7_rhs", "Theorem 7 RHS, markers (coincide)")],
                 title="squared-loss gap: both sides of the identity", ylabel="gap", logy=False,
                 styles={"thm7_lhs": {"marker": None, "lw": 2},
                         "thm7_rhs": {"ls": "none", "marker": "o", "ms": 11, "mfc": "none", "mew": 2}})
    loglog_panel(axes[1], t, "hp.n_train", [("path_norm_l2", "‖w̄‖ (path norm)"), ("v_norm", "‖v‖")],
                 title="path norm ‖w̄‖ and ‖v‖", ylabel="norm")
    loglog_panel(axes[2], t, "hp.n_train", [("lambda_1", "λ₁(G)"), ("lambda_2", "λ₂(G)")],
                 title="the two largest-|λ| eigenvalues of G (indefinite)", ylabel="eigenvalue", logy=False)


def slopes(t):
    return {c: slope_of(t, "hp.n_train", c) for c in ("thm7_lhs", "path_norm_l2", "v_norm")}


MNIST = {"dataset": "mnist", "data_options": {}, "depth": 2, "width": 64, "lr": 0.01, "batch_size": 32,
         "max_epochs": 30, "n_population": 2000, "seeds": 1, "m": [100, 200, 400, 800]}

SPEC = {"dataset": dataset_param("hypersphere", "nk_linear"),  # file datasets (file_datasets.py) or generated
        "data_options": mapping(), "depth": count(0), "width": count(), "lr": positive(),
        "batch_size": count(), "max_epochs": count(), "n_population": count(), "seeds": count(),
        "m": count(many=True)}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="kkb2017-deep-paths",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (arXiv 1710.05468 v5)",
    figure="§5, Theorem 7 (deep paths, squared loss)",
    summary="The squared-loss generalization gap of a trained ReLU net equals, exactly, c_y + Σ_k (−2‖v_k‖‖w̄_k‖cos θ "
            "+ ‖w̄_k‖² Σ_j λ_j cos² θ_j): a large path norm is compatible with a small gap when v and G are small.",
    presets={
        "smoke": {**MNIST, "m": [50, 100], "width": 16, "max_epochs": 5, "n_population": 300},
        "quick": MNIST,
        "demo": MNIST,
        "synthetic": {**MNIST, "dataset": "hypersphere", "width": 32,
                      "data_options": {"dim": 20, "r_inner": 1.0, "r_outer": 1.3}, "m": [50, 100, 200, 400]},
        "paper": {**MNIST, "m": [250, 500, 1000, 2000], "width": 128, "max_epochs": 50, "n_population": 4000,
                  "seeds": 2},
    },
    points=points,
    job=train_measure,
    claims=(Claim("identity_exact", "|LHS − RHS| ≤ 1e-6·max(1, |LHS|) for every model", _identity),),
    plot=plot,
    statistics=slopes,
    notes={"smoke": "two tiny nets", "quick": "2 hidden layers of 64, m = 100 … 800, 2,000 population points",
           "synthetic": "the small synthetic task: two spheres in R^20", "demo": "as quick",
           "paper": "KKB give no sizes; 2 hidden layers of 128, m up to 2,000, 4,000 population points"},
))
