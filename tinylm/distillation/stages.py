"""Distillation: a Hugging Face teacher's predictions into a tinylm student, in stages that resume.

    tinylm distill --teacher ID_OR_PATH --data FILE ... --out DIR

    1. targets     the teacher reads (or writes) the corpus, and its top-k predictions go to
                   DIR/targets, shard by shard (teacher/targets.py; files: targets.py)
    2. tokenizer   the student's: its own BPE trained on the corpus text, or the teacher's
                   (--student-tokenizer teacher: the same tokens, so KD is exact) -> tokenizer.json
    3. projection  the corpus in student tokens (train.*, val.*) and at every position the
                   teacher's distribution over student tokens (train.soft_*.npy; projection.py);
                   done when prepared.json exists
    4. training    train.py with the KD loss (ops.kd_loss_forward) -> checkpoint.npz

Every stage leaves files that mark it done, so the same command run again after a kill goes on
from the stage (and, for targets and training, the shard or checkpoint) where it stopped. The
settings are kept in DIR/distill.json. A rerun must keep those of every stage that has begun
(STAGE_SETTINGS), except for MAY_CHANGE; a stage that has left nothing behind, such as one
that failed on a bad setting, takes new ones.

Only stage 1 and the teacher's tokenizer need the teacher, and so torch and transformers
(`pip install -e ".[teacher]"`); they are imported only then.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, write_json
from ..text.data import (
    SOFT_IDS,
    SOFT_LOGPROBS,
    encode_documents,
    read_documents,
    save_tokens,
    token_dtype,
)
from ..text.tokenizer import Tokenizer, train_tokenizer
from ..training import loop as training
from ..training.checkpoint import checkpoint_path, load_checkpoint
from ..training.progress import plural
from .projection import Projector, continuations
from .targets import (
    TeacherVocab,
    missing_shards,
    parse_shard,
    read_pieces,
    set_aside_damaged,
)

DEFAULT_TEACHER = "google/gemma-3-1b-it"
STUDENT_TOKENIZERS = ("own", "teacher")
UNDECIDED = ("share", "rest")
MAX_TEACHER_VOCAB = 65536   # a larger vocabulary would be most of a tiny student's parameters
# Settings a rerun may change: where the work runs, and how long training goes on.
MAY_CHANGE = ("shard", "device", "dtype", "sample_batch_size", "steps", "eval_every",
              "checkpoint_every", "threads")
# The settings each stage's files depend on, and the file or folder that shows it has begun.
# Training depends on every other setting of `training` (the model's shape, the loss).
STAGE_SETTINGS = [
    ("targets/shard-*.npz", ("teacher", "data", "split", "dataset", "dataset_limit", "prompts",
                 "synthetic", "free", "k", "shard_size", "max_new_tokens",
                 "sample_temperature", "top_p", "seed")),
    ("tokenizer.json", ("student_tokenizer", "vocab_size", "tokenizer")),
    ("prepared.json", ("undecided", "val_data", "val_fraction")),
]


@dataclass
class DistillArgs:
    out: str
    teacher: str = DEFAULT_TEACHER
    # corpus (teacher/sources.py)
    data: list[str] = field(default_factory=list)       # text files the teacher reads
    split: str = "auto"                                  # how they are cut into documents
    dataset: str | None = None                           # a `datasets` source
    dataset_limit: int | None = None
    prompts: str | None = None                           # a file of chat prompts, one a line
    synthetic: int = 0                                   # built-in chat prompts
    free: int = 0                                        # texts the teacher writes from <bos>
    val_data: list[str] = field(default_factory=list)    # validation text; none: hold out
    val_fraction: float = 0.1                            # ... this fraction of the documents
    # teacher targets (teacher/targets.py TargetSettings)
    k: int = 32
    shard_size: int = 64
    max_new_tokens: int = 256
    sample_temperature: float = 1.0
    top_p: float = 0.95
    sample_batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"
    shard: str = "1/1"                                   # K/N: this process's share of shards
    # student
    student_tokenizer: str = "own"
    undecided: str = "share"     # projection.py: "share" undecided mass, or leave it to "rest"
    training: dict = field(default_factory=dict)         # TrainArgs fields (model, steps, KD)

    def __post_init__(self):
        # plain types, so the settings survive a round trip through distill.json
        self.data, self.val_data = [str(p) for p in self.data], [str(p) for p in self.val_data]
        self.out = str(self.out)
        if self.student_tokenizer not in STUDENT_TOKENIZERS:
            raise ValueError(f"--student-tokenizer must be one of {STUDENT_TOKENIZERS}")
        if self.undecided not in UNDECIDED:
            raise ValueError(f"--undecided must be one of {UNDECIDED}")
        if self.student_tokenizer == "teacher" and (self.prompts or self.synthetic):
            raise ValueError("--student-tokenizer teacher works with texts (--data, --dataset) "
                             "and free generations (--free), not chat prompts")

    def train_args(self) -> training.TrainArgs:
        return training.TrainArgs(data=self.data, val_data=self.val_data, out=self.out,
                                  val_fraction=self.val_fraction, **self.training)


def run(args: DistillArgs, log=None) -> dict:
    """All stages that are not done yet. Returns a summary: {"teacher_tokens", "n_params",
    "val_loss", "val_bpb", "step", "checkpoint", ...}, or {"waiting": n} when this process did
    its --shard share and n shards are left to others."""
    tokenizer, prepared = prepare(args, log)
    if tokenizer is None:
        return prepared
    return dict(train_student(args, tokenizer, log), **prepared)


def prepare(args: DistillArgs, log=None) -> tuple[Tokenizer | None, dict]:
    """Stages 1-3: the student's tokenizer and statistics of its corpus, or (None,
    {"waiting": n}) if other processes still have n shards of teacher targets to make."""
    log = log or _stderr
    out = Path(args.out)
    _check_settings(args, out)
    missing = _targets_stage(args, out, log)
    if missing:
        log(f"this process's shards are done; {missing} shard(s) are left to other processes. "
            f"When all are done, run the command again without --shard to continue.")
        return None, {"waiting": missing}
    tokenizer = _tokenizer_stage(args, out, log)
    return tokenizer, _projection_stage(args, out, tokenizer, log)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _check_settings(args, out: Path) -> None:
    """Refuse settings that differ from those the work already in `out` was done with."""
    saved_path = out / "distill.json"
    current = dataclasses.asdict(args)
    if saved_path.exists():
        now, before = _flat(current), _flat(json.loads(saved_path.read_text()))
        refuse_changes(out, before, now, [k for k in _locked_settings(out, before)
                                          if k not in MAY_CHANGE])
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved_path, current)


def refuse_changes(where: Path, before: dict, now: dict, names) -> None:
    """Raise ValueError naming each of `names` whose setting differs between `before` (what
    the work in `where` was begun with) and `now`."""
    changed = sorted(k for k in names if now.get(k) != before.get(k))
    if changed:
        raise ValueError(f"{where} holds work done with other settings ("
                         + ", ".join(f"{k}: {before.get(k)!r}" for k in changed)
                         + "): rerun with the same settings, or use another --out")


def _flat(settings: dict) -> dict:
    """The training settings alongside the others; not `out`, so a moved folder resumes."""
    return {**{k: v for k, v in settings.items() if k not in ("training", "out")},
            **settings["training"]}


def _locked_settings(out: Path, before: dict) -> set[str]:
    """The settings of the stages that have begun in `out`."""
    locked = set()
    for marker, names in STAGE_SETTINGS:
        if any(out.glob(marker)):
            locked.update(names)
    if checkpoint_path(out).exists():
        staged = {name for _, names in STAGE_SETTINGS for name in names}
        locked.update(set(before) - staged)
    return locked


def teacher_package():
    """The teacher package (teacher/), imported now: it needs torch and transformers."""
    try:
        import teacher.load
        import teacher.sources
        import teacher.targets
        import teacher.tiny_gemma
        import teacher.vocab
    except ImportError as e:
        raise OSError(f"the teacher needs PyTorch and transformers ({e}): install them with "
                      f"pip install -e \".[teacher]\"") from None
    return teacher


# ---- 1. teacher targets ---------------------------------------------------------------------

def _targets_stage(args, out: Path, log) -> int:
    """Make this process's missing shards. Returns how many shards are still missing."""
    directory = out / "targets"
    if (directory / "manifest.json").exists():
        for message in set_aside_damaged(directory):
            log(message)
    need_targets = not (directory / "manifest.json").exists() or missing_shards(directory)
    need_tokenizer = args.student_tokenizer == "teacher" and not (out / "tokenizer.json").exists()
    if not (need_targets or need_tokenizer):
        return 0
    pkg = teacher_package()
    log(f"loading teacher {args.teacher}")
    teacher = pkg.load.load_teacher(args.teacher, args.device, args.dtype)
    log(f"teacher: {sum(p.numel() for p in teacher.model.parameters()):,} parameters, "
        f"vocabulary {len(teacher.tokenizer):,}, on {teacher.device} in {teacher.model.dtype}")
    if need_tokenizer:   # now, before hours of teacher work, in case it cannot be done
        if len(teacher.tokenizer) > MAX_TEACHER_VOCAB:
            raise ValueError(f"the teacher's vocabulary ({len(teacher.tokenizer):,} tokens) is "
                             f"too large for a tiny student: use --student-tokenizer own")
        pkg.vocab.tinylm_tokenizer(teacher.tokenizer).save(out / "tokenizer.json")
    if need_targets:
        records = pkg.sources.plan_records(args.data, args.split, args.dataset,
                                           args.dataset_limit, args.prompts, args.synthetic,
                                           args.free, seed=args.training.get("seed", 0))
        settings = pkg.targets.TargetSettings(
            k=args.k, shard_size=args.shard_size, max_new_tokens=args.max_new_tokens,
            temperature=args.sample_temperature, top_p=args.top_p,
            batch_size=args.sample_batch_size, seed=args.training.get("seed", 0))
        log(f"teacher targets: {plural(len(records), 'record')} -> {directory}")
        result = pkg.targets.make_targets(teacher, records, directory, settings,
                                          parse_shard(args.shard))
        return result["shards_missing"]
    return 0


