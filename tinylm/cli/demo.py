"""`tinylm demo`: the whole pipeline, offline, on stories it writes itself."""
from __future__ import annotations

from pathlib import Path

import click

from ..core.model import Transformer
from ..distillation import stages as distilling
from ..export.binformat import write_bin
from ..export.quantize import DEFAULT_GROUP, quantize_model
from ..runtime.c_engine import CEngine
from ..text.corpus import make_stories
from ..text.data import read_documents
from ..text.tokenizer import Tokenizer
from ..training import loop as training
from ..training.checkpoint import checkpoint_path, load_model
from ..training.evaluate import evaluate
from ..training.generate import stream_text
from .common import COUNT, print_sample

DEMO_STORIES, DEMO_HELD_OUT, DEMO_TEACHER_WRITES = 2000, 200, 32
DEMO_PROMPTS = ["Once upon a time", "Tom went to the beach"]
DEMO_SAMPLING = dict(max_tokens=60, temperature=0.7, top_p=0.9)


def heading(text: str) -> None:
    click.echo(click.style(f"\n{text}", bold=True))


@click.command("demo")
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

    Writes stories (tinylm/text/corpus.py); trains a tiny Gemma-3 teacher on them with PyTorch, as
    no real teacher can be downloaded offline (teacher/tiny_gemma.py); distills it into a
    NumPy student (tinylm/distillation/stages.py); prints samples before and after, the loss on
    stories neither model saw, and a sample of the student in int8 from the C runtime. About five
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
    model_bin = out / "model-int8.bin"
    demo_int8(model, tokenizer, model_bin, seed)
    next_steps(out, model_bin)


def next_steps(out: Path, model_bin: Path) -> None:
    heading("Next")
    plot = out / "loss.png"
    click.echo(f"  the loss curve:           {plot}" if plot.exists() else
               "  the loss curve:           not drawn: matplotlib is not installed "
               "(pip install matplotlib)")
    click.echo(f"  sample the model:         tinylm generate {out} --prompt \"Lily\"\n"
               f"  run the int8 file in C:   tinylm run {model_bin} --prompt \"Lily\"\n"
               f"  play a board on this computer: tinylm serve {model_bin}, then "
               "tinylm chat --port /dev/pts/N (as serve says)\n"
               f"  put it on a board:        tinylm info {model_bin} --target rp2040, then "
               f"tinylm flash rp2040 {model_bin} (docs/flashing.md)")


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
