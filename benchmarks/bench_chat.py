"""A chat student asked about stories: does it answer as well as its teacher, and does
distillation beat plain training on the same data?

The demo's setting (tinylm/cli/demo.py): stories, and questions about short stories
(tinylm/text/corpus.py); a tiny Gemma-3 teacher trained on both; the teacher reads the stories
and answers the training questions (sampled, as in the demo). A student of the demo's shape
is trained on what the teacher read and wrote, for the same steps, with the same seeds, two
ways:

    plain   hard labels only (--kd-weight 0)
    kd      the teacher's predictions too (--kd-weight 0.5, the demo's)

Scores, on --held-out questions about stories that no model trained on:

    accuracy   the share of greedy replies whose answer is right (corpus.answer_in): the
               teacher's, each student's float model's, its int8 .bin's in the C runtime
    reply bpb  bits per byte of the true replies, after their questions (`tinylm eval --chat`):
               each student's float model and its int8 .bin (the NumPy engine, the C's
               arithmetic)

    nice python benchmarks/bench_chat.py [--seeds 0 1 2] [--steps 1200] [--json]

Everything is kept in --out; a rerun reuses the teacher, its targets and finished students.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinylm.cli import demo  # noqa: E402
from tinylm.distillation import stages as distilling  # noqa: E402
from tinylm.export.binformat import read_bin, write_bin  # noqa: E402
from tinylm.export.quantize import DEFAULT_GROUP, quantize_model  # noqa: E402
from tinylm.runtime.c_engine import CEngine  # noqa: E402
from tinylm.runtime.engine import Engine  # noqa: E402
from tinylm.training import loop as training  # noqa: E402
from tinylm.training.checkpoint import checkpoint_path, load_checkpoint  # noqa: E402
from tinylm.training.evaluate import evaluate_chat  # noqa: E402

ARMS = {"plain": 0.0, "kd": 0.5}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train_run(root: Path, name: str, data: Path, tokenizer, seed: int, kd_weight: float,
              steps: int, corpus) -> dict:
    """One student on the prepared token files in `data` (linked), or read back if trained
    already; scored on the held-out questions, as float and int8 models."""
    out = root / f"{name}-{steps}steps-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    for path in data.iterdir():
        if path.name.startswith(("train.", "val.")) and not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())
    started = time.perf_counter()
    if not checkpoint_path(out).exists():
        training.start(training.TrainArgs(data=[], out=out, chat=True, **dict(
            demo.STUDENT, steps=steps, seed=seed, kd_weight=kd_weight, eval_every=steps)),
            tokenizer)
    seconds = time.perf_counter() - started
    checkpoint = load_checkpoint(out)
    model, turn = checkpoint.model(), checkpoint.chat
    questions = corpus.test_questions
    pairs = [(q.prompt, q.reply) for q in questions]
    model_bin = out / "model-int8.bin"
    write_bin(model_bin, model.config, tokenizer, quantize_model(model, 8, DEFAULT_GROUP[8]), 8,
              DEFAULT_GROUP[8], turn)
    engine = CEngine(model_bin)
    int8_replies = [tokenizer.decode(engine.generate(turn.prompt_ids(tokenizer, q.prompt),
                                                     demo.ANSWER_TOKENS)) for q in questions]
    return {"run": name, "seed": seed, "steps": steps, "train_seconds": round(seconds),
            "accuracy": demo.accuracy(questions, demo.replies_of(model, tokenizer, turn,
                                                                 questions)),
            "accuracy_int8": demo.accuracy(questions, int8_replies),
            "reply_bpb": evaluate_chat(model, tokenizer, turn, pairs)["bpb"],
            "reply_bpb_int8": evaluate_chat(Engine(read_bin(model_bin)), tokenizer, turn,
                                            pairs)["bpb"]}


def compare(args) -> dict:
    root = Path(args.out)
    corpus = demo.write_corpus(root, args.stories, args.questions, args.held_out, seed=0)
    pkg = distilling.teacher_package()
    if not (root / "teacher" / "config.json").exists():
        demo.train_teacher(pkg, root / "teacher", corpus, args.teacher_steps, 0, log)
    teacher = pkg.load.load_teacher(str(root / "teacher"))
    teacher_replies = teacher.answer([q.prompt for q in corpus.test_questions],
                                     demo.ANSWER_TOKENS)
    data = root / "data"
    tokenizer, _ = distilling.prepare(demo.distill_args(
        data, root / "teacher", corpus, dict(demo.STUDENT, steps=args.steps, seed=0)))
    runs = []
    for seed in args.seeds:
        for name, weight in ARMS.items():
            runs.append(train_run(root, name, data, tokenizer, seed, weight, args.steps, corpus))
            log(json.dumps(runs[-1]))
    return {"teacher_accuracy": demo.accuracy(corpus.test_questions, teacher_replies),
            "held_out": len(corpus.test_questions), "runs": runs,
            "summary": {name: summarize([r for r in runs if r["run"] == name])
                        for name in ARMS}}


def summarize(runs: list[dict]) -> dict:
    """Mean, min and max of every score over the seeds."""
    return {key: {"mean": float(np.mean([r[key] for r in runs])),
                  "min": min(r[key] for r in runs), "max": max(r[key] for r in runs)}
            for key in ("accuracy", "accuracy_int8", "reply_bpb", "reply_bpb_int8")}


def print_table(result: dict) -> None:
    print(f"teacher: {result['teacher_accuracy']:.1%} of {result['held_out']} held-out "
          f"questions answered right\n")
    print("| run | seed | accuracy | int8 accuracy | reply bpb | int8 reply bpb |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in result["runs"]:
        print(f"| {r['run']} | {r['seed']} | {r['accuracy']:.1%} | {r['accuracy_int8']:.1%} | "
              f"{r['reply_bpb']:.4f} | {r['reply_bpb_int8']:.4f} |")
    for name, s in result["summary"].items():
        print(f"| **{name}** mean (min-max) | | {s['accuracy']['mean']:.1%} | "
              f"{s['accuracy_int8']['mean']:.1%} ({s['accuracy_int8']['min']:.0%}-"
              f"{s['accuracy_int8']['max']:.0%}) | {s['reply_bpb']['mean']:.4f} "
              f"({s['reply_bpb']['min']:.4f}-{s['reply_bpb']['max']:.4f}) | "
              f"{s['reply_bpb_int8']['mean']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench_chat")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1200, help="student training steps")
    parser.add_argument("--teacher-steps", type=int, default=demo.TEACHER_STEPS)
    parser.add_argument("--stories", type=int, default=demo.DEMO_STORIES)
    parser.add_argument("--questions", type=int, default=demo.DEMO_QUESTIONS)
    parser.add_argument("--held-out", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = compare(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
