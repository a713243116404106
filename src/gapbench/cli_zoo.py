"""`gapbench zoo ...`: build, list, show, export and import model zoos (gapbench.zoo).

Imported at the end of gapbench.cli (it adds commands to that module's group; the options and helpers are
gapbench.cli_common's); torch and the zoos load inside each command, so `gapbench --help` stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import main
from .cli_common import (
    DEFAULT_OUT,
    _faults,
    _parse_sets,
    _runtime,
    backend_option,
    data_dir_option,
    ray_address_option,
    threads_option,
)
from .errors import GapbenchError

out_option = click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
                          help="Results directory holding the store, checkpoints and zoo build records.")


@main.group()
def zoo():
    """Model zoos: families of trained models to judge a measure or bound on."""


def _summary(z) -> str:
    counts = z.counts()
    return (f"{z.name} ({z.preset}): {len(z)} models met the stop rule, {counts['max_epochs']} capped at "
            f"max_epochs, {counts['failed']} failed, {counts['missing']} missing; varied: "
            f"{', '.join(z.varied) or 'nothing'}")


@zoo.command("build")
@click.argument("name")
@click.option("--preset", default="quick", show_default=True, help="smoke | quick | paper (or zoo-specific)")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a preset parameter.")
@out_option
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@data_dir_option
@threads_option
@backend_option
@ray_address_option
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--retry-failed", is_flag=True, help="Re-run stored failed jobs instead of reusing them.")
def zoo_build(name, preset, sets, out, workers, data_dir, threads, backend, ray_address, no_progress,
              retry_failed):
    """Train the models of zoo NAME that OUT lacks (resumable) and record the build."""
    from .zoo import build_zoo
    _runtime(workers, data_dir, progress=not no_progress, backend=backend, ray_address=ray_address,
             threads=threads)                                        # the same checks as gapbench run
    with _faults(out):
        z = build_zoo(name, preset, out=out, overrides=_parse_sets(sets), workers=workers, backend=backend,
                      progress=not no_progress, data_dir=data_dir, threads=threads, ray_address=ray_address,
                      retry_failed=retry_failed)
    click.echo(f"{_summary(z)}\n  jobs: {z.build['trained']} trained, {z.build['reused']} reused, "
               f"{z.build['failed']} failed; stored in {out}")


@zoo.command("list")
@out_option
def zoo_list(out):
    """The registered zoos with their presets, and the zoos built in OUT."""
    from .zoo import ZOOS
    from .zoo.build import built_records
    click.secho("registered", bold=True)
    for entry in ZOOS:
        click.echo(f"  {entry.name:16s} presets: {', '.join(entry.obj.presets)}\n  {'':16s} {entry.summary}")
    click.secho(f"built in {out}", bold=True)
    rows = [(entry.name, record) for entry in ZOOS for record in built_records(Path(out), entry.name).values()]
    for name, record in rows:
        origin = f", imported from {record['imported_from']}" if "imported_from" in record else ""
        click.echo(f"  {name:16s} {record['preset']:8s} {record['models']} models{origin}")
    if not rows:
        click.echo("  none (gapbench zoo build NAME --preset smoke)")


@zoo.command("show")
@click.argument("name")
@click.option("--preset", default=None, help="Preset (default: the most recently built).")
@out_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the zoo and its models.")
def zoo_show(name, preset, out, as_json):
    """The models of zoo NAME built in OUT: hyperparameters, errors, gap and how training ended."""
    from .zoo import load_zoo
    with _faults(out):
        z = load_zoo(out, name, preset)
    models = z.models(include_capped=True)
    if as_json:
        click.echo(json.dumps({"zoo": z.name, "preset": z.preset, "params": z.params, "counts": z.counts(),
                               "provenance": z.provenance,
                               "models": [{"id": m.id, "hp": m.hp, "train_error": m.train_error,
                                           "test_error": m.test_error, "gap": m.gap,
                                           "stop_reason": m.stop_reason} for m in models]}, indent=2))
        return
    click.secho(_summary(z), bold=True)
    for m in models:
        hp = " ".join(f"{k}={m.hp[k]}" for k in z.varied if k in m.hp)
        click.echo(f"  {m.id}  train {m.train_error:.4f}  test {m.test_error:.4f}  gap {m.gap:+.4f}  "
                   f"{m.stop_reason:10s} {hp}")


@zoo.command("export")
@click.argument("name")
@click.argument("dest", type=click.Path())
@click.option("--preset", default=None, help="Preset (default: the most recently built).")
@out_option
def zoo_export(name, dest, preset, out):
    """Write zoo NAME (checkpoints and manifest.json with checksums) to directory DEST."""
    from .zoo import export_zoo, load_zoo
    with _faults(out):
        z = load_zoo(out, name, preset)
    with _faults(dest, "the zoo export"):
        path = export_zoo(z, dest)
    click.echo(f"exported {len(z.models(include_capped=True))} models of {z.name} ({z.preset}) to {path.parent}")


@zoo.command("import")
@click.argument("src", type=click.Path())
@out_option
def zoo_import(src, out):
    """Verify the zoo export SRC and make it loadable from OUT (gapbench zoo show NAME --out OUT)."""
    from .zoo import import_zoo
    if not Path(src).is_dir():
        raise GapbenchError(f"The zoo export '{src}' is not a directory. Pass the directory gapbench zoo export "
                            f"wrote (it holds manifest.json).")
    with _faults(out):
        z = import_zoo(src, out)
    click.echo(f"imported {_summary(z)} into {out}")
