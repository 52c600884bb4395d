"""Does distillation help? A real teacher, three ways to train the same student, several seeds.

Teacher: ../shared/models/stories260K-hf, llama2.c's stories260K as a transformers
LlamaForCausalLM (260K parameters, its own 512-token SentencePiece vocabulary), loaded through
teacher/ like any hub teacher. It reads the stories of tinystories_train_head.txt once; every
run below trains on that same text, for the same number of steps:

    plain              the student's own BPE (512 tokens), hard labels only (--kd-weight 0)
    kd-proj            the same BPE, the teacher's predictions projected onto it (projection.py)
    kd-proj-share      the same, with undecided mass shared by token frequency (--undecided share)
    plain-teacher-tok  the teacher's own tokenizer, hard labels only
    kd-teacher         the teacher's tokenizer and its predictions as they are (exact KD)

Score: bits per byte on tinystories_valid_head.txt (every paragraph a document from <bos>),
mean and spread (min, max) over the seeds, next to the teacher's own. Also the time of a KD
training step against a plain one, on the same batches.

    nice python benchmarks/bench_distill.py [--steps 1500] [--seeds 0 1 2] [--json]

--long trains one student of at most 260K parameters on the teacher-scored stories plus --free
texts the teacher writes, for --steps, and compares it with the teacher. Everything is kept in
--out, and a rerun reuses what is there (targets, token files, finished runs).
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

from tinylm import distill, ops, train as training  # noqa: E402
from tinylm.checkpoint import checkpoint_path, load_checkpoint, load_model  # noqa: E402
from tinylm.data import (SOFT_IDS, SOFT_LOGPROBS, SoftBatchSampler, load_tokens,  # noqa: E402
                         read_documents)
from tinylm.evaluate import evaluate  # noqa: E402
from tinylm.model import Transformer  # noqa: E402
from tinylm.optim import AdamW  # noqa: E402

SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models" / "stories260K-hf"
TRAIN = SHARED / "data" / "tinystories_train_head.txt"
VALID = SHARED / "data" / "tinystories_valid_head.txt"
STUDENT = dict(vocab_size=512, dim=40, n_layers=3, n_heads=4, seq_len=128, batch_size=16,
               lr=3e-3)                                     # 78,840 parameters
LONG_STUDENT = dict(vocab_size=512, dim=64, n_layers=4, n_heads=4, seq_len=128,
                    batch_size=16, lr=2e-3)                 # 230,976 parameters
# name: (student tokenizer, projection's undecided mass, KD weight; None: --kd-weight)
ARMS = {"plain": ("own", "rest", 0.0), "kd-proj": ("own", "rest", None),
        "kd-proj-share": ("own", "share", None),
        "plain-teacher-tok": ("teacher", "rest", 0.0), "kd-teacher": ("teacher", "rest", None)}


def prepared(root: Path, tokenizer_choice: str, args, free: int = 0, student=STUDENT,
             undecided="rest"):
    """Targets (shared by both tokenizers), the student's tokenizer and token files."""
    out = data_dir(root, tokenizer_choice, free, undecided)
    shared_targets = root / f"targets-free{free}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "targets").exists():
        shared_targets.mkdir(exist_ok=True)
        (out / "targets").symlink_to(shared_targets.resolve())
    dargs = distill.DistillArgs(
        out=out, teacher=str(TEACHER), data=[str(TRAIN)], val_data=[str(VALID)], free=free,
        max_new_tokens=400, sample_batch_size=32, k=args.top_k,
        student_tokenizer=tokenizer_choice, undecided=undecided,
        training=dict(student, steps=1))
    return distill.prepare(dargs)


def data_dir(root: Path, tokenizer_choice: str, free: int = 0, undecided="rest") -> Path:
    return root / f"data-{tokenizer_choice}-free{free}" / undecided


def train_run(root: Path, name: str, files: Path, tokenizer, seed: int, kd_weight: float,
              args, student=STUDENT) -> dict:
    """One student, trained on the token files in `files` (linked), or read back if it is
    trained already."""
    out = root / f"{name}-w{kd_weight}-T{args.temperature}-{args.steps}steps-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    for path in files.iterdir():
        if path.name.startswith(("train.", "val.")) and not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())
    targs = training.TrainArgs(data=[str(TRAIN)], val_data=[str(VALID)], out=str(out),
                               steps=args.steps, seed=seed, kd_weight=kd_weight,
                               temperature=args.temperature, eval_every=args.steps,
                               checkpoint_every=500, threads=2, **student)
    started = time.perf_counter()
    if not checkpoint_path(out).exists():
        training.start(targs, tokenizer)
    elif load_checkpoint(out).step < args.steps:
        training.resume(out)
    model, tokenizer = load_model(out)
    result = evaluate(model, tokenizer, valid_documents(), batch_size=16)
    return {"run": name, "seed": seed, "bpb": result["bpb"], "loss": result["loss"],
            "n_params": model.config.n_params(), "seconds": time.perf_counter() - started}


