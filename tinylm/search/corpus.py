"""The text of a search in each vocabulary it tries, tokenized once and shared by its trials.

OUT/corpus/KIND-SIZE/ (char-64, bpe-512, ...) holds tokenizer.json and the token files train.*
and val.* (with a teacher, also its predictions projected onto this vocabulary,
train.soft_*.npy: distillation's stages 2 and 3 on the teacher's targets), then ready.json.
A trial links these files into its own folder. Processes that share OUT make each vocabulary
once: the first takes a lock, the others wait for it and read what it made.

Every vocabulary is scored on the same text: the first held-out documents (or --val-data
documents) that reach `val_bytes` bytes, so that bits per byte compare across vocabularies;
the validations during training (which pruning compares) read the first quarter of it.
Without --val-data the held-out documents are the last ones, `val_fraction` of the bytes; the
tokenizer learns from the others only.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..distillation import stages
from ..text.data import (
    SOFT_IDS,
    SOFT_LOGPROBS,
    encode_documents,
    read_documents,
    save_tokens,
    token_dtype,
)
from ..text.tokenizer import Tokenizer, count_characters, train_tokenizer

READY = "ready.json"
QUICK_SHARE = 4       # training's own validations read the first quarter of the text


@dataclass
class Corpus:
    directory: Path
    tokenizer: Tokenizer
    val_bytes: int           # the bytes of text the validation tokens stand for
    val_tokens: int
    quick_tokens: int        # the first of them, for the validations during training

    def files(self) -> list[Path]:
        dtype = token_dtype(self.tokenizer.vocab_size).name
        names = [f"train.{dtype}", f"val.{dtype}", SOFT_IDS, SOFT_LOGPROBS]
        return [self.directory / n for n in names if (self.directory / n).exists()]

    def link_into(self, directory: Path) -> None:
        """The token files (and teacher targets) in a trial's folder, as links."""
        directory.mkdir(parents=True, exist_ok=True)
        for path in self.files():
            link = directory / path.name
            link.unlink(missing_ok=True)
            link.symlink_to(path.resolve())


def corpus(settings, vocab_size: int, kind: str, log=None) -> Corpus:
    """This vocabulary's corpus, made now if no process has made it yet. ValueError when the
    text cannot have such a vocabulary (too few characters, too few pairs to merge)."""
    directory = Path(settings.out) / "corpus" / f"{kind}-{vocab_size}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.with_suffix(".lock")):
        if not (directory / READY).exists():
            if settings.teacher:
                tokenizer = _distilled(settings, directory, vocab_size, kind, log)
            else:
                tokenizer = _plain(settings, directory, vocab_size, kind)
            write_json(directory / READY,
                       _cut_validation(directory, tokenizer, settings.val_bytes))
    ready = json.loads((directory / READY).read_text())
    return Corpus(directory, Tokenizer.load(directory / "tokenizer.json"), **ready)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def characters(settings) -> int:
    """How many distinct characters the text a tokenizer learns from has: the largest
    character vocabulary is that + 5."""
    if settings.teacher:
        return len(count_characters(stages.corpus_texts(Path(settings.teacher) / "targets")))
    return len(count_characters(_split(settings)[0]))


def _split(settings) -> tuple[list[str], list[str]]:
    """(training, validation) documents without a teacher."""
    documents = read_documents(settings.data, settings.split)
    if settings.val_data:
        return documents, read_documents(settings.val_data, settings.split)
    return hold_out(documents, settings.val_fraction)


def _plain(settings, directory: Path, vocab_size: int, kind: str) -> Tokenizer:
    train, val = _split(settings)
    tokenizer = train_tokenizer(train, vocab_size, kind)
    directory.mkdir(exist_ok=True)
    save_tokens(encode_documents(train, tokenizer), directory / "train")
    save_tokens(encode_documents(val, tokenizer), directory / "val")
    tokenizer.save(directory / "tokenizer.json")
    return tokenizer


def hold_out(documents: list[str], fraction: float) -> tuple[list[str], list[str]]:
    """(training, held-out) documents: the last ones that make `fraction` of the bytes."""
    sizes = np.array([len(d.encode("utf-8", "surrogatepass")) for d in documents])
    behind = np.cumsum(sizes[::-1])[::-1]          # bytes from each document to the end
    first = int(np.flatnonzero(behind >= fraction * sizes.sum())[-1])
    if first == 0:
        raise ValueError("too little text to hold some out for validation: use more "
                         "documents or --val-data")
    return documents[:first], documents[first:]


def _distilled(settings, directory: Path, vocab_size: int, kind: str, log) -> Tokenizer:
    """Distillation's stages 2 and 3 in `directory` on the teacher folder's targets."""
    teacher = Path(settings.teacher)
    saved = json.loads((teacher / "distill.json").read_text())
    directory.mkdir(exist_ok=True)
    if not (directory / "targets").exists():
        os.symlink((teacher / "targets").resolve(), directory / "targets")
    args = stages.DistillArgs(**dict(saved, out=str(directory), student_tokenizer="own",
                                     val_data=settings.val_data,
                                     val_fraction=settings.val_fraction,
                                     training={"vocab_size": vocab_size, "tokenizer": kind}))
    tokenizer, prepared = stages.prepare(args, log or (lambda message: None))
    if tokenizer is None:
        raise ValueError(f"{teacher} is missing {prepared['waiting']} shard(s) of teacher "
                         "targets: finish `tinylm distill` there first")
    return tokenizer


def _cut_validation(directory: Path, tokenizer: Tokenizer, val_bytes: int) -> dict:
    """Keep the first validation documents that reach val_bytes bytes (all if fewer): the same
    documents in every vocabulary. Returns their bytes and tokens, and the tokens of the first
    of them that reach a quarter of that, which training validates on as it goes."""
    path = directory / f"val.{token_dtype(tokenizer.vocab_size).name}"
    tokens = np.fromfile(path, path.suffix[1:])
    sizes = np.array(tokenizer.text_bytes())
    starts = [*np.flatnonzero(tokens == tokenizer.bos_id), len(tokens)]
    total = end = 0
    quick = None
    for start, end in zip(starts, starts[1:]):
        total += int(sizes[tokens[start:end]].sum())
        if quick is None and total >= val_bytes / QUICK_SHARE:
            quick = int(end)
        if total >= val_bytes:
            break
    save_tokens(tokens[:end], directory / "val")
    return {"val_bytes": total, "val_tokens": int(end), "quick_tokens": quick or int(end)}
