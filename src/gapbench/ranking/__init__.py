"""Ranking scores of a generalization measure across a family of trained models, and validity statistics
of a bound: pure functions of plain inputs (one dict of varied hyperparameters, one measure value and one
gap per model), never mutating them, no randomness.

- :func:`kendall_tau`, :func:`granulated_psi`: Jiang et al. 2020, Eq. (2) and (4)–(5).
- :func:`pgdl_score`: the PGDL 2020 competition's conditional mutual information score.
- :func:`robust_sign_error`: Dziugaite, Drouin et al. 2020's sign error over coupled networks.
- :func:`validity`: violation rate with a Clopper–Pearson interval, vacuity and tightness of a bound.

The gap may be replaced by the test error: the functions only compare values across models.
"""

from .bound_validity import Validity, validity
from .coupled import RobustSignError, hoeffding_weight, robust_sign_error, seeds_needed
from .kendall import GranulatedPsi, granulated_psi, kendall_tau
from .pgdl import PgdlScore, pgdl_score

__all__ = ["GranulatedPsi", "PgdlScore", "RobustSignError", "Validity", "granulated_psi", "hoeffding_weight",
           "kendall_tau", "pgdl_score", "robust_sign_error", "seeds_needed", "validity"]
