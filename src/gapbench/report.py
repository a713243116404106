"""Outputs of an experiment: figure.png/.pdf, results.csv, summary.json and a self-contained report.html.

Every file is written to a temporary name and renamed into place, so a killed run never leaves a half file.
Outputs are never replaced by ones built from fewer rows (a smaller preset or grid, an emptier store): the
old ones stay, and the outcome's notes say why nothing was written (:func:`fewer_rows`).
The figure's caption lists each claim as held / not held with its measured value: the figure, the summary
and the HTML report all show the same evaluation of the same stored rows.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on the machines; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_write_bytes  # noqa: E402

CAPTION_CHARS = 170   # characters of 8 pt monospace across the 12-inch figure (about 4.8 pt each, 864 pt wide)


def claim_lines(claims) -> list[str]:
    return [f"{'HELD' if c.held else 'NOT HELD'}: {c.name} ({_fmt(c.value)}; {c.detail})" for c in claims]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def render_figure(exp, outcome) -> plt.Figure:
    """The experiment's figure with the claims as caption."""
    fig = plt.figure(figsize=(12, 7.5))
    if exp.plot is not None and len(outcome.table.ok()):
        exp.plot(outcome.table.ok(), fig, outcome.params)
    else:
        fig.text(0.5, 0.5, "no successful runs to plot", ha="center", va="center")
    caption = [f"{exp.name} ({outcome.preset} preset) - {exp.paper}, {exp.figure}"] + claim_lines(outcome.claims)
    # at most two lines per claim, each as wide as the 12-inch figure holds at 8 pt monospace
    caption = [part for line in caption for part in textwrap.wrap(line, CAPTION_CHARS, subsequent_indent="    ",
                                                                   max_lines=2, placeholder=" ...")]
    fig.text(0.01, 0.005, "\n".join(caption), fontsize=8, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.02 + 0.022 * len(caption), 1, 1), w_pad=2.0, h_pad=1.5)
    return fig


def figure_bytes(fig: plt.Figure, fmt: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    return buf.getvalue()


def csv_bytes(table) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=table.columns(), extrasaction="ignore")
    writer.writeheader()
    for row in table.rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buf.getvalue().encode()


def _csv_value(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else v


def csv_row_count(path: Path) -> int | None:
    """Data rows of an existing CSV file (quoted newlines included), or None when there is none."""
    try:
        with open(path, newline="") as fh:
            return max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    except (FileNotFoundError, IsADirectoryError):
        return None


def fewer_rows(path: Path, n_rows: int) -> str | None:
    """Why a table of n_rows must not replace the CSV at `path` (it has more rows), else None."""
    existing = csv_row_count(Path(path))
    if existing is None or n_rows >= existing:
        return None
    return (f"not written: {path} holds {existing} rows and this table {n_rows}; outputs are never replaced "
            f"by emptier ones. Use another --out (or --csv), or delete the old file.")


def write_outputs(exp, outcome, exp_dir: Path) -> dict[str, str]:
    """Write the four outputs of one experiment; returns their paths ({} and a note in outcome.notes when
    the existing results.csv has more rows than this outcome, see fewer_rows)."""
    exp_dir = Path(exp_dir)
    refusal = fewer_rows(exp_dir / "results.csv", len(outcome.table))
    if refusal is not None:
        outcome.notes.append(f"outputs {refusal}")
        return {}
    fig = render_figure(exp, outcome)
    png = figure_bytes(fig, "png")
    paths = {"figure": exp_dir / "figure.png", "figure_pdf": exp_dir / "figure.pdf",
             "results": exp_dir / "results.csv", "summary": exp_dir / "summary.json",
             "report": exp_dir / "report.html"}
    atomic_write_bytes(paths["figure"], png)
    atomic_write_bytes(paths["figure_pdf"], figure_bytes(fig, "pdf"))
    plt.close(fig)
    atomic_write_bytes(paths["results"], csv_bytes(outcome.table))
    str_paths = {k: str(v) for k, v in paths.items()}
    outcome.paths = str_paths
    atomic_write_bytes(paths["summary"], json.dumps(outcome.summary(), indent=2, default=str).encode())
    atomic_write_bytes(paths["report"], html_page(exp.name, [section(exp, outcome, png)],
                                                  summary_table([(exp, outcome)])).encode())
    return str_paths


def section(exp, outcome, png: bytes) -> str:
    """One experiment's HTML section: figure, claims, statistics, parameters, results."""
    rows = "".join(
        f"<tr class='{'held' if c.held else 'not'}'><td>{'held' if c.held else 'NOT held'}</td>"
        f"<td>{html.escape(c.name)}</td><td>{_fmt(c.value)}</td><td>{html.escape(c.detail)}</td></tr>"
        for c in outcome.claims)
    claims = (f"<h3>Claims</h3><table><tr><th>verdict</th><th>claim</th><th>value</th><th>detail</th></tr>{rows}"
              "</table>" if rows else "")
    statistics = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
                         for k, v in outcome.statistics.items())
    statistics = (f"<h3>{html.escape(outcome.statistics_label)}</h3><table>{statistics}</table>"
                  if statistics else "")
    note = exp.notes.get(outcome.preset, "")
    table = outcome.table
    cols = table.columns()
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in table.rows[:300])
    more = f"<p>{len(table) - 300} more rows in results.csv</p>" if len(table) > 300 else ""
    return f"""
<section id="{html.escape(exp.name)}">
<h2>{html.escape(exp.name)} <small>({html.escape(outcome.preset)} preset)</small></h2>
<p><b>{html.escape(exp.paper)}</b>, {html.escape(exp.figure)}. {html.escape(exp.summary)}</p>
{f'<p class="note">Preset note: {html.escape(note)}</p>' if note else ''}
<p>Runs: {outcome.runs_trained} trained, {outcome.runs_reused} reused, {outcome.runs_failed} failed,
{outcome.missing} missing; this invocation {duration(outcome.seconds)}, original training
{duration(outcome.training_seconds)}.</p>
<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="{html.escape(exp.name)} figure">
{claims}
{statistics}
<h3>Parameters</h3>{params_table(outcome.params)}
<details><summary>Results ({len(table)} rows)</summary>
<table><tr>{''.join(f'<th>{html.escape(c)}</th>' for c in cols)}</tr>
{body}</table>{more}</details>
</section>"""


