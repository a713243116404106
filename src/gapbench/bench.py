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

import contextlib
import copy
import dataclasses
import os
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from . import bench_measures
from .config import ModelConfig, RunConfig, TrainConfig
from .errors import check_positive_int
from .models import build_model
from .pacbayes import pbb_cnn, pbb_fcn, probabilistic
from .train.batch1 import Batch1Engine
from .train.loop import PlainEngine
from .train.losses import get_loss
from .train.stacked import StackedMLP

Clock = Callable[[], float]  # seconds, monotonic (time.perf_counter); tests pass a scripted one

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
NK_NET = ModelConfig(depth=5, width=1024, bias=False, init="glorot_uniform")  # NK 2019 fig. 1 net
PB_PRIOR_STD = 0.03  # PBB's MNIST prior scale (σ_prior = 0.03); timings do not depend on it
NK_STEPS = 2_000_000  # ≈ batch-1 steps of the nk2019-fig1 paper preset per pair of draws
MNIST_SHAPE, CLASSES = (784,), 10
MEASURES_THREADS = 1  # intra-op threads of the all-measures entry: one per worker, as gapbench computes measures


@dataclasses.dataclass(frozen=True)
class BenchSizes:
    """The workload of one timed trial of each benchmark (seconds are for the 2-core CPU)."""

    net: ModelConfig = NK_NET   # net of the MFU, batch-1 and spectral benchmarks
    matmul_size: int = 2048     # n of the (n×n)·(n×n) peak matmul (≈ 0.13 s each)
    matmul_calls: int = 4       # matmuls per peak trial
    mlp_batch: int = 128        # batch of the MFU training trial
    mlp_steps: int = 20         # SGD steps per MFU training trial (≈ 0.8 s)
    batch1_steps: int = 300     # steps per batch-1 trial, each side (≈ 2.3 s plain)
    stacked_models: int = 32    # models trained together / one after another
    stacked_width: int = 100    # hidden width of each 784-w-10 stacked model
    stacked_batch: int = 64
    stacked_steps: int = 20     # SGD steps per model per stacked trial
    pb_batch: int = 250         # batch of the probabilistic FCN forwards (PBB's batch size)
    pb_forwards: int = 10       # forwards per FCN trial, each side (≈ 0.1 s deterministic)
    pb_cnn_batch: int = 100     # batch of the CNN forwards, one per trial (≈ 0.5 s per-example)
    cost_depth: int = 2         # hidden layers of the MLP whose measures are timed (bench_measures)
    cost_width: int = 64        # its hidden width
    cost_train: int = 1000      # its training points (every measure on data passes over all of them)
    cost_epochs: int = 25       # SGD epochs it is trained for (training error 0 on the 2-core CPU, ≈ 8 s)


FULL = BenchSizes()
QUICK = BenchSizes(matmul_calls=2, mlp_steps=3, batch1_steps=20, stacked_steps=3, pb_forwards=3, pb_cnn_batch=25,
                   cost_width=32, cost_train=500)
DEFAULT_REPEATS = {False: 7, True: 3}  # pairs per ratio, by `quick`


def interleaved(fns: Sequence[Callable[[], object]], repeats: int, clock: Clock = time.perf_counter
                ) -> list[np.ndarray]:
    """Seconds of each fn over `repeats` rounds, the fns called in turn (A B A B … for two).

    One untimed warm-up call of each fn comes first. Returns one array of `repeats` durations per fn;
    element r of every array was measured in round r, so arrays divide elementwise into per-pair ratios.
    """
    for fn in fns:
        fn()
    seconds = np.empty((len(fns), repeats))
    for r in range(repeats):
        for i, fn in enumerate(fns):
            start = clock()
            fn()
            seconds[i, r] = clock() - start
    return list(seconds)


