"""What nk2019-hypersphere's paper preset costs on a CPU: time per epoch and peak memory at width 100,000.

    python benchmarks/profile_hypersphere.py [--m 2048] [--threads 1] [--preset paper]

Trains the preset's network (d = 1,000, one hidden layer of width 100,000, batch 64, SGD lr 0.5) for exactly
one epoch on m points through gapbench's own training path (`gapbench.api.fit`, the engine a sweep worker
uses), with `--threads` torch threads, and prints the wall time of that epoch (steps and the per-epoch margin
evaluation included), the seconds per SGD step, and the process's peak resident memory. An epoch at m points
has m / 64 steps, so the time per epoch at every m of the preset is extrapolated from the measured step time
(stated as such), together with the epochs the blog preset needed at width 10,000 for reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import time

import torch

import gapbench as gb
from gapbench.experiments import get
from gapbench.experiments.nk2019_hypersphere import run_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=2048, help="training points for the timed epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a sweep worker uses 1)")
    parser.add_argument("--preset", default="paper")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exp = get("nk2019-hypersphere")
    p = exp.params(args.preset)
    cfg = run_config(p, args.m, seed=0)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_epochs=1, stop="epochs"))
    data = gb.load_data(cfg.data)
    start = time.perf_counter()
    run = gb.fit(cfg, data)
    seconds = time.perf_counter() - start
    steps = -(-args.m // p["batch_size"])
    per_step = seconds / steps
    params = sum(t.numel() for t in run.model.parameters())
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20     # ru_maxrss is KiB on Linux
    print(f"preset {args.preset}: d = {p['dim']}, width {p['width']:,}, {params:,} parameters, "
          f"batch {p['batch_size']}, {args.threads} thread(s)")
    print(f"measured: one epoch at m = {args.m:,} ({steps} steps) took {seconds:.1f} s "
          f"({per_step:.3f} s per step); peak resident memory {peak_gib:.2f} GiB")
    print("extrapolated time per epoch (m / batch steps × the measured step time):")
    for m in p["m"]:
        print(f"  m = {m:>6,}: {m // p['batch_size'] * per_step / 60:7.1f} min per epoch")


if __name__ == "__main__":
    main()
