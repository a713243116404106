"""nk2019-linear: the overparameterized linear example where every two-sided uniform-convergence bound is
vacuous (Nagarajan & Kolter 2019, §3 / SPEC §4.3). Closed form: see gapbench.analysis.nk_linear.

The data constants (‖u‖ = 1/√m, x2 ~ N(0, 32/D·I), D = 1000·m) are reconstructed [verify] from NK's
description: they are the preset keys u_norm_scale, noise_var_scale and noise_dim_factor.
"""

from __future__ import annotations

from . import register
from .analysis_jobs import nk_linear_job
from .base import Claim, Experiment
from .params import count, positive
from .plotting import loglog_panel
from .table import slope_of

BASE = {"noise_dim_factor": 1000, "noise_var_scale": 32.0, "u_norm_scale": 1.0}


def points(p):
    return [{"hp": {"n_train": m, "dim_noise": int(p["noise_dim_factor"]) * m,
                    "noise_var_scale": p["noise_var_scale"], "u_norm_scale": p["u_norm_scale"], "seed": s}}
            for m in p["m"] for s in range(p["seeds"])]


def _max_test_error(t, p):
    worst = max(t.column("test_error"))
    return worst <= TEST_ERROR_THRESHOLD, worst, f"max over {len(t)} runs of the test error (threshold 0.01)"


def _min_sprime_error(t, p):
    worst = min(t.column("sprime_error"))
    return worst == 1.0, worst, "min over runs of the fraction of S' misclassified (must be 1.0)"


def _norm_slope(t, p):
    slope = slope_of(t, "hp.n_train", "w_norm")
    return abs(slope - 0.5) <= 0.1, slope, "log-log slope of ‖w‖ in m (expected ≈ 0.5)"


TEST_ERROR_THRESHOLD = 0.01   # the test_error_small claim's threshold, drawn on the test-error panel


def plot(t, fig, p):
    axes = fig.subplots(1, 3)
    loglog_panel(axes[0], t, "hp.n_train", [("sprime_error", "error on S'"), ("train_error", "train error")],
                 title="S' is misclassified entirely", ylabel="error", logy=False)
    axes[0].set_ylim(-0.05, 1.05)
    loglog_panel(axes[1], t, "hp.n_train", [("test_error", "test error (exact)")],
                 title="test error stays below the 0.01 threshold", ylabel="test error", logy=False)
    # a linear axis from 0 that shows the threshold: autoscaling would zoom into differences of 1e-5
    worst = max((v for v in t.column("test_error") if v is not None), default=0.0)
    top = max(2 * TEST_ERROR_THRESHOLD, 1.1 * worst)
    axes[1].set_ylim(-0.02 * top, top)
    axes[1].axhline(TEST_ERROR_THRESHOLD, color="r", ls="--", lw=1, label="claim threshold 0.01")
    axes[1].legend(fontsize=8)
    loglog_panel(axes[2], t, "hp.n_train", [("w_norm", "‖w‖")], title="‖w‖ grows like √m", ylabel="‖w‖₂")


def slopes(t):
    return {"w_norm": slope_of(t, "hp.n_train", "w_norm"), "test_error": slope_of(t, "hp.n_train", "test_error")}


SPEC = {"m": count(many=True), "seeds": count(), "noise_dim_factor": count(), "noise_var_scale": positive(),
        "u_norm_scale": positive()}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="nk2019-linear",
    paper="Nagarajan & Kolter 2019, Uniform convergence may be unable to explain generalization in deep learning",
    figure="§3, the overparameterized linear example",
    summary="One GD step from zero on the linear loss: the classifier generalizes, yet the mirrored training "
            "set S' (x2 negated, same distribution) is misclassified entirely, so any two-sided uniform-"
            "convergence bound over the algorithm's outputs is at least (S' error − test error) ≈ 1.",
    presets={
        "smoke": {"m": [16, 32, 64], "seeds": 1, **BASE},
        "quick": {"m": [16, 32, 64, 128, 256, 512], "seeds": 3, **BASE},
        "paper": {"m": [128, 256, 512, 1024, 2048], "seeds": 5, **BASE},
        "demo": {"m": [16, 32, 64, 128, 256], "seeds": 1, **BASE},
    },
    points=points,
    job=nk_linear_job,
    claims=(Claim("test_error_small", "test error ≤ 0.01 at every m", _max_test_error),
            Claim("sprime_all_wrong", "error on S' = 1.0 at every m", _min_sprime_error),
            Claim("w_norm_slope_half", "‖w‖ grows with slope ≈ 0.5 in m", _norm_slope)),
    plot=plot,
    statistics=slopes,
    notes={"smoke": "three small m, one draw", "quick": "m ≤ 512, three draws",
           "paper": "m up to 2048 (D = 1000·m), five draws", "demo": "m ≤ 256, one draw"},
))
