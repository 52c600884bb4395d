"""The `tinylm` command: demo, train, distill, generate, eval, info, import-llama2c, quantize, run,
flash, chat, bench, serve.

Each command is a thin layer over the library (its help names the module). Mistakes a user can
make (a missing file, bad settings, too little data, a damaged checkpoint) reach this file as
OSError or ValueError, and come out as one line "error: ..." on stderr with exit status 1.
`tinylm --debug COMMAND ...` (or TINYLM_DEBUG=1) shows the whole traceback instead.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import click
from click.core import ParameterSource

from . import distill as distilling
from . import memplan
from . import train as training
from .checkpoint import checkpoint_path, load_checkpoint, load_model
from .corpus import make_stories
from .data import SPLITS, read_documents
from .evaluate import evaluate
from .generate import generate, stream_text
from .llama2c import import_llama2c
from .model import Transformer
from .partitions import parse_number
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

def sampling_options(command):
    """The prompt and sampling options of `generate` and `run` (each adds its own --seed)."""
    options = [
        click.option("--prompt", default="",
                     help="Text to continue. [default: none, start a new text]"),
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
    for option in reversed(options):
        command = option(command)
    return command


@main.command("generate")
@click.argument("model_path", metavar="MODEL")
@sampling_options
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
    which compares models with different tokenizers. MODEL may be a .bin: it is then run by
    the NumPy reference engine. See tinylm/evaluate.py."""
    model, tokenizer = load_scorable(model_path)
    documents = read_documents(paths, split)
    result = evaluate(model, tokenizer, documents)
    if as_json:
        print_json(dict(result, documents=len(documents)))
        return
    click.echo(f"loss    {result['loss']:.4f} nats/token\n"
               f"bpb     {result['bpb']:.4f} bits/byte\n"
               f"tokens  {result['tokens']:,} ({len(documents):,} documents, "
               f"{result['bytes']:,} bytes)")


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


@main.command("info")
@click.argument("model_path", metavar="MODEL")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as one JSON object.")
@click.option("--context", type=SOME, default=0,
              help="For a .bin: the context to count RAM for. [default: the model's; with "
                   "--target, the longest that fits, as the firmware chooses]")
@click.option("--target", type=click.Choice(list(memplan.BOARDS)),
              help="For a .bin: plan its flash and SRAM on this board, and exit with status 1 "
                   "if it does not fit (tinylm/memplan.py).")
@click.option("--flash-size", type=ByteCount(),
              help="With --target: the board's flash. [default: 2MB for rp2040, 4MB for the "
                   "ESP32s]")
@click.option("--psram", type=ByteCount(), default=0,
              help="With --target esp32 or esp32s3: the board's PSRAM, for the arena or a "
                   "model copy that SRAM cannot hold. [default: none]")
def info_command(model_path, as_json, context, target, flash_size, psram):
    """Show a model's shape, size and training steps.

    For a .bin: its quantization, sizes, and the RAM the C runtime needs. See
    tinylm/config.py for what each setting means."""
    if (flash_size or psram) and not target:
        raise click.UsageError("--flash-size and --psram go with --target")
    if is_bin(model_path):
        return bin_info(model_path, context, as_json, target, flash_size, psram)
    if target:
        raise click.UsageError("--target plans a .bin: quantize the model first")
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


# ---- distill --------------------------------------------------------------------------------

def print_distill_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print_json(summary)
    elif "waiting" not in summary:
        click.echo(f"teacher tokens {summary['teacher_tokens']:,}; student {summary['n_params']:,} "
                   f"parameters, step {summary['step']}; val loss {summary['val_loss']:.4f} "
                   f"nats/token, {summary['val_bpb']:.4f} bits/byte; checkpoint "
                   f"{summary['checkpoint']}")


@main.command("distill")
@click.option("--teacher", default=distilling.DEFAULT_TEACHER, show_default=True,
              metavar="ID_OR_PATH", help="A Hugging Face causal LM: hub id or local folder.")
@click.option("--data", multiple=True, metavar="FILE",
              help="Text for the teacher to read (UTF-8); repeat for more files.")
@click.option("--dataset", metavar="SOURCE", help="A `datasets` source for the teacher to read: "
              "data files or a hub id, optionally :SPLIT (the 'text' column).")
