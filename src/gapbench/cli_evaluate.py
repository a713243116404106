"""`gapbench evaluate`: run a measure or bound through the five tests on stored zoos (gapbench.evaluation).

Imported at the end of gapbench.cli (it adds a command to that module's group; the helpers are
gapbench.cli_common's); torch loads inside the command. Exit codes: 0 when every quantity evaluated; 1 when
some quantity failed (it could not be loaded, or it raised or returned a non-finite value on some model: the
failures are recorded in its card and listed here, and the others were evaluated); 2 for a mistake in the
command (an unknown name or zoo, a malformed spec, a zoo not built yet), in one paragraph.
"""

from __future__ import annotations

import json
import sys

import click

from .cli import main
from .cli_common import DEFAULT_OUT, _faults
from .errors import GapbenchError, param_error

FAILED_EXIT = 1


@main.command()
@click.argument("specs", nargs=-1, metavar="NAME|module:attr|file.py:attr ...")
@click.option("--zoo", "zoos", multiple=True, metavar="ZOO",
              help="Zoo to evaluate on (repeatable) [default: mnist-hparams, nk-m-sweep, nk-hypersphere].")
@click.option("--preset", default=None, help="Zoo preset (default: the one most recently built in OUT).")
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Results directory holding the zoos; cards go to OUT/evaluate/<name>/.")
@click.option("--all", "all_", is_flag=True, help="Every registered measure and bound, and the leaderboard.")
@click.option("--build", is_flag=True, help="Build a zoo OUT lacks (with --preset, default quick).")
@click.option("--no-rank", is_flag=True, help="Skip the rank among the registered quantities.")
@click.option("--delta", default=0.05, show_default=True, type=float, help="δ at which bounds are evaluated.")
@click.option("--pool", multiple=True, metavar="NAME",
              help="Rank against (and with --all evaluate) only these registered quantities (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
@click.option("--threads", default=1, show_default=True, type=int,
              help="torch threads while evaluating (more than one is often slower on a loaded or small machine: "
                   "measures run many small operations).")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def evaluate(specs, zoos, preset, out, all_, build, no_rank, delta, pool, threads, as_json, no_progress):
    """Run measures or bounds through NK's m-test and S' test, validity, ranking and cost; write a report card
    per quantity (and with --all the leaderboard)."""
    from .evaluation import DEFAULT_ZOOS
    from .evaluation import evaluate as run
    if not specs and not all_:
        raise GapbenchError("gapbench evaluate needs a measure or bound: a registered name (gapbench list), "
                            "'module.path:function' or 'path/to/file.py:function', or --all.")
    if isinstance(threads, bool) or threads < 1:
        raise param_error("threads", "gapbench evaluate", "an int >= 1 (torch threads)", threads,
                          "Use --threads 1 (the default) or the number of cores.")
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _faults(out):
            result = run(list(specs), zoos=list(zoos) or list(DEFAULT_ZOOS), out=out, preset=preset, all=all_,
                         build=build, rank=not no_rank, delta=delta, pool=list(pool) or None,
                         progress=not no_progress)
    finally:
        torch.set_num_threads(previous)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        _print(result)
    if result.failed:
        sys.exit(FAILED_EXIT)


def _print(result) -> None:
    for bad in result.unresolved:
        click.secho(f"FAILED {bad['spec']} [{bad['kind']}]: {bad['message']}", fg="red", err=True)
    for card in result.cards:
        q = card.quantity
        click.secho(f"\n{q['kind']} {q['name']} ({q['origin']}): {card.computed} computed, {card.reused} reused",
                    bold=True)
        for test, verdict in card.verdicts().items():
            click.echo(f"  {test:9s} {verdict}")
        for score, r in card.ranks.items():
            click.echo(f"  rank      {score}: {r['rank']} of {r['of']}")
        broken = [f for f in card.failures if f["kind"] != "not_applicable"]
        for f in broken[:3]:
            click.secho(f"  FAILED on {f['zoo']} model {f['model'][:12]} ({f['split']}) [{f['kind']}]: "
                        f"{f['message']}", fg="red")
        if len(broken) > 3:
            click.secho(f"  ... {len(broken) - 3} more failures in {card.paths.get('card')}", fg="red")
        if card.paths:
            click.echo(f"  card: {card.paths['report']}")
    if result.leaderboard:
        click.echo(f"\nleaderboard: {result.leaderboard['html']}, {result.leaderboard['csv']}")
        click.echo(result.leaderboard["note"])
    click.echo(f"({result.seconds:.1f} s)")
