"""The flat public API behind ``import gapbench as gb`` and the CLI's checkpoint commands.

Each function imports the package it wraps inside itself, so that importing this module (the CLI does) stays
cheap: no torch until a function needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DataConfig, RunConfig, Runtime
from .errors import GapbenchError


def fit(cfg: RunConfig, data=None, *, runtime: Runtime | None = None, progress: bool = False):
    """Train the model `cfg` describes (loading its data unless given) and return a Run.

    A given `data` must come from `cfg.data`'s training pool: the Run records its training points as
    positions there (checked before a held-out certificate)."""
    from .data import load_data, pool_id
    from .train import fit as _fit
    runtime = runtime or Runtime()
    if data is None:
        data = load_data(cfg.data, data_dir=runtime.data_dir, device=runtime.device)
    elif data.train.pool and data.train.pool != pool_id(cfg.data, "train"):
        raise GapbenchError(f"The 'data' parameter of fit() must be loaded from cfg.data, whose training pool "
                            f"is '{pool_id(cfg.data, 'train')}'. Got data from '{data.train.pool}' instead. "
                            f"Pass gb.load_data(cfg.data).")
    return _fit(cfg, data, runtime=runtime, progress=progress)


def run_experiment(name: str, preset: str = "quick", **kwargs: Any):
    """Run a registered experiment (see ``gb.list_experiments()``) and return its Outcome."""
    from .experiments.execute import run_experiment as _run
    return _run(name, preset, **kwargs)


def list_experiments():
    from .experiments import EXPERIMENTS
    return list(EXPERIMENTS)


def catalogue(kind: str) -> list[tuple[str, str]]:
    """(name, one-line metadata) for each registered experiment / measure / bound / dataset; installed
    plugins' measures and bounds follow the built-ins with their package (gapbench.plugins)."""
    if kind == "experiments":
        return [(e.name, f"{e.obj.paper}, {e.obj.figure}; presets: {', '.join(e.obj.presets)}")
                for e in list_experiments()]
    if kind == "measures":
        from .measures import list_measures
        from .plugins import catalogue_rows
        return ([(e.name, f"[{e.meta['kind']}] {e.meta['reference']}") for e in list_measures()]
                + catalogue_rows("measure"))
    if kind == "bounds":
        from .bounds import list_bounds
        from .plugins import catalogue_rows
        return ([(e.name, f"{e.meta['quantity']}; {e.meta['reference']}") for e in list_bounds()]
                + catalogue_rows("bound"))
    if kind == "datasets":
        from .data import list_datasets
        return [(d.name, f"[{d.kind}] {d.description}") for d in list_datasets()]
    raise GapbenchError(f"Unknown catalogue '{kind}'. Known: experiments, measures, bounds, datasets.")


def _checkpoint_and_data(path, data_name, data_dir):
    from . import checkpoint
    from .data import load_data
    run = checkpoint.load(Path(path))
    data_cfg = run.config.data
    if data_name is not None and data_name != data_cfg.name:
        data_cfg = DataConfig(name=data_name, options=dict(data_cfg.options))
    return run, load_data(data_cfg, data_dir=data_dir), data_cfg.name == run.config.data.name


def measure_checkpoint(path, *, data_name=None, split="train", quantities=None, data_dir=None,
                       progress: bool = False) -> dict:
    """Every applicable measure (or the named ones) of a checkpoint, as {name: value}.

    With `progress`, each measure's name, i/N and seconds go to stderr as it finishes (gapbench.progress)."""
    from .measures import list_measures, measure
    from .progress import Ticker
    run, data, _ = _checkpoint_and_data(path, data_name, data_dir)
    target = data.split(split)
    init = run.init_model()
    names = quantities or [e.name for e in list_measures()]
    values = {}
    ticker = Ticker(len(names), "measure", enabled=progress)
    try:
        for name in names:
            ticker.begin(name)
            try:
                values[name] = float(measure(name, run.model, target, init=init))
                outcome = ""
            except GapbenchError:
                if quantities:      # asked for by name: the user should hear why it does not apply
                    raise
                outcome = ", does not apply"
            ticker.done(f"{name}{outcome} ({ticker.item_seconds():.1f} s)")
    finally:
        ticker.close()
    return values


def certify_checkpoint(path, *, data_name=None, split="test", delta=0.05, family_size=1, assume_var=None,
                       data_dir=None):
    """`certify` a checkpoint on a held-out split, refusing a split that overlaps its training points (on
    another dataset, `data_name`, its record says nothing and the certificate states the assumption)."""
    from .certificate import certify as _certify
    run, data, same_data = _checkpoint_and_data(path, data_name, data_dir)
    return _certify(run.model, data.split(split), delta=delta, family_size=family_size, assume_var=assume_var,
                    run=run if same_data else None)