@click.option("--dataset-limit", type=COUNT, help="Use at most this many rows of --dataset.")
@click.option("--prompts", metavar="FILE", help="Chat prompts (one a line) for the teacher to "
                                                "answer through its chat template.")
@click.option("--synthetic", type=SOME, default=0, show_default=True,
              help="Built-in chat prompts for the teacher to answer.")
@click.option("--free", type=SOME, default=0, show_default=True,
              help="Texts for the teacher to write from <bos> (story-style teachers).")
@click.option("--val-data", multiple=True, metavar="FILE",
              help="Validation text; repeat for more files. [default: hold out documents]")
@click.option("--student-tokenizer", type=click.Choice(distilling.STUDENT_TOKENIZERS),
              default="own", show_default=True, help="own: BPE trained on the corpus, with the "
              "teacher's targets projected onto it; teacher: the teacher's (exact KD).")
@click.option("--top-k", "k", type=COUNT, default=32, show_default=True,
              help="Teacher tokens kept per position.")
@click.option("--undecided", type=click.Choice(distilling.UNDECIDED), default="share",
              show_default=True, help="Teacher probability the projection cannot pin on one "
              "student token: share it as the corpus continues, or leave it to the loss's rest.")
@click.option("--kd-weight", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Weight of the teacher's targets against the hard labels (0: plain "
                   "training, 1: pure distillation; 1 did best with --student-tokenizer "
                   "teacher).")
@click.option("--temperature", type=POSITIVE, default=1.0, show_default=True,
              help="Temperature of the distillation loss.")
@click.option("--shard", default="1/1", show_default=True, metavar="K/N",
              help="Make only every N-th shard of teacher targets, from the K-th (to split the "
                   "work across processes or GPUs sharing --out).")
@click.option("--shard-size", type=COUNT, default=64, show_default=True,
              help="Records per shard of teacher targets.")
@click.option("--max-new-tokens", type=COUNT, default=256, show_default=True,
              help="Longest text the teacher writes for a prompt or a free generation.")
@click.option("--sample-temperature", type=POSITIVE, default=1.0, show_default=True,
              help="Sampling temperature of the teacher's writing.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95,
              show_default=True, help="Nucleus sampling of the teacher's writing.")
@click.option("--sample-batch-size", type=COUNT, default=8, show_default=True,
              help="Texts the teacher writes at once.")
@click.option("--device", default="auto", show_default=True,
              help="Teacher device: auto (a GPU if there is one), cpu, cuda, mps.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
              show_default=True, help="Teacher dtype: auto is bfloat16 on a GPU, else float32.")
@click.option("--out", required=True, metavar="DIR",
              help="Directory for targets, token files, checkpoint and metrics.")
@train_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def distill_command(teacher, data, dataset, dataset_limit, prompts, synthetic, free, val_data,
                    student_tokenizer, k, undecided, shard, shard_size, max_new_tokens,
                    sample_temperature, top_p, sample_batch_size, device, dtype, out, split,
                    val_fraction, kd_weight, temperature, as_json, **options):
    """Distill a Hugging Face teacher into a tiny student.

    Stages: the teacher's top-k predictions on the corpus (reading texts, answering prompts,
    writing freely), the student's tokenizer, the predictions projected onto it, training with
    the distillation loss. Killed at any point, the same command continues where it stopped.
    See tinylm/distill.py and docs/distillation.md."""
    args = distilling.DistillArgs(
        out=out, teacher=teacher, data=list(data), split=split, dataset=dataset,
        dataset_limit=dataset_limit, prompts=prompts, synthetic=synthetic, free=free,
        val_data=list(val_data), val_fraction=val_fraction, k=k, shard_size=shard_size,
        max_new_tokens=max_new_tokens, sample_temperature=sample_temperature, top_p=top_p,
        sample_batch_size=sample_batch_size, device=device, dtype=dtype, shard=shard,
        student_tokenizer=student_tokenizer, undecided=undecided,
        training=dict(options, kd_weight=kd_weight, temperature=temperature))
    print_distill_summary(distilling.run(args), as_json)


# ---- demo -----------------------------------------------------------------------------------

DEMO_STORIES, DEMO_HELD_OUT, DEMO_TEACHER_WRITES = 2000, 200, 32
DEMO_PROMPTS = ["Once upon a time", "Tom went to the beach"]
DEMO_SAMPLING = dict(max_tokens=60, temperature=0.7, top_p=0.9)


