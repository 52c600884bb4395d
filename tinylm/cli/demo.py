"""`tinylm demo`: the whole pipeline, offline, on stories and questions it writes itself."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from ..core.model import Transformer
from ..distillation import stages as distilling
from ..export.binformat import write_bin
from ..export.quantize import DEFAULT_GROUP, quantize_model
from ..runtime.c_engine import CEngine
from ..text.corpus import Question, answer_in, make_questions, make_stories
from ..training import loop as training
from ..training.checkpoint import checkpoint_path, load_checkpoint
from ..training.evaluate import evaluate_chat
from ..training.generate import generate
from .common import COUNT

DEMO_STORIES, DEMO_QUESTIONS, DEMO_HELD_OUT = 2000, 2000, 100
TEACHER_STEPS = 500
STUDENT = dict(vocab_size=512, dim=64, n_layers=4, n_heads=4, seq_len=128, batch_size=16,
               lr=2e-3, eval_every=300)
SHOWN = 3               # held-out questions whose answers are printed
ANSWER_TOKENS = 24      # longest reply to a question (the replies have about ten)


def heading(text: str) -> None:
    click.echo(click.style(f"\n{text}", bold=True))


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, metavar="DIR",
              help="Directory for the stories, the teacher, the checkpoint and the metrics.")
@click.option("--steps", type=COUNT, default=1200, show_default=True, help="Training steps.")
@click.option("--teacher-steps", type=COUNT, default=TEACHER_STEPS, show_default=True,
              help="Training steps of the tiny Gemma-3 teacher.")
@click.option("--stories", type=COUNT, default=DEMO_STORIES, show_default=True,
              help="Stories to train on.")
@click.option("--questions", type=COUNT, default=DEMO_QUESTIONS, show_default=True,
              help="Questions about short stories to train on.")
@click.option("--held-out", type=COUNT, default=DEMO_HELD_OUT, show_default=True,
              help="Questions about stories no model sees in training, to score the answers.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of the stories, questions, weights and samples.")
def demo_command(out, steps, teacher_steps, stories, questions, held_out, seed):
    """Distill a teacher into a small chat model, offline, and ask it questions.

    Writes stories and questions about them (tinylm/text/corpus.py); trains a tiny Gemma-3
    teacher on both with PyTorch, as no real teacher can be downloaded offline
    (teacher/tiny_gemma.py); lets it answer the training questions, and distills its replies
    into a NumPy student (tinylm/distillation/stages.py); prints the student's answers to
    questions about stories no model saw, before and after, how many are right, and an answer
    of the student in int8 from the C runtime. 3 1/2 to 10 minutes on 2 cores, by how busy
    they are. Without the teacher extra (pip install -e ".[teacher]") the student trains on
    the stories and the questions' true answers. Afterwards, try
    `tinylm chat --model DIR/model-int8.bin`."""
    out = Path(out)
    if checkpoint_path(out).exists():
        raise FileExistsError(f"{out} already holds a trained model: remove it or pass --out DIR")
    corpus = write_corpus(out, stories, questions, held_out, seed)
    student = dict(STUDENT, steps=steps, seed=seed)
    try:
        pkg = distilling.teacher_package()
    except OSError as e:
        pkg = None
        click.echo(f"No teacher: {e}. The student trains on the stories and the questions' "
                   f"true answers.")

    teacher_accuracy = None
    if pkg:
        heading("The teacher")
        click.echo("No network, so no google/gemma-3-1b-it to download: first a tiny teacher of "
                   "the same architecture (transformers' Gemma3ForCausalLM) learns the stories "
                   "and the answers to questions about them, with PyTorch.")
        teacher = train_teacher(pkg, out / "teacher", corpus, teacher_steps, seed, click.echo)
        replies = teacher.answer([q.prompt for q in corpus.test_questions], ANSWER_TOKENS)
        teacher_accuracy = accuracy(corpus.test_questions, replies)
        show_exchange(corpus.test_questions[0].prompt, replies[0], "the teacher")
        heading("Distillation: the teacher reads the stories and answers the training "
                "questions; the student learns from its predictions")
        args = distill_args(out, out / "teacher", corpus, dict(student, kd_weight=0.5))
        tokenizer, _ = distilling.prepare(args)
        train_args = args.train_args()
    else:
        train_args = training.TrainArgs(data=[corpus.stories_file], chat_data=[corpus.answers],
                                        val_data=[corpus.valid_file], out=out, split="blank",
                                        **student)
        tokenizer = training.prepare(train_args)

    # The random weights that training is about to start from (the same seed).
    untrained = Transformer.initialize(training.model_config(train_args, len(tokenizer)),
                                       seed=seed)
    turn, test_questions = tokenizer.chat_turn(), corpus.test_questions
    heading("Before training (random weights), the student answers:")
    before = score(untrained, tokenizer, turn, test_questions)

    heading(f"Training on {corpus.stories_file} ({stories} stories) and {questions} questions"
            + (", with the teacher's replies and predictions:" if pkg else ":"))
    if pkg:
        distilling.train_student(args, tokenizer)
    else:
        training.start(train_args, tokenizer)
    checkpoint = load_checkpoint(out)
    model = checkpoint.model()
    heading("After training, the student answers:")
    after = score(model, tokenizer, checkpoint.chat, test_questions)

    heading(f"{len(test_questions)} questions about stories that no model saw:")
    for who, (right, bpb) in (("before training", before), ("after training", after)):
        click.echo(f"  {who:16} {right:4.0%} answered right, {bpb:.3f} bits/byte on the replies")
    if teacher_accuracy is not None:
        click.echo(f"  {'the teacher':16} {teacher_accuracy:4.0%} answered right")
    model_bin = out / "model-int8.bin"
    demo_int8(model, tokenizer, checkpoint.chat, model_bin, test_questions)
    next_steps(out, model_bin, corpus.held_out, test_questions[0].prompt)


@dataclass
class Corpus:
    """The demo's files (in its --out directory) and questions."""
    stories_file: Path          # stories to train on, a blank line between them
    valid_file: Path            # stories no model trains on
    prompts: Path               # the training questions, one a line, for the teacher to answer
    answers: Path               # the training questions with their true replies (JSON lines)
    held_out: Path              # questions about stories no model sees, with their replies
    stories: list[str]
    train_questions: list[Question]
    test_questions: list[Question]


