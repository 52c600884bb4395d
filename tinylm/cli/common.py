"""What the commands share: option sets (training settings, sampling), types, printing."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import click

from ..boards.partitions import parse_number
from ..export.binformat import read_bin
from ..runtime.engine import Engine
from ..text.data import SPLITS
from ..text.tokenizer import KINDS
from ..training import loop as training
from ..training.checkpoint import load_checkpoint
from ..training.generate import stream_text


def print_json(obj) -> None:
    click.echo(json.dumps(obj))


def prompt_to_run(tokenizer, chat, prompt: str, question: str | None, model_path):
    """(what to print before the new tokens, the prompt's ids): the prompt after <bos>, or a
    question in a chat model's turn (`chat`, its ChatTurn), of which only the reply shows."""
    if question is None:
        return prompt, tokenizer.encode(prompt, bos=True)
    if prompt:
        raise click.UsageError("--prompt continues a text and --chat asks a question: give one")
    if chat is None:
        raise ValueError(f"{model_path} is not a chat model (it was not trained on chat turns): "
                         f"give it a text to continue with --prompt")
    return "", chat.prompt_ids(tokenizer, question)


def print_stream(tokenizer, prompt: str, prompt_ids, new_ids, context: int) -> None:
    """Print the prompt and the new tokens' text as they come; then, on stderr, why the text
    stopped if that was the model's context filling up rather than its own end."""
    click.echo(prompt, nl=False)
    made = 0

    def counted():
        nonlocal made
        for token in new_ids:
            made += 1
            yield token
    for piece in stream_text(tokenizer, counted(), prompt_ids):
        click.echo(piece, nl=False)  # echo flushes, so the text appears as it is made
    click.echo()
    if len(prompt_ids) + made >= context:
        click.echo(f"(stopped: the context of {context} tokens is full)", err=True)


# What each kind of command takes as MODEL, for the error when it is given another kind.
TAKES = {"directory": "a model directory (made by train or distill) or its checkpoint.npz",
         "bin": "a .bin model file (made by quantize)",
         "either": "a model directory, its checkpoint.npz, or a .bin model file"}


def check_model_path(path, command: str, takes: str) -> None:
    """Refuse a path of the wrong kind for `tinylm command`, saying which command takes it.
    A path that does not exist is left to the loaders, which say so."""
    path = Path(path)
    if not path.exists():
        return
    directory, checkpoint, model_bin = path.is_dir(), path.suffix == ".npz", is_bin(path)
    if {"directory": directory or checkpoint, "bin": model_bin and not directory,
            "either": directory or checkpoint or model_bin}[takes]:
        return
    what = ("a directory" if directory else "a .bin model file" if model_bin else
            "neither a checkpoint nor a .bin model file")
    hint = ("; `tinylm run` and `tinylm eval` take .bin files" if model_bin else
            "; `tinylm generate` and `tinylm quantize` take model directories" if directory
            else "")
    raise ValueError(f"{path} is {what}: `tinylm {command}` takes {TAKES[takes]}{hint}")


# TrainArgs fields settable from the command line, with help; defaults come from TrainArgs.
# Ranges catch impossible values here, with the option's name in the message.
COUNT, SOME = click.IntRange(min=1), click.IntRange(min=0)
POSITIVE, NON_NEGATIVE = click.FloatRange(min=0, min_open=True), click.FloatRange(min=0)
TRAIN_OPTIONS = [
    ("split", click.Choice(SPLITS), "How text is cut into documents (see tinylm/text/data.py)."),
    ("val_fraction", click.FloatRange(0, 1, min_open=True, max_open=True),
     "Fraction of the tokens held out for validation, without --val-data."),
    ("vocab_size", COUNT, "Tokens in the vocabulary, learned from the data (--tokenizer)."),
    ("tokenizer", click.Choice(KINDS), "Kind of vocabulary: bpe (byte-level BPE, 260 tokens "
                                       "or more), char (a token per character of the text, "
                                       "and one for any other byte), auto (char below 260)."),
    ("dim", COUNT, "Width of the residual stream."),
    ("n_layers", COUNT, "Transformer blocks."),
    ("n_heads", COUNT, "Query heads."),
    ("n_kv_heads", COUNT, "Key/value heads; fewer than --n-heads is grouped-query attention. "
                          "[default: n_heads]"),
    ("head_dim", COUNT, "Width of each head. [default: dim / n_heads]"),
    ("hidden_dim", COUNT, "Hidden width of the SwiGLU MLP. [default: 8/3 dim]"),
    ("seq_len", COUNT, "Tokens per training window, and the model's context length; with "
                       "--resume it may grow (train short, then widen the context)."),
    ("batch_size", COUNT, "Windows per step."),
    ("separate_documents", bool, "Each position attends within its own document of a window "
                                 "only, as it will when the model is used (from its <bos>)."),
    ("steps", COUNT, "Optimizer steps in all; continuing a run trains up to this step."),
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
        default, flag = TRAIN_DEFAULTS[name], "--" + name.replace("_", "-")
        if type_ is bool:
            command = click.option(f"{flag}/--no-{flag[2:]}", default=default, help=help_)(
                command)
        else:
            command = click.option(flag, type=type_, default=default,
                                   show_default=default is not None, help=help_)(command)
    return command


def sampling_options(command):
    """The prompt and sampling options of `generate` and `run` (each adds its own --seed)."""
    options = [
        click.option("--prompt", default="",
                     help="Text to continue. [default: none, start a new text]"),
        click.option("--chat", "question", metavar="QUESTION",
                     help="Ask a chat model this question, in the turn it was trained on "
                          "(<bos> <|user|> QUESTION <|assistant|>), and print only its reply."),
        click.option("--max-tokens", type=SOME, default=256, show_default=True,
                     help="Most tokens to generate."),
        click.option("--temperature", type=NON_NEGATIVE, default=1.0, show_default=True,
                     help="Below 1: safer choices; above 1: wilder ones; "
                          "0: always the most likely token."),
        click.option("--top-k", type=SOME, default=0, show_default=True,
                     help="Sample from the k most likely tokens only (0: all)."),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9,
                     show_default=True, help="Sample from the most likely tokens that together "
                                             "have this probability."),
    ]
    return with_options(options)(command)


def with_options(options: list):
    """A decorator adding click `options` to a command, listed in their order in --help."""
    def add(command):
        for option in reversed(options):
            command = option(command)
        return command
    return add


class ByteCount(click.ParamType):
    """A size or offset in bytes: 1048576, 0x100000, 1024K, 1M or 2MB."""
    name = "bytes"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_number(re.sub(r"(?i)(?<=[km])i?b\s*$", "", value))   # 2MB, 2MiB
        except ValueError as e:
            self.fail(str(e), param, ctx)


def is_bin(path) -> bool:
    return Path(path).suffix == ".bin"


def load_scorable(path, command: str):
    """A checkpoint's model, or a .bin's NumPy reference engine, with its tokenizer and its
    chat turn (None for a text model)."""
    check_model_path(path, command, "either")
    if is_bin(path):
        engine = Engine(read_bin(path))
        return engine, engine.tokenizer, engine.model.chat
    checkpoint = load_checkpoint(path)
    return checkpoint.model(), checkpoint.tokenizer, checkpoint.chat