def heading(text: str) -> None:
    click.echo(click.style(f"\n{text}", bold=True))


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, metavar="DIR",
              help="Directory for the stories, the teacher, the checkpoint and the metrics.")
@click.option("--steps", type=COUNT, default=1200, show_default=True, help="Training steps.")
@click.option("--teacher-steps", type=COUNT, default=500, show_default=True,
              help="Training steps of the tiny Gemma-3 teacher.")
@click.option("--stories", type=COUNT, default=DEMO_STORIES, show_default=True,
              help="Stories to train on.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the stories, weights and samples.")
def demo_command(out, steps, teacher_steps, stories, seed):
    """Distill a teacher into a small model, offline.

    Writes stories (tinylm/corpus.py); trains a tiny Gemma-3 teacher on them with PyTorch, as
    no real teacher can be downloaded offline (teacher/tiny_gemma.py); distills it into a
    NumPy student (tinylm/distill.py); prints samples before and after, the loss on stories
    neither model saw, and a sample of the student in int8 from the C runtime. About five
    minutes on 2 cores. Without the teacher extra (pip install -e ".[teacher]") the student
    trains on the stories alone. Afterwards, try `tinylm generate DIR --prompt ...`."""
    out = Path(out)
    if checkpoint_path(out).exists():
        raise FileExistsError(f"{out} already holds a trained model: remove it or pass --out DIR")
    out.mkdir(parents=True, exist_ok=True)
    texts = make_stories(stories + DEMO_HELD_OUT, seed)
    train_file, valid_file = out / "stories_train.txt", out / "stories_valid.txt"
    train_file.write_text("\n\n".join(texts[:stories]) + "\n", encoding="utf-8")
    valid_file.write_text("\n\n".join(texts[stories:]) + "\n", encoding="utf-8")
    held_out = read_documents([valid_file], "blank")
    student = dict(vocab_size=512, dim=64, n_layers=4, n_heads=4, seq_len=128, batch_size=16,
                   steps=steps, lr=2e-3, seed=seed, eval_every=300)
    try:
        pkg = distilling.teacher_package()
    except OSError as e:
        pkg = None
        click.echo(f"No teacher: {e}. The student trains on the stories alone.")

    if pkg:
        heading("The teacher")
        click.echo("No network, so no google/gemma-3-1b-it to download: first a tiny teacher of "
                   "the same architecture (transformers' Gemma3ForCausalLM) learns the stories "
                   "with PyTorch.")
        pkg.tiny_gemma.train_tiny_gemma(texts[:stories], out / "teacher", steps=teacher_steps,
                                        seed=seed, log=click.echo)
        teacher = pkg.load.load_teacher(str(out / "teacher"))
        click.echo(f"A story the teacher wrote:\n{teacher.complete('', seed=seed)}")
        teacher_loss = teacher.bits_per_byte(held_out)
        heading("Distillation: the teacher reads the stories and writes a few of its own")
        args = distilling.DistillArgs(
            out=out, teacher=str(out / "teacher"), data=[train_file], split="blank",
            free=DEMO_TEACHER_WRITES, max_new_tokens=80, sample_batch_size=32,
            val_data=[valid_file], k=16, training=dict(student, kd_weight=0.5))
        tokenizer, _ = distilling.prepare(args)
        train_args = args.train_args()
    else:
        train_args = training.TrainArgs(data=[train_file], val_data=[valid_file], out=out,
                                        split="blank", **student)
        tokenizer = Tokenizer.train(read_documents(train_args.data, "blank"), 512)

    # The random weights that training is about to start from (the same seed).
    untrained = Transformer.initialize(training.model_config(train_args, len(tokenizer)),
                                       seed=seed)
    heading("A sample before training (random weights):")
    print_sample(untrained, tokenizer, DEMO_PROMPTS[0], seed=seed, **DEMO_SAMPLING)
    before = evaluate(untrained, tokenizer, held_out)

    heading(f"Training on {train_file} ({stories} stories)"
            + (", with the teacher's predictions:" if pkg else ":"))
    if pkg:
        distilling.train_student(args, tokenizer)
    else:
        training.train(train_args)
    model, tokenizer = load_model(out)
    heading("Samples after training:")
    for prompt in DEMO_PROMPTS:
        print_sample(model, tokenizer, prompt, seed=seed, **DEMO_SAMPLING)

    after = evaluate(model, tokenizer, held_out)
    heading(f"Loss on {DEMO_HELD_OUT} stories it never saw:")
    for when, result in (("before training", before), ("after training", after)):
        click.echo(f"  {when:16} {result['loss']:.3f} nats/token, {result['bpb']:.3f} bits/byte")
    if pkg:
        click.echo(f"  {'the teacher':16} {teacher_loss:.3f} bits/byte")
    demo_int8(model, tokenizer, out / "model-int8.bin", seed)
    click.echo(f"\nThe model is in {out}. Try: tinylm generate {out} --prompt \"Lily\"")