def duration(seconds: float) -> str:
    """'23 s', '4 min 5 s', '1 h 02 min': how long something took, as a person reads it."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def params_table(params: dict[str, Any]) -> str:
    """Parameters as a two-column HTML table; lists joined by commas, nested dicts as key=value pairs."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_param_text(v))}</td></tr>"
                   for k, v in params.items())
    return f"<table class='params'><tr><th>parameter</th><th>value</th></tr>{rows}</table>"


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_param_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_param_text(v)}" for k, v in value.items()) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expectation(exp, claim, preset: str) -> str:
    """Whether a claim that did not hold was expected not to hold at this preset, and why."""
    declared = next((c for c in exp.claims if c.name == claim.name), None)
    reason = declared.expected_not_held.get(preset) if declared is not None else None
    if reason:
        return f"Expected at the {preset} preset: {reason}"
    return f"Not expected at the {preset} preset."


def summary_table(outcomes: list[tuple[Any, Any]]) -> str:
    """The top-of-report table: one row per experiment, linked to its section, then each NOT-held claim in
    red with its detail and whether it is expected at that preset."""
    rows, misses = [], []
    for exp, o in outcomes:
        held = sum(c.held for c in o.claims)
        verdict = "held" if held == len(o.claims) else "not"
        rows.append(f"<tr><td><a href='#{html.escape(exp.name)}'>{html.escape(exp.name)}</a></td>"
                    f"<td>{html.escape(o.preset)}</td><td class='{verdict}'>{held}/{len(o.claims)}</td>"
                    f"<td>{duration(o.seconds)}</td><td>{duration(o.training_seconds)}</td>"
                    f"<td>{o.runs_trained} / {o.runs_reused} / {o.runs_failed}</td></tr>")
        misses += [f"<li class='not'><a href='#{html.escape(exp.name)}'>{html.escape(exp.name)}</a>: "
                   f"<b>{html.escape(c.name)}</b> NOT held ({_fmt(c.value)}; {html.escape(c.detail)}). "
                   f"{html.escape(expectation(exp, c, o.preset))}</li>" for c in o.claims if not c.held]
    head = ("<tr><th>experiment</th><th>preset</th><th>claims held</th><th>this invocation</th>"
            "<th>original training</th><th>models trained / reused / failed</th></tr>")
    listing = f"<ul class='misses'>{''.join(misses)}</ul>" if misses else ""
    return f"<table class='summary'>{head}{''.join(rows)}</table>{listing}"


def html_page(title: str, sections: list[str], intro: str = "") -> str:
    from .provenance import provenance
    prov = provenance()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>gapbench: {html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}table{{border-collapse:collapse;
font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px}}tr.held td:first-child{{background:#cfc}}
tr.not td:first-child{{background:#fcc}}td.held{{background:#cfc}}td.not{{background:#fcc}}
li.not{{color:#b00000}}img{{max-width:100%}}.note{{background:#ffd;padding:4px}}
details{{overflow-x:auto}}</style></head><body><h1>gapbench report: {html.escape(title)}</h1>{intro}
{''.join(sections)}
<footer><hr><small>gapbench {html.escape(str(prov.get('gapbench')))}, git {html.escape(str(prov.get('git_sha')))},
torch {html.escape(str(prov.get('torch')))}, {html.escape(str(prov.get('time')))}</small></footer></body></html>"""


def write_combined(outcomes: list[tuple[Any, Any]], path: Path, title: str, intro: str = "") -> Path:
    """One HTML page with a section per (experiment, outcome), figures embedded (the demo report)."""
    sections = []
    for exp, outcome in outcomes:
        fig = render_figure(exp, outcome)
        sections.append(section(exp, outcome, figure_bytes(fig, "png")))
        plt.close(fig)
    intro += summary_table(outcomes)
    atomic_write_bytes(Path(path), html_page(title, sections, intro).encode())
    return Path(path)
