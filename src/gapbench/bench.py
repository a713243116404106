"""The training-throughput benchmark behind ``gapbench bench`` (SPEC §6): every ratio from interleaved,
repeated pairs in one run, reported as its median with the spread.

Why pairs: on a shared machine the load from other processes changes from second to second (one run of
the old best-of timing gave MFU 0.52, the next 0.80). The two sides A and B of a ratio are timed back to
back, A B A B … for R rounds (:func:`interleaved`), and each pair gives one ratio, so both sides of a ratio
see the same load; the median over the R pairs discards the pairs a burst of load hit, and the spread
(min–max and the interquartile range) shows how noisy the run was. One untimed call of every side comes
first (numba compilation, allocator warm-up). Every figure is the median of its R per-trial values; none
is a best-of. Each target is checked on the median. Inputs are seeded synthetic tensors of MNIST shape
(throughput does not depend on the pixel values); the workload of one trial is a :class:`BenchSizes`.

- ``mlp_b128_mfu`` = B's FLOP/s ÷ A's FLOP/s. A: ``matmul_calls`` fp32 (n×n)·(n×n) matmuls, n =
  ``matmul_size``, 2n³ FLOP each (the machine's peak). B: ``mlp_steps`` steps of the engine's plain path
  (autograd + torch.optim.SGD) on the 784-1024×5-10 bias-free MLP, sigmoid CE, batch 128, counted as
  6·N_params·batch FLOP per step (2 forward + 4 backward; the SGD update is not counted). Target ≥ 0.75.
- ``batch1_speedup`` = A's seconds ÷ B's. A: a plain ``nn.Module`` + ``torch.optim.SGD`` loop, B: the fused
  batch-1 path, ``batch1_steps`` steps each on the same net and loss. Target ≥ 4.
- ``stacked32_speedup`` = A's seconds ÷ B's. A: 32 × 784-100-10 MLPs at batch 64 trained one after another
  with the plain path; B: the same 32 trained together as one stacked model; ``stacked_steps`` steps each.
  Target ≥ 2.5.
- ``measures_ratio`` = gapbench's all-measures seconds ÷ the peer port's ``get_all_measures`` seconds on one
  trained MLP, and each measure's cost alone: :mod:`gapbench.bench_measures`. Target < 1. Needs the
  repository checkout (the port is in ``benchmarks/``, not in the package); without it the entry is left out
  and ``notes`` says why. Runs at ``MEASURES_THREADS`` = 1 intra-op thread (see Threads).
- ``spectral_s``: seconds for the exact spectral norms (``torch.linalg.matrix_norm(ord=2)``) of the six
  weight matrices of the net, R repetitions (no pair). Target < 2.
- ``pbnet_fcn_ratio`` = B's seconds ÷ A's. PBB's FCN 784-600-600-600-10 with biases (pbb/models.py, NNet4l
  / ProbNNet4l) at batch ``pb_batch`` (250), ``pb_forwards`` forwards each, under ``torch.no_grad()``: A the
  deterministic mean network, B the :mod:`gapbench.pacbayes` net in ``"per_example"`` mode inside
  ``net.frozen()`` (a Monte Carlo pass of the certificate: an independent weight draw per example).
  Target ≤ 3. Reported too: C, the same without ``frozen()`` (softplus per forward, as in training,
  ``pbnet_fcn_unfrozen_ratio``), and the ratio B ÷ A for PBB's CNN (CNNet4l: conv 32@3×3, conv 64@3×3,
  max-pool 2, FC 128, FC 10) at batch ``pb_cnn_batch``, one forward per trial (``pbnet_cnn_ratio``).

Threads: everything runs with one intra-op thread per core of the machine (``os.cpu_count()``), reported as
``threads``, except the all-measures entry (``measures_ratio``, ``measures_gapbench_s``, ``measures_peer_s``
and the measure costs), which runs at ``measures_threads`` = :data:`MEASURES_THREADS` = 1: measures are
computed by gapbench's workers at one intra-op thread each (``--threads 1``), so that is the comparison that
matters, and on a loaded 2-core machine two threads slow both sides (the peer about threefold) and make the
ratio noisy (two runs each at load 3.5-4.3: medians 0.41 and 0.36, ranges 0.15-1.73 and 0.12-1.32 at 2
threads; 0.57 and 0.55, ranges 0.47-0.75 and 0.46-0.64 at 1). Both sides of each pair run under the same
thread count, restored afterwards.

JSON (``gapbench bench --json``, the dict :func:`run_bench` returns)::

    {"quick": false, "repeats": 7, "threads": 2, "measures_threads": 1, "torch": "2.13.0", "machine": "x86_64",
     "processor": "…",
     "sizes": {...},          # BenchSizes of this run, as a dict (the net as a ModelConfig dict)
     "net_params": 5_007_360,   # N_params of that net (the 6·N·batch FLOP count)
     "figures": {NAME: {"label": "MLP b128 MFU", "unit": "ratio", "median": 0.8, "q1": …, "q3": …,
                        "iqr": …, "min": …, "max": …, "n": 7}, …},   # one entry per FIGURES name
     "targets": {NAME: {"target": ">= 0.75", "median": 0.8, "met": true}, …},   # one per TARGETS name
     "measure_costs": {"rows": [{"measure", "seconds", "needs_data", "needs_init", "needs_search", "value",
                                 "skipped"}, …], "computed": 46, "alone_total_s": …, …},
     "notes": [],             # entries left out, and why
     "bench_s": 63.2}         # wall-clock seconds of the whole run

Quartiles are numpy's linear-interpolation percentiles of the R per-pair values (``n`` = R).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch

from . import bench_measures
from .bench_pairs import (  # noqa: F401  (BenchSizes, FULL, QUICK, interleaved ...: gapbench.bench names too)
    CLASSES,
    FULL,
    MNIST_SHAPE,
    NK_NET,
    NK_STEPS,
    PB_PRIOR_STD,
    QUICK,
    BenchSizes,
    Clock,
    _num_params,
    batch1_pairs,
    interleaved,
    mfu_pairs,
    probnet_pairs,
    spectral_repeats,
    stacked_pairs,
)
from .errors import check_positive_int
from .models import build_model

TARGETS = {"mlp_b128_mfu": (">=", 0.75), "batch1_speedup": (">=", 4.0), "stacked32_speedup": (">=", 2.5),
           "spectral_s": ("<", 2.0), "pbnet_fcn_ratio": ("<=", 3.0), "measures_ratio": ("<", 1.0)}
FIGURES = {  # name: (label in the text table, unit); the order of the table
    "mlp_b128_mfu": ("MLP b128 MFU", "ratio"),
    "batch1_speedup": ("batch-1 speed-up", "x"),
    "stacked32_speedup": ("stacked x32 speed-up", "x"),
    "spectral_s": ("spectral norms", "s"),
    "matmul_peak_gflops": ("matmul peak", "GFLOP/s"),
    "mlp_b128_gflops": ("MLP b128 training", "GFLOP/s"),
    "mlp_b128_step_ms": ("MLP b128 step", "ms"),
    "batch1_steps_per_s": ("batch-1 fused path", "steps/s"),
    "batch1_plain_steps_per_s": ("batch-1 plain loop", "steps/s"),
    "batch1_hours_2m_steps": ("fused, 2 M steps", "h"),
    "batch1_plain_hours_2m_steps": ("plain, 2 M steps", "h"),
    "stacked32_steps_per_s": ("stacked x32", "steps/s"),
    "stacked32_sequential_steps_per_s": ("x32 one after another", "steps/s"),
    "pbnet_fcn_ratio": ("PBB FCN per-example ÷ mean forward", "x"),
    "pbnet_fcn_unfrozen_ratio": ("same, softplus every forward", "x"),
    "pbnet_fcn_ms": ("PBB FCN per-example forward", "ms"),
    "pbnet_cnn_ratio": ("PBB CNN per-example ÷ mean forward", "x"),
    "pbnet_cnn_ms": ("PBB CNN per-example forward", "ms"),
    "measures_ratio": ("all measures: gapbench ÷ peer", "ratio"),
    "measures_gapbench_s": ("all measures, gapbench", "s"),
    "measures_peer_s": ("all measures, peer port", "s"),
}
MEASURES_THREADS = 1  # intra-op threads of the all-measures entry: one per worker, as gapbench computes measures
DEFAULT_REPEATS = {False: 7, True: 3}  # pairs per ratio, by `quick`


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Median, quartiles (numpy's linear interpolation), interquartile range, min, max and n of values."""
    v = np.asarray(values, dtype=float)
    q1, q3 = np.percentile(v, [25, 75])
    return {"median": float(np.median(v)), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1),
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def check_targets(figures: dict[str, dict[str, float]]) -> dict[str, dict[str, object]]:
    """Each TARGETS entry checked on the median of its figure (entries left out of the run are skipped)."""
    out = {}
    for name, (op, target) in TARGETS.items():
        if name not in figures:
            continue
        median = figures[name]["median"]
        met = {">=": median >= target, "<=": median <= target, "<": median < target}[op]
        out[name] = {"target": f"{op} {target:g}", "median": median, "met": bool(met)}
    return out


