"""`tinylm train`, `generate` and `eval`: a model from text, text from a model, its score."""
from __future__ import annotations

import click
from click.core import ParameterSource

from ..text.data import SPLITS, read_documents
from ..training import loop as training
from ..training.checkpoint import load_model
from ..training.evaluate import evaluate
from ..training.progress import plural
from .common import (
    check_model_path,
    load_scorable,
    print_json,
    print_sample,
    sampling_options,
    train_options,
)


@click.command("train")
@click.option("--data", multiple=True, metavar="FILE",
              help="Training text (UTF-8); repeat for more files.")
@click.option("--val-data", multiple=True, metavar="FILE",
              help="Validation text; repeat for more files.")
@click.option("--out", required=True, metavar="DIR",
              help="Directory for the checkpoint, token files and metrics.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@train_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def train_command(ctx, data, val_data, out, resume, as_json, **options):
    """Train a tokenizer and a model on text files.

    See tinylm/training/loop.py. Progress goes to stderr; DIR gets checkpoint.npz,
    metrics.jsonl and loss.png. Ctrl-C saves a checkpoint and stops with exit status 130;
    --resume continues it. With --resume, only the options given on the command line change,
    and those that fix the tokenizer or the model's shape cannot.
    """
    if resume:
        given = {name: value for name, value in dict(options, data=data, val_data=val_data).items()
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
        summary = training.resume(out, **given)
    else:
        if not data:
            raise click.UsageError("--data FILE is needed for a new run (or --resume one)")
        summary = training.train(training.TrainArgs(data=list(data), val_data=list(val_data),
                                                    out=out, **options))
    print_summary(summary, as_json)
    if summary["interrupted"]:
        ctx.exit(INTERRUPTED)


INTERRUPTED = 130   # the shell's status for a program stopped by Ctrl-C (128 + SIGINT)


def print_summary(summary: dict, as_json: bool) -> None:
    """A training run's last step and its last validation, labelled with the step it was at."""
    if as_json:
        print_json(summary)
        return
    scores = ""
    if summary["val_loss"] is not None:   # None: stopped before any validation
        at = "" if summary["val_step"] == summary["step"] else f" (at step {summary['val_step']})"
        scores = (f": val loss{at} {summary['val_loss']:.4f} nats/token, "
                  f"{summary['val_bpb']:.4f} bits/byte")
    click.echo(f"step {summary['step']}{scores}; checkpoint {summary['checkpoint']}")


@click.command("generate")
@click.argument("model_path", metavar="MODEL")
@sampling_options
@click.option("--seed", type=int, default=None,
              help="Seed, for a repeatable sample. [default: random]")
def generate_command(model_path, prompt, **sampling):
    """Continue a prompt, printing text as it comes.

    MODEL is a checkpoint directory or .npz file. See tinylm/training/generate.py."""
    check_model_path(model_path, "generate", "directory")
    model, tokenizer = load_model(model_path)
    print_sample(model, tokenizer, prompt, **sampling)


@click.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.option("--data", "paths", multiple=True, required=True, metavar="FILE",
              help="Text to score (UTF-8); repeat for more files.")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
              help="How text is cut into documents, each scored from <bos> (see "
                   "tinylm/text/data.py).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def eval_command(model_path, paths, split, as_json):
    """Score a model on text: nats/token, bits/byte.

    How well the model in MODEL predicts the text: loss in nats per token, and bits per byte,
    which compares models with different tokenizers. MODEL may be a .bin: it is then run by
    the NumPy reference engine. See tinylm/training/evaluate.py."""
    model, tokenizer = load_scorable(model_path, "eval")
    documents = read_documents(paths, split)
    result = evaluate(model, tokenizer, documents)
    if as_json:
        print_json(dict(result, documents=len(documents)))
        return
    click.echo(f"loss    {result['loss']:.4f} nats/token\n"
               f"bpb     {result['bpb']:.4f} bits/byte\n"
               f"tokens  {result['tokens']:,} ({plural(len(documents), 'document')}, "
               f"{result['bytes']:,} bytes)")
