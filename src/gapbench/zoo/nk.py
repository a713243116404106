"""The zoos of Nagarajan & Kolter 2019's experiments: their stored models, read as zoos.

``nk-m-sweep`` is nk2019-fig1 and ``nk-hypersphere`` is nk2019-hypersphere, with the same presets, spec,
grid and job: the zoo's jobs are that experiment's jobs under that experiment's name, so a zoo built in the
same OUT as ``gapbench run nk2019-fig1`` reuses its stored runs and checkpoints (and the other way round).
A fig1 job trains a pair of draws from one initialization; each draw is a zoo model (hp 'draw' = 'a' or 'b').
A hypersphere model's S' (its mirrored training set, as the experiment's data builds it) is
``ZooModel.mirrored``.
"""

from __future__ import annotations

from ..config import RunConfig, from_dict, to_dict
from ..experiments import get
from ..experiments.jobs import _draw_b  # the one definition of a pair's draw b
from .base import Member, ZooDef, register, stop_reason

PAIR_SUFFIX = "_b"          # experiments.jobs.train_pair: draw b's values carry this suffix
PAIR_ONLY = ("dist_between_fro", "job_seconds")   # values of the pair, not of one draw


def pair_members(config, values, status) -> list[Member]:
    """Draw a (config['run']) and draw b (the same with data.subset_seed = config['pair_subset_seed'])."""
    run_b = to_dict(_draw_b(from_dict(RunConfig, config["run"]), config))
    plain = b = None
    if values is not None:
        plain = {k: v for k, v in values.items() if not k.endswith(PAIR_SUFFIX) and k not in PAIR_ONLY}
        b = {k[:-len(PAIR_SUFFIX)]: v for k, v in values.items() if k.endswith(PAIR_SUFFIX)}
    return [Member({**config["hp"], "draw": "a"}, config["run"], plain or {}, stop_reason(plain, status)),
            Member({**config["hp"], "draw": "b"}, run_b, b or {}, stop_reason(b, status))]


def single_members(config, values, status) -> list[Member]:
    return [Member(dict(config["hp"]), config["run"], dict(values or {}), stop_reason(values, status))]


def _wrap(name: str, experiment: str, members, mirrored: str | None, summary: str) -> ZooDef:
    exp = get(experiment)
    return register(ZooDef(name=name, summary=summary, reference=exp.paper, namespace=exp.name,
                           presets=exp.presets, spec=exp.spec, points=exp.points, job=exp.job, members=members,
                           mirrored=mirrored, notes=exp.notes))


M_SWEEP = _wrap("nk-m-sweep", "nk2019-fig1", pair_members, None,
                "nk2019-fig1's models: NK's deep ReLU MLPs trained to margin γ* at each training-set size m, two "
                "draws of the training set per m from one initialization (the models of NK's m-test).")
HYPERSPHERE = _wrap("nk-hypersphere", "nk2019-hypersphere", single_members, "sprime",
                    "nk2019-hypersphere's models: one-hidden-layer ReLU nets separating two concentric spheres, "
                    "with S, the mirrored S' and the test set per model (NK's S' test).")
