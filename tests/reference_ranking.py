"""Slow, literal references for the ranking scores: python loops over models, pairs and grid points that
follow the papers' formulas and the public programs' loop structure, sharing no code with
gapbench.ranking."""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import beta


def sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def jiang_tau(points: list[tuple[float, float]]) -> float:
    """Jiang et al. 2020 Eq. (2): mean over ordered pairs of distinct elements of T of sign·sign."""
    total = 0
    for i, (m1, g1) in enumerate(points):
        for j, (m2, g2) in enumerate(points):
            if i != j:
                total += sign(m1 - m2) * sign(g1 - g2)
    return total / (len(points) * (len(points) - 1))


def seed_means(hps, measure, gap):
    """One entry per distinct dict of hyperparameters, with the plain mean of its models' measures and of
    their gaps (a Python loop over a dict of lists)."""
    points: dict[tuple, list[int]] = {}
    for k, h in enumerate(hps):
        points.setdefault(tuple(sorted(h.items())), []).append(k)
    out_hps = [dict(key) for key in points]
    out_measure = [sum(measure[k] for k in ks) / len(ks) for ks in points.values()]
    out_gap = [sum(gap[k] for k in ks) / len(ks) for ks in points.values()]
    return out_hps, out_measure, out_gap


def psi(hps, measure, gap):
    """Jiang et al. 2020 Eq. (4)–(5) with the seeds of a grid point averaged first: for each hp i, loop over
    the product of the other hps' value sets; τ of the points there (groups of fewer than two skipped); ψ_i
    the mean over groups (undefined without one); Ψ the mean over the defined ψ_i. Returns (Ψ, ψ, groups)."""
    hps, measure, gap = seed_means(hps, measure, gap)
    names = sorted(hps[0])
    values = {n: sorted({h[n] for h in hps}, key=repr) for n in names}
    per_hp, groups = {}, {}
    for name in names:
        others = [n for n in names if n != name]
        taus = []
        for point in itertools.product(*(values[n] for n in others)):
            group = [(measure[k], gap[k]) for k, h in enumerate(hps)
                     if all(h[n] == v for n, v in zip(others, point, strict=True))]
            if len(group) >= 2:
                taus.append(jiang_tau(group))
        groups[name] = len(taus)
        if taus:
            per_hp[name] = sum(taus) / len(taus)
    return sum(per_hp.values()) / len(per_hp), per_hp, groups


def pgdl_entropy(counts) -> float:
    """The scoring program's entropy(): base 2, with its 1e-12 inside the log."""
    total = sum(counts)
    return -sum((c / total) * math.log2(c / total + 1e-12) for c in counts)


def pgdl_cmi(hps, measure, gap) -> float:
    """The PGDL scoring program's loop structure: for ordered h1 != h2, a 2 x 2 x prod|V|^2 table over every
    ordered pair of models (self-pairs included, strict '>'), per-cell MI and H(gap), plain means over
    cells, ratio of the means, minimum over (h1, h2). Beyond the grids the program accepts (complete, one
    model per point): the seeds of a point are averaged first (seed_means) and a cell with no pair (a missing
    combination) is left out of both means."""
    hps, measure, gap = seed_means(hps, measure, gap)
    names = list(hps[0])
    possible = {n: sorted({h[n] for h in hps}, key=repr) for n in names}
    best = math.inf
    for h1 in names:
        for h2 in names:
            if h1 == h2:
                continue
            keys = list(itertools.product(possible[h1], possible[h1], possible[h2], possible[h2]))
            table = {k: [[0, 0], [0, 0]] for k in keys}
            for i in range(len(hps)):
                for j in range(len(hps)):
                    k0 = 0 if gap[i] > gap[j] else 1
                    k1 = 0 if measure[i] > measure[j] else 1
                    key = (hps[i][h1], hps[j][h1], hps[i][h2], hps[j][h2])
                    table[key][k0][k1] += 1
            mi_sum = h_sum = 0.0
            cells = 0
            for key in keys:
                t = table[key]
                total = sum(map(sum, t))
                if total == 0:
                    continue
                cells += 1
                row = [t[0][0] + t[0][1], t[1][0] + t[1][1]]
                col = [t[0][0] + t[1][0], t[0][1] + t[1][1]]
                for a in range(2):
                    for b in range(2):
                        joint = t[a][b] / total
                        if joint:
                            mi_sum += joint * math.log2(joint / ((row[a] / total) * (col[b] / total)))
                h_sum += pgdl_entropy(row)
            best = min(best, (mi_sum / cells) / (h_sum / cells))
    return best


