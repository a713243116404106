"""The `gapbench` command line. Every user mistake ends in a one-paragraph message and exit code 2.

Each command imports what it needs inside its function: `gapbench --help` and the data commands then start
without importing torch or the experiments. The group class, fault translation and shared options are in
gapbench.cli_common; `gapbench evaluate` and `gapbench zoo` in cli_evaluate and cli_zoo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .cli_common import (  # noqa: F401  (STORE_NAME, os_error: re-exported, gapbench.cli names before the split)
    DEFAULT_OUT,
    STORE_NAME,
    _faults,
    _Group,
    _parse_sets,
    _runtime,
    backend_option,
    data_dir_option,
    os_error,
    ray_address_option,
    threads_option,
)
from .errors import GapbenchError


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gapbench")
def main():
    """gapbench: measures, valid bounds and paper experiments for the generalization gap."""


@main.command("list")
@click.argument("what", type=click.Choice(["experiments", "measures", "bounds", "datasets", "all"]),
                default="all")
def list_cmd(what):
    """List experiments, measures, bounds and datasets with their references."""
    from . import api
    sections = ["experiments", "measures", "bounds", "datasets"] if what == "all" else [what]
    for name in sections:
        click.secho(name, bold=True)
        for entry_name, meta in api.catalogue(name):
            click.echo(f"  {entry_name:36s} {meta}")


def _print_outcome(outcome, as_json: bool):
    summary = outcome.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    for note in outcome.notes:                  # in the JSON summary too
        click.echo(f"note: {note}", err=True)
    partial = f", claims on {outcome.models_ok} of {outcome.models_total} models" if outcome.partial else ""
    click.secho(f"\n{outcome.experiment} ({outcome.preset}): {outcome.runs_trained} trained, "
                f"{outcome.runs_reused} reused, {outcome.runs_failed} failed, {outcome.missing} missing"
                f"{partial}, {outcome.seconds:.1f} s", bold=True)
    for claim in outcome.claims:
        mark = click.style("held    ", fg="green") if claim.held else click.style("NOT held", fg="red")
        value = "n/a" if claim.value is None else f"{claim.value:.4g}"
        click.echo(f"  {mark} {claim.name}: {value}  ({claim.detail})")
    for key, value in outcome.statistics.items():
        click.echo(f"  {outcome.statistics_label} {key}: {value:.3f}")
    if outcome.paths:
        click.echo(f"  outputs: {Path(outcome.paths['report']).parent}/")


@main.command("run")
@click.argument("experiment")
@click.option("--preset", default="quick", show_default=True, help="smoke | quick | paper (or experiment-specific)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a preset parameter.")
@click.option("--workers", default=1, show_default=True, type=int,
              help="Worker processes (--threads threads each); with --backend ray, at least this many tasks "
                   "in flight.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False))
@click.option("--device", default="cpu", show_default=True)
@data_dir_option
@threads_option
@backend_option
@ray_address_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--retry-failed", is_flag=True, help="Re-run stored failed runs instead of reusing them.")
def run_cmd(experiment, preset, sets, workers, out, device, data_dir, threads, backend, ray_address, as_json,
            no_progress, retry_failed):
    """Train what is missing, measure, store, plot and check the claims of EXPERIMENT."""
    from .experiments.execute import run_experiment
    runtime = _runtime(workers, data_dir, device, progress=not no_progress, backend=backend,
                       ray_address=ray_address, threads=threads)
    with _faults(out):
        outcome = run_experiment(experiment, preset, overrides=_parse_sets(sets), out=out, runtime=runtime,
                                 progress=not no_progress, retry_failed=retry_failed,
                                 on_wait=lambda message: click.echo(message, err=True))
    _print_outcome(outcome, as_json)


STORED_PRESET_HELP = "Preset to use (default: the one stored in OUT; of several, the most recently run)."


@main.command()
@click.argument("experiment")
@click.option("--preset", default=None, help=STORED_PRESET_HELP)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
def report(experiment, preset, sets, out, as_json):
    """Rebuild EXPERIMENT's figure, CSV, summary and HTML report from the store (trains nothing)."""
    from .experiments.execute import run_experiment
    with _faults(out, "the report"):
        outcome = run_experiment(experiment, preset, overrides=_parse_sets(sets), out=out, train=False,
                                 progress=False)
    _print_outcome(outcome, as_json)


