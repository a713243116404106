"""evaluate(): resolve what the user brings, load (or build) the zoos, run the five tests, write the cards.

Which zoo feeds which test (``ROLES``): the m-test runs on ``nk-m-sweep``, the S' test on ``nk-hypersphere``,
ranking on every other zoo (``mnist-hparams``: a grid of hyperparameters), validity (bounds) and cost on
every zoo given. NK's zoos include the models that hit max_epochs (their tests are about the trained models
as they are; the card counts them); ranking uses only the models that met the stop rule, as Jiang et al. do.
Cost is measured on the reference zoo (the first ranking zoo given, else the first zoo): the median seconds
per model of the quantity computed on its own (a registered quantity prefetched with the others is timed
alone on the zoo's first model), so every quantity's cost is comparable.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GapbenchError, check_probability, param_error
from ..experiments.execute import STORE_NAME
from ..outdir import locked
from ..plugins import resolve
from ..quantity import DEFAULT_DELTA, Quantity, QuantityError, builtin_quantity
from ..ranking import seeds_needed
from ..store import Store
from .card import Card, write_card
from .nk_tests import m_test, sprime_test
from .scores import LOWER_IS_BETTER, SCORES, cost_test, rank_in, ranking_test, validity_test
from .values import ValueCache, default_split

M_ZOO, SPRIME_ZOO = "nk-m-sweep", "nk-hypersphere"
DEFAULT_ZOOS = ("mnist-hparams", M_ZOO, SPRIME_ZOO)
OUTPUT = "evaluate"                       # OUT/evaluate/<name>/
RANK_SCORES = tuple((score, "gap") for score in SCORES)     # τ, Ψ, PGDL and the sign errors vs the gap


@dataclass
class Evaluation:
    """What evaluate() did: a card per quantity, the specs that could not be resolved, the leaderboard."""

    cards: list[Card]
    unresolved: list[dict[str, str]] = field(default_factory=list)    # spec, kind, message
    leaderboard: dict[str, str] = field(default_factory=dict)         # html, csv paths (--all)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.unresolved) or any(card.failed for card in self.cards)

    def as_dict(self) -> dict[str, Any]:
        return {"cards": [c.as_dict() | {"paths": c.paths} for c in self.cards], "unresolved": self.unresolved,
                "leaderboard": self.leaderboard, "failed": self.failed, "seconds": self.seconds}


def registered() -> list[Quantity]:
    """Every built-in measure and bound, and every installed plugin that loads."""
    from ..bounds import BOUNDS
    from ..measures import MEASURES
    from ..plugins import plugins
    out = [builtin_quantity(e, "measure") for e in MEASURES] + [builtin_quantity(e, "bound") for e in BOUNDS]
    return out + [p.quantity for p in plugins() if p.quantity is not None]


def resolve_specs(specs: Sequence[str]) -> tuple[list[Quantity], list[dict[str, str]]]:
    """Quantities of the specs; one whose code cannot be loaded (import error, wrong signature) is recorded,
    not raised. An unknown name, a malformed spec or a missing file is the caller's mistake: GapbenchError."""
    quantities, unresolved = [], []
    for spec in specs:
        target = spec.rpartition(":")[0]
        if target.endswith(".py") and not Path(target).expanduser().is_file():     # a typo in the path
            raise GapbenchError(f"The file '{target}' of '{spec}' does not exist. Give the path of a .py file, "
                                f"relative to the current directory or absolute: 'path/to/file.py:function'.")
        try:
            quantities.append(resolve(spec))
        except QuantityError as err:
            unresolved.append({"spec": spec, "kind": err.failure, "message": str(err)})
    return quantities, unresolved


def load_zoos(names: Sequence[str], out: Path, preset: str | None, build: bool, progress: bool) -> dict:
    from ..zoo import ZOOS, build_zoo, load_zoo
    zoos = {}
    for name in dict.fromkeys(names):
        ZOOS.get(name)                                   # an unknown zoo: "did you mean", exit 2
        try:
            zoos[name] = load_zoo(out, name, preset)
        except GapbenchError:
            if not build:
                raise
            zoos[name] = build_zoo(name, preset or "quick", out=out, progress=progress)
    return zoos


def zoo_info(zoo) -> dict[str, Any]:
    return {"preset": zoo.preset, "params": zoo.params, "provenance": zoo.provenance, "counts": zoo.counts()}


