"""nk2019-slices: SGD's hypersphere classifier is complex near its training points and simple at large
scale (Nagarajan & Kolter 2019, §4 / SPEC §4.4). See gapbench.slices for the construction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import to_dict
from . import register
from .base import Claim, Experiment
from .nk2019_hypersphere import BLOG
from .nk2019_hypersphere import SPEC as HYPERSPHERE_SPEC
from .nk2019_hypersphere import run_config as hypersphere_run
from .params import count, positive


def points(p):
    return [{"hp": {"n_train": p["m"], "seed": s, "dim": p["dim"], "width": p["width"],
                    "radius_fraction": p["radius_fraction"], "n_centers": p["n_centers"],
                    "n_samples": p["n_samples"], "resolution": p["resolution"], "n_dirs": p["n_dirs"]},
             "run": to_dict(hypersphere_run(p, p["m"], s))} for s in range(p["seeds"])]


def _complex_near_train(t, p):
    train = float(np.median(t.column("near_train_disagreement_fitted")))
    test = float(np.median(t.column("near_test_disagreement_fitted")))
    task = [float(np.median(t.column(f"near_{k}_disagreement"))) for k in ("train", "test")]
    return train > test, train - test, (
        f"median fraction of the disc (radius {p['radius_fraction']:g}·(r_outer − r_inner)) labelled against the "
        f"network's own fitted sphere (radius {float(np.median(t.column('fitted_radius'))):.3f}): near training "
        f"points {train:.4f}, near test points {test:.4f}; against the task's midpoint sphere: {task[0]:.4f} vs "
        f"{task[1]:.4f}")


def plot(t, fig, p):
    axes = fig.subplots(1, 3)
    row = t.rows[0]
    path = Path(str(row.get("checkpoint")) + ".slices.npz")
    if row.get("checkpoint") and path.exists():
        images = np.load(path)
        extent = 1.5 * p["r_outer"]
        for ax, kind, title in ((axes[0], "train", "plane through two training points"),
                                (axes[1], "test", "plane through two test points")):
            ax.imshow(images[f"{kind}_net"], origin="lower", extent=(-extent, extent, -extent, extent),
                      cmap="coolwarm", alpha=0.8, interpolation="nearest")
            ax.contour(images[f"{kind}_sphere"], levels=[0.5], origin="lower", colors="k", linewidths=0.8,
                       extent=(-extent, extent, -extent, extent))
            for key, marker in ((f"{kind}_a", "o"), (f"{kind}_b", "s")):
                ax.scatter(*images[key], marker=marker, c="yellow", edgecolors="k", s=40)
            ax.set_title(title + "\n(colour: network label; black: spherical rule)", fontsize=9)
            ax.set_aspect("equal")
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    seeds = t.column("hp.seed")
    axes[2].bar(np.arange(len(seeds)) - 0.2, t.column("near_train_disagreement_fitted"), 0.4,
                label="near training points")
    axes[2].bar(np.arange(len(seeds)) + 0.2, t.column("near_test_disagreement_fitted"), 0.4,
                label="near test points")
    axes[2].set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    axes[2].set_ylabel("fraction of the local disc against the net's fitted sphere")
    axes[2].set_title("microscopic complexity", fontsize=10)
    axes[2].legend(fontsize=8)


SLICES = {"radius_fraction": 1.0,  # disc radius ÷ (r_outer − r_inner): SPEC "≈ spacing" [verify]
           "n_centers": 50, "n_samples": 400, "resolution": 200,
           "n_dirs": 2000}  # random directions for the network's own fitted sphere (gapbench.slices)

SPEC = {**HYPERSPHERE_SPEC, "m": count(), "radius_fraction": positive(), "n_centers": count(), "n_samples": count(),
        "resolution": count(2), "n_dirs": count()}

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="nk2019-slices",
    paper="Nagarajan & Kolter 2019, Uniform convergence may be unable to explain generalization in deep learning",
    figure="§4, decision-boundary slices (microscopically complex, macroscopically simple)",
    summary="In planes through training points the learned boundary bends around each point; in planes through "
            "test points it follows the spheres.",
    presets={
        "smoke": {**BLOG, **SLICES, "m": 128, "seeds": 1, "dim": 50, "width": 100, "max_epochs": 50, "n_test": 256,
                  "n_centers": 10, "n_samples": 100, "resolution": 60},
        "quick": {**BLOG, **SLICES, "m": 1024, "seeds": 2, "dim": 200, "width": 1000, "n_test": 1024},
        "paper": {**BLOG, **SLICES, "m": 4096, "seeds": 3},
        "demo": {**BLOG, **SLICES, "m": 1024, "seeds": 2, "dim": 200, "width": 1000, "n_test": 1024},
    },
    points=points,
    job="gapbench.slices:slices_job",
    claims=(Claim("complex_near_training_points", "label disagrees with the network's own large-scale "
                  "(spherical) rule more often near training points than near test points", _complex_near_train),),
    plot=plot,
    notes={"smoke": "d = 50, width 100", "quick": "d = 200, width 1,000, m = 1,024",
           "demo": "as quick: d = 200, width 1,000, m = 1,024 (NK's blog settings are d = 500, width 10,000)",
           "paper": "NK's blog settings (d = 500, width 10,000), m = 4,096"},
))