def demo_int8(model, tokenizer, path: Path, seed: int) -> None:
    """Quantize to int8 and sample from the C runtime (needs a C compiler)."""
    size = write_bin(path, model.config, tokenizer, quantize_model(model, 8, DEFAULT_GROUP[8]),
                     8, DEFAULT_GROUP[8])
    heading(f"The student in int8 ({size:,} bytes, {path}), run by the C runtime:")
    try:
        engine = CEngine(path)
    except OSError as e:
        click.echo(f"(skipped: {e})")
        return
    prompt_ids = tokenizer.encode(DEMO_PROMPTS[0], bos=True)
    new_ids = engine.generate(prompt_ids, seed=seed, **DEMO_SAMPLING)
    click.echo(DEMO_PROMPTS[0] + "".join(stream_text(tokenizer, new_ids, prompt_ids)))


# ---- .bin files: quantize, run, and eval / info on them -------------------------------------

from .binformat import Q8, read_bin, write_bin                    # noqa: E402
from .engine import Engine                                        # noqa: E402
from .quantize import (DEFAULT_GROUP, calibration_sequences, error_table,  # noqa: E402
                       quantize_model)
from .runtime import CEngine, arena_bytes                         # noqa: E402
from .sampler import generate_ids                                 # noqa: E402


def is_bin(path) -> bool:
    return Path(path).suffix == ".bin"


def load_scorable(path):
    """A checkpoint's model, or a .bin's NumPy reference engine, with its tokenizer."""
    if is_bin(path):
        engine = Engine(read_bin(path))
        return engine, engine.tokenizer
    return load_model(path)


@main.command("quantize")
@click.argument("model_path", metavar="MODEL")
@click.option("--bits", type=click.Choice(["8", "4", "32"]), required=True,
              help="int8, int4 (two per byte), or 32 for float32 weights.")
@click.option("--group-size", type=click.IntRange(1, 256), default=None,
              help="Inputs per scale. [default: 32 for int8, 16 for int4]")
@click.option("-o", "--out", required=True, metavar="FILE.bin", help="The .bin to write.")
@click.option("--calib", "calib_paths", multiple=True, metavar="FILE",
              help="Text to calibrate int4 error compensation on. [default: the model's own "
                   "samples]")
@click.option("--eval", "eval_paths", multiple=True, metavar="FILE",
              help="Also score the float model and the .bin on this text, side by side.")
