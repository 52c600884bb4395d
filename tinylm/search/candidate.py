"""One candidate model, from its shape to its two scores.

    check()   what can be known before any training: the text can have its vocabulary; the
              .bin of the shape (untrained weights: the file's size does not depend on them)
              fits the board by memplan, the same plan `tinylm flash` checks, for the
              model's whole context; its speed by the cost model (before training an upper
              bound: the sampler's work is not known yet) is at least --min-tok-s. A
              candidate that fails a check is never trained.
    train()   `tinylm train` on the shared corpus (or distillation on the teacher's projected
              targets), reporting each validation's bits per byte as it comes.
    score()   the .bin at its bits (int4: error compensation calibrated on training tokens),
              its bits per byte on the validation text, computed by the C runtime (the
              board's own arithmetic), and its speed by the cost model, with the work its
              sampler has on its own predictions.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boards import memplan
from ..boards.targets import flash_room
from ..core.model import Transformer
from ..export.binformat import read_bin, write_bin
from ..export.quantize import DEFAULT_GROUP, quantize_model
from ..runtime.c_engine import CEngine
from ..runtime.fixedpoint import ONE
from ..text.data import load_tokens, token_documents
from ..training import loop as training
from ..training.checkpoint import load_model
from .corpus import corpus
from .measure import PROMPT, headline, top_p_candidates
from .space import DEFAULT_LR, Shape

CALIBRATION_TOKENS = 4096


@dataclass
class Check:
    problem: str | None = None
    violation: float = 0.0           # how far outside the constraints (Optuna's constraints)
    predicted_tok_s: float | None = None
    facts: dict = field(default_factory=dict)


class Candidate:
    def __init__(self, shape: Shape, settings, directory: Path, target, cost_model, log=None,
                 lr: float = DEFAULT_LR):
        self.shape, self.settings, self.directory, self.lr = shape, settings, Path(directory), lr
        self.target, self.cost_model, self.log = target, cost_model, log
        self.corpus, self.facts = None, {}

    def check(self) -> Check:
        s = self.settings
        try:
            self.corpus = corpus(s, self.shape.vocab_size, self.shape.tokenizer, self.log)
        except ValueError as e:
            return Check(str(e), 1.0)
        tokenizer = self.corpus.tokenizer
        config = self.shape.config(s.seq_len)
        self.directory.mkdir(parents=True, exist_ok=True)
        untrained = self.directory / "untrained.bin"
        self._write_bin(Transformer.initialize(config, seed=s.seed), tokenizer, untrained)
        facts = {"n_params": config.n_params(),
                 "prompt_tokens": len(tokenizer.encode(PROMPT, bos=True)), "weights_in": "flash",
                 "flash_weight_bytes": 0}
        if self.target.board:
            plan = memplan.plan(untrained, self.target.board, flash_room(self.target.board),
                                context=s.seq_len)
            facts.update(model_bytes=plan.model_bytes, arena_bytes=plan.arena_bytes,
                         weights_in=plan.weights, flash_weight_bytes=plan.flash_weight_bytes)
            if not plan.fits:
                need = max(plan.model_bytes / plan.model_room, plan.arena_bytes / plan.arena_room)
                return Check(plan.refusal(), need - 1, facts=facts)
        self.facts = facts
        if self.cost_model is None:           # measuring shapes to fit one
            return Check(None, 0.0, None, facts)
        tok_s = self.speed(untrained)          # no sampler candidates yet: at most this
        if tok_s < s.min_tok_s:
            return Check(f"{tok_s:,.1f} tok/s at most by the cost model, below --min-tok-s "
                         f"{s.min_tok_s:g}", s.min_tok_s / tok_s - 1, tok_s, facts)
        return Check(None, 0.0, tok_s, facts)

    def speed(self, path, candidates: float = 0.0) -> float:
        """tok/s of a .bin of this shape by the cost model, with this many tokens through
        top-p's filter (measure.top_p_candidates), within the flash bound (check() first)."""
        model = read_bin(path)
        cost = self.cost_model.cost(model.config, self.shape.bits, self.facts["prompt_tokens"],
                                    candidates=candidates)
        return headline(self.target, self.target.hz / cost, model, self.facts["flash_weight_bytes"])

    def train_args(self) -> training.TrainArgs:
        s = self.settings
        return training.TrainArgs(
            data=s.data or [s.teacher], out=str(self.directory), **self.shape.model_args(),
            seq_len=s.seq_len, batch_size=s.batch_size, steps=s.steps, lr=self.lr,
            eval_every=s.eval_every, eval_tokens=self.corpus.quick_tokens,
            checkpoint_every=s.steps, threads=s.threads, seed=s.seed,
            kd_weight=s.kd_weight if s.teacher else 0.0)

    def train(self, on_validation=None) -> dict:
        """Train (check() first); on_validation(step, bits per byte) after each validation.
        The training's progress goes to train.log in the candidate's folder."""
        self.corpus.link_into(self.directory)
        args = self.train_args()
        metrics = self.directory / "metrics.jsonl"

        def on_step(step, loss):
            if on_validation and (step % args.eval_every == 0 or step == args.steps):
                last = json.loads(metrics.read_text().splitlines()[-1])
                if last.get("step") == step and "val_bpb" in last:
                    on_validation(step, last["val_bpb"])

        with open(self.directory / "train.log", "w") as log, contextlib.redirect_stderr(log):
            return training.start(args, self.corpus.tokenizer, on_step)

    def write_bin(self) -> Path:
        """The trained model as model.bin, at the candidate's bits."""
        model, tokenizer = load_model(self.directory)
        path = self.directory / "model.bin"
        self._write_bin(model, tokenizer, path, self._calibration(model))
        return path

    def score(self) -> dict:
        """The trained model's .bin, its bits per byte on the validation text, and its tok/s
        by the cost model, now with the tokens its sampler has to sort out."""
        path = self.write_bin()
        val = load_tokens(next(p for p in self.corpus.files() if p.name.startswith("val.")))
        nats = bin_nats(path, np.asarray(val, np.int64))
        candidates = top_p_candidates(path)
        return {"bpb": nats / math.log(2) / self.corpus.val_bytes, "bin": str(path),
                "bin_bytes": path.stat().st_size, "candidates": candidates,
                "tok_s": self.speed(path, candidates) if self.cost_model else None}

    def _calibration(self, model) -> list | None:
        if self.shape.bits != 4:
            return None
        tokens = np.asarray(load_tokens(self.corpus.files()[0])[:CALIBRATION_TOKENS])
        T = model.config.max_seq_len
        return [tokens[i:i + T].tolist() for i in range(0, len(tokens) - 1, T)]

    def _write_bin(self, model, tokenizer, path, calibration=None) -> None:
        group = DEFAULT_GROUP[self.shape.bits]
        write_bin(path, model.config, tokenizer,
                  quantize_model(model, self.shape.bits, group, calibration),
                  self.shape.bits, group)


def bin_nats(path, tokens: np.ndarray) -> float:
    """Total nats of predicting every token after a document's <bos> by the .bin in the C
    runtime, documents cut into windows of the model's context as evaluate.py does."""
    engine = CEngine(path)
    bos = read_bin(path).tokenizer.bos_id
    T, nats = engine.context, 0.0
    for document in token_documents(tokens, bos):
        for start in range(0, len(document) - 1, T):
            window = document[start:start + T + 1]
            engine.reset()
            for token, following in zip(window[:-1], window[1:]):
                logits = engine.forward(int(token)) / ONE
                top = logits.max()
                nats += top + math.log(np.exp(logits - top).sum()) - logits[following]
    return nats
