"""Shared plotting helpers: log-log panels of per-m medians with individual runs and fitted slopes."""

from __future__ import annotations

import numpy as np

from .table import Table, loglog_slope


def loglog_panel(ax, table: Table, x: str, ys: list[tuple[str, str]], *, title: str, ylabel: str,
                 logy: bool = True, styles: dict[str, dict] | None = None) -> None:
    """Scatter every run, draw the per-x median line, and put the fitted log-log slope in the legend.

    `styles` maps a column to extra ax.plot keywords for its median (e.g. markers only, so that two curves
    that coincide stay visible)."""
    for column, label in ys:
        xs_all = np.array([r.get(x) for r in table.rows if r.get(column) is not None], float)
        ys_all = np.array([r.get(column) for r in table.rows if r.get(column) is not None], float)
        xs, med = table.median_by(x, column)
        if len(xs) == 0:
            continue
        slope = loglog_slope(xs, med) if logy else float("nan")
        text = f"{label} (slope {slope:+.2f})" if np.isfinite(slope) else label
        line, = ax.plot(xs, med, **{"marker": "o", **(styles or {}).get(column, {})}, label=text)
        ax.scatter(xs_all, ys_all, s=8, alpha=0.35, color=line.get_color())
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(x.removeprefix("hp.").replace("n_train", "training-set size m"))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