@click.option("--split", type=click.Choice(SPLITS), default="auto", show_default=True,
              help="How --calib and --eval text is cut into documents.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
def quantize_command(model_path, bits, group_size, out, calib_paths, eval_paths, split, as_json):
    """Write a checkpoint as a quantized .bin for the C runtime.

    Prints each tensor's quantization error; with --eval, the loss and bits per byte of the
    float model and of the .bin (run by the NumPy reference engine, which computes exactly
    what the C runtime does). See tinylm/quantize.py and docs/format.md."""
    bits = int(bits)
    model, tokenizer = load_model(model_path)
    group = 0 if bits == 32 else group_size or DEFAULT_GROUP[bits]
    calibration = None
    if bits == 4:
        documents = read_documents(calib_paths, split) if calib_paths else None
        calibration = calibration_sequences(model, tokenizer, documents)
    tensors = quantize_model(model, bits, group, calibration)
    size = write_bin(out, model.config, tokenizer, tensors, bits, group)
    result = {"out": out, "bytes": size, "bits": bits, "group_size": group,
              "tensors": error_table(model, tensors)}
    if eval_paths:
        documents = read_documents(eval_paths, split)
        result["float"] = evaluate(model, tokenizer, documents)
        result["quantized"] = evaluate(Engine(read_bin(out)), tokenizer, documents)
    if as_json:
        print_json(result)
        return
    click.echo(f"{'tensor':22} {'shape':>10} {'rel rms err':>12} {'max err':>9} {'bits/w':>7}")
    for row in result["tensors"]:
        click.echo(f"{row['tensor']:22} {row['shape']:>10} {row['rel_rms']:12.5f} "
                   f"{row['max_abs']:9.5f} {row['bits_per_weight']:7.2f}")
    click.echo(f"wrote {out} ({size:,} bytes)")
    if eval_paths:
        f, q = result["float"], result["quantized"]
        click.echo(f"{'':10} {'loss':>8} {'bpb':>8}\n{'float':10} {f['loss']:8.4f} {f['bpb']:8.4f}\n"
                   f"{'.bin':10} {q['loss']:8.4f} {q['bpb']:8.4f}\n"
                   f"{'change':10} {100 * (q['loss'] / f['loss'] - 1):+7.2f}% "
                   f"{100 * (q['bpb'] / f['bpb'] - 1):+7.2f}%")


@main.command("run")
@click.argument("model_path", metavar="MODEL.bin")
@sampling_options
@click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
              help="Seed of the sampler: the same seed gives the same text on both engines.")
@click.option("--engine", type=click.Choice(["c", "numpy"]), default="c", show_default=True,
              help="The C runtime (built on first use) or the NumPy reference.")
@click.option("--context", type=SOME, default=0,
              help="Tokens of context to reserve memory for. [default: the model's]")
def run_command(model_path, prompt, engine, context, **sampling):
    """Generate text from a .bin, printing it as it comes.

    --engine c builds the C runtime (tinylm/csrc) with the system C compiler on first use
    and caches it; --engine numpy runs the same arithmetic in NumPy (tinylm/engine.py)."""
    model = read_bin(model_path)
    tokenizer = model.tokenizer
    prompt_ids = tokenizer.encode(prompt, bos=True)
    if engine == "c":
        new_ids = CEngine(model_path, context).generate(prompt_ids, **sampling)
    else:
        new_ids = generate_ids(Engine(model, context), prompt_ids, **sampling)
    click.echo(prompt, nl=False)
    for piece in stream_text(tokenizer, new_ids, prompt_ids):
        click.echo(piece, nl=False)
    click.echo()


