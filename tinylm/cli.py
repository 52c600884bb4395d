"""The `tinylm` command: demo, train, generate, eval, info, import-llama2c.

Each command is a thin layer over the library (its help names the module). Mistakes a user can
make (a missing file, bad settings, too little data, a damaged checkpoint) reach this file as
OSError or ValueError, and come out as one line "error: ..." on stderr with exit status 1.
`tinylm --debug COMMAND ...` (or TINYLM_DEBUG=1) shows the whole traceback instead.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
from click.core import ParameterSource

from . import train as training
from .checkpoint import checkpoint_path, load_checkpoint, load_model
from .corpus import make_stories
from .data import SPLITS, read_documents
from .evaluate import evaluate
from .generate import generate, stream_text
from .llama2c import import_llama2c
from .model import Transformer
from .tokenizer import Tokenizer


class ErrorsAsOneLine(click.Group):
    """Runs a command; a user's mistake (OSError, ValueError) becomes one line on stderr."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (OSError, ValueError) as e:
            if ctx.params["debug"]:
                raise
            # An OSError from the system has a file name and a reason; ours just a message.
            message = f"{e.filename}: {e.strerror}" if getattr(e, "filename", None) else str(e)
            click.echo(f"error: {message}", err=True)
            ctx.exit(1)


@click.group(cls=ErrorsAsOneLine)
@click.option("--debug", is_flag=True, envvar="TINYLM_DEBUG",
              help="Show the full traceback of an error, not just its message.")
def main(debug):
    """Train tiny Llama-style language models in pure NumPy, sample from them, score them."""


def print_json(obj) -> None:
    click.echo(json.dumps(obj))


def print_sample(model, tokenizer, prompt: str, **sampling) -> None:
    """Print `prompt`, then the model's continuation piece by piece as it is generated."""
    prompt_ids = tokenizer.encode(prompt, bos=True)
    new_ids = generate(model, tokenizer, prompt_ids, **sampling)  # checks the arguments
    click.echo(prompt, nl=False)
    for piece in stream_text(tokenizer, new_ids, prompt_ids):
        click.echo(piece, nl=False)  # echo flushes, so the text appears as it is made
    click.echo()


# ---- train --------------------------------------------------------------------------------

# TrainArgs fields settable from the command line, with help; defaults come from TrainArgs.
# Ranges catch impossible values here, with the option's name in the message.
COUNT, SOME = click.IntRange(min=1), click.IntRange(min=0)
POSITIVE, NON_NEGATIVE = click.FloatRange(min=0, min_open=True), click.FloatRange(min=0)
TRAIN_OPTIONS = [
    ("split", click.Choice(SPLITS), "How text is cut into documents (see tinylm/data.py)."),
    ("val_fraction", click.FloatRange(0, 1, min_open=True, max_open=True),
     "Fraction of the tokens held out for validation, without --val-data."),
    ("vocab_size", COUNT, "Tokens in the vocabulary, learned from the data by BPE."),
    ("dim", COUNT, "Width of the residual stream."),
    ("n_layers", COUNT, "Transformer blocks."),
    ("n_heads", COUNT, "Query heads."),
    ("n_kv_heads", COUNT, "Key/value heads; fewer than --n-heads is grouped-query attention. "
                          "[default: n_heads]"),
    ("head_dim", COUNT, "Width of each head. [default: dim / n_heads]"),
    ("hidden_dim", COUNT, "Hidden width of the SwiGLU MLP. [default: 8/3 dim]"),
    ("seq_len", COUNT, "Tokens per training window, and the model's context length."),
    ("batch_size", COUNT, "Windows per step."),
    ("steps", COUNT, "Optimizer steps in all (with --resume: train on up to this step)."),
    ("lr", POSITIVE, "Peak learning rate, reached after warmup, then cosine decay."),
    ("warmup_steps", SOME, "Steps of linear learning-rate warmup. [default: 5% of steps]"),
    ("weight_decay", NON_NEGATIVE, "AdamW weight decay, for matrices only."),
    ("grad_clip", NON_NEGATIVE, "Largest gradient norm; 0 turns clipping off."),
    ("seed", int, "Seed of the initial weights and the order of batches."),
    ("eval_every", COUNT, "Steps between validation runs."),
    ("checkpoint_every", COUNT, "Steps between checkpoints (one is also saved at the end)."),
    ("threads", COUNT, "Threads that share each batch."),
]
TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(training.TrainArgs)}