def assess(quantity: Quantity, zoos: dict, caches: dict[str, ValueCache], progress: bool) -> Card:
    """The five tests of one quantity on the zoos given (module docstring); values come from the caches."""
    before = {name: (c.computed, c.reused) for name, c in caches.items()}
    tests: dict[str, Any] = {"validity": {}, "ranking": {}}
    failures, zoo_values = [], {}
    for name, zoo in zoos.items():
        cache = caches[name]
        nk = name in (M_ZOO, SPRIME_ZOO)
        models = zoo.models(include_capped=nk)
        values = cache.values(quantity, models, default_split(quantity), progress=progress)
        failures += _failures(name, "S" if default_split(quantity) == "S" else "test", values)
        zoo_values[name] = list(values.values())
        gamma = zoo.params.get("gamma")
        if name == M_ZOO:
            tests["m_test"] = m_test(quantity, models, values, gamma)
        elif name == SPRIME_ZOO:
            on_sprime = cache.values(quantity, models, "Sprime", progress=progress)   # _splits() agrees
            failures += _failures(name, "Sprime", on_sprime)
            tests["sprime"] = sprime_test(quantity, models, values, on_sprime, gamma)
        else:
            tests["ranking"][name] = ranking_test(quantity, models, values, zoo.varied, test_set_size(models),
                                                  seeds_hint(zoo))
        if quantity.kind == "bound":
            tests["validity"][name] = validity_test(models, values, cache.delta, test_set_size(models))
    if quantity.kind != "bound":
        tests["validity"] = "not applicable: a measure is not a bound (validity is for bounds)"
    for test, zoo_name in (("m_test", M_ZOO), ("sprime", SPRIME_ZOO)):
        tests.setdefault(test, f"not run: add --zoo {zoo_name}")
    if not tests["ranking"]:
        tests["ranking"] = "not run: add --zoo mnist-hparams"
    reference = next((n for n in zoos if n not in (M_ZOO, SPRIME_ZOO)), next(iter(zoos)))
    alone = [v for v in zoo_values[reference] if not v.shared]
    if not any(v.ok for v in alone) and any(v.ok for v in zoo_values[reference]):  # prefetched: time it alone
        model = zoos[reference].models(include_capped=reference in (M_ZOO, SPRIME_ZOO))[0]
        alone = list(caches[reference].values(quantity, [model], "S:alone").values())
    tests["cost"] = cost_test(quantity, alone)
    card = Card({"name": quantity.name, "kind": quantity.kind, "origin": quantity.origin,
                 "spec": quantity.spec or quantity.name}, {n: zoo_info(z) for n, z in zoos.items()}, tests,
                failures=failures)
    card.computed = sum(c.computed - before[n][0] for n, c in caches.items())
    card.reused = sum(c.reused - before[n][1] for n, c in caches.items())
    return card


def test_set_size(models) -> int | None:
    """The number of test points behind the models' test errors, from each model's DataConfig (its n_test,
    else the size of the test split it loads); the smallest when they differ: a smaller n gives a smaller
    Hoeffding weight (gapbench.ranking.hoeffding_weight), so it lower-bounds every pair's. None: no model."""
    sizes = {m.config.data.n_test if m.config.data.n_test is not None else len(m.data.test) for m in models}
    return min(sizes) if sizes else None


def seeds_hint(zoo) -> str:
    """Where to find enough seeds per grid point for the sign error's ESS filter: the zoo's presets that have
    them, else a --set of its 'seeds' parameter ('' when it has none)."""
    needed = seeds_needed()
    enough = [name for name, p in zoo.definition.presets.items()
              if isinstance(p.get("seeds"), int) and p["seeds"] >= needed]
    if enough:
        return f"e.g. gapbench zoo build {zoo.name} --preset {enough[0]}"
    return f"e.g. gapbench zoo build {zoo.name} --set seeds={needed}" if "seeds" in zoo.params else ""


def _splits(quantity: Quantity, zoo: str) -> list[str]:
    """The splits assess() evaluates `quantity` on for zoo `zoo`."""
    return [default_split(quantity)] + (["Sprime"] if zoo == SPRIME_ZOO else [])


def _failures(zoo: str, split: str, values: dict) -> list[dict[str, str]]:
    return [{"zoo": zoo, "model": model_id, "split": split, "kind": v.failure, "message": v.message}
            for model_id, v in values.items() if not v.ok]


def _assess_all(jobs: list[tuple[Quantity, dict]], caches: dict[str, ValueCache], progress: bool) -> list[Card]:
    """assess() each (quantity, zoos), with one progress line (or bar step) per quantity."""
    from ..progress import Ticker
    ticker = Ticker(len(jobs), "evaluate", enabled=progress)
    cards = []
    try:
        for quantity, zoos in jobs:
            ticker.begin(quantity.name)
            card = assess(quantity, zoos, caches, progress)
            cards.append(card)
            broken = sum(f["kind"] != "not_applicable" for f in card.failures)
            ticker.done(f"{quantity.kind} {quantity.name}: {card.computed} computed, {card.reused} reused"
                        f"{f', {broken} FAILED' if broken else ''} ({ticker.item_seconds():.1f} s)")
    finally:
        ticker.close()
    return cards


def score_value(card: Card, score: str, target: str = "gap") -> float | None:
    """The card's value of a score on the first ranking zoo ('seconds': the cost test's seconds per model)."""
    if score == "seconds":
        return card.tests["cost"].seconds_per_model
    ranking = card.tests.get("ranking")
    if not isinstance(ranking, dict) or not ranking:
        return None
    return next(iter(ranking.values())).scores[target][score]