def spread(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Median, quartiles (numpy's linear interpolation), interquartile range, min, max and n of values."""
    v = np.asarray(values, dtype=float)
    q1, q3 = np.percentile(v, [25, 75])
    return {"median": float(np.median(v)), "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1),
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def _inputs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *MNIST_SHAPE, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _plain_engine(net: ModelConfig, batch: int, lr: float, loss: str) -> PlainEngine:
    cfg = RunConfig(model=net, train=TrainConfig(loss=loss, lr=lr, batch_size=batch))
    return PlainEngine(build_model(net, MNIST_SHAPE, CLASSES), cfg, get_loss(loss))


def mfu_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: matmul peak FLOP/s (A), plain-path training FLOP/s of `sizes.net` (B), and B ÷ A."""
    n = sizes.matmul_size
    gen = torch.Generator().manual_seed(0)
    a, b, product = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen), torch.empty(n, n)
    engine = _plain_engine(sizes.net, sizes.mlp_batch, 1e-3, "sigmoid_ce")
    x, y = _inputs(sizes.mlp_batch * sizes.mlp_steps, 1)
    order = torch.arange(x.shape[0])

    def peak():
        for _ in range(sizes.matmul_calls):
            torch.mm(a, b, out=product)

    peak_s, mlp_s = interleaved([peak, lambda: engine.epoch(x, y, order)], repeats, clock)
    peak_flops = 2 * n**3 * sizes.matmul_calls / peak_s
    mlp_flops = 6 * _num_params(engine.model) * x.shape[0] / mlp_s
    return {"mlp_b128_mfu": mlp_flops / peak_flops, "matmul_peak_gflops": peak_flops / 1e9,
            "mlp_b128_gflops": mlp_flops / 1e9, "mlp_b128_step_ms": 1e3 * mlp_s / sizes.mlp_steps}


def batch1_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: steps/s of a plain nn.Module + torch.optim.SGD loop (A) and of the fused batch-1 path (B)
    on `sizes.net`, sigmoid CE, batch 1; the speed-up is A's seconds ÷ B's."""
    plain = _plain_engine(sizes.net, 1, 1e-3, "sigmoid_ce")
    fused = Batch1Engine(copy.deepcopy(plain.model), 1e-3, get_loss("sigmoid_ce"), CLASSES)
    x, y = _inputs(sizes.batch1_steps, 2)
    order = torch.arange(sizes.batch1_steps)
    plain_s, fused_s = interleaved([lambda: plain.epoch(x, y, order), lambda: fused.epoch(x, y, order)],
                                   repeats, clock)
    fused_rate, plain_rate = sizes.batch1_steps / fused_s, sizes.batch1_steps / plain_s
    return {"batch1_speedup": plain_s / fused_s, "batch1_steps_per_s": fused_rate,
            "batch1_plain_steps_per_s": plain_rate, "batch1_hours_2m_steps": NK_STEPS / fused_rate / 3600,
            "batch1_plain_hours_2m_steps": NK_STEPS / plain_rate / 3600}


def stacked_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter) -> dict[str, np.ndarray]:
    """Per pair: `stacked_models` 784-w-10 MLPs trained one after another (A) and stacked (B), the same
    steps each; the speed-up is A's seconds ÷ B's."""
    num, steps = sizes.stacked_models, sizes.stacked_steps
    cfg = RunConfig(model=ModelConfig(depth=1, width=sizes.stacked_width),
                    train=TrainConfig(lr=0.01, batch_size=sizes.stacked_batch))
    loss = get_loss(cfg.train.loss)
    models = [build_model(dataclasses.replace(cfg.model, init_seed=i), MNIST_SHAPE, CLASSES) for i in range(num)]
    n = sizes.stacked_batch * steps
    data = [_inputs(n, 10 + i) for i in range(num)]
    xs, ys = torch.stack([d[0] for d in data]), torch.stack([d[1] for d in data])
    orders = torch.arange(n).expand(num, n)
    stacked = StackedMLP(models, cfg, loss)
    active = torch.ones(num, dtype=torch.bool)
    singles = [PlainEngine(copy.deepcopy(m), cfg, loss) for m in models]

    def one_after_another():
        for engine, (x, y) in zip(singles, data, strict=True):
            engine.epoch(x, y, orders[0])

    seq_s, stack_s = interleaved([one_after_another, lambda: stacked.epoch(xs, ys, orders, active)],
                                 repeats, clock)
    return {"stacked32_speedup": seq_s / stack_s, "stacked32_steps_per_s": num * steps / stack_s,
            "stacked32_sequential_steps_per_s": num * steps / seq_s}


def spectral_repeats(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter
                     ) -> dict[str, np.ndarray]:
    """Seconds for the exact spectral norms of all weight matrices of `sizes.net`, per repetition."""
    weights = [m.weight.detach() for m in build_model(sizes.net, MNIST_SHAPE, CLASSES)
               if isinstance(m, torch.nn.Linear)]
    (seconds,) = interleaved([lambda: [torch.linalg.matrix_norm(w, ord=2) for w in weights]], repeats, clock)
    return {"spectral_s": seconds}


def _pb_sides(model: torch.nn.Module, x: torch.Tensor, forwards: int) -> list[Callable[[], object]]:
    net = probabilistic(model, prior_std=PB_PRIOR_STD)
    mean_net, gen = net.mean_network(), torch.Generator().manual_seed(0)

    def repeat(fn, frozen):
        def run():
            with torch.no_grad(), (net.frozen() if frozen else contextlib.nullcontext()):
                for _ in range(forwards):
                    fn()
        return run
    return [repeat(lambda: mean_net(x), False), repeat(lambda: net(x, "per_example", gen), True),
            repeat(lambda: net(x, "per_example", gen), False)]


def probnet_pairs(sizes: BenchSizes, repeats: int, clock: Clock = time.perf_counter
                  ) -> dict[str, np.ndarray]:
    """Per round: PBB's FCN forward as the mean network (A), per-example inside frozen() (B) and without
    (C); PBB's CNN as the mean network and per-example inside frozen(). Ratios are seconds ÷ A's."""
    x = _inputs(sizes.pb_batch, 3)[0]
    det_s, pe_s, unfrozen_s = interleaved(_pb_sides(pbb_fcn(seed=0), x, sizes.pb_forwards), repeats, clock)
    images = torch.rand(sizes.pb_cnn_batch, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    cnn_det_s, cnn_pe_s = interleaved(_pb_sides(pbb_cnn(seed=0), images, 1)[:2], repeats, clock)
    return {"pbnet_fcn_ratio": pe_s / det_s, "pbnet_fcn_unfrozen_ratio": unfrozen_s / det_s,
            "pbnet_fcn_ms": 1e3 * pe_s / sizes.pb_forwards, "pbnet_cnn_ratio": cnn_pe_s / cnn_det_s,
            "pbnet_cnn_ms": 1e3 * cnn_pe_s}


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
