"""The report card of one measure or bound: card.json, figure.png and a self-contained report.html.

The card holds each test's typed result (a string where the test did not run or could not be computed, and
why), the zoos' provenance, the quantity's rank among the registered ones in each score, and every failure.
The figure has one panel per test; the HTML shows the verdicts at a glance, then the figure, each test's
numbers, the zoos and the failures (gapbench.report's page, figure embedded).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..report import figure_bytes, html_page, params_table, plt

TESTS = ("m_test", "sprime", "validity", "ranking", "cost")
TITLES = {"m_test": "1. NK's m-test", "sprime": "2. The S' test", "validity": "3. Validity",
          "ranking": "4. Ranking", "cost": "5. Cost"}


@dataclass
class Card:
    """Everything `gapbench evaluate` found about one quantity."""

    quantity: dict[str, Any]                       # name, kind, origin, spec
    zoos: dict[str, dict[str, Any]]                # name -> preset, params, provenance, counts
    tests: dict[str, Any]                          # TESTS -> a result, {zoo: result}, or a str
    ranks: dict[str, Any] = field(default_factory=dict)      # score -> {rank, of, value}
    failures: list[dict[str, str]] = field(default_factory=list)
    computed: int = 0                              # evaluations computed by this call (the rest were stored)
    reused: int = 0
    paths: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether the quantity failed somewhere through its own fault (not 'does not apply')."""
        return any(f["kind"] != "not_applicable" for f in self.failures)

    def verdicts(self) -> dict[str, str]:
        return {test: verdict_of(self.tests.get(test)) for test in TESTS}

    def as_dict(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "verdicts": self.verdicts(), "tests": _plain(self.tests),
                "ranks": self.ranks, "zoos": self.zoos, "failures": self.failures, "computed": self.computed,
                "reused": self.reused, "failed": self.failed}


def verdict_of(result: Any) -> str:
    if result is None:
        return "not run"
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        return "; ".join(f"{zoo}: {verdict_of(r)}" for zoo, r in result.items()) or "not run"
    return result.verdict


def _plain(obj: Any) -> Any:
    """JSON-ready: dataclasses as dicts, non-finite floats as strings."""
    if dataclasses.is_dataclass(obj):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def _results(result: Any) -> list[tuple[str, Any]]:
    """(zoo, result) pairs of a test (a per-zoo dict or one result), typed results only."""
    items = result.items() if isinstance(result, dict) else [("", result)]
    return [(zoo, r) for zoo, r in items if r is not None and not isinstance(r, str)]


def render_figure(card: Card):
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    axes = axes.ravel()
    _m_panel(axes[0], card.tests.get("m_test"))
    _sprime_panel(axes[1], card.tests.get("sprime"))
    _validity_panel(axes[2], card.tests.get("validity"))
    _ranking_panel(axes[3], card.tests.get("ranking"))
    _psi_panel(axes[4], card.tests.get("ranking"))
    _cost_panel(axes[5], card.tests.get("cost"))
    fig.suptitle(f"gapbench evaluate: {card.quantity['kind']} '{card.quantity['name']}' "
                 f"({card.quantity['origin']})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _empty(ax, title: str, result: Any) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "\n".join(_wrap(verdict_of(result))), ha="center", va="center", fontsize=8,
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _wrap(text: str, width: int = 45) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width) or [""]


def _m_panel(ax, result) -> None:
    if not _results(result):
        return _empty(ax, TITLES["m_test"], result)
    r = result
    ax.loglog(r.test_m, r.test_error, "o-", label=f"test error (slope {r.slope_test_error:.2f})")
    if r.normalized is not None:
        ax.loglog(r.m, r.normalized, "s-", label=f"value / (γ√m) (slope {r.slope_normalized:.2f})")
    else:
        ax.loglog(r.m, r.value, "s-", label=f"value (slope {r.slope:.2f})")
    ax.set_xlabel("training-set size m")
    ax.set_title(f"{TITLES['m_test']}: {r.verdict}", fontsize=9)
    ax.legend(fontsize=7)


def _sprime_panel(ax, result) -> None:
    if not _results(result):
        return _empty(ax, TITLES["sprime"], result)
    r = result
    ax.plot(r.m, r.implied_eps_unif, "o-", label="implied ε_unif = err(S') − test error")
    if any(e is not None for e in r.epsilon):
        ax.plot(r.m, [math.nan if e is None else e for e in r.epsilon], "s-", label=f"ε ({r.epsilon_kind})")
    else:
        ax.plot(r.m, [math.nan if v is None else v for v in r.value_s], "s-", label="value on S")
        ax.plot(r.m, [math.nan if v is None else v for v in r.value_sprime], "^-", label="value on S'")
    ax.set_xscale("log")
    ax.set_xlabel("training-set size m")
    ax.set_title("\n".join(_wrap(f"{TITLES['sprime']}: {r.verdict}", 60)), fontsize=8)
    ax.legend(fontsize=7)


def _validity_panel(ax, result) -> None:
    found = _results(result)
    if not found:
        return _empty(ax, TITLES["validity"], result)
    for zoo, r in found:
        ax.scatter(r.test_error, r.bound, s=12, label=f"{zoo}: {r.violations}/{r.n_models} violate")
    ax.axline((0, 0), slope=1, color="k", lw=0.8, ls="--")
    ax.set_xlabel("test error")
    ax.set_ylabel("bound")
    if max(max(r.bound) for _, r in found) > 10:        # norm-based bounds reach 1e6: show them on a log scale
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(TITLES["validity"] + " (below the line: violated)", fontsize=9)
    ax.legend(fontsize=7)


