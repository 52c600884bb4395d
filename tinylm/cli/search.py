"""`tinylm search` and `tinylm search show`: the best models for a board, found by an Optuna
study, and what a study found so far."""
from __future__ import annotations

import re
import shlex

import click

from ..search import results, run, study
from ..search.measure import TARGETS
from ..search.settings import DEFAULT_STUDY, SAMPLERS, Settings
from .common import COUNT, NON_NEGATIVE, POSITIVE
from .train import INTERRUPTED

DEFAULTS = Settings(target="host", data=[], out="")


class ParamRange(click.ParamType):
    """MIN-MAX parameters, each a number with an optional K (thousand) or M (million)."""
    name = "MIN-MAX"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r"\s*([\d.]+)([kKmM]?)\s*-\s*([\d.]+)([kKmM]?)\s*", value)
        if not match:
            self.fail(f"{value!r} is not MIN-MAX, e.g. 1K-300K", param, ctx)
        unit = {"": 1, "k": 1_000, "m": 1_000_000}
        return tuple(round(float(match[i]) * unit[match[i + 1].lower()]) for i in (1, 3))


@click.group("search", invoke_without_command=True)
@click.option("--target", type=click.Choice(list(TARGETS)),
              help="The board to search for: rp2040 (rp2040js), esp32c3 (qemu, rv32imc), or "
                   "host (this computer's C runtime).")
@click.option("--data", multiple=True, metavar="FILE", help="Training text; repeat for more.")
@click.option("--val-data", multiple=True, metavar="FILE",
              help="Validation text. [default: hold out the last documents of --data]")
@click.option("--teacher", metavar="DIR", help="A `tinylm distill` folder with a teacher's "
              "targets: candidates are distilled on them (its text replaces --data).")
@click.option("--min-tok-s", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="Slowest speed a model may have on the target (by the cost model).")
@click.option("--params", type=ParamRange(), default="1K-300K", show_default=True,
              help="Parameter counts to search.")
@click.option("--bits", type=click.Choice(["8", "4"]), default=None,
              help="Weight bits of every model. [default: search 8 and 4]")
@click.option("--trials", type=COUNT, default=DEFAULTS.trials, show_default=True,
              help="Trials to train (shapes refused before training are not counted).")
@click.option("--out", default="runs/search", show_default=True, metavar="DIR",
              help="Directory for trials, results and (without --storage) the study.")
@click.option("--storage", metavar="URL", help="An Optuna storage shared by every process "
              "of the search: postgresql://..., mysql://..., sqlite:///..., redis://... "
              "[default: DIR/study.db]")
@click.option("--study", "study_name", default=DEFAULT_STUDY, show_default=True,
              help="The study's name in the storage.")
@click.option("--jobs", type=COUNT, default=1, show_default=True,
              help="Worker processes here (each trains one trial at a time).")
@click.option("--threads", type=COUNT, default=1, show_default=True,
              help="Threads that share each trial's batch.")
@click.option("--steps", type=COUNT, default=DEFAULTS.steps, show_default=True,
              help="Training steps of every trial: the fixed budget.")
@click.option("--batch-size", type=COUNT, default=DEFAULTS.batch_size, show_default=True)
@click.option("--seq-len", type=COUNT, default=DEFAULTS.seq_len, show_default=True,
              help="Context of every model, and its training windows.")
@click.option("--lr", "lrs", type=POSITIVE, multiple=True, default=DEFAULTS.lrs,
              show_default=True, help="Peak learning rates a trial may draw (repeat the "
              "option); one fixes it.")
@click.option("--val-bytes", type=COUNT, default=DEFAULTS.val_bytes, show_default=True,
              help="Bytes of validation text every model is scored on.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="tpe", show_default=True,
              help="Optuna's multi-objective sampler: TPE or NSGA-II.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def search_group(ctx, target, data, val_data, teacher, params, bits, study_name, **options):
    """Find the best models for a board: bits/byte against tok/s.

    A multi-objective Optuna study over width, depth, heads, FFN width, vocabulary and bits:
    each trial trains a candidate for the same budget and scores its .bin on validation text;
    its speed comes from a cost model fitted to the target's emulator, and every model on the
    final Pareto front is measured in the emulator. Shapes that do not fit the board
    (memplan) or are slower than --min-tok-s are never trained. Killed, the same command
    resumes; processes (here with --jobs, or elsewhere with the same --storage and --study)
    share one study. See tinylm/search/ and docs/architecture.md. Needs Optuna:
    pip install 'tinylm[search]'."""
    if ctx.invoked_subcommand:
        return
    if not target or not (data or teacher):
        raise click.UsageError("a search needs --target and --data FILE (or --teacher DIR)")
    if data and teacher:
        raise click.UsageError("--teacher brings the text its targets were made on: "
                               "leave out --data")
    settings = Settings(target=target, data=list(data), val_data=list(val_data),
                        teacher=teacher, min_params=params[0], max_params=params[1],
                        bits=(int(bits),) if bits else (8, 4), study=study_name, **options)
    try:
        made = run.search(settings, echo=lambda line: click.echo(line, err=True))
    except KeyboardInterrupt:
        click.echo(f"interrupted: run the same command to go on; tinylm search show "
                   f"{settings.out} shows what is done", err=True)
        ctx.exit(INTERRUPTED)
    report(made, settings)


@search_group.command("show")
@click.argument("directory", metavar="DIR")
@click.option("--storage", metavar="URL", help="The study's storage, if not DIR/study.db.")
def show_command(directory, storage):
    """Print a search's Pareto front and templates; write its tables and plot again.

    DIR is a search's --out; its files are rewritten from the study as it is now (a search
    may still be running)."""
    settings = Settings.load(directory)
    settings.storage = storage or settings.storage
    try:
        the_study = study.load(settings)
    except KeyError:
        raise ValueError(f"no study {settings.study} in {settings.storage_url}") from None
    report(run.show(the_study, settings), settings)


def report(made: dict, settings: Settings) -> None:
    click.echo("Pareto front (tok/s emulated, or predicted by the cost model):")
    click.echo(results.table(made["front"]))
    measured = [r for r in made["references"] if r.get("bpb") is not None]
    if measured:
        click.echo("\nreferences:\n" + results.table(measured))
    for name, row in made["templates"].items():
        click.echo(f"\n{name}: {row['label']}, {row['bpb']:.4f} bits/byte, "
                   f"{row['tok_s']:,.1f} tok/s")
        for command in row["commands"].values():
            click.echo("  " + shlex.join(command))
    click.echo(f"\ntables, front and plot in {settings.out} (trials.csv, front.png, "
               "templates.json)")