def valid_documents():
    return read_documents([VALID], "blank")


def teacher_bpb() -> float:
    from teacher.load import load_teacher
    return load_teacher(str(TEACHER)).bits_per_byte(valid_documents())


def kd_step_cost(files: Path, tokenizer, args, repeats: int = 20) -> dict:
    """Median seconds of a plain and of a KD training step (forward, backward, AdamW), on the
    same batches, alternating so that other load on the machine slows both alike."""
    config = training.model_config(training.TrainArgs(data=[], out="", **STUDENT),
                                   len(tokenizer))
    tokens = load_tokens(next(files.glob("train.uint*")))
    sampler = SoftBatchSampler(tokens, np.load(files / SOFT_IDS, mmap_mode="r"),
                               np.load(files / SOFT_LOGPROBS, mmap_mode="r"),
                               STUDENT["batch_size"], STUDENT["seq_len"], seed=0)
    models = {kind: Transformer.initialize(config) for kind in ("plain", "kd")}
    optimizers = {kind: AdamW(m.params) for kind, m in models.items()}
    times = {"plain": [], "kd": []}
    for _ in range(repeats):
        inputs, targets, ids, logprobs = sampler.next_batch()
        for kind, soft in (("plain", None),
                           ("kd", ops.SoftTargets(ids, logprobs, 0.5, args.temperature))):
            started = time.perf_counter()
            _, grads = models[kind].loss_and_grads(inputs, targets, 2, soft)
            optimizers[kind].step(grads, 1e-3)
            times[kind].append(time.perf_counter() - started)
    plain, kd = (float(np.median(times[k][2:])) for k in ("plain", "kd"))
    return {"plain_step_s": plain, "kd_step_s": kd, "ratio": kd / plain}


def compare(args) -> dict:
    root = Path(args.out)
    data = {(choice, undecided): prepared(root, choice, args, undecided=undecided)
            for choice, undecided, _ in ARMS.values()}
    runs = []
    for seed in args.seeds:
        for name, (choice, undecided, weight) in ARMS.items():
            tokenizer, _ = data[choice, undecided]
            weight = args.kd_weight if weight is None else weight
            runs.append(train_run(root, name, data_dir(root, choice, 0, undecided), tokenizer,
                                  seed, weight, args))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = {}
    for name in ARMS:
        bpb = [r["bpb"] for r in runs if r["run"] == name]
        summary[name] = {"mean": float(np.mean(bpb)), "min": min(bpb), "max": max(bpb),
                         "n_params": next(r["n_params"] for r in runs if r["run"] == name)}
    return {"settings": {k: v for k, v in vars(args).items()}, "runs": runs,
            "summary": summary, "teacher_bpb": teacher_bpb(),
            "stats": {"/".join(key): stats for key, (_, stats) in data.items()},
            "kd_step": kd_step_cost(data_dir(root, "own"), data["own", "rest"][0], args)}


def long_run(args) -> dict:
    root = Path(args.out)
    tokenizer, stats = prepared(root, "own", args, free=args.free, student=LONG_STUDENT)
    run = train_run(root, f"long-free{args.free}", data_dir(root, "own", args.free), tokenizer,
                    args.seeds[0],
                    args.kd_weight, args, student=LONG_STUDENT)
    return {"settings": vars(args), "run": run, "stats": stats, "teacher_bpb": teacher_bpb()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--kd-weight", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--long", action="store_true", help="the long run instead")
    parser.add_argument("--free", type=int, default=2000,
                        help="with --long: texts the teacher writes")
    parser.add_argument("--out", default="runs/bench_distill")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not TEACHER.exists():
        sys.exit(f"needs the teacher {TEACHER} (from ../shared)")
    result = long_run(args) if args.long else compare(args)
    if args.json:
        print(json.dumps(result, indent=1))
    elif args.long:
        run = result["run"]
        print(f"student {run['n_params']:,} parameters, {args.steps} steps on "
              f"{result['stats']['student_tokens']:,} tokens: {run['bpb']:.4f} bits/byte; "
              f"teacher {result['teacher_bpb']:.4f}; gap {run['bpb'] - result['teacher_bpb']:.4f}")
    else:
        print("| run | parameters | val bits/byte, mean | min | max |\n|---|---:|---:|---:|---:|")
        for name, s in result["summary"].items():
            print(f"| {name} | {s['n_params']:,} | {s['mean']:.4f} | {s['min']:.4f} | "
                  f"{s['max']:.4f} |")
        print(f"| teacher (stories260K) | 260,032 | {result['teacher_bpb']:.4f} | | |")
        step = result["kd_step"]
        print(f"\nKD step {step['kd_step_s'] * 1000:.0f} ms vs plain "
              f"{step['plain_step_s'] * 1000:.0f} ms: {step['ratio']:.2f}x")


if __name__ == "__main__":
    main()
