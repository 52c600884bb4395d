"""`tinylm distill`: a teacher's predictions, then a student trained on them; `tinylm
synthesize`: chat data the teacher writes for it."""
from __future__ import annotations

import click

from ..distillation import stages as distilling
from ..distillation import synthetic
from .common import COUNT, POSITIVE, SOME, print_json, train_options, with_options
from .train import INTERRUPTED, print_summary


def print_distill_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print_json(summary)
    elif "waiting" not in summary:
        click.echo(f"teacher tokens {summary['teacher_tokens']:,}; student "
                   f"{summary['n_params']:,} parameters; ", nl=False)
        print_summary(summary, as_json=False)


def teacher_options(shard_help: str, shard_size_help: str):
    """The options `distill` and `synthesize` share: how the teacher writes and where it
    runs, and how its work is split into shards."""
    options = [
        click.option("--sample-temperature", type=POSITIVE, default=1.0, show_default=True,
                     help="Sampling temperature of the teacher's writing."),
        click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.95,
                     show_default=True, help="Nucleus sampling of the teacher's writing."),
        click.option("--sample-batch-size", type=COUNT, default=8, show_default=True,
                     help="Texts the teacher writes at once."),
        click.option("--shard-size", type=COUNT, default=64, show_default=True,
                     help=shard_size_help),
        click.option("--shard", default="1/1", show_default=True, metavar="K/N",
                     help=shard_help),
        click.option("--device", default="auto", show_default=True,
                     help="Teacher device: auto (a GPU if there is one), cpu, cuda, mps."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16"]),
                     default="auto", show_default=True,
                     help="Teacher dtype: auto is bfloat16 on a GPU, else float32."),
    ]
    return with_options(options)


@click.command("distill")
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
@click.option("--max-new-tokens", type=COUNT, default=256, show_default=True,
              help="Longest text the teacher writes for a prompt or a free generation.")
@teacher_options(shard_help="Make only every N-th shard of teacher targets, from the K-th (to "
                            "split the work across processes or GPUs sharing --out).",
                 shard_size_help="Records per shard of teacher targets.")
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
    the distillation loss. Killed at any point, the same command continues where it stopped;
    Ctrl-C while training saves a checkpoint and stops with exit status 130. See
    tinylm/distillation/stages.py and docs/distillation.md."""
    args = distilling.DistillArgs(
        out=out, teacher=teacher, data=list(data), split=split, dataset=dataset,
        dataset_limit=dataset_limit, prompts=prompts, synthetic=synthetic, free=free,
        val_data=list(val_data), val_fraction=val_fraction, k=k, shard_size=shard_size,
        max_new_tokens=max_new_tokens, sample_temperature=sample_temperature, top_p=top_p,
        sample_batch_size=sample_batch_size, device=device, dtype=dtype, shard=shard,
        student_tokenizer=student_tokenizer, undecided=undecided,
        training=dict(options, kd_weight=kd_weight, temperature=temperature))
    summary = distilling.run(args)
    print_distill_summary(summary, as_json)
    if summary.get("interrupted"):
        click.get_current_context().exit(INTERRUPTED)


@click.command("synthesize")
@click.option("--teacher", default=distilling.DEFAULT_TEACHER, show_default=True,
              metavar="ID_OR_PATH", help="A Hugging Face chat model: hub id or local folder.")
@click.option("--topic", help="What the prompts are about; the teacher writes the first ones.")
@click.option("--seeds", metavar="FILE", help="Instead, a few prompts to start from, one a line.")
@click.option("--count", type=COUNT, default=1000, show_default=True,
              help="Prompts in the dataset, each with the teacher's reply.")
@click.option("--seed-count", type=COUNT, default=16, show_default=True,
              help="With --topic: the prompts the teacher writes first.")
@click.option("--similarity", type=click.FloatRange(0, synthetic.MOST_SIMILAR, min_open=True),
              default=0.8,
              show_default=True, help="A new prompt whose words are this similar (Jaccard, "
              "estimated by MinHash) to a kept prompt's is dropped.")
@click.option("--prompt-tokens", type=COUNT, default=96, show_default=True,
              help="Longest prompt the teacher writes.")
@click.option("--max-new-tokens", type=COUNT, default=256, show_default=True,
              help="Longest reply the teacher writes.")
@teacher_options(shard_help="Write only every N-th shard, from the K-th (N processes or GPUs "
                            "sharing --out; each waits for the others at the end of a round).",
                 shard_size_help="Requests to the teacher per shard file.")
@click.option("--seed", default=0, show_default=True, help="Seed of the teacher's sampling.")
@click.option("--out", required=True, metavar="DIR",
              help="The dataset's directory (its work in DIR/work).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def synthesize_command(as_json, sample_temperature, sample_batch_size, **settings):
    """Have a teacher write chat data: prompts, then its replies, as a `datasets` dataset.

    From a topic or seed prompts, each round asks the teacher for a prompt about a new subject
    and a harder one for every prompt of the round before; near-duplicates are dropped
    (MinHash); then the teacher answers them all. Killed at any point, the same command
    continues where it stopped. `tinylm distill --dataset DIR` distills from the result. See
    tinylm/distillation/synthetic.py and docs/distillation.md."""
    summary = synthetic.run(synthetic.SynthesisArgs(
        **settings, temperature=sample_temperature, batch_size=sample_batch_size), log=click.echo)
    if as_json:
        print_json(summary)
