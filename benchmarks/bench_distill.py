"""Does distillation help? A real teacher, three ways to train the same student, several seeds.

Teacher: ../shared/models/stories260K-hf, llama2.c's stories260K as a transformers
LlamaForCausalLM (260K parameters, its own 512-token SentencePiece vocabulary), loaded through
teacher/ like any hub teacher. It reads the stories of tinystories_train_head.txt once. The
last tenth of them is held out, never trained on: --tune scores on it, to choose settings
without looking at the test text. Every run below trains on the same first --train-fraction
of the rest, for the same number of steps:

    plain              the student's own BPE (512 tokens), hard labels only (--kd-weight 0)
    kd-proj            the same BPE, the teacher's predictions projected onto it (projection.py)
    kd-proj-rest       the same, undecided mass left to the loss's rest (--undecided rest)
    plain-teacher-tok  the teacher's own tokenizer, hard labels only
    kd-teacher         the teacher's tokenizer and its predictions as they are (exact KD)

Score: bits per byte on tinystories_valid_head.txt (every paragraph a document from <bos>),
mean and spread (min, max) over the seeds, next to the teacher's own. Also the time of a KD
training step against a plain one, on the same batches.

    nice python benchmarks/bench_distill.py [--steps 2000] [--seeds 0 1 2 3 4] [--json]
    nice python benchmarks/bench_distill.py --tune --arms plain kd-proj --kd-weight 0.8

--long trains one student of at most 260K parameters on the teacher-scored stories plus --free
texts the teacher writes, for --steps, and compares it with the teacher (--long-arm: the
teacher's tokenizer and exact targets, the default, or the student's BPE and projected ones).
Everything is kept in --out, and a rerun reuses what is there (targets, token files, finished
runs). The student learns on windows of 128 tokens; the teacher is scored with its own 512 and,
for a like-for-like figure, with 128 too. --widen-steps N then trains N more steps on windows
of --widen-to tokens (resuming with a longer context: `tinylm train --resume --seq-len`) and
scores the student with that context. With the teacher's tokenizer (kd-teacher) it ends with
where the student falls behind: both models' nats per token by position in the document.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tinylm.core import ops  # noqa: E402
from tinylm.core.model import Transformer  # noqa: E402
from tinylm.core.optim import AdamW  # noqa: E402
from tinylm.distillation import stages as distill  # noqa: E402
from tinylm.distillation.targets import read_pieces  # noqa: E402
from tinylm.text.data import (  # noqa: E402
    SOFT_IDS,
    SOFT_LOGPROBS,
    SoftBatchSampler,
    load_tokens,
    read_documents,
    save_tokens,
)
from tinylm.training import loop as training  # noqa: E402
from tinylm.training.checkpoint import checkpoint_path, load_checkpoint, load_model  # noqa: E402
from tinylm.training.evaluate import evaluate  # noqa: E402

SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models" / "stories260K-hf"
TRAIN = SHARED / "data" / "tinystories_train_head.txt"
VALID = SHARED / "data" / "tinystories_valid_head.txt"
STUDENT = dict(vocab_size=512, dim=40, n_layers=3, n_heads=4, seq_len=128, batch_size=16,
               lr=3e-3)                                     # 78,840 parameters
# stories260K's shape with a narrower FFN (168, not 172), to stay within 260,000 parameters
LONG_STUDENT = dict(vocab_size=512, dim=64, n_layers=5, n_heads=8, n_kv_heads=4, hidden_dim=168,
                    seq_len=128, batch_size=16, lr=2e-3)    # 256,192 parameters
# name: (student tokenizer, projection's undecided mass, KD weight: "proj" --kd-weight,
# "exact" --exact-kd-weight)
ARMS = {"plain": ("own", "rest", 0.0), "kd-proj": ("own", "share", "proj"),
        "kd-proj-rest": ("own", "rest", "proj"),
        "plain-teacher-tok": ("teacher", "rest", 0.0), "kd-teacher": ("teacher", "rest", "exact")}
HELD_OUT = 0.1   # of the training documents: scored by --tune, never trained on


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


def training_slice(files: Path, bos_id: int, fraction: float) -> Path:
    """The token files in `files` cut at document starts: train.* keeps the first `fraction` of
    the documents before the held-out ones (the last HELD_OUT of them), val.* is those."""
    out = files / f"slice{fraction}"
    if (out / "done").exists():
        return out
    out.mkdir(exist_ok=True)
    tokens = load_tokens(next(files.glob("train.uint*")))
    starts = np.flatnonzero(tokens == bos_id)
    n_train = len(starts) - round(len(starts) * HELD_OUT)
    cut, held = starts[round(n_train * fraction)], starts[n_train]
    save_tokens(np.array(tokens[:cut]), out / "train")
    save_tokens(np.array(tokens[held:]), out / "val")
    for name in (SOFT_IDS, SOFT_LOGPROBS):
        np.save(out / name, np.load(files / name, mmap_mode="r")[:cut])
    (out / "done").write_text(json.dumps({"documents": round(n_train * fraction),
                                          "held_out": len(starts) - n_train,
                                          "tokens": int(cut)}))
    return out


def held_out_documents(root: Path) -> list[str]:
    """The held-out training documents' text (the documents of the token files, in order)."""
    pieces = [p for p in read_pieces(root / "targets-free0") if len(p.tokens)]
    return [p.text.decode("utf-8", "replace")
            for p in pieces[len(pieces) - round(len(pieces) * HELD_OUT):]]