# ---- 2. student tokenizer -------------------------------------------------------------------

def _tokenizer_stage(args, out: Path, log) -> Tokenizer:
    path = out / "tokenizer.json"
    if not path.exists():
        texts = corpus_texts(out / "targets")
        vocab_size = args.training.get("vocab_size", training.TrainArgs.vocab_size)
        kind = args.training.get("tokenizer", training.TrainArgs.tokenizer)
        log(f"training the student's tokenizer ({vocab_size} tokens) on the corpus")
        tokenizer = train_tokenizer(texts, vocab_size, kind)
        atomic_write(path, lambda f: f.write(tokenizer.to_json().encode()))
    return Tokenizer.load(path)


def corpus_texts(targets: Path) -> list[str]:
    """The texts and prompts of the teacher's corpus, which the student's tokenizer learns."""
    texts = []
    for piece in read_pieces(targets):
        texts.append(piece.text.decode("utf-8", "replace"))
        if piece.prompt:
            texts.append(piece.prompt)
    return texts


# ---- 3. projection --------------------------------------------------------------------------

def _projection_stage(args, out: Path, tokenizer: Tokenizer, log) -> dict:
    """Student token files and the teacher's targets on them. Returns statistics."""
    marker = out / "prepared.json"
    if marker.exists():
        return json.loads(marker.read_text())
    targets = out / "targets"
    vocab = TeacherVocab.load(targets / "vocab.json")
    projector = None
    if args.student_tokenizer == "own":
        shares = (continuations(read_pieces(targets), vocab, tokenizer)
                  if args.undecided == "share" else None)
        projector = Projector(vocab, tokenizer, args.k, shares)
    log("projecting the teacher's predictions onto the student's tokens" if projector else
        "the student shares the teacher's tokens: its predictions are used as they are")
    dtype = token_dtype(tokenizer.vocab_size)
    documents, teacher_tokens, chat_documents = [], 0, 0
    for piece in read_pieces(targets):
        teacher_tokens += len(piece.tokens)
        chat_documents += piece.kind == "chat"
        if len(piece.tokens):
            ids, soft_ids, soft_logprobs = _student_document(piece, tokenizer, projector, args.k)
            documents.append((ids.astype(dtype), soft_ids.astype(dtype),
                              soft_logprobs.astype(np.float16)))
    n_val = 0 if args.val_data else max(1, int(len(documents) * args.val_fraction))
    train_docs = documents[:len(documents) - n_val]
    if not train_docs:
        raise ValueError("the corpus is too small: no documents are left for training")
    ids, soft_ids, soft_logprobs = (np.concatenate(column) for column in zip(*train_docs))
    if args.val_data:
        val = encode_documents(read_documents(args.val_data, args.split), tokenizer)
    else:
        val = np.concatenate([d[0] for d in documents[len(train_docs):]])
    save_tokens(ids, out / "train")
    save_tokens(val, out / "val")
    atomic_write(out / SOFT_IDS, lambda f: np.save(f, soft_ids))
    atomic_write(out / SOFT_LOGPROBS, lambda f: np.save(f, soft_logprobs))
    kept = np.exp(soft_logprobs.astype(np.float32)).sum(axis=1)
    stats = {"teacher_tokens": teacher_tokens, "student_tokens": int(len(ids)),
             "documents": len(train_docs), "val_tokens": int(len(val)),
             "projected_mass": float(kept.mean()), "chat_documents": chat_documents}
    write_json(marker, stats)
    log(f"student corpus: {plural(len(train_docs), 'document')}, {len(ids):,} tokens (teacher: "
        f"{teacher_tokens:,}); the targets keep {stats['projected_mass']:.1%} of the "
        f"teacher's probability on average")
    return stats


