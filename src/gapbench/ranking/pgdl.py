"""The PGDL 2020 competition's score: conditional mutual information between the sign of the gap
difference and the sign of the measure difference over pairs of models, normalised, minimised over
conditioning sets.

The semantics are those of the competition's public scoring program (the Codalab starting kit of
"Predicting Generalization in Deep Learning", NeurIPS 2020; Yiding Jiang, July–October 2020). The dataset
release, google-research/google-research ``pgdl/README.md``, points to that kit on Codalab and does not
hold it; the organisers' files are copied verbatim in a participant's repository, cadurosar/pgdl at commit
14452c11 ("Add starting_kit code"), ``scoring_program/mutual_information.py`` (MI) and
``scoring_program/score.py`` (SC), ``metric.txt`` = ``mutual_information``. What is ported:

- **Pairs** (MI 82–92, ``build_mi_table``'s double loop over ``model_specs``): every *ordered* pair (i, j)
  of models, i = j included, with no filter on which hyperparameters differ.
- **Signs and ties** (MI 85–88): V_gap = [g_i > g_j], V_measure = [μ_i > μ_j], strict '>': a tie, and every
  self-pair, counts as "−".
- **Conditioning** (MI 141–170, ``conditional_mutual_information``; the loop at 162–169 skips h1 == h2):
  sets of exactly two distinct hyperparameters {a, b} (ordered, so each set is visited twice with the same
  result); the empty set and singletons are never used (``mi_empty_conditioning_set_table``, MI 49–63, is
  unreachable). A pair falls in the cell (a_i, a_j, b_i, b_j) (MI 42–46, ``make_key_from_models``): both
  models' values, in order; there are Π|V_h|² cells (MI 69–75).
- **Score per set** (MI 126–138, ``total_mi_from_table``; MI 108–123, ``mi_from_table``): the plain mean
  over cells of the mutual information I(V_gap; V_measure) within the cell, divided by the plain mean over
  cells of the entropy H(V_gap) within the cell (a ratio of means; cells are not weighted by their number
  of pairs). Base 2 (``np.log2``); the base cancels in the ratio.
- **Score** = the minimum over conditioning sets (MI 169). SC 222 (``task_average_score *= 100.0``) averages
  it over tasks and multiplies by 100 for the leaderboard: :class:`PgdlScore` holds the fraction in [0, 1].
- **Grid** (SC 70–100, ``check_data_validity``): the program refuses data that is not a complete grid with
  exactly one model per combination ("The data are not complete!", "... not unique!"); on such a grid every
  cell holds (N / (|V_a||V_b|))² pairs and none is empty. Had it run on a grid with a missing combination, an
  empty cell would make its set's ratio NaN (0/0 at MI 102 and 117–122), which ``min`` at MI 169 keeps or
  ignores depending on the order of the sets. Where the program has no answer, :func:`pgdl_score` extends
  it, and equals it on every input the program accepts:

  - repeats of a combination (seeds) are averaged first, the measure and the gap each on its own, so that
    each grid point is one model, as in the program's tasks;
  - a cell that holds no pair (a missing combination) is left out of both means: the plain means run over
    the non-empty cells (``PgdlScore.cells`` counts them per set). Both means share their cells, so this is
    also the ratio with an empty cell counted as 0 bits of both, Σ_cells I / Σ_cells H.

- **A set whose every cell has H(V_gap) = 0** (the gap's order is fixed by the two conditioning
  hyperparameters): the ratio is 0/0 in exact arithmetic; the program's 1e-12 makes each H a tiny negative
  number (−log2(1 + 1e-12) ≈ −1.4e-12) and each MI exactly 0, so the set scores −0.0 and the minimum 0.
  :func:`pgdl_score` gives such a set 0.0 likewise. A gap constant over every grid point (every set 0/0) is an
  error instead: the score would say nothing about the measure.

Two deliberate differences: the program's entropy (MI 100–106) adds 1e-12 inside the log
(``np.log2(p + 1e-12)``, MI 103) where we use 0·log 0 = 0 (a relative difference of order 1e-12); and its
cell keys are concatenated strings (``str(v) + str(w)``, MI 29–30 and 45), which merge distinct cells when
values collide (1 and 11 with 11 and 1: "111" twice), where we key cells by the values themselves. The
program's ``gen_gap`` is ``train_acc − test_acc`` (MI 154); here the caller passes the gap (or the test
error) directly.

References:
    Jiang, Foret, Yak, Roy, Mobahi, Dziugaite, Bengio, Gunasekar, Guyon, Neyshabur. NeurIPS 2020 Competition:
    Predicting Generalization in Deep Learning. arXiv:2012.07976, §4 (evaluation metric).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from ..errors import GapbenchError
from ._inputs import hp_codes, paired_vectors, point_means


@dataclass(frozen=True)
class PgdlScore:
    """score = min over conditioning sets of per_set[(a, b)] (a < b), each in [0, 1]; the leaderboard showed
    100 × score (averaged over tasks). cells[(a, b)]: the cells (a_i, a_j, b_i, b_j) holding at least one pair,
    the terms of that set's means; points: the grid points after averaging the repeats."""
    score: float
    per_set: dict[tuple[str, str], float]
    cells: dict[tuple[str, str], int]
    points: int