def write_corpus(out: Path, stories: int, questions: int, held_out: int, seed: int) -> Corpus:
    out.mkdir(parents=True, exist_ok=True)
    texts = make_stories(stories + held_out, seed)
    asked = make_questions(questions + held_out, seed)
    corpus = Corpus(out / "stories_train.txt", out / "stories_valid.txt",
                    out / "questions_train.txt", out / "questions_train.jsonl",
                    out / "questions_held_out.jsonl", texts[:stories], asked[:questions],
                    asked[questions:])
    corpus.stories_file.write_text("\n\n".join(texts[:stories]) + "\n", encoding="utf-8")
    corpus.valid_file.write_text("\n\n".join(texts[stories:]) + "\n", encoding="utf-8")
    corpus.prompts.write_text("".join(q.prompt + "\n" for q in corpus.train_questions),
                              encoding="utf-8")
    for path, chosen in ((corpus.answers, corpus.train_questions),
                         (corpus.held_out, corpus.test_questions)):
        path.write_text("".join(json.dumps({"prompt": q.prompt, "reply": q.reply}) + "\n"
                                for q in chosen), encoding="utf-8")
    return corpus


def train_teacher(pkg, folder: Path, corpus: Corpus, steps: int, seed: int, log):
    """The tiny Gemma-3 teacher, trained on the stories and the training questions' answers."""
    pkg.tiny_gemma.train_tiny_gemma(corpus.stories, folder, steps=steps, seed=seed, log=log,
                                    chats=[(q.prompt, q.reply) for q in corpus.train_questions])
    return pkg.load.load_teacher(str(folder))