def run_bench(quick: bool = False, repeats: int | None = None, progress: bool = False,
              sizes: BenchSizes | None = None, clock: Clock = time.perf_counter) -> dict[str, object]:
    """Run every benchmark as `repeats` interleaved pairs (default 7, 3 with `quick`, which also shrinks the
    trials to QUICK) and return the JSON-able dict of the module docstring. `sizes` overrides the trials."""
    repeats = DEFAULT_REPEATS[bool(quick)] if repeats is None else repeats
    check_positive_int(repeats, "repeats", "run_bench()")
    sizes = sizes or (QUICK if quick else FULL)
    threads = os.cpu_count() or 1
    plan = [("MFU: matmul peak vs MLP batch 128", mfu_pairs, threads),
            ("batch 1: plain vs fused", batch1_pairs, threads),
            ("stacked: one after another vs together", stacked_pairs, threads),
            ("spectral norms", spectral_repeats, threads),
            ("PAC-Bayes nets: mean vs per-example forward", probnet_pairs, threads)]
    notes: list[str] = []
    if bench_measures.PEER_PORT.is_file():
        plan.append(("all measures: peer port vs gapbench", bench_measures.measures_pairs, MEASURES_THREADS))
    else:
        notes.append(f"measures_ratio left out: the peer port {bench_measures.PEER_PORT} is not there (it is in "
                     f"the repository's benchmarks/ folder, not in the installed package)")
    per_trial: dict[str, np.ndarray] = {}
    costs = None
    previous = torch.get_num_threads()
    start = time.perf_counter()
    try:
        for name, benchmark, intra_op in plan:
            if progress:
                print(f"bench: {name}, {repeats} rounds, {intra_op} thread(s) ...", flush=True)
            torch.set_num_threads(intra_op)
            per_trial.update(benchmark(sizes, repeats, clock))
        if not notes:
            if progress:
                print("bench: each measure alone, once ...", flush=True)
            torch.set_num_threads(MEASURES_THREADS)
            costs = bench_measures.cost_table(sizes)
    finally:
        torch.set_num_threads(previous)
    figures = {name: {"label": FIGURES[name][0], "unit": FIGURES[name][1], **spread(per_trial[name])}
               for name in FIGURES if name in per_trial}
    net_params = _num_params(build_model(sizes.net, MNIST_SHAPE, CLASSES))
    return {"quick": bool(quick), "repeats": repeats, "threads": threads, "measures_threads": MEASURES_THREADS,
            "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
            "sizes": dataclasses.asdict(sizes), "net_params": net_params,
            "figures": figures, "targets": check_targets(figures), "measure_costs": costs, "notes": notes,
            "bench_s": time.perf_counter() - start}


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def format_bench(result: dict[str, object]) -> str:
    """run_bench()'s result as a table: median, min–max, interquartile range, and each target met or not."""
    head = (f"gapbench bench (torch {result['torch']}, {result['threads']} threads, all measures at "
            f"{result['measures_threads']}, {result['repeats']} "
            f"interleaved pairs per ratio{', quick' if result['quick'] else ''}): medians with their spread; "
            f"figures are noisy on a shared machine")
    rows = [("", "median", "min – max", "IQR q1 – q3", "target")]
    for name, fig in result["figures"].items():
        target = result["targets"].get(name)
        verdict = f"{target['target']}: {'met' if target['met'] else 'NOT met'}" if target else ""
        rows.append((f"{fig['label']} ({fig['unit']})", _num(fig["median"]),
                     f"{_num(fig['min'])} – {_num(fig['max'])}", f"{_num(fig['q1'])} – {_num(fig['q3'])}",
                     verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [head] + ["  " + row[0].ljust(widths[0]) + "".join(f"  {c.rjust(w)}" for c, w in
                                                                zip(row[1:4], widths[1:], strict=True))
                      + f"  {row[4]}" for row in rows]
    if result.get("measure_costs"):
        lines.append(bench_measures.format_costs(result["measure_costs"]))
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(line.rstrip() for line in lines)