def _student_document(piece, tokenizer, projector, k):
    """(token ids, soft ids, soft log-probs) of one document, one row per token: the row of
    token t is the teacher's distribution of token t + 1 (the last: of the next document's
    <bos>). Positions the teacher did not predict (a chat prompt) get their hard label."""
    bos = tokenizer.bos_id
    if projector is None:       # the teacher's own tokens: its predictions as they are
        rows_ids, rows_logprobs = piece.topk_ids[:, :k], piece.topk_logprobs[:, :k]
        beyond = rows_ids >= tokenizer.vocab_size    # padding rows of the teacher's output
        rows_logprobs = np.where(beyond, -np.inf, rows_logprobs)
        return (np.array([bos, *piece.tokens]), np.where(beyond, 0, rows_ids), rows_logprobs)
    if piece.kind == "chat":
        end = tokenizer.eos_id
        before = [bos, tokenizer.special_id("<|user|>"), *tokenizer.encode(piece.prompt)]
        ids, soft_ids, soft_logprobs = projector.project(piece, end)
        # <bos> <|user|> prompt <|assistant|> reply <eos>: the teacher predicted from
        # <|assistant|> on; the rows before it and the row of <eos> are hard labels.
        tokens = np.array([*before, tokenizer.special_id("<|assistant|>"), *ids, end])
        hard, last = _hard_rows(tokens[1:len(before) + 1], k), _hard_rows([bos], k)
        return (tokens, np.concatenate([hard[0], soft_ids, last[0]]),
                np.concatenate([hard[1], soft_logprobs, last[1]]))
    ids, soft_ids, soft_logprobs = projector.project(piece, bos)
    return np.array([bos, *ids]), soft_ids, soft_logprobs