def distill_args(out: Path, teacher: Path, corpus: Corpus, training_settings: dict):
    """Distillation from the teacher's reading of the stories and its (sampled) answers to the
    training questions."""
    return distilling.DistillArgs(
        out=out, teacher=str(teacher), data=[corpus.stories_file], split="blank",
        prompts=str(corpus.prompts), max_new_tokens=ANSWER_TOKENS, sample_temperature=0.5,
        sample_batch_size=32, val_data=[corpus.valid_file], k=16, training=training_settings)


def replies_of(model, tokenizer, turn, questions) -> list[str]:
    """The model's greedy reply to each question, in its chat turn."""
    return [tokenizer.decode(generate(model, tokenizer, turn.prompt_ids(tokenizer, q.prompt),
                                      ANSWER_TOKENS, temperature=0, end_id=turn.end))
            for q in questions]


def accuracy(questions, replies) -> float:
    """The share of replies whose answer (corpus.answer_in) is the right one."""
    return sum(answer_in(r, q.kind) == q.answer for q, r in zip(questions, replies)) / \
        len(questions)


def score(model, tokenizer, turn, questions) -> tuple[float, float]:
    """Print the first SHOWN exchanges; (accuracy, bits per byte of the true replies)."""
    replies = replies_of(model, tokenizer, turn, questions)
    for question, reply in zip(questions[:SHOWN], replies):
        show_exchange(question.prompt, reply)
    bpb = evaluate_chat(model, tokenizer, turn, [(q.prompt, q.reply) for q in questions])["bpb"]
    return accuracy(questions, replies), bpb


def show_exchange(question: str, reply: str, who: str = "") -> None:
    click.echo(f"  > {question}\n  {who + ': ' if who else ''}{reply or '(an empty reply)'}")


def next_steps(out: Path, model_bin: Path, held_out_file: Path, question: str) -> None:
    heading("Next")
    plot = out / "loss.png"
    click.echo(f"  the loss curve:           {plot}" if plot.exists() else
               "  the loss curve:           not drawn: matplotlib is not installed "
               "(pip install matplotlib)")
    click.echo(f"  chat with the int8 model: tinylm chat --model {model_bin}\n"
               f"  ask one question:         tinylm run {model_bin} --chat \"{question}\"\n"
               f"  the float model:          tinylm generate {out} --chat \"{question}\"\n"
               f"  score its replies:        tinylm eval {model_bin} --chat {held_out_file}\n"
               f"  play a board on this computer: tinylm serve {model_bin}, then "
               "tinylm chat --port /dev/pts/N (as serve says)\n"
               f"  put it on a board:        tinylm info {model_bin} --target rp2040, then "
               f"tinylm flash rp2040 {model_bin} (docs/flashing.md)")


def demo_int8(model, tokenizer, turn, path: Path, questions) -> None:
    """Quantize to int8; answer the questions with the C runtime (needs a C compiler)."""
    size = write_bin(path, model.config, tokenizer, quantize_model(model, 8, DEFAULT_GROUP[8]),
                     8, DEFAULT_GROUP[8], turn)
    heading(f"The student in int8 ({size:,} bytes, {path}), run by the C runtime:")
    try:
        engine = CEngine(path)
    except OSError as e:
        click.echo(f"(skipped: {e})")
        return
    replies = [tokenizer.decode(engine.generate(turn.prompt_ids(tokenizer, q.prompt),
                                                ANSWER_TOKENS)) for q in questions]
    show_exchange(questions[-1].prompt, replies[-1])
    click.echo(f"  {accuracy(questions, replies):.0%} of the {len(questions)} questions "
               f"answered right")