def train_run(root: Path, name: str, files: Path, tokenizer, seed: int, kd_weight: float,
              args, student=STUDENT, documents=None) -> dict:
    """One student, trained on the token files in `files` (linked), or read back if it is
    trained already; scored on `documents` (default: the validation text)."""
    kd = f"-w{kd_weight}-T{args.temperature}" if kd_weight else ""   # T only matters with KD
    out = root / (f"{name}-f{args.train_fraction}{kd}-lr{student['lr']}-{args.steps}steps"
                  f"-seed{seed}")
    link_token_files(files, out)
    targs = training.TrainArgs(data=[str(TRAIN)], val_data=[str(VALID)], out=str(out),
                               steps=args.steps, seed=seed, kd_weight=kd_weight,
                               temperature=args.temperature, eval_every=args.steps,
                               checkpoint_every=500, threads=2, **student)
    started = time.perf_counter()
    if not checkpoint_path(out).exists():
        training.start(targs, tokenizer)
    elif load_checkpoint(out).step < args.steps:
        training.resume(out)
    trained = time.perf_counter() - started
    model, tokenizer = load_model(out)
    result = evaluate(model, tokenizer, documents or valid_documents(), batch_size=16)
    return {"run": name, "seed": seed, "bpb": result["bpb"], "loss": result["loss"],
            "n_params": model.config.n_params(), "train_seconds": trained,
            "seconds": time.perf_counter() - started, "out": str(out)}


def link_token_files(source: Path, out: Path) -> None:
    """The token files (and the teacher's targets beside them) of `source`, linked into out."""
    out.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name.startswith(("train.", "val.")) and not (out / path.name).exists():
            (out / path.name).symlink_to(path.resolve())


