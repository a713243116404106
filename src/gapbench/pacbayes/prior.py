"""Is the prior independent of S_bound? The disjointness check behind a data-dependent PAC-Bayes prior.

Maurer's theorem needs the prior P fixed before S_bound is seen. A data-dependent prior (trained on S_prior)
qualifies only when S_prior ∩ S_bound = ∅, including every point seen by the runs its initial weights came
from (followed through :func:`gapbench.trained.data_ancestry`). The prior's record is one of

    a gapbench Run              its train_indices in pool_id(run.config.data, 'train'), and its init_source
    a TrainedPrior              (gapbench.pacbayes.train_prior's result) its indices, pool and init_source
    (train_indices, pool)       positions in the pool named `pool` (a Split.pool such as 'mnist:train')

Points are compared only within one pool (Split.pool; the ancestry records Split.source). A record given with
an (x, y) pair instead of a Split is refused: its points cannot be checked.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.types import Split
from ..errors import GapbenchError, param_error
from ..overlap import training_record
from ..trained import Run, data_ancestry

DATA_FREE = ("prior: no record given, so the prior is ASSUMED independent of S_bound (data-free, e.g. centred "
             "at a seeded initialization); pass prior_record= to have a data-dependent prior checked")


def _own_points(record: Any, where: str) -> tuple[str, torch.Tensor, dict[str, Any] | None]:
    """(pool, indices, init_source or None) of the prior's own training."""
    if isinstance(record, Run):
        rec = training_record(run=record, where=where)
        return rec.pool, rec.indices, record.init_source
    if hasattr(record, "train_indices") and hasattr(record, "pool"):
        return str(record.pool), torch.as_tensor(record.train_indices), getattr(record, "init_source", None)
    if isinstance(record, (tuple, list)) and len(record) == 2 and isinstance(record[1], str):
        return record[1], torch.as_tensor(record[0]), None
    raise param_error("prior_record", where, "a Run, a TrainedPrior (train_prior's result) or a pair "
                      "(train_indices, pool)", type(record).__name__,
                      "Pass the record of the points the prior was trained on, or None for a data-free prior.")


def _refuse_overlap(overlap: int, n: int, seen: int, pool: str, origin: str, where: str) -> GapbenchError:
    return GapbenchError(f"The prior of {where} depends on {overlap} of the {n} points of S_bound ('bound_data'): "
                         f"{origin} saw {seen} points of pool '{pool}', {overlap} of them in S_bound. A "
                         f"data-dependent prior is valid only when S_prior and S_bound are disjoint. Split the "
                         f"pool into S_prior and S_bound first and train the prior on S_prior only (the "
                         f"posterior may use every point), or use a data-free prior (prior_record=None).")


def prior_statement(record: Any, bound_data: Any, where: str) -> str:
    """What the certificate assumes about the prior; raises when the prior saw any point of S_bound."""
    if record is None:
        return DATA_FREE
    if not isinstance(bound_data, Split) or not bound_data.pool:
        raise param_error("bound_data", where, "a Split that knows its pool (from gb.load_data) when "
                          "prior_record is given", type(bound_data).__name__,
                          "Without its indices S_bound cannot be checked against the prior's points; pass "
                          "dataset.split(...) or drop prior_record= for a data-free prior.")
    held = bound_data.indices.reshape(-1).cpu()
    pool, indices, init_source = _own_points(record, where)
    if pool == bound_data.pool:
        overlap = int(torch.isin(held, indices.reshape(-1).cpu()).sum())
        if overlap:
            raise _refuse_overlap(overlap, len(held), len(indices), pool, "its training", where)
    parents, root = data_ancestry(init_source) if init_source else ([], "unknown")
    for signature, source, seen in parents:
        if source == bound_data.source:
            overlap = int(torch.isin(held, seen.reshape(-1).cpu()).sum())
            if overlap:
                raise _refuse_overlap(overlap, len(held), len(seen), source,
                                      f"run {signature}, whose weights initialised the prior,", where)
    root_text = ("a seeded initialization" if root == "seeded"
                 else "an initialization with no record (assumed data-free)")
    return (f"prior: trained on {len(indices)} points of pool '{pool}' (and {len(parents)} earlier run(s)), "
            f"checked disjoint from the {len(held)} points of S_bound, starting from {root_text}")
