"""The ranking scores (gapbench.ranking): hand-computed cases with the arithmetic written out, slow literal
references (tests/reference_ranking.py), invariances, and clear errors."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gapbench.errors import GapbenchError
from gapbench.ranking import (
    granulated_psi,
    hoeffding_weight,
    kendall_tau,
    pgdl_score,
    robust_sign_error,
    seeds_needed,
    validity,
)
from gapbench.ranking.bound_validity import significant
from gapbench.ranking.coupled import resolvable_gap_difference

sys.path.insert(0, str(Path(__file__).parent))
import reference_ranking as ref  # noqa: E402

LOG2_3 = math.log2(3)


# ---- Kendall τ ---------------------------------------------------------------------------------------------

def test_kendall_tau_by_hand():
    # 4 models, 6 pairs; only (model 1, model 2) is discordant (gap 3 > 2, measure 2 < 3): τ = (5 − 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)


def test_kendall_tau_of_the_gap_itself_is_one_and_of_its_negation_minus_one():
    gap = np.random.default_rng(0).random(30)
    assert kendall_tau(gap, gap) == pytest.approx(1.0)
    assert kendall_tau(-gap, gap) == pytest.approx(-1.0)


def test_kendall_tau_of_a_random_measure_is_near_zero():
    rng = np.random.default_rng(1)
    # sd of τ under independence ≈ sqrt(2(2n+5) / (9n(n−1))) ≈ 0.03 at n = 500: 0.15 is 5 sd
    assert abs(kendall_tau(rng.random(500), rng.random(500))) < 0.15


def test_kendall_tau_refuses_a_constant_measure_and_nan():
    with pytest.raises(GapbenchError, match=r"'measure' parameter of kendall_tau\(\) is constant"):
        kendall_tau([2, 2, 2], [1, 2, 3])
    with pytest.raises(GapbenchError, match=r"'gap' parameter of kendall_tau\(\) must be finite at every model. "
                                            r"Got 'nan at model 1'"):
        kendall_tau([1, 2, 3], [1, float("nan"), 3])


# ---- granulated Ψ ------------------------------------------------------------------------------------------

# a ∈ {0, 1, 2}, b ∈ {0, 1}: six models
PSI_HPS = [dict(a=a, b=b) for b in (0, 1) for a in (0, 1, 2)]
PSI_GAP = [0.1, 0.2, 0.3, 0.5, 0.4, 0.6]
PSI_MEASURE = [1, 3, 2, 5, 6, 7]


def test_granulated_psi_by_hand():
    # ψ_a: group b=0, gaps (.1,.2,.3), measures (1,3,2): pairs a0–a1 +, a0–a2 +, a1–a2 − → τ = 1/3;
    #      group b=1, gaps (.5,.4,.6), measures (5,6,7): a0–a1 −, a0–a2 +, a1–a2 + → τ = 1/3; ψ_a = 1/3.
    # ψ_b: groups a=0 (.1→.5, 1→5), a=1 (.2→.4, 3→6), a=2 (.3→.6, 2→7): all concordant, τ = 1 each; ψ_b = 1.
    # Ψ = (1/3 + 1) / 2 = 2/3.
    result = granulated_psi(PSI_HPS, PSI_MEASURE, PSI_GAP)
    assert result.per_hp == pytest.approx({"a": 1 / 3, "b": 1.0})
    assert result.groups == {"a": 2, "b": 3}
    assert result.psi == pytest.approx(2 / 3)


def test_granulated_psi_skips_groups_of_one_model_on_an_incomplete_grid():
    # drop model (a=2, b=1): ψ_a's group b=1 is now (.5,.4) vs (5,6): τ = −1, so ψ_a = (1/3 − 1)/2 = −1/3;
    # ψ_b's group a=2 has a single model and is skipped: ψ_b = mean(1, 1) = 1; Ψ = 1/3.
    result = granulated_psi(PSI_HPS[:5], PSI_MEASURE[:5], PSI_GAP[:5])
    assert result.per_hp == pytest.approx({"a": -1 / 3, "b": 1.0})
    assert result.groups == {"a": 2, "b": 2}
    assert result.psi == pytest.approx(1 / 3)


def random_grid_case(seed: int, sizes: dict[str, int], ties: bool = False):
    rng = np.random.default_rng(seed)
    hps = ref.grid(sizes)
    draw = (lambda: rng.integers(0, 4, len(hps)).astype(float)) if ties else (lambda: rng.random(len(hps)))
    return hps, draw(), draw()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(),
       sizes=st.fixed_dictionaries({"a": st.integers(2, 3), "b": st.integers(2, 3), "c": st.integers(1, 2)}))
def test_granulated_psi_matches_the_literal_eq4(seed, ties, sizes):
    sizes = {k: v for k, v in sizes.items() if v > 1}
    hps, measure, gap = random_grid_case(seed, sizes, ties)
    expected_psi, expected_per_hp, expected_groups = ref.psi(hps, measure, gap)
    result = granulated_psi(hps, measure, gap)
    assert result.psi == pytest.approx(expected_psi)
    assert result.per_hp == pytest.approx(expected_per_hp)
    assert result.groups == expected_groups and result.points == len(hps)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_tau_and_psi_are_invariant_to_a_strictly_increasing_transform_of_the_measure(seed):
    hps, measure, gap = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    transformed = np.exp(3 * measure) + measure**3 - 7      # strictly increasing on [0, 1]
    assert kendall_tau(transformed, gap) == pytest.approx(kendall_tau(measure, gap))
    assert granulated_psi(hps, transformed, gap).psi == pytest.approx(granulated_psi(hps, measure, gap).psi)


def test_psi_of_the_gap_is_one_and_of_a_random_measure_near_zero():
    hps, measure, gap = random_grid_case(2, {"a": 4, "b": 4, "c": 4, "d": 3})
    assert granulated_psi(hps, gap, gap).psi == pytest.approx(1.0)
    # 192 models; each ψ_i averages 48 group τ's: the sd of Ψ is ≈ 0.05, so 0.2 is 4 sd
    assert abs(granulated_psi(hps, measure, gap).psi) < 0.2


# Two architectures, two seeds, an incomplete grid, in the shape of mnist-hparams: the MLP varies depth (1, 3)
# and lr; the CNN has its own depth (2) and varies lr. (depth, lr) points and their seeds' (measure, gap):
#   P1 mlp 1 .1: (1, .1), (3, .3) → mean (2, .2)      P2 mlp 1 .2: (5, .4), (7, .4) → (6, .4)
#   P3 mlp 3 .1: one seed (the other capped): (1, .3)  P4 mlp 3 .2: not trained (both capped)
#   P5 cnn 2 .1: (4, .5), (4, .7) → (4, .6)            P6 cnn 2 .2: (8, .2), (6, .2) → (7, .2)
ARCH_MODELS = [("mlp", 1, .1, 1, .1), ("mlp", 1, .1, 3, .3), ("mlp", 1, .2, 5, .4), ("mlp", 1, .2, 7, .4),
               ("mlp", 3, .1, 1, .3), ("cnn", 2, .1, 4, .5), ("cnn", 2, .1, 4, .7), ("cnn", 2, .2, 8, .2),
               ("cnn", 2, .2, 6, .2)]


def arch_case():
    hps = [dict(arch=a, depth=d, lr=lr) for a, d, lr, _, _ in ARCH_MODELS]
    return hps, [m for *_, m, _ in ARCH_MODELS], [g for *_, g in ARCH_MODELS]


def test_granulated_psi_by_hand_with_seeds_two_architectures_and_a_missing_point():
    # ψ_arch: groups by (depth, lr) hold one point each (the CNN's depth 2 is no MLP's): no group.
    # ψ_depth: groups by (arch, lr): (mlp, .1) = P1, P3: gap .2 < .3, measure 2 > 1: τ = −1; the others hold
    #          one point (P2; P5; P6). ψ_depth = −1 over 1 group.
    # ψ_lr: groups by (arch, depth): (mlp, 1) = P1, P2: gap .2 < .4, measure 2 < 6: τ = 1; (cnn, 2) = P5, P6:
    #       gap .6 > .2, measure 4 < 7: τ = −1; (mlp, 3) = P3 alone. ψ_lr = 0 over 2 groups.
    # Ψ = mean(−1, 0) = −1/2 (ψ_arch undefined, left out). Without the seed means P1's seeds would be
    # two points, refused or double-counted.
    result = granulated_psi(*arch_case())
    assert result.groups == {"arch": 0, "depth": 1, "lr": 2}
    assert result.per_hp == pytest.approx({"depth": -1.0, "lr": 0.0})
    assert result.psi == pytest.approx(-0.5) and result.points == 5
    expected_psi, expected_per_hp, expected_groups = ref.psi(*arch_case())
    assert (result.psi, result.per_hp, result.groups) == (pytest.approx(expected_psi),
                                                          pytest.approx(expected_per_hp), expected_groups)


def test_granulated_psi_averages_repeats_per_grid_point():
    # the same models in a shuffled order, plus a third seed of P5 at its mean (4, .6): nothing changes
    hps, measure, gap = arch_case()
    order = [8, 3, 0, 5, 7, 1, 4, 6, 2]
    shuffled = granulated_psi([hps[k] for k in order] + [hps[5]], [measure[k] for k in order] + [4.0],
                              [gap[k] for k in order] + [0.6])
    assert shuffled.psi == pytest.approx(-0.5) and shuffled.groups == {"arch": 0, "depth": 1, "lr": 2}


def test_granulated_psi_refuses_a_grid_where_nothing_varies_alone():
    # two points differing in both a and b: every group holds one point
    with pytest.raises(GapbenchError, match=r"No two grid points in the 'hps' parameter of granulated_psi\(\) "
                                            r"differ in a single hyperparameter \(of \['a', 'b'\]\)"):
        granulated_psi([dict(a=0, b=0), dict(a=1, b=1), dict(a=1, b=1)], [1, 2, 3], [1, 2, 3])


def incomplete_case(seed: int, sizes: dict[str, int], keep: float, repeats: int, ties: bool):
    """A grid with a fraction of points dropped, then each kept model repeated up to `repeats` times (seeds),
    with a CNN-like second architecture whose 'a' is a value of its own (-1) and that varies 'b' only."""
    rng = np.random.default_rng(seed)
    hps = [dict(h, arch="mlp") for h in ref.grid(sizes) if rng.random() < keep]
    hps += [dict({n: -1 for n in sizes}, arch="cnn", b=b) for b in range(sizes["b"]) if rng.random() < keep]
    hps = [h for h in hps for _ in range(int(rng.integers(1, repeats + 1)))]
    draw = (lambda: rng.integers(0, 4, len(hps)).astype(float)) if ties else (lambda: rng.random(len(hps)))
    return hps, draw(), draw()


def varies(hps) -> bool:
    return all(len({h[n] for h in hps}) > 1 for n in hps[0])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), keep=st.sampled_from([0.6, 0.8, 1.0]),
       repeats=st.integers(1, 3))
def test_granulated_psi_matches_the_literal_eq4_on_incomplete_grids_with_seeds_and_two_archs(seed, ties, keep,
                                                                                           repeats):
    hps, measure, gap = incomplete_case(seed, {"a": 3, "b": 2, "c": 2}, keep, repeats, ties)
    assume(len(hps) > 1 and varies(hps))
    try:
        expected = ref.psi(hps, measure, gap)
    except ZeroDivisionError:                                     # no ψ_i defined: the error below
        with pytest.raises(GapbenchError, match="No two grid points"):
            granulated_psi(hps, measure, gap)
        return
    result = granulated_psi(hps, measure, gap)
    assert result.psi == pytest.approx(expected[0])
    assert result.per_hp == pytest.approx(expected[1]) and result.groups == expected[2]


# ---- PGDL conditional mutual information --------------------------------------------------------------------

def pgdl_hand_case():
    # a, b, c ∈ {0, 1}; gap = 4a + 2b + c (all distinct); measure = 4a + 2b − c (c ranked the wrong way).
    hps = ref.grid({"a": 2, "b": 2, "c": 2})
    gap = [4 * h["a"] + 2 * h["b"] + h["c"] for h in hps]
    measure = [4 * h["a"] + 2 * h["b"] - h["c"] for h in hps]
    return hps, measure, gap


def test_pgdl_score_by_hand():
    # Two 2x2 tables recur (rows gap +/−, columns measure +/−, over the 4 ordered pairs of a cell):
    #   a "mixed" one such as [[0,1],[1,2]]: p = (0, 1/4, 1/4, 1/2), marginals (1/4, 3/4) both ways,
    #     MI0 = 2·(1/4)·log2((1/4)/(3/16)) + (1/2)·log2((1/2)/(9/16)) = (1/2)log2(4/3) + (1/2)log2(8/9)
    #         = 2.5 − 1.5·log2 3,   H0 = H(1/4, 3/4) = 2 − 0.75·log2 3;
    #   a "perfect" one such as [[1,0],[0,3]]: MI = H = H0. A cell whose 4 pairs share one sign: MI = H = 0.
    mi0, h0 = 2.5 - 1.5 * LOG2_3, 2 - 0.75 * LOG2_3
    # {a, b}: 16 cells (a_i, a_j, b_i, b_j), pairs vary in c. If 4Δa + 2Δb ≠ 0 it dominates ±Δc: one sign,
    #   MI = H = 0 (12 cells). The 4 cells with Δa = Δb = 0: self-pairs (−,−)×2, c 1 vs 0 (+,−), 0 vs 1 (−,+):
    #   mixed. Score = (4·MI0/16) / (4·H0/16) = MI0/H0.
    ab = mi0 / h0
    # {a, c}: pairs vary in b. Δa ≠ 0 (8 cells): one sign. Δa = 0, Δc = 0 (4 cells): self-pairs (−,−)×2,
    #   b 1 vs 0 (+,+), 0 vs 1 (−,−): perfect. Δa = 0, Δc = ±1 (4 cells): Δb = 0 gives (±,∓)×2 and
    #   Δb = ±1 follows 2Δb: mixed. Score = ((4·H0 + 4·MI0)/16) / (8·H0/16) = 1/2 + MI0/(2·H0).
    ac = 0.5 + mi0 / (2 * h0)
    # {b, c}: pairs vary in a; a 1 vs 0 gives (+,+), 0 vs 1 (−,−) in every cell. Δb = Δc = 0 (4 cells):
    #   self-pairs (−,−)×2: perfect. Δb = 0, Δc = ±1 (4 cells): mixed. Δb ≠ 0 (8 cells): 2Δb dominates:
    #   perfect. Score = ((12·H0 + 4·MI0)/16) / H0 = 3/4 + MI0/(4·H0).
    bc = 0.75 + mi0 / (4 * h0)
    result = pgdl_score(*pgdl_hand_case())
    assert result.per_set == pytest.approx({("a", "b"): ab, ("a", "c"): ac, ("b", "c"): bc})
    assert result.score == pytest.approx(ab) and ab == pytest.approx(0.151066, abs=1e-6)


def test_pgdl_score_by_hand_on_an_incomplete_grid_with_seeds():
    # The hand case without the points a = 1, b = 1 (both c), and with a second seed of (a, b, c) = (1, 0, 1)
    # at measure 3 ± 1, gap 5.5 ± 0.5 (its mean is the point's value): 6 grid points,
    # gap = 4a + 2b + c, measure = 4a + 2b − c. MI0, H0: the "mixed" table of test_pgdl_score_by_hand.
    hps, measure, gap = pgdl_hand_case()
    keep = [k for k, h in enumerate(hps) if not (h["a"] == 1 and h["b"] == 1)]
    hps, measure, gap = [hps[k] for k in keep], [measure[k] for k in keep], [gap[k] for k in keep]
    repeat = next(k for k, h in enumerate(hps) if h == dict(a=1, b=0, c=1))
    measure[repeat], gap[repeat] = 2.0, 4.5
    hps, measure, gap = hps + [dict(a=1, b=0, c=1)], measure + [4.0], gap + [5.5]
    mi0, h0 = 2.5 - 1.5 * LOG2_3, 2 - 0.75 * LOG2_3
    # {a, b}: cells with (a, b)_i ≠ (a, b)_j: one sign (4Δa + 2Δb dominates ±Δc), 0 bits. Equal (a, b), 3
    #   cells (00, 01, 10; 11 is empty): self-pairs (−,−)×2, c 1 vs 0 (+,−), 0 vs 1 (−,+): mixed. MI0/H0.
    ab = mi0 / h0
    # {a, c}: Δa ≠ 0: one sign. a = 0 (b ∈ {0, 1}): c_i = c_j: self ×2 (−,−), b 1 vs 0 (+,+), 0 vs 1
    #   (−,−): perfect, H0 bits of each, 2 cells; c_i ≠ c_j: e.g. 001 vs 000 (+,−), 001 vs 010 (−,−),
    #   011 vs 000 (+,+), 011 vs 010 (+,−): p = (1/4, 1/2, 0, 1/4), MI = MI0, H = H0, 2 cells. a = 1 (b = 0
    #   only): each of its 4 cells holds one pair: 0 bits. (2·H0 + 2·MI0) / (4·H0).
    ac = (2 * h0 + 2 * mi0) / (4 * h0)
    # {b, c}: Δb ≠ 0 (8 cells): b = 1 only at a = 0, so a cell holds (01c vs 00c') (+,+) and (01c vs 10c')
    #   (−,−) (or the reverse): MI = H = 1 bit each. b_i = b_j = 1 (4 cells, one pair each): 0 bits.
    #   b_i = b_j = 0: c_i = c_j (2 cells) perfect; c_i ≠ c_j (2 cells) mixed.
    #   (8 + 2·H0 + 2·MI0) / (8 + 4·H0): a plain mean over cells, not weighted by their 2 or 4 pairs.
    bc = (8 + 2 * h0 + 2 * mi0) / (8 + 4 * h0)
    result = pgdl_score(hps, measure, gap)
    assert result.per_set == pytest.approx({("a", "b"): ab, ("a", "c"): ac, ("b", "c"): bc})
    assert result.score == pytest.approx(ab) and result.points == 6
    assert result.cells == {("a", "b"): 9, ("a", "c"): 16, ("b", "c"): 16}   # (a, b) points: 00, 01, 10
    assert result.score == pytest.approx(ref.pgdl_cmi(hps, measure, gap), rel=1e-9)


def test_pgdl_score_of_a_set_that_fixes_the_gap_order_is_zero_as_in_the_program():
    # gap = 2a + b, c varies with no effect: under {a, b} every cell's pairs share one gap sign, so each cell
    # has H(V_gap) = 0 and MI = 0. The program returns 0 / (−1.4e-12) = −0.0 for that set (its 1e-12 in the
    # log), hence a score of 0; so do we.
    hps = ref.grid({"a": 2, "b": 2, "c": 2})
    gap = [2 * h["a"] + h["b"] for h in hps]
    measure = list(range(8, 0, -1))
    result = pgdl_score(hps, measure, gap)
    assert result.per_set[("a", "b")] == 0.0 and result.score == 0.0
    assert ref.pgdl_cmi(hps, measure, gap) == 0.0                         # −0.0 == 0.0


def test_pgdl_score_matches_the_literal_scoring_loop_on_the_hand_case():
    assert pgdl_score(*pgdl_hand_case()).score == pytest.approx(ref.pgdl_cmi(*pgdl_hand_case()), rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(),
       sizes=st.fixed_dictionaries({"a": st.integers(2, 3), "b": st.integers(2, 3), "c": st.integers(2, 3),
                                    "d": st.integers(1, 2)}))
def test_pgdl_score_matches_the_literal_scoring_loop(seed, ties, sizes):
    sizes = {k: v for k, v in sizes.items() if v > 1}
    hps, measure, gap = random_grid_case(seed, sizes, ties)
    assert pgdl_score(hps, measure, gap).score == pytest.approx(ref.pgdl_cmi(hps, measure, gap), rel=1e-9,
                                                                abs=1e-10)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans())
def test_pgdl_score_is_symmetric_in_negating_both_and_invariant_to_increasing_transforms(seed, ties):
    hps, measure, gap = random_grid_case(seed, {"a": 2, "b": 3, "c": 2}, ties)
    score = pgdl_score(hps, measure, gap).score
    assert pgdl_score(hps, -measure, -gap).score == pytest.approx(score, abs=1e-12)
    assert pgdl_score(hps, np.exp(measure) * 5 + 1, gap).score == pytest.approx(score, abs=1e-12)


def test_pgdl_score_of_the_gap_is_maximal_and_of_a_random_measure_near_zero():
    hps, measure, gap = random_grid_case(3, {"a": 3, "b": 3, "c": 3, "d": 2})
    assert pgdl_score(hps, gap, gap).score == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in pgdl_score(hps, 2 * gap + 1, gap).per_set.values())
    assert 0 <= pgdl_score(hps, measure, gap).score < 0.05


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), keep=st.sampled_from([0.6, 0.8]),
       repeats=st.integers(1, 3))
def test_pgdl_score_matches_the_literal_loop_on_incomplete_grids_with_seeds_and_two_archs(seed, ties, keep,
                                                                                      repeats):
    hps, measure, gap = incomplete_case(seed, {"a": 2, "b": 3, "c": 2}, keep, repeats, ties)
    assume(len(hps) > 1 and varies(hps) and np.ptp(ref.seed_means(hps, measure, gap)[2]) > 0)
    assert pgdl_score(hps, measure, gap).score == pytest.approx(ref.pgdl_cmi(hps, measure, gap), rel=1e-9,
                                                                abs=1e-10)


def test_pgdl_score_errors():
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=r"must be dicts with at least 3 varied hyperparameter"):
        pgdl_score(ref.grid({"a": 2, "b": 2}), [1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(GapbenchError, match=r"'gap' parameter of pgdl_score\(\) orders no pair of grid points "
                                            r"\(it is 0.5 at all 7 points after averaging the repeats\)"):
        pgdl_score(hps[:7] + hps[:1], measure[:7] + [0], [0.5] * 8)


# ---- robust sign error ---------------------------------------------------------------------------------------

def test_robust_sign_error_by_hand_without_noise_filtering():
    # models 00, 10, 01, 11 (a, b); environments where a varies: (00,10): gap .1→.2, measure 1→2: loss 0;
    # (01,11): gap .3→.25, measure 3→3 (tie): loss 1/2. Where b varies: (00,01): .1→.3, 1→3: 0; (10,11):
    # .2→.25, 2→3: 0. Each appears in both orders.
    hps = ref.grid({"a": 2, "b": 2})           # order: 00, 01, 10, 11
    gap = [0.1, 0.3, 0.2, 0.25]
    measure = [1, 3, 2, 3]
    result = robust_sign_error(hps, measure, gap, n_test=None, min_ess=1)
    assert sorted(result.env_losses["a"]) == [0, 0, 0.5, 0.5]
    assert sorted(result.env_losses["b"]) == [0, 0, 0, 0]
    assert result.summary("mean") == pytest.approx({"a": 0.25, "b": 0.0, "all": 0.125})
    # p90 of the 8 losses (0 x 6, .5 x 2): position 0.9·7 = 6.3 lies between two 0.5's
    assert result.summary("p90")["all"] == pytest.approx(0.5)
    assert result.worst == 0.5


def test_the_worst_p90_and_mean_environment_loss_by_hand():
    # one hp, 4 values (one model each), gaps .1 < .2 < .3 < .4, measures 1, 3, 2, 3; weight 1 per pair, each
    # environment one pair: (0,1) 1→3 concordant 0; (0,2) 0; (0,3) 0; (1,2) 3→2 against the gap 1; (1,3) tie
    # 1/2; (2,3) 2→3: 0. Both orders: 12 losses, sorted 0 ×8, .5 ×2, 1 ×2. max 1; mean (2·.5 + 2·1)/12 = 1/4;
    # p90: position 0.9·11 = 9.9 between L₍₉₎ = .5 and L₍₁₀₎ = 1: .5 + .9·.5 = .95
    hps = [dict(a=v) for v in range(4)]
    result = robust_sign_error(hps, [1, 3, 2, 3], [0.1, 0.2, 0.3, 0.4], n_test=None, min_ess=1)
    losses = sorted(result.env_losses["all"].tolist())
    assert losses == [0] * 8 + [0.5] * 2 + [1] * 2
    assert (result.worst, result.p90, result.mean) == pytest.approx((1.0, 0.95, 0.25))
    assert ref.robust_summaries(losses) == pytest.approx({"max": 1.0, "p90": 0.95, "mean": 0.25})
    for stat, value in (("max", result.worst), ("p90", result.p90), ("mean", result.mean)):
        assert result.summary(stat) == pytest.approx({"a": value, "all": value})
    none = robust_sign_error(hps, [1, 3, 2, 3], [0.1, 0.2, 0.3, 0.4], n_test=None, min_ess=2)   # ESS 1 < 2
    assert all(math.isnan(v) for v in (none.worst, none.p90, none.mean))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), repeats=st.integers(1, 3), n_test=st.sampled_from([None, 200, 2000]))
def test_the_worst_p90_and_mean_match_the_literal_loops_and_plain_summaries(seed, repeats, n_test):
    hps, _, _ = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    hps = hps * repeats
    rng = np.random.default_rng(seed)
    measure, gap = rng.random(len(hps)), rng.random(len(hps)) * 0.3
    expected = ref.robust_losses(hps, measure, gap, n_test, 1.0)
    every = [loss for losses in expected.values() for loss in losses]
    assume(every)
    result = robust_sign_error(hps, measure, gap, n_test=n_test, min_ess=1.0)
    assert {"max": result.worst, "p90": result.p90, "mean": result.mean} == pytest.approx(ref.robust_summaries(every))
    for stat in ("max", "p90", "mean"):
        assert result.summary(stat)["all"] == pytest.approx(ref.robust_summaries(every)[stat])
        for name, losses in expected.items():
            if losses:
                assert result.summary(stat)[name] == pytest.approx(ref.robust_summaries(losses)[stat])


def test_robust_sign_error_by_hand_with_hoeffding_weights_and_the_ess_filter():
    # a single hp, two seeds per value; n = 1000 test points. Pairs (a=0 seed, a=1 seed):
    #   gaps .10/.20 (Δ .1): w_H = (1 − 2e^{−2·1000·.05²})² = (1 − 2e^{−5})², measures 1/2 concordant: loss 0
    #   gaps .10/.50 (Δ .4): w_H = (1 − 2e^{−80})², measures 1/3: loss 0
    #   gaps .30/.20 (Δ .1): w_H = (1 − 2e^{−5})², measures 1.5/2 (gap down, measure up): loss 1
    #   gaps .30/.50 (Δ .2): w_H = (1 − 2e^{−20})², measures 1.5/3: loss 0
    # weights w = w_H − 1/2; env loss = w₃ / Σw; ESS = (Σw)² / Σw² ≈ 3.997.
    hps = [dict(a=0), dict(a=0), dict(a=1), dict(a=1)]
    gap, measure = [0.10, 0.30, 0.20, 0.50], [1, 1.5, 2, 3]
    w = [(1 - 2 * math.exp(-2 * 1000 * d**2)) ** 2 - 0.5 for d in (0.05, 0.2, 0.05, 0.1)]
    env = w[2] / sum(w)
    ess = sum(w) ** 2 / sum(x * x for x in w)
    assert 3.99 < ess < 4
    kept = robust_sign_error(hps, measure, gap, n_test=1000, min_ess=3.99)
    assert kept.env_losses["a"] == pytest.approx([env, env]) and env == pytest.approx(0.24312, abs=1e-5)
    assert len(robust_sign_error(hps, measure, gap, n_test=1000, min_ess=4).env_losses["a"]) == 0
    assert math.isnan(robust_sign_error(hps, measure, gap, n_test=1000, min_ess=4).worst)


def test_hoeffding_weight_by_hand():
    # Δ = 0.02, n = 10 000: 2·exp(−2·10⁴·0.01²) = 2e^{−2}; w = (1 − 2e^{−2})²
    assert hoeffding_weight(np.array([0.02]), 10_000)[0] == pytest.approx((1 - 2 * math.exp(-2)) ** 2)
    assert hoeffding_weight(np.array([0.0]), 10_000)[0] == 0.0


@pytest.mark.parametrize("n_test,error_1,error_2", [(200, 0.3, 0.5), (1000, 0.1, 0.2), (500, 0.02, 0.12)])
def test_hoeffding_weight_lower_bounds_the_monte_carlo_probability_both_errors_are_within_half_the_gap(
        n_test, error_1, error_2):
    # Two test errors measured on n points each (binomial / n); Hoeffding: each lies within Δ/2 of its mean
    # with probability ≥ 1 − 2·exp(−2n(Δ/2)²), both (independent test sets) with ≥ w_H(Δ); then the measured
    # order is the true one. 20 000 draws: the frequency's sd is < 0.004.
    rng = np.random.default_rng(n_test)
    half = (error_2 - error_1) / 2
    measured_1 = rng.binomial(n_test, error_1, 20_000) / n_test
    measured_2 = rng.binomial(n_test, error_2, 20_000) / n_test
    both_within = (np.abs(measured_1 - error_1) < half) & (np.abs(measured_2 - error_2) < half)
    weight = hoeffding_weight(np.array([error_2 - error_1]), n_test)[0]
    assert 0.5 < weight <= both_within.mean() + 0.01
    assert (measured_1 < measured_2).mean() >= weight - 0.01


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans(), repeats=st.integers(1, 3),
       n_test=st.sampled_from([None, 200, 2000]), min_ess=st.sampled_from([0.5, 1.0, 2.0]))
def test_robust_sign_error_matches_the_literal_environment_loops(seed, ties, repeats, n_test, min_ess):
    hps, _, _ = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    hps = hps * repeats                                       # seeds: equal dicts
    rng = np.random.default_rng(seed)
    measure = rng.integers(0, 4, len(hps)).astype(float) if ties else rng.random(len(hps))
    gap = rng.random(len(hps)) * 0.3
    expected = ref.robust_losses(hps, measure, gap, n_test, min_ess)
    result = robust_sign_error(hps, measure, gap, n_test=n_test, min_ess=min_ess)
    for name, losses in expected.items():
        assert sorted(result.env_losses[name]) == pytest.approx(losses)


def test_robust_sign_error_of_the_gap_is_zero_and_of_its_negation_one():
    hps, _, gap = random_grid_case(4, {"a": 3, "b": 2, "c": 2})
    # 4 seeds per combination: 16 pairs of weight 1 per environment, ESS 16 ≥ the paper's 12
    hps, gap = hps * 4, np.tile(gap, 4) + np.repeat([0.0, 0.01, 0.02, 0.03], len(gap))
    assert len(robust_sign_error(hps, gap, gap, n_test=None).env_losses["all"]) == 2 * (3 * 4 + 6 + 6)
    # (unordered environments: a varies, 3 value pairs x 4 (b, c); b varies, 6 (a, c); c varies, 6; both orders)
    assert robust_sign_error(hps, gap, gap, n_test=None).worst == 0.0
    assert robust_sign_error(hps, -gap, gap, n_test=None).summary("mean")["all"] == 1.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), repeats=st.integers(1, 4), n_test=st.sampled_from([None, 200, 2000]))
def test_every_environments_pairs_and_ess_match_the_literal_loops(seed, repeats, n_test):
    hps, _, _ = random_grid_case(seed, {"a": 3, "b": 2, "c": 2})
    rng = np.random.default_rng(seed)
    hps = [h for h in hps * repeats if rng.random() > 0.2]    # unequal repeats: pairs n1·n2 differ
    assume(all(len({h[k] for h in hps}) > 1 for k in "abc"))
    gap = rng.random(len(hps)) * 0.3
    expected = ref.robust_environments(hps, gap, n_test)
    result = robust_sign_error(hps, gap, gap, n_test=n_test)
    for name, envs in expected.items():
        got = sorted(zip(result.env_pairs[name].tolist(), result.env_ess[name].tolist(), strict=True))
        assert [pairs for pairs, _ in got] == [pairs for pairs, _ in envs]
        assert [ess for _, ess in got] == pytest.approx([ess for _, ess in envs])
    assert result.max_repeats == max(hps.count(h) for h in hps)


def test_with_two_seeds_per_grid_point_the_shortfall_names_the_seed_bound():
    # 2 seeds per combination: an environment holds 2·2 = 4 model pairs, and ESS ≤ pairs (Cauchy–Schwarz:
    # (Σw)² ≤ k·Σw²), so none reaches the paper's 12 whatever the gaps; it takes ⌈√12⌉ = 4 seeds (16 pairs)
    hps = ref.grid({"a": 2, "b": 2}) * 2
    gap = np.linspace(0.1, 0.8, 8)
    result = robust_sign_error(hps, gap, gap, n_test=None)            # weights 1: ESS = pairs = 4
    assert math.isnan(result.worst) and result.too_few_repeats
    assert result.env_pairs["all"].tolist() == [4] * 8 and result.env_ess["all"] == pytest.approx([4.0] * 8)
    assert result.shortfall() == ("no environment passed the effective-sample-size filter ESS ≥ 12: at most 2 "
                                  "seeds per grid point give at most 4 model pairs per environment (ESS ≤ pairs, "
                                  "so ESS ≤ 4); it takes ≥ 4 seeds per grid point")
    # a third seed at one combination: its environments hold 3·2 = 6 pairs, still < 12
    more = robust_sign_error(hps + hps[:1], np.append(gap, 0.9), np.append(gap, 0.9), n_test=1000)
    assert "at most 3 seeds per grid point give at most 6 model pairs per environment (ESS ≤ pairs, so ESS ≤ 6)" \
        in more.shortfall()


@pytest.mark.parametrize("seeds", [3, 4, 5])
def test_with_equal_weights_an_environment_reaches_ess_12_from_four_seeds(seeds):
    # weight 1 per pair (n_test=None): ESS = (s²)² / s² = s² model pairs; 3 seeds give 9 < 12, 4 give 16
    hps = ref.grid({"a": 2, "b": 2}) * seeds
    gap = np.arange(len(hps)) / len(hps)
    result = robust_sign_error(hps, gap, gap, n_test=None)
    assert result.env_ess["all"] == pytest.approx([seeds**2] * 8)
    assert (len(result.env_losses["all"]) == 8) == (seeds >= 4) == (seeds >= seeds_needed(12))
    assert (result.shortfall() == "") == (seeds >= 4) and result.too_few_repeats == (seeds < 4)


def test_with_enough_pairs_but_gaps_too_close_the_shortfall_gives_the_largest_ess_and_the_resolution():
    # 6 seeds (36 pairs per environment), gaps within 0.01 of each other: at n = 10 000 a pair's weight
    # (w_H − 0.5)₊ is 0 below Δ* = 0.0196, so every environment has ESS 0
    hps = ref.grid({"a": 2, "b": 2}) * 6
    gap = 0.1 + 0.01 * np.random.default_rng(0).random(len(hps))
    result = robust_sign_error(hps, gap, gap, n_test=10_000)
    assert not result.too_few_repeats and result.env_pairs["all"].tolist() == [36] * 8
    assert result.shortfall() == ("no environment passed the effective-sample-size filter ESS ≥ 12: environments "
                                  "hold up to 36 model pairs, but the largest ESS is 0; a pair's weight (w_H − 0.5)₊ "
                                  "is 0 unless its gaps differ by more than 0.0196 (n_test = 10000)")
    lone = robust_sign_error([dict(a=0, b=0), dict(a=1, b=1)], [1, 2], [0.1, 0.2])
    assert "there is no environment" in lone.shortfall()


@pytest.mark.parametrize("n_test", [200, 2000, 10_000])
def test_the_resolvable_gap_difference_is_where_the_hoeffding_weight_crosses_one_half(n_test):
    delta = resolvable_gap_difference(n_test)
    assert ref.hoeffding(delta, n_test) == pytest.approx(0.5)
    assert ref.hoeffding(0.999 * delta, n_test) < 0.5 < ref.hoeffding(1.001 * delta, n_test)


@pytest.mark.parametrize("min_ess", [0.5, 1, 2, 4, 9, 12, 16, 16.5, 100])
def test_seeds_needed_is_the_fewest_seeds_whose_squared_count_reaches_min_ess(min_ess):
    assert seeds_needed(min_ess) == next(s for s in range(1, 100) if s * s >= min_ess)


# ---- validity ----------------------------------------------------------------------------------------------

def test_validity_by_hand():
    # bound vs test error: .5 ≥ .3; .2 < .25 (violation by .05); 1.2 ≥ .1; inf ≥ .2.
    # k = 1 of 4; vacuous: 1.2 and inf, 2/4; bound − error = (.2, −.05, 1.1, inf): median (.2 + 1.1)/2 = .65.
    # Clopper–Pearson at 95%, k = 1: lower = 1 − 0.975^{1/4} (Beta(1, 4) quantile in closed form).
    result = validity([0.5, 0.2, 1.2, np.inf], [0.3, 0.25, 0.1, 0.2])
    assert (result.n_models, result.violations, result.violation_rate) == (4, 1, 0.25)
    assert result.largest_violation == pytest.approx(0.05)
    assert result.vacuity == 0.5 and result.median_tightness == pytest.approx(0.65)
    assert result.ci_low == pytest.approx(1 - 0.975 ** 0.25)
    assert (result.ci_low, result.ci_high) == pytest.approx(ref.clopper_pearson(1, 4, 0.95))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 1000), confidence=st.sampled_from([0.9, 0.95, 0.99]))
def test_validity_interval_matches_beta_quantiles_and_covers_the_rate(n, seed, confidence):
    rng = np.random.default_rng(seed)
    test_error, bound = rng.random(n), rng.random(n) * 1.5
    result = validity(bound, test_error, confidence=confidence)
    assert result.violations == int((bound < test_error).sum())
    assert (result.ci_low, result.ci_high) == pytest.approx(ref.clopper_pearson(result.violations, n, confidence))
    assert result.ci_low <= result.violation_rate <= result.ci_high


def test_significant_violations_by_hand():
    # n = 100 test points, N = 2 models, confidence 0.9: δ/N = 0.05. Model 0: 10 errors, bound 0.02; the
    # one-sided lower limit is the 5 % quantile of Beta(10, 91) ≈ 0.0545 > 0.02: significant. Model 1: 10
    # errors, bound 0.08 < 0.1 (a violation) but above 0.0545: not significant.
    lower = ref.clopper_pearson(10, 100, 0.9)[0]             # its two-sided 90 % lower end = 5 % quantile
    assert 0.05 < lower < 0.06
    result = validity([0.02, 0.08], [0.1, 0.1], confidence=0.9, n_test=100)
    assert result.violations == 2 and result.significant_violations == 1
    assert validity([0.02, 0.08], [0.1, 0.1]).significant_violations is None
    with pytest.raises(GapbenchError, match=r"'test_error' parameter of validity\(\) must be error counts over "
                                            r"n_test = 100 points"):
        validity([0.5], [0.1234], n_test=100)


def test_significant_violations_of_valid_bounds_are_rare_by_monte_carlo():
    # bounds equal to the true errors (valid, tight) of 20 models, 2 000 simulated test sets of 300 points:
    # the fraction of test sets that flag any model must be ≤ δ = 0.1 (plus 3 sd of the estimate, 0.02).
    rng = np.random.default_rng(7)
    true_error = rng.uniform(0.01, 0.4, 20)
    measured = rng.binomial(300, true_error, size=(2000, 20)) / 300
    flagged = [significant(true_error, row, 300, 0.1, "validity()") > 0 for row in measured]   # validity's core
    assert np.mean(flagged) <= 0.1 + 0.02


def test_validity_without_violation_and_its_errors():
    result = validity([0.5, 0.2], [0.1, 0.2])             # a bound equal to the test error holds
    assert result.violations == 0 and result.largest_violation == 0.0 and result.ci_low == 0.0
    with pytest.raises(GapbenchError, match=r"'test_error' parameter of validity\(\) must be errors in \[0, 1\]"):
        validity([0.5, 0.6], [0.1, 1.2])
    with pytest.raises(GapbenchError, match=r"'bound' parameter of validity\(\) must be a 1-d array of floats, "
                                            r"\+inf allowed, no NaN"):
        validity([0.5, float("nan")], [0.1, 0.2])
    with pytest.raises(GapbenchError, match=r"'confidence' parameter of validity\(\) must be a float in \(0, 1\)"):
        validity([0.5], [0.1], confidence=95)


# ---- common input errors -----------------------------------------------------------------------------------

SCORES = [(granulated_psi, "granulated_psi"), (pgdl_score, "pgdl_score"), (robust_sign_error, "robust_sign_error")]


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_length_mismatches(score, name):
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=rf"'gap' parameter of {name}\(\) must be an array of length 8 "
                                            r"\(one value per model\). Got 'length 7'"):
        score(hps, measure, gap[:7])
    with pytest.raises(GapbenchError, match=rf"'hps' parameter of {name}\(\) must be a list of 8 dicts"):
        score(hps[:7], measure, gap)


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_a_hyperparameter_with_a_single_value(score, name):
    hps, measure, gap = pgdl_hand_case()
    hps = [dict(h, width=64) for h in hps]
    with pytest.raises(GapbenchError, match=rf"hyperparameter 'width' in the 'hps' parameter of {name}\(\) "
                                            r"takes a single value \(64\) across all 8 models.*drop 'width'"):
        score(hps, measure, gap)


@pytest.mark.parametrize("score,name", SCORES)
def test_every_score_refuses_mismatched_keys_and_nan(score, name):
    hps, measure, gap = pgdl_hand_case()
    with pytest.raises(GapbenchError, match=rf"'hps' parameter of {name}\(\) must be dicts with the same keys"):
        score(hps[:7] + [dict(a=0, b=0)], measure, gap)
    with pytest.raises(GapbenchError, match=rf"'measure' parameter of {name}\(\) must be finite at every model"):
        score(hps, measure[:7] + [float("inf")], gap)


@pytest.mark.parametrize("score", [score for score, _ in SCORES])
def test_scores_do_not_mutate_their_inputs(score):
    hps, measure, gap = pgdl_hand_case()
    measure_arr, gap_arr = np.array(measure, float), np.array(gap, float)
    hps_before = [dict(h) for h in hps]
    score(hps, measure_arr, gap_arr)
    assert hps == hps_before
    assert measure_arr.tolist() == measure and gap_arr.tolist() == gap