def widen_context(run: dict, args) -> dict:
    """A trained run's student trained --widen-steps more on --widen-batch windows of
    --widen-to tokens, in a copy of its folder; scored with that context."""
    first = Path(run["out"])
    trained_first = load_checkpoint(first)
    saved = trained_first.train_args
    batch = args.widen_batch or max(1, saved["batch_size"] * saved["seq_len"] // args.widen_to)
    separate = "-sep" if args.separate_documents != "none" else ""
    out = first.parent / (f"{first.name}-ctx{args.widen_to}-b{batch}{separate}-"
                          f"{args.widen_steps}more")
    if not checkpoint_path(out).exists():
        link_token_files(first, out)
        shutil.copy2(checkpoint_path(first), checkpoint_path(out))
    steps = trained_first.step + args.widen_steps
    started = time.perf_counter()
    if load_checkpoint(out).step < steps:
        training.resume(out, steps=steps, seq_len=args.widen_to, eval_every=steps,
                        batch_size=batch, separate_documents=args.separate_documents != "none")
    trained = time.perf_counter() - started
    model, tokenizer = load_model(out)
    result = evaluate(model, tokenizer, valid_documents(), batch_size=16)
    return {"run": f"{run['run']}-ctx{args.widen_to}", "bpb": result["bpb"],
            "loss": result["loss"], "n_params": model.config.n_params(),
            "train_seconds": trained, "out": str(out)}


def valid_documents():
    return read_documents([VALID], "blank")


def teacher_bpb(context: int | None = None) -> float:
    """The teacher's bits per byte on the test text, with its own context or a shorter one."""
    from teacher.load import load_teacher
    return load_teacher(str(TEACHER)).bits_per_byte(valid_documents(), context=context)


POSITIONS = (0, 32, 64, 128, 256)   # where gap_by_position's buckets of positions begin


def gap_by_position(student_dir: str) -> list[dict]:
    """Where the student falls behind its teacher: the mean nats per token of each on the test
    documents (each from <bos>, as many predicted tokens as the student's context), by the
    predicted token's position in its document. Student and teacher share the teacher's
    tokenizer (kd-teacher)."""
    import torch

    from teacher.load import load_teacher
    teacher = load_teacher(str(TEACHER))
    model, tokenizer = load_model(student_dir)
    sums = np.zeros((len(POSITIONS), 3))          # student nats, teacher nats, tokens
    for document in valid_documents():
        ids = np.array(tokenizer.encode(document, bos=True)[:model.config.max_seq_len + 1])
        if len(ids) < 2:
            continue
        logits = model.logits(ids[None, :-1])[0].astype(np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        student_nats = (np.log(np.exp(logits).sum(axis=-1))
                        - logits[np.arange(len(ids) - 1), ids[1:]])
        with torch.no_grad():
            logprobs = torch.log_softmax(teacher.model(input_ids=torch.tensor(ids[None])).logits[
                0, :-1].float(), dim=-1)
        teacher_nats = -logprobs.gather(1, torch.tensor(ids[1:, None]))[:, 0].numpy()
        bucket = np.searchsorted(POSITIONS, np.arange(len(student_nats)), side="right") - 1
        for b in range(len(POSITIONS)):
            here = bucket == b
            sums[b] += student_nats[here].sum(), teacher_nats[here].sum(), here.sum()
    return [{"from": first, "tokens": int(n), "student": float(s / n), "teacher": float(t / n)}
            for first, (s, t, n) in zip(POSITIONS, sums) if n]


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
                           ("kd", ops.SoftTargets(ids, logprobs, args.kd_weight,
                                                  args.temperature))):
            started = time.perf_counter()
            _, grads = models[kind].loss_and_grads(inputs, targets, 2, soft)
            optimizers[kind].step(grads, 1e-3)
            times[kind].append(time.perf_counter() - started)
    plain, kd = (float(np.median(times[k][2:])) for k in ("plain", "kd"))
    return {"plain_step_s": plain, "kd_step_s": kd, "ratio": kd / plain}


def compare(args) -> dict:
    root = Path(args.out)
    arms = {name: ARMS[name] for name in args.arms}
    data = {(choice, undecided): prepared(root, choice, args, undecided=undecided)
            for choice, undecided, _ in arms.values()}
    student = dict(STUDENT, lr=args.lr or STUDENT["lr"])
    documents = held_out_documents(root) if args.tune else None
    runs = []
    for seed in args.seeds:
        for name, (choice, undecided, weight) in arms.items():
            tokenizer, _ = data[choice, undecided]
            weight = {"proj": args.kd_weight, "exact": args.exact_kd_weight}.get(weight, weight)
            files = training_slice(data_dir(root, choice, 0, undecided), tokenizer.bos_id,
                                   args.train_fraction)
            runs.append(train_run(root, name, files, tokenizer, seed, weight, args, student,
                                  documents))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = {}
    for name in arms:
        bpb = [r["bpb"] for r in runs if r["run"] == name]
        summary[name] = {"mean": float(np.mean(bpb)), "min": min(bpb), "max": max(bpb),
                         "n_params": next(r["n_params"] for r in runs if r["run"] == name)}
    slices = {f"{choice}/{undecided}": json.loads(
        (data_dir(root, choice, 0, undecided) / f"slice{args.train_fraction}" / "done")
        .read_text()) for choice, undecided in data}
    result = {"settings": vars(args), "runs": runs, "summary": summary, "slices": slices,
              "stats": {"/".join(key): stats for key, (_, stats) in data.items()}}
    if not args.tune:   # the teacher on the test text, and the step cost
        result["teacher_bpb"] = teacher_bpb()
        choice, undecided, _ = ARMS["kd-proj"]
        result["kd_step"] = kd_step_cost(data_dir(root, choice, 0, undecided),
                                         prepared(root, choice, args, undecided=undecided)[0],
                                         args)
    return result


def long_run(args) -> dict:
    root = Path(args.out)
    args.train_fraction = 1.0   # all of its text, held-out stories too: --tune is not for it
    choice, undecided, weight = ARMS[args.long_arm]
    weight = {"proj": args.kd_weight, "exact": args.exact_kd_weight}.get(weight, weight)
    tokenizer, stats = prepared(root, choice, args, free=args.free, student=LONG_STUDENT,
                                undecided=undecided)
    separate = args.separate_documents == "all"
    run = train_run(root, f"long-{args.long_arm}-free{args.free}" + ("-sep" if separate else ""),
                    data_dir(root, choice, args.free, undecided), tokenizer, args.seeds[0],
                    weight, args, student=dict(LONG_STUDENT, separate_documents=separate,
                                               lr=args.lr or LONG_STUDENT["lr"]))
    result = {"settings": vars(args), "run": run, "stats": stats, "teacher_bpb": teacher_bpb(),
              # windows of seq_len predicted tokens, as the student's (+1: the <bos>)
              "teacher_bpb_at_student_context": teacher_bpb(LONG_STUDENT["seq_len"] + 1)}
    if args.widen_steps:
        result["widened"] = widen_context(run, args)
    if args.long_arm == "kd-teacher":
        result["by_position"] = gap_by_position(result.get("widened", run)["out"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=list(ARMS),
                        default=["plain", "kd-proj", "plain-teacher-tok", "kd-teacher"])
    parser.add_argument("--kd-weight", type=float, default=0.8, help="of the projected KD")
    parser.add_argument("--exact-kd-weight", type=float, default=1.0,
                        help="of KD with the teacher's tokenizer")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate [default: {STUDENT['lr']}, with --long "
                             f"{LONG_STUDENT['lr']}]")
    parser.add_argument("--train-fraction", type=float, default=0.25,
                        help="train on this first fraction of the (not held-out) stories")
    parser.add_argument("--tune", action="store_true",
                        help="score on the held-out training stories, not the test text")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=32)
    parser.add_argument("--long", action="store_true", help="the long run instead")
    parser.add_argument("--free", type=int, default=2000,
                        help="with --long: texts the teacher writes")
    parser.add_argument("--long-arm", choices=["kd-proj", "kd-proj-rest", "kd-teacher"],
                        default="kd-teacher",
                        help="with --long: the student's tokenizer and targets (ARMS)")
    parser.add_argument("--widen-to", type=int, default=512,
                        help="with --long and --widen-steps: the context to widen to")
    parser.add_argument("--widen-steps", type=int, default=0,
                        help="with --long: train this many more steps on --widen-to windows")
    parser.add_argument("--widen-batch", type=int, default=0,
                        help="windows per step while widening [default: as many tokens per "
                             "step as before]")
    parser.add_argument("--separate-documents", choices=["none", "widening", "all"],
                        default="none", help="with --long: attend within each document of a "
                        "window only, while widening or from the first step")
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
              f"{result['stats']['student_tokens']:,} tokens, context {LONG_STUDENT['seq_len']}: "
              f"{run['bpb']:.4f} bits/byte; teacher {result['teacher_bpb']:.4f} (at context "
              f"{LONG_STUDENT['seq_len']}: {result['teacher_bpb_at_student_context']:.4f})")
        if "widened" in result:
            print(f"widened to context {args.widen_to} for {args.widen_steps} more steps: "
                  f"{result['widened']['bpb']:.4f} bits/byte")
        if "by_position" in result:
            print("\n| predicted positions | tokens | student nats/token | teacher | student / "
                  "teacher |\n|---|---:|---:|---:|---:|")
        for row in result.get("by_position", []):
            print(f"| {row['from']}- | {row['tokens']:,} | {row['student']:.4f} | "
                  f"{row['teacher']:.4f} | {row['student'] / row['teacher']:.3f} |")
    else:
        print("| run | parameters | val bits/byte, mean | min | max |\n|---|---:|---:|---:|---:|")
        for name, s in result["summary"].items():
            print(f"| {name} | {s['n_params']:,} | {s['mean']:.4f} | {s['min']:.4f} | "
                  f"{s['max']:.4f} |")
        if not args.tune:
            print(f"| teacher (stories260K) | 260,032 | {result['teacher_bpb']:.4f} | | |")
            step = result["kd_step"]
            print(f"\nKD step {step['kd_step_s'] * 1000:.0f} ms vs plain "
                  f"{step['plain_step_s'] * 1000:.0f} ms: {step['ratio']:.2f}x")


if __name__ == "__main__":
    main()
