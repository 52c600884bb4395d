"""Checkpoints: everything about a model, and about the training run that made it, in one file.

A checkpoint is a NumPy .npz archive (a zip of .npy arrays, readable with np.load) with entries

    meta                 JSON text: {"format": "tinylm-checkpoint/1", "config": ModelConfig,
                         "step": steps trained, "train_args": ..., "sampler": RNG state,
                         "optimizer_t": AdamW step count, "chat": a chat model's turn
                         (ChatTurn: {"user", "assistant", "end"} token ids)}; the last four
                         may be null (a checkpoint without "chat" is a text model's)
    tokenizer            the tokenizer's JSON file (docs/tokenizer.md), as UTF-8 bytes (uint8)
    params/NAME          every parameter, e.g. params/layers.0.wq
    optimizer/m/NAME     AdamW's moment estimates, only when saved by training
    optimizer/v/NAME

Training saves all of it, so a resumed run continues exactly where it stopped. Imports (e.g.
from llama2.c) have no optimizer or sampler state and save only the model and tokenizer.

Saving is all or nothing (tinylm/atomic.py): a crash or kill at any moment leaves either the
old checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..core.config import ModelConfig
from ..core.model import Transformer
from ..text.tokenizer import ChatTurn, Tokenizer

# What np.load and a damaged .npz can raise: a bad zip, a CRC mismatch, a truncated array, a
# garbled .npy header (parsed as a Python literal), a missing entry.
NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, SyntaxError,
              tokenize.TokenError, zipfile.BadZipFile)
FORMAT = "tinylm-checkpoint/1"
FILENAME = "checkpoint.npz"


@dataclass
class Checkpoint:
    config: ModelConfig
    params: dict[str, np.ndarray]
    tokenizer: Tokenizer
    step: int = 0
    optimizer: dict | None = None   # AdamW.state_dict()
    sampler: dict | None = None     # BatchSampler.state()
    train_args: dict | None = None  # train.TrainArgs as a dict
    chat: ChatTurn | None = None    # a single-turn chat model's turn; None: a text model

    def model(self) -> Transformer:
        return Transformer(self.config, self.params)


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a directory that holds checkpoint.npz."""
    path = Path(path)
    return path if path.suffix == ".npz" else path / FILENAME


def save_checkpoint(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write `checkpoint` atomically to `path` (a .npz file or a directory); returns the file."""
    path = checkpoint_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "config": checkpoint.config.to_dict(), "step": checkpoint.step,
            "train_args": checkpoint.train_args, "sampler": checkpoint.sampler,
            "optimizer_t": checkpoint.optimizer["t"] if checkpoint.optimizer else None,
            "chat": checkpoint.chat.to_dict() if checkpoint.chat else None}
    arrays = {"meta": np.array(json.dumps(meta)),
              "tokenizer": np.frombuffer(checkpoint.tokenizer.to_json().encode(), np.uint8)}
    arrays.update({f"params/{name}": p for name, p in checkpoint.params.items()})
    if checkpoint.optimizer:
        for key in ("m", "v"):
            arrays.update({f"optimizer/{key}/{name}": a
                           for name, a in checkpoint.optimizer[key].items()})
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file, or the checkpoint.npz in a directory."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
        meta = json.loads(str(entries["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")

        def group(prefix):  # entries named prefix + NAME, by NAME
            return {name[len(prefix):]: a for name, a in entries.items() if name.startswith(prefix)}

        optimizer = None
        if meta["optimizer_t"] is not None:
            optimizer = {"t": meta["optimizer_t"], "m": group("optimizer/m/"),
                         "v": group("optimizer/v/")}
        return Checkpoint(config=ModelConfig.from_dict(meta["config"]), params=group("params/"),
                          tokenizer=Tokenizer.from_json(entries["tokenizer"].tobytes().decode()),
                          step=meta["step"], optimizer=optimizer, sampler=meta["sampler"],
                          train_args=meta["train_args"],
                          chat=ChatTurn.from_dict(meta.get("chat")))
    except NPZ_ERRORS as e:
        raise ValueError(f"{path} is not a valid tinylm checkpoint "
                         f"({type(e).__name__}: {e})") from e


def load_model(path: str | Path) -> tuple[Transformer, Tokenizer]:
    """The model and tokenizer of a checkpoint (file or directory), e.g. to generate or evaluate."""
    checkpoint = load_checkpoint(path)
    return checkpoint.model(), checkpoint.tokenizer