@main.command()
@click.argument("experiment")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False), help="Output CSV file.")
@click.option("--preset", default=None, help=STORED_PRESET_HELP)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False))
def export(experiment, csv_path, preset, sets, out):
    """Write EXPERIMENT's stored results (one row per trained model) to a CSV file."""
    from .experiments.execute import run_experiment
    from .report import atomic_write_bytes, csv_bytes, fewer_rows
    with _faults(out):
        outcome = run_experiment(experiment, preset, overrides=_parse_sets(sets), out=out, train=False,
                                 progress=False, write=False)
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)
    refusal = fewer_rows(Path(csv_path), len(outcome.table))
    if refusal is not None:
        raise GapbenchError(f"The --csv file was {refusal}")
    with _faults(Path(csv_path), "the CSV"):
        atomic_write_bytes(Path(csv_path), csv_bytes(outcome.table))
    click.echo(f"wrote {len(outcome.table)} rows ({outcome.preset} preset) to {csv_path}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the measurements as JSON.")
@click.option("--quick", is_flag=True, help="Shorter trials and 3 pairs (a smoke check, noisier).")
@click.option("--repeats", type=int, default=None, help="Interleaved pairs per ratio [default: 7, 3 with --quick].")
@click.option("--ray", "ray_bench", is_flag=True,
              help="Instead: the Ray backend's overhead per job against the local pool (4 jobs of 5 s, 2 workers).")
@ray_address_option
def bench(as_json, quick, repeats, ray_bench, ray_address):
    """Throughput benchmark: MFU, batch-1 and stacked speed-ups, spectral norms, PAC-Bayes per-example forwards,
    all measures vs the peer's get_all_measures with each measure's cost (medians of pairs)."""
    if ray_bench:
        from .bench_ray import format_ray_bench, run_ray_bench
        size = {"jobs": 2, "job_seconds": 2.0} if quick else {}
        result = run_ray_bench(repeats=repeats or (1 if quick else 2), address=ray_address, **size)
        click.echo(json.dumps(result, indent=2) if as_json else format_ray_bench(result))
        return
    if ray_address is not None:
        raise GapbenchError("--ray-address is used only by 'gapbench bench --ray'. Add --ray, or drop it.")
    from .bench import format_bench, run_bench
    result = run_bench(quick=quick, repeats=repeats, progress=not as_json)
    click.echo(json.dumps(result, indent=2) if as_json else format_bench(result))


@main.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.option("--data", "data_name", default=None, help="Dataset to measure on (default: the checkpoint's).")
@click.option("--split", default="train", show_default=True)
@click.option("--quantities", "-q", multiple=True, help="Measures to compute (default: all that apply).")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def measure(checkpoint_path, data_name, split, quantities, data_dir, as_json):
    """Compute generalization measures of a trained CHECKPOINT (progress per measure on stderr)."""
    from .api import measure_checkpoint
    from .checkpoint import is_verified
    values = measure_checkpoint(checkpoint_path, data_name=data_name, split=split,
                                quantities=list(quantities) or None, data_dir=data_dir, progress=True)
    if as_json:
        click.echo(json.dumps(values, indent=2))
    else:
        for key, value in values.items():
            click.echo(f"  {key:40s} {value:.6g}")
    if not is_verified(checkpoint_path):
        click.echo(f"note: {checkpoint_path} predates weight checksums (checkpoint format 1): its weights are "
                   f"unverified.", err=True)


@main.command()
@click.argument("checkpoint_path", metavar="CHECKPOINT", type=click.Path(dir_okay=False))
@click.option("--method", type=click.Choice(["heldout", "pacbayes"]), default="heldout", show_default=True,
              help="heldout: binomial and other bounds from held-out data; pacbayes: the PAC-Bayes certificate of "
                   "a probabilistic network's checkpoint on its own S_bound.")
@click.option("--data", "data_name", default=None, help="Dataset (default: the checkpoint's; heldout only).")
@click.option("--split", default="test", show_default=True, help="Held-out split: test or val (heldout only).")
@click.option("--delta", default=None, type=float,
              help="Total failure probability. Default: 0.05 (heldout), 0.035 (pacbayes: PBB's 0.025 + 0.01).")
@click.option("--delta-mc", type=float, default=None,
              help="pacbayes: the Monte Carlo step's share of --delta (default min(0.01, delta/2)).")
@click.option("--passes", default=10, show_default=True, type=int,
              help="pacbayes: passes over S_bound, each with a fresh weight draw per example.")
@click.option("--family-size", default=1, show_default=True, type=int,
              help="Number of models (pacbayes: priors x objectives x hyperparameters) this one was selected "
                   "from by looking at the same certification data.")