def train_options(command):
    for name, type_, help_ in reversed(TRAIN_OPTIONS):
        default = TRAIN_DEFAULTS[name]
        command = click.option("--" + name.replace("_", "-"), type=type_, default=default,
                               show_default=default is not None, help=help_)(command)
    return command


@main.command("train")
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

    See tinylm/train.py. Progress goes to stderr; DIR gets checkpoint.npz, metrics.jsonl and
    loss.png. Ctrl-C saves a checkpoint and stops; --resume continues it. With --resume, only
    the options given on the command line change, and those that fix the tokenizer or the
    model's shape cannot.
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
    if as_json:
        print_json(summary)
        return
    scores = "" if summary["val_loss"] is None else (  # None: stopped before any validation
        f": val loss {summary['val_loss']:.4f} nats/token, {summary['val_bpb']:.4f} bits/byte")
    click.echo(f"step {summary['step']}{scores}; checkpoint {summary['checkpoint']}")


# ---- generate, eval, info -------------------------------------------------------------------

@main.command("generate")
@click.argument("model_path", metavar="MODEL")
@click.option("--prompt", default="", help="Text to continue. [default: none, start a new text]")
@click.option("--max-tokens", type=SOME, default=256, show_default=True,
              help="Most tokens to generate.")
@click.option("--temperature", type=NON_NEGATIVE, default=1.0, show_default=True,
              help="Below 1: safer choices; above 1: wilder ones; 0: always the most likely token.")
@click.option("--top-k", type=SOME, default=0, show_default=True,
              help="Sample from the k most likely tokens only (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              show_default=True,
              help="Sample from the most likely tokens that together have this probability.")
@click.option("--seed", type=int, default=None,
              help="Seed, for a repeatable sample. [default: random]")
def generate_command(model_path, prompt, **sampling):
    """Continue a prompt, printing text as it comes.

    MODEL is a checkpoint directory or .npz file. See tinylm/generate.py."""
    model, tokenizer = load_model(model_path)
    print_sample(model, tokenizer, prompt, **sampling)


@main.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.option("--data", "paths", multiple=True, required=True, metavar="FILE",
              help="Text to score (UTF-8); repeat for more files.")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
              help="How text is cut into documents, each scored from <bos> (see tinylm/data.py).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def eval_command(model_path, paths, split, as_json):
    """Score a model on text: nats/token, bits/byte.

    How well the model in MODEL predicts the text: loss in nats per token, and bits per byte,
    which compares models with different tokenizers. See tinylm/evaluate.py."""
    model, tokenizer = load_model(model_path)
    documents = read_documents(paths, split)
    result = evaluate(model, tokenizer, documents)
    if as_json:
        print_json(dict(result, documents=len(documents)))
        return
    click.echo(f"loss    {result['loss']:.4f} nats/token\n"
               f"bpb     {result['bpb']:.4f} bits/byte\n"
               f"tokens  {result['tokens']:,} ({len(documents):,} documents, "
               f"{result['bytes']:,} bytes)")


@main.command("info")
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
def info_command(model_path, as_json):
    """Show a model's shape, size and training steps.

    See tinylm/config.py for what each setting means."""
    checkpoint = load_checkpoint(model_path)
    facts = {"checkpoint": str(checkpoint_path(model_path)),
             "n_params": checkpoint.config.n_params(),
             "tokenizer_size": len(checkpoint.tokenizer),
             "steps_trained": checkpoint.step,
             "config": checkpoint.config.to_dict()}
    if as_json:
        print_json(facts)
        return
    config = facts.pop("config")
    for name, value in {**facts, **config}.items():
        click.echo(f"{name:16} {value:,}" if isinstance(value, int) and not isinstance(value, bool)
                   else f"{name:16} {value}")


