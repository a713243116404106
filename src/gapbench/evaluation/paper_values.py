"""The published ranking scores of the measures that Jiang et al. 2020 and Dziugaite et al. 2020 also
evaluate, keyed by gapbench's registered names, for the leaderboard's paper columns.

``COUNTERPARTS`` maps a registered measure to the paper's name and equation for it and says how the two
relate: 'identical' (the same formula) or 'same ranks' (a strictly monotone function of theirs: a square
root, a log, an inverse of a positive quantity, so every rank score — Kendall's τ, Ψ, the sign error — is the
same). Each relation follows from the measure's registered reference (its equation number in Jiang et al.'s
App. C) or from both being computed by the same function. A paper score is comparable with ours only under
one of these relations. ``PARTIAL`` names the registered measures that resemble a paper measure without
either relation (other constants, squares, biases), with what differs: no paper score is shown for them.

``VALUES`` holds the numbers, each with where it was read: ``{"score": "tau" | "psi" | "sign_error",
"paper": ..., "dataset": ..., "value": float, "source": URL, "table": ..., "column": ...}``; τ and Ψ lie in
[−1, 1], a sign error in [0, 1]. A number goes in only when it was read in the paper or in a source quoting
it; none is reconstructed, estimated from a figure or recomputed. ``SEARCHED`` records, per paper, where the
numbers were looked for. None of the reachable copies shows them: the stored copies of both papers expose
their openings only (abstract, introduction), not Jiang et al.'s Kendall-coefficient tables (Table 1,
CIFAR-10; the SVHN table of the appendix) nor Dziugaite et al.'s sign-error results; and Dziugaite et al. report
those as figures (CDFs of the sign error over environments; their code builds Figs. 1-4 and 8-11), whose data
file is not in the stored snapshots of their repositories. So ``VALUES`` is empty and the leaderboard says "not
transcribed" beside each counterpart. Filling it is a data edit: :func:`check_values` refuses a value without
its source, table and column, or outside its score's range.

References:
    Jiang, Neyshabur, Mobahi, Krishnan & Bengio, "Fantastic Generalization Measures and Where to Find Them",
    ICLR 2020, arXiv:1912.02178.
    Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas & Roy, "In search of robust measures of
    generalization", NeurIPS 2020, arXiv:2010.11924.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import GapbenchError

JIANG = "Jiang et al. 2020"
DZIUGAITE = "Dziugaite et al. 2020"
PAPERS = (JIANG, DZIUGAITE)
SCORES = ("tau", "psi", "sign_error")      # Kendall's τ over all models, granulated Ψ, robust sign error
SCORE_RANGES = {"tau": (-1.0, 1.0), "psi": (-1.0, 1.0), "sign_error": (0.0, 1.0)}   # Ψ: a mean of τs
CITATION_FIELDS = ("dataset", "source", "table", "column")


def _jiang(name: str, equation: str, relation: str) -> dict[str, str]:
    return {"paper": JIANG, "name": name, "equation": equation, "relation": relation}


_OWN_FORMS = {   # our registered jiang2020_<name> measures are their Eq. as printed (measures/jiang.py)
    "dist_spec_init": "(41)", "fro_dist": "(40)", "inverse_margin": "(22)", "log_prod_of_fro": "(37)",
    "log_prod_of_fro_over_margin": "(36)", "log_prod_of_spec": "(32)", "log_prod_of_spec_over_margin": "(31)",
    "log_spec_init_main": "(29)", "log_spec_orig_main": "(30)", "log_sum_of_fro": "(39)",
    "log_sum_of_fro_over_margin": "(38)", "log_sum_of_spec": "(35)", "log_sum_of_spec_over_margin": "(34)",
    "pacbayes_flatness": "(53)", "pacbayes_init": "(48)", "pacbayes_mag_flatness": "(61)",
    "pacbayes_mag_init": "(56)", "pacbayes_mag_orig": "(57)", "pacbayes_orig": "(49)", "param_norm": "(42)",
    "path_norm": "(44)", "path_norm_over_margin": "(43)",
}

COUNTERPARTS: dict[str, dict[str, str]] = {
    **{f"jiang2020_{name}": _jiang(name.replace("_", "."), eq, "identical") for name, eq in _OWN_FORMS.items()},
    "num_params": _jiang("params", "(20)", "identical"),
    "fro_over_spec": _jiang("fro/spec", "(33)", "identical"),
    # sqrt of Eq. (40)'s Σ‖W_l − Z_l‖_F²
    "dist_from_init_fro": _jiang("fro.dist", "(40)", "same ranks"),
    # Eq. (32) is log Π‖W_l‖₂² = 2 log Π‖W_l‖₂
    "spectral_product": _jiang("log.prod.of.spec", "(32)", "same ranks"),
    # Eq. (37) is log Π‖W_l‖_F² = 2 log Π‖W_l‖_F
    "frobenius_product": _jiang("log.prod.of.fro", "(37)", "same ranks"),
    # σ' itself, higher is better (negated before ranking); Eq. (53) is 1/σ'²
    "pacbayes_sharpness": _jiang("pacbayes.flatness", "(53)", "same ranks"),
    # magnitude-aware σ'; Eq. (61) is 1/σ'²
    "pacbayes_mag_sharpness": _jiang("pacbayes.mag.flatness", "(61)", "same ranks"),
    # sqrt of Eq. (44): both are the same path_norms() call (measures/path_norms.py, jiang.py)
    "path_norm_l2": _jiang("path.norm", "(44)", "same ranks"),
}

PARTIAL: dict[str, str] = {   # registered name -> the paper measure it resembles and why it is not comparable
    "param_norm": "Jiang et al. 'param.norm', Eq. (42), is Σ_l ‖W_l‖_F² over weights only; ours is the ℓ2 norm "
                  "of weights and biases, so biases can reorder models",
    "frobenius_sum": "Jiang et al. 'log.sum.of.fro', Eq. (39), is log(d (Π_l ‖W_l‖_F²)^{1/d}), a geometric "
                     "mean; Σ_l ‖W_l‖_F is not a monotone function of it",
    "spectral_sum": "Jiang et al. 'log.sum.of.spec', Eq. (35), is log(d (Π_l ‖W_l‖₂²)^{1/d}), a geometric mean; "
                    "Σ_l ‖W_l‖₂ is not a monotone function of it",
    "dist_from_init_spec": "Jiang et al. 'dist.spec.init', Eq. (41), sums squared spectral norms "
                           "Σ_l ‖W_l − Z_l‖₂²; ours sums them unsquared",
    "margin_quantile": "Jiang et al. 'inverse.margin', Eq. (22), is 1/γ² with γ = |10th-percentile margin|; it "
                       "orders models as our −γ does only while every model's 10th-percentile margin is positive",
    "pacbayes_kl": "Jiang et al. 'pacbayes.init', Eq. (48), is ‖w − w_0‖²/(4σ²) + ln(m/σ) + 10 over the weights; "
                   "ours is ‖w − w_0‖²/(2σ²) over weights and biases, and σ varies by model, so the two can "
                   "rank differently",
    "pacbayes_mag_kl": "Jiang et al. 'pacbayes.mag.init', Eq. (56), is ¼ Σ_i ln of a variance ratio + "
                       "ln(m/σ') + 10; ours is the Gaussian KL Σ_i (w_i − w0_i)²/(2(σ'²w_i² + ε²)), another "
                       "function of w, w_0 and σ'",
}

VALUES: dict[str, list[dict[str, Any]]] = {}   # registered name -> read values (see the module docstring)

SEARCHED: dict[str, tuple[str, ...]] = {   # paper -> where its numbers were looked for and not found
    JIANG: (
        "https://www.arxiv-vanity.com/papers/1912.02178v1/ and /papers/1912.02178/: opening only",
        "https://documents.pub/document/fantastic-generalization-measures-and-where-to-find-them.html: opening "
        "only",
        "https://a2c.fyi/1912.02178, https://www.sciencestack.ai/paper/1912.02178, "
        "https://paperswithcode.com/paper/fantastic-generalization-measures-and-where-1, "
        "https://research.google/pubs/pub48754/: abstract, summary and figure captions only",
        "ar5iv / arxiv.org HTML, OpenReview, the ICLR 2020 text dumps: no stored copy found",
        "public code (searched for 'pacbayes.mag.flatness', 'sharpness-orig', 'path.norm', 'sum-of-fro', "
        "'log.prod.of.spec', 'granulated Kendall', 'Fantastic generalization measures'): reimplementations and "
        "reading notes, none quoting Table 1 or the SVHN table",
        "github:google-research/google-research pgdl/README.md: the PGDL competition data, not these tables",
        "public issues (paper-reading repositories): no transcription",
    ),
    DZIUGAITE: (
        "https://www.arxiv-vanity.com/papers/2010.11924v2/: opening only",
        "https://object.cloud.sdsc.edu/.../NeurIPS/2020/in_search_of_robust_measures_of_generalization__135368a0.txt:"
        " opening only",
        "github:nitarshan/robust-generalization-measures @ 8e9012991ddef1603bab5b6ab31ace6fbfc67ac6: the results are"
        " figures, no table (experiments/coupled_networks/makefile builds the paper's Figs. 1-4 and 8-11); the "
        "data behind them, data/nin.cifar10_svhn.csv, is absent from the stored snapshot",
        "github:nitarshan/banana-smoothie-recipe-1776 @ 8446c2b9d2b64e3bd147cfacf0320d4d5b979742 (their earlier "
        "code): results/nin.cifar10_svhn.csv absent; results/regression/risks/*.npy are the regression "
        "experiment, not sign errors",
        "https://kylrth.com/paper/robust-measures-of-generalization/: a summary in words, no numbers per measure",
    ),
}


def check_values(values: dict[str, list[dict[str, Any]]], known: set[str] | frozenset[str]) -> None:
    """Raise GapbenchError unless every key is a registered measure with a counterpart and every value is a
    finite number of a known score with its paper, dataset, source, table and column."""
    for name, entries in values.items():
        if name not in known:
            raise GapbenchError(f"paper_values: '{name}' is not a registered measure. Key paper values by "
                                f"gapbench's registered names (gapbench list).")
        if name not in COUNTERPARTS:
            raise GapbenchError(f"paper_values: '{name}' has values but no entry in COUNTERPARTS. Add its "
                                f"paper name, equation and relation first.")
        for entry in entries:
            _check_entry(name, entry)


def _check_entry(name: str, entry: dict[str, Any]) -> None:
    where = f"paper_values['{name}']"
    if entry.get("score") not in SCORES:
        raise GapbenchError(f"The 'score' field of {where} must be one of {list(SCORES)}. "
                            f"Got {entry.get('score')!r} instead.")
    if entry.get("paper") not in PAPERS:
        raise GapbenchError(f"The 'paper' field of {where} must be one of {list(PAPERS)}. "
                            f"Got {entry.get('paper')!r} instead.")
    value = entry.get("value")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GapbenchError(f"The 'value' field of {where} must be a finite number. Got {value!r} instead.")
    low, high = SCORE_RANGES[entry["score"]]
    if not low <= value <= high:
        raise GapbenchError(f"The 'value' field of {where} must lie in [{low:g}, {high:g}] for a "
                            f"{entry['score']} score. Got {value!r} instead. Check the column it was read from.")
    missing = [f for f in CITATION_FIELDS if not entry.get(f)]
    if missing:
        raise GapbenchError(f"{where} has a value ({value}) without its citation: {', '.join(missing)} "
                            f"missing. Record the dataset, URL, table and column it was read from, or leave it out.")


def paper_columns(name: str | None) -> dict[str, Any]:
    """The leaderboard's paper columns for a registered quantity: the counterpart's name, equation and
    relation ('' when the papers have none, or `name` is None: not a registered measure), the read scores
    (None where none was read) with their citations, and for a partial match why it is not comparable."""
    counterpart = COUNTERPARTS.get(name) if name is not None else None
    out: dict[str, Any] = {"paper_measure": "", **{f"paper_{score}": None for score in SCORES},
                           "paper_source": "", "paper_partial": PARTIAL.get(name, "") if name is not None else ""}
    if counterpart is None:
        return out
    out["paper_measure"] = (f"{counterpart['paper']} '{counterpart['name']}', Eq. {counterpart['equation']} "
                            f"({counterpart['relation']})")
    sources = []
    for entry in VALUES.get(name, []):
        if out[f"paper_{entry['score']}"] is None:
            out[f"paper_{entry['score']}"] = entry["value"]
            sources.append(f"{entry['score']}: {entry['paper']}, {entry['table']}, {entry['column']}, "
                           f"{entry['dataset']} ({entry['source']})")
    out["paper_source"] = "; ".join(sources) or "not transcribed (see gapbench.evaluation.paper_values)"
    return out