def rank_against(card: Card, others: list[Card]) -> dict[str, Any]:
    """The card's rank in each score among `others` (the registered quantities) and itself (1 = best)."""
    ranks = {}
    for score, target in (*RANK_SCORES, ("seconds", "")):
        mine = score_value(card, score, target or "gap")
        if mine is None:
            continue
        pool = [v for c in others if c.quantity != card.quantity
                and (v := score_value(c, score, target or "gap")) is not None] + [mine]
        label = score if score == "seconds" else f"{score} vs {target}"
        ranks[label] = {"rank": rank_in(mine, pool, score in LOWER_IS_BETTER), "of": len(pool), "value": mine}
    return ranks


def card_directory(out: Path, quantity: Quantity, taken: set[str]) -> Path:
    """OUT/evaluate/<name>; a name taken in this call gets its kind, then a number (name.kind.2, ...)."""
    base = re.sub(r"[^0-9A-Za-z_.-]", "_", quantity.name)
    candidates = [base, f"{base}.{quantity.kind}"] + [f"{base}.{quantity.kind}.{i}" for i in range(2, 10_000)]
    name = next(c for c in candidates if c not in taken)
    taken.add(name)
    return Path(out) / OUTPUT / name


def evaluate(specs: str | Sequence[str] = (), *, zoos: Sequence[str] = DEFAULT_ZOOS, out: str | Path = "results",
             preset: str | None = None, all: bool = False, build: bool = False, rank: bool = True,  # noqa: A002
             delta: float = DEFAULT_DELTA, pool: Sequence[str] | None = None,
             progress: bool = True) -> Evaluation:
    """Run the five tests on each quantity of `specs` (a name, 'module:function' or 'file.py:function', or
    a list of them) over the zoos built in `out`, and write OUT/evaluate/<name>/{report.html, card.json,
    figure.png}. `all`: every registered measure and bound as well, and OUT/evaluate/leaderboard.{html,csv}.
    `rank`: each card gives the quantity's rank among the registered ones (their values are computed once
    and stored). `build`: build a zoo that OUT lacks (preset `preset`, default quick) instead of failing.
    `pool`: the registered quantities to rank against and, with `all`, to evaluate (names, as resolve()
    takes them; default: every registered measure and bound)."""
    start = time.perf_counter()
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs and not all:
        raise param_error("specs", "evaluate()", "a measure or bound (a name, 'module:function' or "
                          "'file.py:function'), or all=True", specs)
    if not zoos:
        raise param_error("zoos", "evaluate()", "at least one zoo name", zoos, "E.g. zoos=['mnist-hparams'].")
    delta = check_probability(delta, "delta", "evaluate()")
    quantities, unresolved = resolve_specs(specs)
    out = Path(out)
    loaded = load_zoos(zoos, out, preset, build, progress)
    with locked(out):
        store = Store(out / STORE_NAME)
        caches = {name: ValueCache(store, zoo, delta) for name, zoo in loaded.items()}
        ranking_zoos = {n: z for n, z in loaded.items() if n not in (M_ZOO, SPRIME_ZOO)}
        registry = ([resolve(name) for name in pool] if pool is not None else registered()) \
            if (all or (rank and ranking_zoos)) else []
        if all:        # a spec that names a registered quantity is evaluated once, as a registered one
            keys = {(q.name, q.kind, q.origin) for q in registry}
            quantities = [q for q in quantities if (q.name, q.kind, q.origin) not in keys]
        # ranks need only the ranking zoos' values of the registry; --all needs every test of every quantity
        for name, zoo in (loaded if all else ranking_zoos).items():
            caches[name].prefetch(registry, zoo.models(include_capped=name in (M_ZOO, SPRIME_ZOO)),
                                  lambda q, n=name: _splits(q, n), progress=progress)
        jobs = [(q, loaded if all else ranking_zoos) for q in registry] + [(q, loaded) for q in quantities]
        cards = _assess_all(jobs, caches, progress)
        registry_cards, mine = cards[:len(registry)], cards[len(registry):]
        taken: set[str] = set()
        for quantity, card in zip(quantities, mine, strict=True):
            if rank:
                card.ranks = rank_against(card, registry_cards)
            write_card(card, card_directory(out, quantity, taken))
        result = Evaluation(mine, unresolved)
        if all:
            from .leaderboard import write_leaderboard
            for quantity, card in zip(registry, registry_cards, strict=True):
                card.ranks = rank_against(card, registry_cards)
                write_card(card, card_directory(out, quantity, taken))
            result.cards = mine + registry_cards
            result.leaderboard = write_leaderboard(registry_cards + mine, out / OUTPUT, loaded)
    result.seconds = time.perf_counter() - start
    return result
