"""`gapbench demo`: the headline result of every registered experiment in one HTML report.

Each experiment runs its 'demo' preset (every experiment has one, lighter than 'quick' where needed so
that the whole demo fits in about 10 minutes on a 2-core CPU; each preset's note, shown in the report, says
what it changes). Results go through the same store as `gapbench run`, so a second demo reuses everything
and only rebuilds the report.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from .config import Runtime
from .experiments import EXPERIMENTS
from .experiments.runner import run_experiment
from .report import duration, write_combined

DEMO_ORDER = ("nk2019-linear", "nk2019-hypersphere", "nk2019-fig1", "nk2019-slices", "kkb2017-linear-memorization",
              "kkb2017-deep-paths", "kkb2017-random-labels", "kkb2017-validation", "kkb2017-two-phase")


def run_demo(out: str | Path = "demo", runtime: Runtime | None = None, names: tuple[str, ...] | None = None,
             preset: str = "demo") -> Path:
    """Run every experiment (or those in `names`) at `preset` and write OUT/report.html; returns its path."""
    runtime = runtime or Runtime()
    names = names or tuple(n for n in DEMO_ORDER if n in EXPERIMENTS)
    outcomes = []
    start = time.perf_counter()
    for name in tqdm(names, desc="demo", unit="experiment", disable=not runtime.progress):
        exp = EXPERIMENTS.get(name).obj
        outcome = run_experiment(exp, preset, out=out, runtime=runtime, progress=runtime.progress)
        outcomes.append((exp, outcome))
        held = sum(c.held for c in outcome.claims)
        tqdm.write(f"{name}: {held}/{len(outcome.claims)} claims held ({outcome.seconds:.0f} s)")
    total = time.perf_counter() - start
    intro = (f"<p>Headline results of Nagarajan &amp; Kolter 2019 and Kawaguchi, Kaelbling &amp; Bengio, each "
             f"experiment at its <i>{preset}</i> preset (see each section's preset note). Total time "
             f"{duration(total)}.</p>")
    return write_combined(outcomes, Path(out) / "report.html", "demo", intro)   # + the summary table
