"""`gapbench demo`: the headline result of every registered experiment in one HTML report.

Each experiment runs its 'demo' preset (every experiment has one, lighter than 'quick' where needed; each
preset's note, shown in the report, says what it changes). Results go through the same store as
`gapbench run`, so a second demo reuses everything and only rebuilds the report.

Time is shown as measured, never promised: a line 'experiment i/N' as each starts (its sweep shows its jobs,
epochs and time left from measured job durations), its measured seconds as it ends, and the total at the end
(also in the report). Experiments differ too much in size for one experiment's time to predict another's.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import Runtime
from .experiments import EXPERIMENTS
from .experiments.execute import run_experiment
from .progress import clock, note
from .report import duration, write_combined

DEMO_ORDER = ("nk2019-linear", "nk2019-hypersphere", "nk2019-fig1", "nk2019-slices", "kkb2017-linear-memorization",
              "kkb2017-deep-paths", "kkb2017-random-labels", "kkb2017-validation", "kkb2017-two-phase")


def run_demo(out: str | Path = "demo", runtime: Runtime | None = None, names: tuple[str, ...] | None = None,
             preset: str = "demo") -> Path:
    """Run every experiment (or those in `names`) at `preset` and write OUT/report.html; returns its path.

    With runtime.progress, each experiment's start, measured time and the total go to stderr."""
    runtime = runtime or Runtime()
    say = note if runtime.progress else (lambda message: None)
    names = names or tuple(n for n in DEMO_ORDER if n in EXPERIMENTS)
    outcomes = []
    start = time.perf_counter()
    for i, name in enumerate(names, 1):
        exp = EXPERIMENTS.get(name).obj
        say(f"demo: experiment {i}/{len(names)} {name} ({clock(time.perf_counter() - start)} elapsed)")
        outcome = run_experiment(exp, preset, out=out, runtime=runtime, progress=runtime.progress)
        outcomes.append((exp, outcome))
        held = sum(c.held for c in outcome.claims)
        say(f"demo: {name}: {held}/{len(outcome.claims)} claims held, {outcome.runs_trained} runs trained, "
            f"{outcome.runs_reused} reused, in {clock(outcome.seconds)}")
    total = time.perf_counter() - start
    say(f"demo: {len(names)} experiments in {clock(total)}")
    intro = (f"<p>Headline results of Nagarajan &amp; Kolter 2019 and Kawaguchi, Kaelbling &amp; Bengio, each "
             f"experiment at its <i>{preset}</i> preset (see each section's preset note). Total time "
             f"{duration(total)} (measured).</p>")
    return write_combined(outcomes, Path(out) / "report.html", "demo", intro)   # + the summary table