def hoeffding(delta_gen: float, n: int) -> float:
    return max(0.0, 1.0 - 2 * math.exp(-2 * n * (abs(delta_gen) / 2) ** 2)) ** 2


def robust_sums(hps, measure, gap, n_test):
    """create_environments.py's double loop over models (pairs differing in exactly one hp, weight
    (w_H − 0.5)₊ or 1) into per-(combo, combo) sums [Σw, Σw², Σw·loss, pairs]."""
    names = sorted(hps[0])
    combos = [tuple(h[n] for n in names) for h in hps]
    sums = {}
    for i in range(len(hps)):
        for j in range(len(hps)):
            if sum(a != b for a, b in zip(combos[i], combos[j], strict=True)) != 1:
                continue
            if n_test is None:
                w = 1.0
            else:
                w = hoeffding(gap[i] - gap[j], n_test)
                w = w - 0.5 if w > 0.5 else 0.0
            loss = (1 - sign(measure[i] - measure[j]) * sign(gap[i] - gap[j])) / 2
            s = sums.setdefault((combos[i], combos[j]), [0.0, 0.0, 0.0, 0])
            s[0] += w
            s[1] += w * w
            s[2] += w * loss
            s[3] += 1
    return names, combos, sums


def robust_losses(hps, measure, gap, n_test, min_ess):
    """robust_sums, then get_all_losses' loop over hp values v1 != v2."""
    names, combos, sums = robust_sums(hps, measure, gap, n_test)
    out = {}
    for col, name in enumerate(names):
        values = sorted({c[col] for c in combos})
        losses = []
        for v1 in values:
            for v2 in values:
                if v1 == v2:
                    continue
                for c1 in sorted(set(combos)):
                    if c1[col] != v1:
                        continue
                    c2 = c1[:col] + (v2,) + c1[col + 1:]
                    if (c1, c2) not in sums:
                        continue
                    w, w2, wl, _ = sums[(c1, c2)]
                    ess = w * w / (1.0 if math.isclose(w, 0, abs_tol=1e-8) else w2)
                    if (ess > min_ess or math.isclose(ess, min_ess, rel_tol=1e-5, abs_tol=1e-8)) and w > 0:
                        losses.append(wl / w)
        out[name] = sorted(losses)
    return out


def percentile(values, q: float) -> float:
    """The q-th percentile as np.percentile's default ('linear') computes it, written out: sorted values
    v_0 ≤ … ≤ v_{k−1}, position r = q/100·(k − 1), v_⌊r⌋ + (r − ⌊r⌋)·(v_⌊r⌋+1 − v_⌊r⌋)."""
    v = sorted(values)
    r = q / 100 * (len(v) - 1)
    low = math.floor(r)
    high = min(low + 1, len(v) - 1)
    return v[low] + (r - low) * (v[high] - v[low])


def robust_summaries(losses) -> dict[str, float]:
    """max, 90th percentile and mean of a list of environment losses, by hand."""
    return {"max": max(losses), "p90": percentile(losses, 90), "mean": sum(losses) / len(losses)}


def robust_environments(hps, gap, n_test):
    """{hp: sorted [(model pairs, ESS)] of every environment in which hp varies, kept by the filter or not}."""
    names, _, sums = robust_sums(hps, gap, gap, n_test)
    out = {name: [] for name in names}
    for (c1, c2), (w, w2, _, pairs) in sums.items():
        name = next(n for n, a, b in zip(names, c1, c2, strict=True) if a != b)
        out[name].append((pairs, w * w / (1.0 if math.isclose(w, 0, abs_tol=1e-8) else w2)))
    return {name: sorted(v) for name, v in out.items()}


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Exact interval from beta quantiles."""
    alpha = 1 - confidence
    low = 0.0 if k == 0 else beta.ppf(alpha / 2, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(1 - alpha / 2, k + 1, n - k)
    return float(low), float(high)


def grid(sizes: dict[str, int]) -> list[dict[str, int]]:
    """Every combination of hyperparameter values 0..size−1, one dict per model."""
    names = sorted(sizes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(range(sizes[n]) for n in names))]


def as_arrays(*xs):
    return [np.asarray(x, dtype=float) for x in xs]