def _hard_rows(labels, k):
    """Targets that are the hard labels themselves."""
    ids = np.zeros((len(labels), k), np.int64)
    logprobs = np.full((len(labels), k), -np.inf)
    ids[:, 0], logprobs[:, 0] = labels, 0.0
    return ids, logprobs


# ---- 4. training ----------------------------------------------------------------------------

def train_student(args: DistillArgs, tokenizer: Tokenizer, log=None) -> dict:
    """Stage 4, from its checkpoint if there is one. Returns train.py's summary. A corpus
    with chat records makes a chat model."""
    log = log or _stderr
    out = Path(args.out)
    prepared = json.loads((out / "prepared.json").read_text())
    chat = prepared.get("chat_documents", 0) > 0      # (not counted before chat models)
    train_args = dataclasses.replace(args.train_args(), chat=chat)
    if checkpoint_path(out).exists():
        changes = {name: getattr(train_args, name) for name in MAY_CHANGE
                   if hasattr(train_args, name)}
        if load_checkpoint(out).step < train_args.steps:
            log("continuing training from the checkpoint")
        summary = training.resume(out, **changes)
    else:
        summary = training.start(train_args, tokenizer)
    if summary["val_loss"] is None:   # nothing left to train: the last evaluation on record
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        last = [r for r in records if "val_loss" in r][-1]
        summary.update(val_loss=last["val_loss"], val_bpb=last["val_bpb"], val_step=last["step"])
    return summary
