"""`tinylm train`, `generate` and `eval`: a model from text, text from a model, its score."""
from __future__ import annotations

import click
from click.core import ParameterSource

from ..text.chat_data import read_chat_pairs
from ..text.data import SPLITS, read_documents
from ..training import loop as training
from ..training.checkpoint import load_checkpoint
from ..training.evaluate import evaluate, evaluate_chat
from ..training.generate import generate
from ..training.progress import plural
from .common import (
    check_model_path,
    load_scorable,
    print_json,
    print_stream,
    prompt_to_run,
    sampling_options,
    train_options,
)


@click.command("train")
@click.option("--data", multiple=True, metavar="FILE",
              help="Training text (UTF-8); repeat for more files.")
@click.option("--chat-data", multiple=True, metavar="SOURCE",
              help="Chat records to train on too, which make a chat model: prompt/reply pairs "
                   "(a .jsonl file of {\"prompt\", \"reply\"} records, or a `datasets` "
                   "source); repeat for more.")
@click.option("--val-data", multiple=True, metavar="FILE",
              help="Validation text; repeat for more files.")
@click.option("--out", required=True, metavar="DIR",
              help="Directory for the checkpoint, token files and metrics.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@train_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def train_command(ctx, data, chat_data, val_data, out, resume, as_json, **options):
    """Train a tokenizer and a model on text files.

    See tinylm/training/loop.py. Progress goes to stderr; DIR gets checkpoint.npz,
    metrics.jsonl and loss.png. Ctrl-C saves a checkpoint and stops with exit status 130;
    --resume continues it. With --resume, only the options given on the command line change,
    and those that fix the tokenizer or the model's shape cannot.
    """
    if resume:
        given = {name: value for name, value in dict(options, data=data, chat_data=chat_data,
                                                     val_data=val_data).items()
                 if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE}
        summary = training.resume(out, **given)
    else:
        if not data and not chat_data:
            raise click.UsageError("--data FILE or --chat-data SOURCE is needed for a new run "
                                   "(or --resume one)")
        summary = training.train(training.TrainArgs(data=list(data), chat_data=list(chat_data),
                                                    val_data=list(val_data), out=out, **options))
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
def generate_command(model_path, prompt, question, **sampling):
    """Continue a prompt, or answer a chat model's question, printing text as it comes.

    MODEL is a checkpoint directory or .npz file. See tinylm/training/generate.py."""
    check_model_path(model_path, "generate", "directory")
    checkpoint = load_checkpoint(model_path)
    model, tokenizer, chat = checkpoint.model(), checkpoint.tokenizer, checkpoint.chat
    shown, prompt_ids = prompt_to_run(tokenizer, chat, prompt, question, model_path)
    new_ids = generate(model, tokenizer, prompt_ids, end_id=chat.end if chat else None,
                       **sampling)
    print_stream(tokenizer, shown, prompt_ids, new_ids, model.config.max_seq_len)


@click.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.option("--data", "paths", multiple=True, metavar="FILE",
              help="Text to score (UTF-8); repeat for more files.")
@click.option("--chat", "pairs_source", metavar="SOURCE",
              help="Instead, a chat model's replies to score: prompt/reply pairs (a .jsonl "
                   "file of {\"prompt\", \"reply\"} records, or a `datasets` source).")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
              help="How text is cut into documents, each scored from <bos> (see "
                   "tinylm/text/data.py).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def eval_command(model_path, paths, pairs_source, split, as_json):
    """Score a model on text, or a chat model on replies: nats/token, bits/byte.

    How well the model in MODEL predicts the text: loss in nats per token, and bits per byte,
    which compares models with different tokenizers. With --chat, the loss and bits per byte
    of the replies alone (their tokens and end), each after its prompt in the model's turn.
    MODEL may be a .bin: it is then run by the NumPy reference engine. See
    tinylm/training/evaluate.py."""
    if bool(paths) == bool(pairs_source):
        raise click.UsageError("give text to score (--data FILE) or replies (--chat SOURCE)")
    model, tokenizer, chat = load_scorable(model_path, "eval")
    if pairs_source:
        if chat is None:
            raise ValueError(f"{model_path} is not a chat model: score it on text with --data")
        pairs = read_chat_pairs(pairs_source)
        result, counted = evaluate_chat(model, tokenizer, chat, pairs), {"replies": len(pairs)}
        what = f"{len(pairs):,} " + ("reply" if len(pairs) == 1 else "replies")
    else:
        documents = read_documents(paths, split)
        result, counted = evaluate(model, tokenizer, documents), {"documents": len(documents)}
        what = plural(len(documents), "document")
    if as_json:
        print_json(dict(result, **counted))
        return
    click.echo(f"loss    {result['loss']:.4f} nats/token\n"
               f"bpb     {result['bpb']:.4f} bits/byte\n"
               f"tokens  {result['tokens']:,} ({what}, {result['bytes']:,} bytes)")