@click.option("--assume-var", type=float, default=None,
              help="ASSUME the 0-1 loss variance is at most this (KKB's Bernstein form; printed with the result). "
                   "Default: the assumption-free Bernstein bound (heldout only).")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def certify(checkpoint_path, method, data_name, split, delta, delta_mc, passes, family_size, assume_var, data_dir,
            as_json):
    """Tightest valid upper bound on CHECKPOINT's test error from held-out data (or, with --method pacbayes,
    on a stochastic network's risk)."""
    from .api import certify_checkpoint
    from .errors import check_positive_float, check_positive_int, check_probability
    delta = (0.035 if method == "pacbayes" else 0.05) if delta is None else delta
    check_probability(delta, "--delta", "gapbench certify")
    check_positive_int(family_size, "--family-size", "gapbench certify")
    if method == "pacbayes":
        if assume_var is not None or data_name is not None or split != "test":
            raise GapbenchError("--assume-var, --data and --split belong to --method heldout; --method pacbayes "
                                "certifies on the checkpoint's own S_bound. Drop them.")
        check_positive_int(passes, "--passes", "gapbench certify")
        if delta_mc is not None and not 0 < delta_mc < delta:
            raise GapbenchError(f"The '--delta-mc' parameter of gapbench certify must be a float in (0, --delta) = "
                                f"(0, {delta:g}), the Monte Carlo step's share of the total δ. Got {delta_mc:g} "
                                f"instead. The PAC-Bayes step gets --delta minus --delta-mc; leave it unset for the "
                                f"default min(0.01, delta/2).")
        cert = certify_checkpoint(checkpoint_path, method="pacbayes", delta=delta, delta_mc=delta_mc, passes=passes,
                                  family_size=family_size, data_dir=data_dir)
        click.echo(json.dumps(cert.as_dict(), indent=2, default=str) if as_json else str(cert))
        return
    if delta_mc is not None:
        raise GapbenchError("--delta-mc belongs to --method pacbayes (the Monte Carlo step); a held-out "
                        "certificate has none. Drop it, or pass --method pacbayes.")
    if assume_var is not None:
        check_positive_float(assume_var, "--assume-var", "gapbench certify")
    cert = certify_checkpoint(checkpoint_path, data_name=data_name, split=split, delta=delta,
                              family_size=family_size, assume_var=assume_var, data_dir=data_dir)
    click.echo(json.dumps(cert.as_dict(), indent=2, default=str) if as_json else cert.format())


@main.command()
@click.option("--out", default="demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--workers", default=min(4, os.cpu_count() or 1), show_default=True, type=int,
              help="Worker processes (--threads threads each); default: the CPU count, at most 4.")
@data_dir_option
@threads_option
@backend_option
@ray_address_option
def demo(out, workers, data_dir, threads, backend, ray_address):
    """The headline results of both papers in one HTML report (prints each experiment's time and the total)."""
    from .demo import run_demo
    runtime = _runtime(workers, data_dir, backend=backend, ray_address=ray_address, threads=threads)
    with _faults(out):
        path = run_demo(out=out, runtime=runtime)
    click.echo(f"demo report: {path}")


@main.group()
def data():
    """Fetch file-backed datasets into the data directory and list what is there."""


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:8.2f} MB" if size_bytes >= 10_000 else f"{size_bytes:8d} B "


@data.command("fetch")
@click.argument("name")
@data_dir_option
@click.option("--from", "source", default=None, metavar="URL_OR_DIR",
              help="A mirror instead of the canonical URL: a base URL or a directory holding the same files.")
def data_fetch(name, data_dir, source):
    """Download dataset NAME (mnist, fashion_mnist, cifar10), checksum-verified, into the data directory."""
    from .data.fetch import fetch_dataset
    from .data.files import data_dir_origin, resolve_data_dir
    root = resolve_data_dir(data_dir)
    rows = fetch_dataset(name, data_dir, source)
    click.echo(f"{name}: {len(rows)} files in {root} ({data_dir_origin(data_dir)})")
    for row in rows:
        click.echo(f"  {row.path.relative_to(root)!s:48s} {_size(row.size_bytes)}  {row.checksum.algorithm} "
                   f"verified  ({row.action})")


@data.command("list")
@data_dir_option
def data_list(data_dir):
    """Every dataset: where it is read from and whether it is present and verified, missing or corrupt."""
    from .data.fetch import list_status
    from .data.files import data_dir_origin, fetch_command, resolve_data_dir
    root = resolve_data_dir(data_dir)
    click.echo(f"data directory: {root} ({data_dir_origin(data_dir)})")
    for status in list_status(data_dir):
        if status.state == "generated":
            click.echo(f"  {status.name:14s} generated   (drawn from a seed, no files)")
            continue
        bad = [f.name for f in status.files if f.state != "verified"]
        detail = f"{status.location}" + (f"  {status.state}: {', '.join(bad)}" if bad else "")
        fix = "" if status.state == "verified" else f"  -> {fetch_command(status.name, root)}"
        click.echo(f"  {status.name:14s} {status.state:11s} {detail}{fix}")


from . import cli_evaluate, cli_zoo  # noqa: E402,F401  (register `gapbench evaluate` and `gapbench zoo`)

if __name__ == "__main__":
    main()