# ---- import-llama2c -------------------------------------------------------------------------

@main.command("import-llama2c")
@click.argument("model_bin", metavar="MODEL.bin")
@click.argument("tokenizer_bin", metavar="TOKENIZER.bin")
@click.option("--out", required=True, metavar="DIR", help="Directory for the tinylm checkpoint.")
def import_llama2c_command(model_bin, tokenizer_bin, out):
    """Convert a llama2.c model into a checkpoint.

    MODEL.bin in llama2.c's legacy export format and its TOKENIZER.bin (e.g. stories260K.bin
    and tok512.bin) become a tinylm checkpoint in DIR. See tinylm/llama2c.py."""
    click.echo(f"wrote {import_llama2c(model_bin, tokenizer_bin, out)}")


# ---- demo -----------------------------------------------------------------------------------

DEMO_STORIES, DEMO_HELD_OUT = 2000, 200
DEMO_PROMPTS = ["Once upon a time", "Tom went to the beach"]
DEMO_SAMPLING = dict(max_tokens=60, temperature=0.7, top_p=0.9)


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, metavar="DIR",
              help="Directory for the stories, the checkpoint and the metrics.")
@click.option("--steps", type=COUNT, default=1200, show_default=True, help="Training steps.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the stories, weights and samples.")
def demo_command(out, steps, seed):
    """Train a small model on built-in stories.

    The stories are ones tinylm writes itself (tinylm/corpus.py). Prints samples before and
    after training (a few minutes on a laptop CPU), then the loss on stories the model never
    saw. Afterwards, try `tinylm generate DIR --prompt ...` on the result."""
    out = Path(out)
    if checkpoint_path(out).exists():
        raise FileExistsError(f"{out} already holds a trained model: remove it or pass --out DIR")
    out.mkdir(parents=True, exist_ok=True)
    stories = make_stories(DEMO_STORIES + DEMO_HELD_OUT, seed)
    train_file, valid_file = out / "stories_train.txt", out / "stories_valid.txt"
    train_file.write_text("\n\n".join(stories[:DEMO_STORIES]) + "\n", encoding="utf-8")
    valid_file.write_text("\n\n".join(stories[DEMO_STORIES:]) + "\n", encoding="utf-8")
    args = training.TrainArgs(data=[train_file], val_data=[valid_file], out=out, split="blank",
                              vocab_size=512, dim=64, n_layers=4, n_heads=4, seq_len=128,
                              batch_size=16, steps=steps, lr=2e-3, seed=seed, eval_every=300)

    held_out = read_documents([valid_file], args.split)

    # The tokenizer and random weights that train() is about to start from (the same seeds).
    tokenizer = Tokenizer.train(read_documents(args.data, args.split), args.vocab_size)
    untrained = Transformer.initialize(training.model_config(args, len(tokenizer)), seed=seed)
    click.echo(click.style("A sample before training (random weights):", bold=True))
    print_sample(untrained, tokenizer, DEMO_PROMPTS[0], seed=seed, **DEMO_SAMPLING)
    before = evaluate(untrained, tokenizer, held_out)

    click.echo(click.style(f"\nTraining on {train_file} ({DEMO_STORIES} stories):", bold=True))
    training.train(args)
    model, tokenizer = load_model(out)
    click.echo(click.style("\nSamples after training:", bold=True))
    for prompt in DEMO_PROMPTS:
        print_sample(model, tokenizer, prompt, seed=seed, **DEMO_SAMPLING)

    after = evaluate(model, tokenizer, held_out)
    click.echo(click.style(f"\nLoss on {DEMO_HELD_OUT} stories it never saw:", bold=True))
    for when, result in (("before training", before), ("after training", after)):
        click.echo(f"  {when:16} {result['loss']:.3f} nats/token, {result['bpb']:.3f} bits/byte")
    click.echo(f"\nThe model is in {out}. Try: tinylm generate {out} --prompt \"Lily\"")