def bin_info(model_path, context, as_json, target=None, flash_size=None, psram=0):
    model = read_bin(model_path)
    c = model.config
    weights = sum(t.values.nbytes if t.scales is None else  # float32, or int8/int4 + scales
                  -(-t.values.size * (8 if t.dtype == Q8 else 4) // 8) + t.scales.nbytes
                  for t in model.tensors.values())
    context = context or c.max_seq_len
    facts = {"file": str(model_path), "bytes": model.file_size, "format_version": 1,
             "bits": model.bits, "group_size": model.group_size, "n_params": c.n_params(),
             "weight_bytes": weights, "tokenizer_size": len(model.tokenizer),
             "context": context, "arena_bytes": arena_bytes(c, context),
             "config": c.to_dict()}
    plan = memplan.plan(model_path, target, target_flash(target, flash_size), context,
                        psram) if target else None
    if as_json:
        print_json(dict(facts, plan=plan.to_dict()) if plan else facts)
    else:
        config = facts.pop("config")
        for name, value in {**facts, **config}.items():
            click.echo(f"{name:16} {value:,}" if isinstance(value, int) and
                       not isinstance(value, bool) else f"{name:16} {value}")
        click.echo(f"The runtime needs the file ({model.file_size:,} bytes, in place, e.g. in "
                   f"flash) and {facts['arena_bytes']:,} bytes of RAM for {context} tokens of "
                   "context.")
        if plan:
            print_plan(plan)
    if plan and not plan.fits:
        raise ValueError(plan.refusal())


def print_plan(plan) -> None:
    def share(used, room):
        return f"{used:>11,} of {room:,} ({100 * used / room:.0f}%)"

    click.echo(f"\nOn the {plan.board} ({plan.flash_size:,} bytes of flash, {plan.sram:,} of "
               f"SRAM{f', {plan.psram:,} of PSRAM' if plan.psram else ''}):")
    click.echo(f"  flash  firmware       {plan.firmware_flash:>11,} (before the model, at "
               f"{plan.firmware_flash:#x})")
    click.echo(f"         model          {share(plan.model_bytes, plan.model_room)}")
    click.echo(f"  SRAM   firmware       {plan.sram_reserve:>11,} (stacks, its state, the SDK's)")
    click.echo(f"         arena          {share(plan.arena_bytes, plan.arena_room)} for "
               f"{plan.context} tokens of context, in {plan.arena_in.upper()}")
    if plan.context < plan.model_context:
        click.echo(f"  the model's {plan.model_context} tokens of context do not fit: the "
                   f"firmware uses the longest that does, {plan.context}")
    click.echo("  weights read in place from flash" if plan.weights == "flash" else
               f"  weights copied into {plan.weights.upper()} at boot (faster than flash)")
    click.echo("  fits" if plan.fits else "  does not fit")


# ---- chat, flash ----------------------------------------------------------------------------
# Talking to boards and flashing them. pyserial and esptool (the `flash` extra) are imported
# only when one of these commands runs.

from .chat import chat                                            # noqa: E402
from .esp32_flash import flash_esp32                              # noqa: E402
from .rp2040_flash import FLASH_SIZE, MODEL_OFFSET, flash_rp2040  # noqa: E402
from . import esp32_flash, rp2040_flash                           # noqa: E402


def target_flash(target: str, flash_size: int | None) -> memplan.FlashRoom:
    """Where `tinylm flash TARGET` puts a model (docs/flashing.md), for `info --target`."""
    if target == "rp2040":
        return rp2040_flash.flash_room(MODEL_OFFSET, flash_size or FLASH_SIZE)
    partition = esp32_flash.model_partition(None, None)
    return esp32_flash.flash_room(partition, flash_size or esp32_flash.FLASH_SIZE)


@main.command("chat")
@click.option("--port", required=True,
              help="The board's serial port: /dev/ttyUSB0, /dev/ttyACM0, COM3, or a pyserial URL.")
@click.option("--baud", type=COUNT, default=115200, show_default=True,
              help="Baud rate of a UART (a USB port ignores it).")
@click.option("--prompt", default=None,
              help="Send this one prompt, print the text, and exit (for scripts). "
                   "[default: read prompts, one a line, until the end of input]")
@click.option("--timeout", type=POSITIVE, default=10.0, show_default=True,
              help="Seconds of silence from the board before giving up.")
@click.pass_context
def chat_command(ctx, port, baud, prompt, timeout):
    """Talk to a model running on a board, over its serial port.

    Each prompt goes to the board as one line; the prompt and the text the board makes are
    printed as it streams in, then (on stderr) the tokens made and their speed measured on
    the board. Ctrl-C stops an answer; at the prompt, Ctrl-C or Ctrl-D quits. The protocol
    is docs/protocol.md; see tinylm/chat.py. Needs pyserial: pip install 'tinylm[flash]'."""
    try:
        ctx.exit(chat(port, baud, prompt, timeout))
    except KeyboardInterrupt:
        click.echo(err=True)
        ctx.exit(130)


def board_context_option(command):
    """--context of the flash commands: what the check before writing plans for."""
    return click.option(
        "--context", type=SOME, default=0,
        help="The context the board must have SRAM for; the check before writing refuses the "
             "model otherwise. [default: the longest that fits, as the firmware chooses]"
    )(command)


@main.group("flash")
def flash_group():
    """Write a model (.bin) into a board's flash.

    docs/flashing.md says where the model goes on each board."""


@flash_group.command("esp32")
@click.argument("model_path", metavar="MODEL.bin")
@click.option("--port", default="auto", show_default=True,
              help="Serial port, or auto: the one port whose USB ids are those of an ESP32 "
                   "board's USB-serial chip (CP210x, CH340, FTDI, Espressif USB).")
@click.option("--baud", type=COUNT, default=921600, show_default=True,
              help="Baud rate for writing (esptool connects at 115200, then switches).")
@click.option("--chip", default="auto", show_default=True,
              help="esp32, esp32s3, esp32c3, ...; auto: ask the chip (with --firmware: the "
                   "build's target).")
@click.option("--partitions", "partitions_csv", type=click.Path(dir_okay=False), metavar="CSV",
              help="The partition table the firmware was built with. [default: "
                   "firmware_esp32/partitions.csv; with --firmware, the build's table]")
@click.option("--firmware", type=click.Path(file_okay=False), metavar="BUILD_DIR",
              help="Also write the bootloader, partition table and app of this `idf.py build` "
                   "folder.")
@board_context_option
@click.option("--psram", type=ByteCount(), default=0,
              help="The board's PSRAM, for the arena or a model copy that SRAM cannot hold. "
                   "[default: none]")
def flash_esp32_command(model_path, **options):
    """Write a model into the model partition of an ESP32, with esptool.

    The model must fit in the partition named "model", and its runtime in the chip's RAM
    (tinylm/memplan.py); that is checked before anything is written. esptool then erases,
    writes and verifies (by MD5) each region. See tinylm/esp32_flash.py. Needs esptool:
    pip install 'tinylm[flash]'."""
    flash_esp32(model_path, echo=click.echo, **options)


@flash_group.command("rp2040")
@click.argument("model_path", metavar="MODEL.bin")
@click.option("--drive", type=click.Path(file_okay=False, exists=True),
              help="The RPI-RP2 drive of a board in BOOTSEL mode. [default: looked for among "
                   "the mounted drives]")
@click.option("--firmware", type=click.Path(dir_okay=False, exists=True), metavar="APP.uf2",
              help="A firmware UF2 (from a pico-sdk build) to write in the same file.")
@click.option("--offset", type=ByteCount(), default=MODEL_OFFSET,
              help="Where the model goes, from the start of flash (the firmware must look "
                   f"there). [default: {MODEL_OFFSET:#x}, 1 MiB]")
@click.option("--flash-size", type=ByteCount(), default=FLASH_SIZE,
              help=f"The board's flash size. [default: {FLASH_SIZE >> 20}M, a Raspberry Pi Pico]")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE.uf2",
              help="Where to write the UF2 file. [default: beside MODEL.bin, as MODEL.uf2]")