def _ranking_panel(ax, result) -> None:
    found = _results(result)
    if not found:
        return _empty(ax, TITLES["ranking"], result)
    for zoo, r in found:
        tau = r.scores["gap"]["tau"]
        ax.scatter(r.measure, r.gap, s=12, label=f"{zoo}: τ = {'n/a' if tau is None else f'{tau:.3f}'}")
    ax.set_xlabel("measure" + (" (negated: higher_is_better)" if found[0][1].oriented else ""))
    ax.set_ylabel("generalization gap")
    ax.set_title(TITLES["ranking"] + ": measure vs gap", fontsize=9)
    ax.legend(fontsize=7)


def _psi_panel(ax, result) -> None:
    found = [(zoo, r) for zoo, r in _results(result) if r.per_hp_psi]
    if not found:
        return _empty(ax, "4. Ranking: ψ per hyperparameter", result)
    zoo, r = found[0]
    names = list(r.per_hp_psi)
    ax.bar([f"{n}\n({r.psi_groups[n]} groups)" for n in names], [r.per_hp_psi[n] for n in names])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylim(-1, 1)
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.set_title(f"4. Ranking: ψ per hyperparameter ({zoo}, Ψ = {r.scores['gap']['psi']:.3f})", fontsize=9)


def _cost_panel(ax, result) -> None:
    if not _results(result) or not result.seconds:
        return _empty(ax, TITLES["cost"], result)
    ax.hist(result.seconds, bins=min(20, max(3, len(result.seconds) // 2)))
    ax.set_xlabel("seconds per model")
    ax.set_title(f"{TITLES['cost']}: {result.verdict}", fontsize=9)


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in pairs)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _test_section(test: str, result: Any) -> str:
    body = []
    for zoo, r in _results(result):
        fields = [(k, v) for k, v in dataclasses.asdict(r).items() if not isinstance(v, (list, dict))]
        if test == "ranking":
            fields += [(f"{score} vs {target}", v) for target, scores in r.scores.items()
                       for score, v in scores.items()]
            fields += [(f"why no {score} vs {target}", why) for target, whys in r.reasons.items()
                       for score, why in whys.items()]
            fields += [(f"environments behind the sign errors vs {target} (ESS filter passed)", count)
                       for target, count in r.sign_error_environments.items()]
            fields += [(f"ψ_{hp} vs gap ({count} groups)", r.per_hp_psi.get(hp, "no group: never varies alone"))
                       for hp, count in r.psi_groups.items()]
        body.append((f"<h4>{html.escape(zoo)}</h4>" if zoo else "") + f"<table>{_rows(fields)}</table>")
    return (f"<section><h3>{html.escape(TITLES[test])}</h3><p><b>{html.escape(verdict_of(result))}</b></p>"
            f"{''.join(body)}</section>")


def write_card(card: Card, directory: Path) -> dict[str, str]:
    """Write card.json, figure.png and report.html into `directory`; returns their paths."""
    directory = Path(directory)
    fig = render_figure(card)
    png = figure_bytes(fig, "png")
    plt.close(fig)
    paths = {"card": directory / "card.json", "figure": directory / "figure.png", "report": directory / "report.html"}
    card.paths = {k: str(v) for k, v in paths.items()}
    atomic_write_bytes(paths["figure"], png)
    atomic_write_bytes(paths["card"], json.dumps(card.as_dict(), indent=2, default=str).encode())
    atomic_write_bytes(paths["report"], html_page(f"evaluate {card.quantity['name']}", _sections(card, png),
                                                  _glance(card)).encode())
    return card.paths


def _glance(card: Card) -> str:
    q = card.quantity
    rows = "".join(f"<tr><td>{html.escape(TITLES[t])}</td><td>{html.escape(v)}</td></tr>"
                   for t, v in card.verdicts().items())
    ranks = "".join(f"<tr><td>{html.escape(score)}</td><td>{r['rank']} of {r['of']}</td>"
                    f"<td>{html.escape(_fmt(r['value']))}</td></tr>" for score, r in card.ranks.items())
    ranks = (f"<h3>Rank among the registered measures and bounds</h3><table><tr><th>score</th><th>rank</th>"
             f"<th>value</th></tr>{ranks}</table>" if ranks else "")
    return (f"<p>{html.escape(q['kind'])} <b>{html.escape(q['name'])}</b> from {html.escape(q['origin'])}; "
            f"{card.computed} evaluations computed, {card.reused} reused from the store.</p>"
            f"<table class='summary'><tr><th>test</th><th>verdict</th></tr>{rows}</table>{ranks}")


def _sections(card: Card, png: bytes) -> list[str]:
    import base64
    out = [f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="report card figure">']
    out += [_test_section(test, card.tests.get(test)) for test in TESTS]
    for name, zoo in card.zoos.items():
        out.append(f"<section><h3>Zoo {html.escape(name)} ({html.escape(zoo['preset'])} preset)</h3>"
                   f"<p>models: {html.escape(str(zoo['counts']))}</p><h4>Parameters</h4>"
                   f"{params_table(zoo['params'])}<h4>Provenance</h4>{params_table(zoo['provenance'])}</section>")
    if card.failures:
        items = "".join(f"<li class='not'>{html.escape(f['zoo'])} {html.escape(f['model'][:12])} "
                        f"({html.escape(f['split'])}) [{html.escape(f['kind'])}]: {html.escape(f['message'])}</li>"
                        for f in card.failures[:200])
        out.append(f"<section><h3>Failures ({len(card.failures)})</h3><ul>{items}</ul></section>")
    return out
