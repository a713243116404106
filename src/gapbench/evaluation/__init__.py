"""The bench for your own measure or bound (issue 14): ``gapbench evaluate`` / ``gb.evaluate``.

    import gapbench as gb
    result = gb.evaluate("path/to/my_bound.py:my_bound", zoos=["mnist-hparams", "nk-m-sweep", "nk-hypersphere"],
                         out="results")
    card = result.cards[0]          # card.verdicts(), card.tests, card.ranks, card.failures, card.paths
    gb.evaluate(all=True, out="results")     # every registered measure and bound + the leaderboard

The five tests (NK's m-test, the S' test, validity, ranking, cost) are in :mod:`.nk_tests` and
:mod:`.scores`; values are computed once per (zoo model, quantity, split) and stored (:mod:`.values`); the
card (:mod:`.card`) and the leaderboard (:mod:`.leaderboard`) are written under OUT/evaluate/. See
docs/evaluate.md.
"""

from .card import TESTS, Card
from .run import DEFAULT_ZOOS, Evaluation, evaluate, registered

__all__ = ["DEFAULT_ZOOS", "TESTS", "Card", "Evaluation", "evaluate", "registered"]