@board_context_option
def flash_rp2040_command(model_path, **options):
    """Write a model for an RP2040 as a UF2 file, and onto the board.

    First the model must fit in the flash and its runtime in the SRAM (tinylm/memplan.py).
    The UF2 is copied onto the board's RPI-RP2 drive if one is mounted, else loaded with
    picotool if that is installed; otherwise the message says what to do with the file. See
    tinylm/rp2040_flash.py and tinylm/uf2.py."""
    flash_rp2040(model_path, echo=click.echo, **options)


from . import emulate_riscv, emulate_rp2040                        # noqa: E402

BENCH_LABELS = {   # the figures of emulate_rp2040.bench, as `tinylm bench` prints them
    "cycles_per_prompt_token": "cycles per prompt token",
    "cycles_per_generated_token": "cycles per generated token",
    "cycles_per_mac": "cycles per weight MAC (a whole generated token)",
    "matrix_cycles_per_mac": "cycles per MAC, matrix kernels alone",
    "tok_s_133mhz_emulated": "tok/s at 133 MHz, emulated (compute)",
    "tok_s_xip_flash_bound": "tok/s bound by XIP flash reads",
    "tok_s_headline": "tok/s, the lower of the two",
    "tok_s_dual_core_estimate": "tok/s, both cores (estimate: rows / 2)",
    "peak_sram_bytes": "peak SRAM bytes (image + arena + stack)",
}
ESP32C3_BENCH_LABELS = {   # the figures of emulate_riscv.bench
    "instructions_per_prompt_token": "instructions per prompt token",
    "instructions_per_generated_token": "instructions per generated token",
    "instructions_per_mac": "instructions per weight MAC (whole token)",
    "tok_s_160mhz_1ipc": "tok/s at 160 MHz, 1 instruction per cycle",
    "tok_s_flash_bound": "tok/s bound by flash reads (cache misses)",
    "tok_s_headline": "tok/s, the lower of the two",
    "arena_bytes": "arena bytes (RAM besides the model)",
}
BENCH_TARGETS = {   # the emulator, the labels of its figures, what they assume
    "rp2040": (emulate_rp2040, BENCH_LABELS, "single core"),
    "esp32c3": (emulate_riscv, ESP32C3_BENCH_LABELS,
                "single core, assuming one instruction per cycle at 160 MHz"),
}