def pgdl_score(hps: Any, measure: Any, gap: Any) -> PgdlScore:
    """The PGDL 2020 conditional-mutual-information score of `measure` as a predictor of `gap` (the module
    docstring says what is ported, line by line, and how repeats and missing combinations are handled).

    Needs at least three varied hyperparameters: with two, every cell holds a single pair (one model per
    grid point) and H(V_gap) = 0 in each, so every set is 0/0.
    """
    where = "pgdl_score()"
    measure, gap = paired_vectors(measure, gap, where)
    names, codes = hp_codes(hps, len(measure), where, minimum_hps=3)
    codes, measure, gap = point_means(codes, measure, gap)
    if np.ptp(gap) == 0:
        raise GapbenchError(f"The 'gap' parameter of {where} orders no pair of grid points (it is {float(gap[0]):g} at "
                            f"all {len(gap)} points after averaging the repeats), so the normalised conditional "
                            "mutual information is 0/0 in every cell. Rank against a gap that varies across models.")
    gap_sign = (gap[:, None] > gap[None, :]).ravel().astype(np.int64)
    measure_sign = (measure[:, None] > measure[None, :]).ravel().astype(np.int64)
    per_set, cells = {}, {}
    for a, b in combinations(range(len(names)), 2):
        counts = cell_tables(codes[:, a], codes[:, b], gap_sign, measure_sign)
        counts = counts[counts.sum(axis=(1, 2)) > 0]          # an empty cell: a missing combination
        per_set[(names[a], names[b])] = normalised_cmi(counts)
        cells[(names[a], names[b])] = len(counts)
    return PgdlScore(score=min(per_set.values()), per_set=per_set, cells=cells, points=len(measure))


def cell_tables(a: np.ndarray, b: np.ndarray, gap_sign: np.ndarray, measure_sign: np.ndarray) -> np.ndarray:
    """counts[c, s, t]: the ordered pairs (i, j) in cell c = (a_i, a_j, b_i, b_j) with [g_i > g_j] = s and
    [μ_i > μ_j] = t; shape (|V_a|²|V_b|², 2, 2)."""
    size_a, size_b = a.max() + 1, b.max() + 1
    cell = ((a[:, None] * size_a + a[None, :]) * size_b + b[:, None]) * size_b + b[None, :]
    flat = cell.ravel() * 4 + gap_sign * 2 + measure_sign
    return np.bincount(flat, minlength=int(size_a**2 * size_b**2) * 4).reshape(-1, 2, 2)


def normalised_cmi(counts: np.ndarray) -> float:
    """mean over cells of I(V_gap; V_measure) ÷ mean over cells of H(V_gap), in bits, over non-empty cells;
    0.0 when H(V_gap) = 0 in every cell (the program's −0.0: module docstring)."""
    joint = counts / counts.sum(axis=(1, 2), keepdims=True)
    p_gap = joint.sum(axis=2, keepdims=True)
    p_measure = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log2(joint / (p_gap * p_measure)), 0.0)
        gap_entropy = -np.where(p_gap > 0, p_gap * np.log2(p_gap), 0.0).sum(axis=(1, 2))
    mean_entropy = gap_entropy.mean()
    if mean_entropy == 0:
        return 0.0
    return float(terms.sum(axis=(1, 2)).mean() / mean_entropy)
