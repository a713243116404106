"""The leaderboard of `gapbench evaluate --all`: every registered measure and bound by each score, sorted,
as OUT/evaluate/leaderboard.html and leaderboard.csv, with a closing note. The CSV holds, beside each score,
the quantity's rank by it (rank_<score>_<target>, 1 = best; the sign errors and seconds lower first), the
groups behind each ψ_i of its Ψ and the number of environments behind its sign errors.

The paper columns put, beside our τ, Ψ and robust (worst-environment) sign error, the published scores of
the same measure from :mod:`.paper_values`: the paper's name and equation for it (Jiang et al. 2020's App. C),
how it relates to ours ('identical' or 'same ranks'), and each score read from Jiang et al.'s
Kendall-coefficient tables or Dziugaite et al.'s sign-error results with its citation; "not transcribed"
where none was read (the papers' zoos are CIFAR-10/SVHN convolutional networks, and the closing note says how
ours differs). A measure that only resembles a paper measure gets no paper score, and its cell says why
("not comparable: ...").

The closing note is computed from the scores, never written in advance: the top five by Ψ and by the PGDL
score among the quantities computed from the training set (the held-out bounds, which see the test points,
on a line of their own); for the sign error, how many of those quantities share the best robust
(worst-environment) value and the top five by the 90th percentile and by the mean of the environment
losses, or why the sign errors are n/a where they are (e.g. too few seeds per grid point for the ESS
filter); whether sharpness / PAC-Bayes-flatness measures lead (the best measure by Ψ is a registered
'sharpness' measure) and whether the norm products correlate negatively with the gap (τ < 0 for each), as
Jiang et al. found.
"""

from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..report import html_page
from .card import Card, verdict_of
from .paper_values import DZIUGAITE, JIANG, paper_columns
from .scores import LOWER_IS_BETTER, SCORES, SIGN_ERRORS, TARGETS, rank_in

NORM_PRODUCTS = ("spectral_product", "frobenius_product", "jiang2020_log_prod_of_spec",
                 "jiang2020_log_prod_of_fro")     # Π_l ‖W_l‖ (or its log): the products Jiang et al. discuss


