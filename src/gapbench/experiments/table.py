"""A small results table (rows of dicts) with the statistics claims need: medians over seeds, log-log slopes.

Rows come from the store: ``hp.*`` keys hold the grid-point parameters, the other keys the measured
quantities. No pandas: the tables are tens to thousands of rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Table:
    rows: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]]) -> Table:
        return cls(tuple(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> list[str]:
        """All keys, hp.* first, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows:
            for key in row:
                seen.setdefault(key, None)
        hp = [k for k in seen if k.startswith("hp.")]
        return hp + [k for k in seen if not k.startswith("hp.")]

    def column(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def where(self, **equal: Any) -> Table:
        """Rows whose keys equal the given values (use hp__x for 'hp.x')."""
        keys = {k.replace("__", "."): v for k, v in equal.items()}
        return Table(tuple(r for r in self.rows if all(r.get(k) == v for k, v in keys.items())))

    def ok(self) -> Table:
        """Rows of runs that did not fail (status 'done')."""
        return Table(tuple(r for r in self.rows if r.get("status", "done") == "done"))

    def median_by(self, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct x values and the median of finite y at each (over seeds / draws)."""
        groups: dict[Any, list[float]] = defaultdict(list)
        for row in self.rows:
            xv, yv = row.get(x), row.get(y)
            if xv is None or yv is None or not math.isfinite(float(yv)):
                continue
            groups[xv].append(float(yv))
        xs = sorted(groups)
        return np.array(xs, dtype=float), np.array([np.median(groups[v]) for v in xs], dtype=float)


def loglog_slope(xs: np.ndarray, ys: np.ndarray) -> float:
    """Least-squares slope of log(y) on log(x) over points with x, y > 0; nan with fewer than two points."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    keep = (xs > 0) & (ys > 0) & np.isfinite(xs) & np.isfinite(ys)
    if keep.sum() < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(xs[keep]), np.log(ys[keep]), 1)
    return float(slope)


def slope_of(table: Table, x: str, y: str) -> float:
    """Log-log slope of the per-x median of y."""
    return loglog_slope(*table.median_by(x, y))