@main.command("bench")
@click.argument("model_path", metavar="MODEL.bin", type=click.Path(dir_okay=False, exists=True))
@click.option("--target", type=click.Choice(list(BENCH_TARGETS)), required=True,
              help="rp2040: the bare-metal firmware in the rp2040js emulator, one core; "
                   "esp32c3: the runtime built for rv32imc, instructions counted in qemu.")
@click.option("--prompt", default="Once upon a time", show_default=True)
@click.option("--max-tokens", type=SOME, default=64, show_default=True,
              help="Tokens to generate (the context the benchmark reaches: prompt + these).")
@click.option("--seed", type=click.IntRange(0, 2 ** 32 - 1), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--profile", is_flag=True,
              help="Instead, the instructions (esp32c3) or cycles (rp2040) of a generated "
                   "token by function (slower: every instruction is logged).")
def bench_command(model_path, target, prompt, max_tokens, seed, as_json, profile):
    """Measure a model on a microcontroller, emulated: cycles per token, tok/s, memory.

    Needs arm-none-eabi-gcc, node, and rp2040js (npm install in
    firmware_rp2040/baremetal/emulator). The emulator counts cycles but not XIP-cache misses,
    so the flash-bandwidth bound on tok/s for the weight bytes read per token is shown too,
    and the headline is the lower of the two. See tinylm/emulate_rp2040.py.

    esp32c3 needs riscv64-unknown-elf-gcc and qemu-system-riscv32: qemu counts the
    instructions exactly (minstret), and tok/s assumes one instruction per cycle at 160 MHz;
    it has no cache model either, so the flash bound is shown the same way. See
    tinylm/emulate_riscv.py."""
    emulator, labels, assumptions = BENCH_TARGETS[target]
    reason = emulator.missing_tools()
    if reason:
        raise click.ClickException(reason)
    if profile:
        print_profile(emulator.profile(model_path, prompt.encode(), max_tokens, seed), as_json,
                      "instructions" if emulator is emulate_riscv else "cycles")
        return
    figures = emulator.bench(model_path, prompt.encode(), max_tokens, seed)
    if as_json:
        print_json(figures)
        return
    click.echo(f"{model_path} on {target}: {figures['prompt_tokens']} prompt tokens, "
               f"{figures['generated_tokens']} generated, {assumptions}")
    for key, label in labels.items():
        value = figures[key]
        click.echo(f"  {label:44} -" if value is None else
                   f"  {label:44} {value:,}" if isinstance(value, int) else
                   f"  {label:44} {value:,.2f}")


def print_profile(by_function: dict[str, int], as_json: bool, unit: str) -> None:
    if as_json:
        print_json(by_function)
        return
    total = sum(by_function.values())
    click.echo(f"{unit} per generated token: {total:,} (printing its line included)")
    for name, count in by_function.items():
        click.echo(f"  {count:12,} {100 * count / total:5.1f}%  {name}")


# ---- serve ----------------------------------------------------------------------------------

from .runtime import HostBoard                                     # noqa: E402


@main.command("serve")
@click.argument("model_path", metavar="MODEL.bin", type=click.Path(dir_okay=False, exists=True))
@click.option("--seed", type=click.IntRange(0, 2 ** 64 - 1), default=0, show_default=True,
              help="Seed of the sampler, reset for every prompt as on a board.")
@click.option("--max-tokens", type=SOME, default=256, show_default=True,
              help="Most tokens per answer.")
@click.option("--context", type=SOME, default=0,
              help="Tokens of context to reserve memory for. [default: the model's]")
@click.pass_context
def serve_command(ctx, model_path, seed, max_tokens, context):
    """Play a board on this computer: serve MODEL.bin on a pseudo-terminal for `tinylm chat`.

    Runs the firmware's device loop (tinylm/csrc/serve.c, built with the system C compiler)
    with the sampling of `tinylm run`, until Ctrl-C. See HostBoard in tinylm/runtime.py."""
    read_bin(model_path)        # a file that is no usable model: one line of error, at once
    with HostBoard(model_path, seed, max_tokens, context) as board:
        click.echo(f"serving {model_path} on {board.path}; connect with: "
                   f"tinylm chat --port {board.path}   (Ctrl-C stops)")
        try:
            status = board.process.wait()
        except KeyboardInterrupt:
            return
    ctx.exit(1 if status else 0)    # the device loop ended by itself: it said why on stderr