def row(card: Card, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    ranking = card.tests.get("ranking")
    first = next(iter(ranking.values())) if isinstance(ranking, dict) and ranking else None
    out: dict[str, Any] = {"quantity": card.quantity["name"], "kind": card.quantity["kind"],
                           "origin": card.quantity["origin"]}
    for target in TARGETS:
        for score in SCORES:
            out[f"{score}_{target}"] = None if first is None else first.scores[target][score]
    out["sign_error_gap_why"] = "" if first is None else first.reasons["gap"].get("sign_error", "")  # all three's
    out["sign_error_environments_gap"] = None if first is None else first.sign_error_environments.get("gap")
    out["psi_groups"] = ("" if first is None else
                         "; ".join(f"{hp} {count}" for hp, count in first.psi_groups.items()))
    m = card.tests.get("m_test")
    out["m_test"] = verdict_of(m)
    out["m_test_slope"] = None if isinstance(m, str) or m is None else m.deciding_slope
    out["sprime"] = verdict_of(card.tests.get("sprime"))
    out["validity"] = verdict_of(card.tests.get("validity"))
    out["seconds_per_model"] = card.tests["cost"].seconds_per_model
    out["needs"] = card.tests["cost"].needs
    out["failures"] = sum(f["kind"] != "not_applicable" for f in card.failures)
    out["not_applicable"] = sum(f["kind"] == "not_applicable" for f in card.failures)
    builtin_measure = card.quantity["origin"] == "gapbench" and card.quantity["kind"] == "measure"
    out.update(paper_columns(out["quantity"] if builtin_measure else None))
    out["sharpness"] = (meta or {}).get("kind") == "sharpness"
    out["held_out"] = bool((meta or {}).get("held_out"))
    return out


def _lower_first(column: str) -> bool:
    return column == "seconds_per_model" or column in {f"{s}_{t}" for s in LOWER_IS_BETTER for t in TARGETS}


def sorted_rows(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """Rows with a value in `column` best first (lower first for the sign errors and seconds), then the rest."""
    have = [r for r in rows if r[column] is not None]
    have.sort(key=lambda r: r[column], reverse=not _lower_first(column))
    return have + [r for r in rows if r[column] is None]


def with_ranks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with rank_<score>_<target> added: 1 + the number of quantities with a better value in that
    column (so equal values share a rank, as in the cards' ranks: a robust sign error of 1 for every quantity
    ranks them all 1st), None where the quantity has no value; the CSV states the top five by any score."""
    ranked = [dict(r) for r in rows]
    for column in (f"{score}_{target}" for target in TARGETS for score in SCORES):
        for r, rank in zip(ranked, _ranks(ranked, column), strict=True):
            r[f"rank_{column}"] = rank
    return ranked


def _ranks(rows: list[dict[str, Any]], column: str) -> list[int | None]:
    """Each row's rank by `column`: 1 + the number of rows with a better value (ties share), None: no value."""
    values = [r[column] for r in rows if r[column] is not None]
    return [None if r[column] is None else rank_in(r[column], values, _lower_first(column)) for r in rows]


def _top(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [r for r in sorted_rows(rows, column) if r[column] is not None][:5]


def closing_note(rows: list[dict[str, Any]], zoos: dict) -> list[str]:
    """The ranking lines are over the quantities computed from the training set, Jiang et al.'s question; the
    held-out bounds, computed on the test points the gap itself is measured on, are ranked on a line of
    their own (they track the gap by construction, so they would fill any top five)."""
    held_out = [r for r in rows if r.get("held_out")]
    rows = [r for r in rows if not r.get("held_out")]
    top_psi, top_pgdl = _top(rows, "psi_gap"), _top(rows, "pgdl_gap")
    lines = [f"Top five by Ψ (vs the gap), quantities computed from the training set: {_names(top_psi, 'psi_gap')}.",
             f"Top five by the PGDL score, same quantities: {_names(top_pgdl, 'pgdl_gap')}."]
    if held_out:
        lines.append(f"Held-out bounds (computed on the test points, so they follow the gap by construction; "
                     f"ranked apart): by Ψ {_names(_top(held_out, 'psi_gap'), 'psi_gap')}; by the PGDL score "
                     f"{_names(_top(held_out, 'pgdl_gap'), 'pgdl_gap')}.")
    if top_psi:
        lead = top_psi[0]
        count = sum(r["sharpness"] for r in top_psi)
        lines.append(f"Sharpness / PAC-Bayes-flatness measures {'lead' if lead['sharpness'] else 'do not lead'} "
                     f"(best by Ψ: {lead['quantity']}; {count} of the top five are sharpness measures); Jiang et "
                     f"al. found them best.")
    products = [r for r in rows if r["quantity"] in NORM_PRODUCTS and r["tau_gap"] is not None]
    if products:
        negative = [r["quantity"] for r in products if r["tau_gap"] < 0]
        verdict = ("all correlate negatively with the gap, as Jiang et al. found" if len(negative) == len(products)
                   else f"{len(negative)} of {len(products)} correlate negatively (Jiang et al. found negative "
                        f"correlations)")
        lines.append("Norm products (" + ", ".join(f"{r['quantity']} τ = {r['tau_gap']:.3g}" for r in products)
                     + f"): {verdict}.")
    lines += sign_error_ranking(rows)
    lines += sign_error_gaps(held_out + rows)
    lines.append(zoo_difference(zoos))
    return lines


def sign_error_ranking(rows: list[dict[str, Any]]) -> list[str]:
    """One line on the sign errors vs the gap of the quantities that have them: how many share the best
    robust (worst-environment) value, which one environment at loss 1 sets for a quantity whatever the
    others, so that it can tie them all; and the top five by the 90th percentile and by the mean of the
    environment losses, lower first (gapbench.evaluation.scores.SIGN_ERRORS)."""
    have = [r for r in rows if r.get("sign_error_gap") is not None]
    if not have:
        return []
    best = min(r["sign_error_gap"] for r in have)
    ties = sum(math.isclose(r["sign_error_gap"], best, rel_tol=1e-12, abs_tol=1e-12) for r in have)
    counts = sorted({r.get("sign_error_environments_gap") for r in have} - {None})
    over = (f" over the {counts[0]}{'' if len(counts) == 1 else f'–{counts[-1]}'} environments that pass the "
            f"ESS filter" if counts else "")
    return [f"Sign error vs the gap{over}, quantities computed from the training set (lower is better): the "
            f"robust score (worst environment) is {best:.3g} at best, for {ties} of {len(have)} quantities; top "
            f"five by the 90th percentile of the environment losses: "
            f"{_names(_top(have, 'sign_error_p90_gap'), 'sign_error_p90_gap')}; by their mean (the "
            f"average-case counterpart): {_names(_top(have, 'sign_error_mean_gap'), 'sign_error_mean_gap')}."]


def sign_error_gaps(rows: list[dict[str, Any]]) -> list[str]:
    """One line per distinct reason the sign errors (vs the gap: robust, 90th percentile, mean; one reason
    for the three) are n/a, with how many quantities it holds for: on a zoo with too few seeds per grid
    point it is every quantity, for the same reason."""
    reasons: dict[str, int] = {}
    for r in rows:
        if r.get("sign_error_gap") is None and r.get("sign_error_gap_why"):
            reasons[r["sign_error_gap_why"]] = reasons.get(r["sign_error_gap_why"], 0) + 1
    return [f"Sign error (robust, 90th percentile and mean over environments) n/a for {count} of {len(rows)} "
            f"quantities: {why}." for why, count in reasons.items()]


def _names(rows: list[dict[str, Any]], column: str) -> str:
    return ", ".join(f"{r['quantity']} ({r[column]:.3g})" for r in rows) or "none computable on this zoo"


JIANG_AXES = ("depth", "width", "batch_size", "lr", "weight_decay", "dropout", "optimizer")   # their 7 axes
JIANG_MODELS = 10_000      # "We train over 10,000 convolutional networks" (Jiang et al. 2020, abstract)


def zoo_difference(zoos: dict) -> str:
    """How the ranking zoos differ from the papers': size, data, architectures, seeds, what varies, the stop
    rule, each read from the zoos; the papers' side is their stated setup."""
    ranking = {name: zoo for name, zoo in zoos.items() if name not in ("nk-m-sweep", "nk-hypersphere")}
    ours = "; ".join(_our_zoo(name, zoo) for name, zoo in ranking.items()) or "no ranking zoo"
    text = (f"How our zoo differs: {ours}. {JIANG} ranked over {JIANG_MODELS:,} convolutional networks "
            f"(NiN-style) on CIFAR-10 and SVHN, varying depth, width, batch size, learning rate, weight decay, "
            f"dropout and optimizer, every model trained to training cross-entropy 0.01; {DZIUGAITE} scored pairs "
            f"of NiN networks on CIFAR-10 and SVHN that differ in one hyperparameter, each gap measured on 10,000 "
            f"test points (their create_environments.py), about 10,000 models in all (their data README).")
    if not ranking:
        return text
    total = sum(len(zoo) for zoo in ranking.values())
    varied = {hp for zoo in ranking.values() for hp in zoo.varied}
    missing = [hp for hp in JIANG_AXES if hp not in varied]
    size = f"{total} models, {'far ' if total * 10 <= JIANG_MODELS else ''}fewer than theirs" \
        if total < JIANG_MODELS else f"{total} models"
    axes = f", no {' or '.join(missing)} axis" if missing else ""
    return f"{text} Ours: {size}{axes}, so the paper columns are comparable in sign at best, and Ψ and PGDL " \
           f"rest on few groups."


def _our_zoo(name: str, zoo) -> str:
    datasets = ", ".join(zoo.provenance.get("datasets", []))
    params = getattr(zoo, "params", {}) or {}
    text = f"'{name}' ({zoo.preset} preset): {len(zoo)} models on {datasets}, varying {', '.join(zoo.varied)}"
    if "archs" in params:
        text += f", architectures {' and '.join(params['archs'])}"
    if "seeds" in params:
        text += f", {params['seeds']} seed(s) per grid point"
    if "loss_threshold" in params:
        text += (f", each stopped at training cross-entropy ≤ {params['loss_threshold']} or after "
                 f"{params.get('max_epochs', '?')} epochs (capped models left out)")
    if "n_train" in params:
        sizes = params["n_train"] if isinstance(params["n_train"], (list, tuple)) else [params["n_train"]]
        text += f", trained on {' or '.join(str(n) for n in sizes)} points"
    return text


def csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    columns = [c for c in rows[0] if c not in ("sharpness", "sign_error_gap_why")] if rows else []   # why: in the note
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _table(rows: list[dict[str, Any]], column: str) -> str:
    head = "<tr><th>rank</th><th>quantity</th><th>kind</th><th>" + html.escape(column) + \
           "</th><th>τ gap</th><th>Ψ gap</th><th>PGDL</th><th>sign error (worst)</th><th>sign error p90</th>" \
           "<th>sign error mean</th><th>paper τ</th><th>paper Ψ</th><th>paper sign error</th>" \
           "<th>paper measure (source)</th></tr>"
    ordered = sorted_rows(rows, column)
    body = "".join(
        f"<tr><td>{'' if rank is None else rank}</td><td>{html.escape(r['quantity'])}</td>"
        f"<td>{r['kind']}</td><td>{_fmt(r[column])}</td><td>{_fmt(r['tau_gap'])}</td><td>{_fmt(r['psi_gap'])}</td>"
        f"<td>{_fmt(r['pgdl_gap'])}</td>"
        + "".join(f"<td>{_fmt(r[f'{score}_gap'])}</td>" for score in SIGN_ERRORS) + f"{_paper_cells(r)}</tr>"
        for r, rank in zip(ordered, _ranks(ordered, column), strict=True))
    return f"<details><summary>sorted by {html.escape(column)}</summary><table>{head}{body}</table></details>"


def _paper_cells(r: dict[str, Any]) -> str:
    """The published scores beside ours: a number where one was read, '—' where the papers have the measure
    but no number was transcribed, blank where they have no counterpart (with why, for a partial match)."""
    if not r["paper_measure"]:
        partial = r.get("paper_partial", "")
        return "<td></td>" * 3 + (f"<td>not comparable: {html.escape(partial)}</td>" if partial else "<td></td>")
    scores = "".join(f"<td>{'—' if r[c] is None else _fmt(r[c])}</td>"
                     for c in ("paper_tau", "paper_psi", "paper_sign_error"))
    return f"{scores}<td>{html.escape(r['paper_measure'])}: {html.escape(r['paper_source'])}</td>"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else html.escape(str(value)))


def _verdicts(rows: list[dict[str, Any]]) -> str:
    head = "<tr><th>quantity</th><th>kind</th><th>m-test</th><th>S' test</th><th>validity</th><th>s/model</th>" \
           "<th>failures</th></tr>"
    body = "".join(f"<tr><td>{html.escape(r['quantity'])}</td><td>{r['kind']}</td><td>{html.escape(r['m_test'])}</td>"
                   f"<td>{html.escape(r['sprime'])}</td><td>{html.escape(r['validity'])}</td>"
                   f"<td>{_fmt(r['seconds_per_model'])}</td><td>{r['failures']}</td></tr>" for r in rows)
    return f"<h2>Verdicts</h2><table>{head}{body}</table>"


def write_leaderboard(cards: list[Card], directory: Path, zoos: dict) -> dict[str, str]:
    """Write leaderboard.csv (sorted by Ψ vs the gap, with each quantity's rank by every score) and
    leaderboard.html (the closing note, then one table per score, sorted by it)."""
    from ..plugins import resolve
    rows = []
    for card in cards:
        meta = {}
        if card.quantity["origin"] == "gapbench":
            meta = dict(resolve(card.quantity["spec"]).meta)
        rows.append(row(card, meta))
    rows = with_ranks(sorted_rows(rows, "psi_gap"))
    note = closing_note(rows, zoos)
    tables = [_table(rows, f"{score}_{target}") for target in TARGETS for score in SCORES]
    tables.append(_table(rows, "seconds_per_model"))
    intro = "<h2>Closing note</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in note) + "</ul>"
    paths = {"html": Path(directory) / "leaderboard.html", "csv": Path(directory) / "leaderboard.csv"}
    atomic_write_bytes(paths["csv"], csv_text(rows).encode())
    atomic_write_bytes(paths["html"], html_page("leaderboard", ["<h2>Scores</h2>", *tables, _verdicts(rows)],
                                                intro).encode())
    return {k: str(v) for k, v in paths.items()} | {"note": "\n".join(note)}
