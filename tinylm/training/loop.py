"""Training: text files in, a trained model (OUT/checkpoint.npz) out.

    1. Cut the text into documents, train a tokenizer on them (BPE, or characters), and write
       the token ids to OUT/train.uint16 and OUT/val.uint16 (data.py). Without separate
       validation files, the last val_fraction of the tokens is held out. Chat records
       (chat_data: prompt/reply pairs, text/chat_data.py) go in as <bos> <|user|> prompt
       <|assistant|> reply <eos>, before the documents, and make the model a chat model.
    2. Loop: learning rate from the schedule, a random batch, loss and gradients, gradient
       clipping, an AdamW step (optim.py). Every eval_every steps, loss and bits per byte on the
       validation tokens; every checkpoint_every steps, and at the end, a checkpoint.
       With kd_weight > 0 the loss mixes in a teacher's predictions (distill.py, ops.py).

Each run appends to OUT/metrics.jsonl and redraws OUT/loss.png (with matplotlib) at checkpoints.

Ctrl-C lets the current step finish, saves a checkpoint and returns. `resume(OUT)` continues
from a checkpoint with the same model, optimizer state, learning-rate schedule and position in
the random sequence of batches, so stopping and resuming gives bit for bit the same weights as
an uninterrupted run (with the same arguments; `threads` too, as it changes float rounding).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.config import ModelConfig, hidden_width
from ..core.model import Transformer
from ..core.ops import SoftTargets
from ..core.optim import AdamW, clip_grad_norm, learning_rate
from ..text.chat_data import read_chat_pairs
from ..text.data import (
    SOFT_IDS,
    SOFT_LOGPROBS,
    BatchSampler,
    SoftBatchSampler,
    encode_documents,
    load_tokens,
    read_documents,
    save_tokens,
    split_tail,
    token_documents,
    token_dtype,
)
from ..text.tokenizer import Tokenizer, train_tokenizer
from .checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
from .evaluate import document_nats
from .progress import ProgressBar, append_metrics, plot_losses


@dataclass
class TrainArgs:
    data: list[str]                 # training text files
    out: str                        # output directory
    chat_data: list[str] = field(default_factory=list)  # sources of prompt/reply pairs
    val_data: list[str] = field(default_factory=list)  # validation text files; none: hold out
    val_fraction: float = 0.1       # ... this fraction of the end of the training tokens
    split: str = "auto"             # how text is cut into documents (data.split_documents)
    # model (ModelConfig)
    vocab_size: int = 512
    tokenizer: str = "auto"         # text.tokenizer.KINDS: bpe, char, or auto (char below 260)
    dim: int = 64
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None   # None: n_heads (no grouped-query attention)
    head_dim: int | None = None     # None: dim // n_heads
    hidden_dim: int | None = None   # None: 8/3 dim, rounded up to a multiple of 4, as in Llama
    seq_len: int = 128              # tokens per training window = the model's max_seq_len
    # optimization
    batch_size: int = 16
    steps: int = 1000
    lr: float = 1e-3                # peak learning rate
    min_lr_ratio: float = 0.1       # the cosine ends at min_lr_ratio * lr
    warmup_steps: int | None = None  # None: 5% of steps
    weight_decay: float = 0.1
    grad_clip: float = 1.0          # max global gradient norm; 0: no clipping
    seed: int = 0
    # distillation (distill.py writes the teacher's targets next to the token files)
    kd_weight: float = 0.0          # weight of the teacher's targets; 0: the hard labels alone
    temperature: float = 1.0        # of the KD loss (ops.kd_loss_forward)
    separate_documents: bool = False  # attend within each document of a window only
    chat: bool = False              # the data holds chat turns: the model is a chat model
    # bookkeeping
    eval_every: int = 100
    eval_tokens: int = 32768        # validation tokens per evaluation (from the start of val)
    checkpoint_every: int = 500
    log_every: int = 10             # steps per metrics.jsonl record
    threads: int = 2

    def __post_init__(self):  # plain types, so the args survive a round trip through JSON
        self.data = [str(p) for p in self.data]
        self.chat_data = [str(p) for p in self.chat_data]
        self.chat = self.chat or bool(self.chat_data)
        self.val_data = [str(p) for p in self.val_data]
        self.out = str(self.out)


# What the tokenizer, the token files and the model are made from: fixed once training starts.
# seq_len is not among them: it may grow (resume()).
FIXED_WHEN_RESUMING = ("data", "chat_data", "val_data", "val_fraction", "split", "vocab_size",
                       "tokenizer", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                       "hidden_dim", "chat")


def model_config(args: TrainArgs, vocab_size: int) -> ModelConfig:
    n_kv_heads = args.n_kv_heads or args.n_heads
    head_dim = args.head_dim or args.dim // args.n_heads
    hidden_dim = args.hidden_dim or hidden_width(args.dim)
    return ModelConfig(vocab_size=vocab_size, dim=args.dim, n_layers=args.n_layers,
                       n_heads=args.n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim,
                       hidden_dim=hidden_dim, max_seq_len=args.seq_len)


def train(args: TrainArgs, on_step=None) -> dict:
    """A new run in args.out (which must not hold a checkpoint yet). `on_step(step, loss)`, if
    given, is called after every step. Returns a summary (see _train_loop)."""
    return start(args, prepare(args), on_step)


def prepare(args: TrainArgs) -> Tokenizer:
    """Step 1 of a new run: the tokenizer, and the token files in args.out."""
    out = Path(args.out)
    if checkpoint_path(out).exists():
        raise FileExistsError(f"{out} already holds a checkpoint: resume it, or choose another "
                              f"output directory")
    out.mkdir(parents=True, exist_ok=True)
    documents = read_documents(args.data, args.split) if args.data or not args.chat_data else []
    pairs = [pair for source in args.chat_data for pair in read_chat_pairs(source)]
    tokenizer = train_tokenizer(documents + [text for pair in pairs for text in pair],
                                args.vocab_size, args.tokenizer)
    chat = [np.array(tokenizer.encode_chat(*pair), token_dtype(tokenizer.vocab_size))
            for pair in pairs]
    tokens = np.concatenate([*chat, encode_documents(documents, tokenizer)])
    if args.val_data:
        train_tokens = tokens
        val_tokens = encode_documents(read_documents(args.val_data, args.split), tokenizer)
    else:
        train_tokens, val_tokens = split_tail(tokens, args.val_fraction, tokenizer.bos_id)
    if len(val_tokens) < 2:
        raise ValueError("the validation split is empty: use more text, a larger val_fraction, "
                         "or separate validation files")
    save_tokens(train_tokens, out / "train")
    save_tokens(val_tokens, out / "val")
    return tokenizer


def start(args: TrainArgs, tokenizer: Tokenizer, on_step=None) -> dict:
    """A new run on token files already in args.out (train.*, val.*, and for kd_weight > 0
    the teacher's targets), e.g. written by train() or distill.py."""
    model = Transformer.initialize(model_config(args, tokenizer.vocab_size), seed=args.seed)
    optimizer = AdamW(model.params, weight_decay=args.weight_decay)
    # (seed, 1): a random stream of its own, apart from the one that initialized the weights.
    sampler = _sampler(args, model.config, seed=(args.seed, 1))
    return _train_loop(args, model, tokenizer, optimizer, sampler, 0, on_step)


def resume(out: str | Path, on_step=None, **changes) -> dict:
    """Continue the run in `out` from its checkpoint, with the arguments saved there. `changes`
    may set other TrainArgs values, e.g. steps=2000 to train longer, but none of
    FIXED_WHEN_RESUMING. seq_len may grow: the weights do not depend on the context (RoPE turns
    any position), so a run can learn most cheaply on short windows and then widen its context
    for its last steps, e.g. seq_len=512 with batch_size=4 (the same tokens per step)."""
    checkpoint = load_checkpoint(out)
    if checkpoint.optimizer is None or checkpoint.sampler is None or checkpoint.train_args is None:
        raise ValueError(f"{checkpoint_path(out)} has no training state (optimizer, data "
                         f"sampler): it can be used, but not trained further")
    saved = TrainArgs(**checkpoint.train_args)
    args = dataclasses.replace(saved, **changes, out=str(out))
    changed = [name for name in FIXED_WHEN_RESUMING if getattr(args, name) != getattr(saved, name)]
    if changed:
        raise ValueError("cannot change when resuming: " + ", ".join(
            f"{name} (the checkpoint has {getattr(saved, name)!r})" for name in changed))
    if args.seq_len < saved.seq_len:
        raise ValueError(f"cannot shorten the context when resuming: seq_len {args.seq_len} < "
                         f"the checkpoint's {saved.seq_len} (it may only grow)")
    model = Transformer(dataclasses.replace(checkpoint.config, max_seq_len=args.seq_len),
                        checkpoint.params)
    optimizer = AdamW(model.params, weight_decay=args.weight_decay)
    optimizer.load_state_dict(checkpoint.optimizer)
    sampler = _sampler(args, model.config, seed=0)  # the seed is overwritten by the saved state
    sampler.set_state(checkpoint.sampler)
    return _train_loop(args, model, checkpoint.tokenizer, optimizer, sampler, checkpoint.step,
                       on_step)


def _sampler(args: TrainArgs, config: ModelConfig, seed) -> BatchSampler:
    out = Path(args.out)
    train_tokens = load_tokens(out / f"train.{token_dtype(config.vocab_size).name}")
    if args.kd_weight == 0:
        return BatchSampler(train_tokens, args.batch_size, args.seq_len, seed)
    if not (out / SOFT_IDS).exists():
        raise FileNotFoundError(f"kd_weight {args.kd_weight} needs a teacher's targets in {out} "
                                f"({SOFT_IDS}): make them with `tinylm distill`")
    return SoftBatchSampler(train_tokens, np.load(out / SOFT_IDS, mmap_mode="r"),
                            np.load(out / SOFT_LOGPROBS, mmap_mode="r"), args.batch_size,
                            args.seq_len, seed)


def _train_loop(args, model, tokenizer, optimizer, sampler, step, on_step) -> dict:
    """Train from `step` to args.steps. Returns {"step", "interrupted", "loss" (mean training
    loss since the previous metrics record), "val_loss", "val_bpb", "val_step" (of the last
    evaluation),
    "tokens_per_s" (while stepping), "seconds" (in all), "n_params", "checkpoint" (its path)}."""
    out = Path(args.out)
    metrics = out / "metrics.jsonl"
    val_tokens = load_tokens(out / f"val.{token_dtype(tokenizer.vocab_size).name}")
    token_bytes = np.array(tokenizer.text_bytes())
    warmup = args.warmup_steps if args.warmup_steps is not None else args.steps // 20
    tokens_per_step = args.batch_size * args.seq_len
    bos_id = tokenizer.bos_id if args.separate_documents else None
    bar = ProgressBar(args.steps, step, tokens_per_step)
    # None: not measured yet
    summary = {"step": step, "interrupted": False, "loss": None, "val_loss": None,
               "val_bpb": None, "val_step": None, "n_params": model.config.n_params(),
               "checkpoint": str(checkpoint_path(out))}
    first_step, started, train_seconds = step, time.perf_counter(), 0.0  # seconds in steps only
    losses, log_seconds = [], 0.0  # since the last metrics record

    def save():
        state = Checkpoint(model.config, model.params, tokenizer, step, optimizer.state_dict(),
                           sampler.state(), dataclasses.asdict(args),
                           tokenizer.chat_turn() if args.chat else None)
        save_checkpoint(state, out)
        if metrics.exists():
            plot_losses(metrics, out / "loss.png")

    bar.print(f"training {summary['n_params']:,} parameters, step {step} -> {args.steps}")
    try:
        with _ctrl_c_stops_after_step() as stop_requested:
            while step < args.steps:
                step_started = time.perf_counter()
                lr = learning_rate(step, args.lr, args.steps, warmup, args.min_lr_ratio)
                inputs, targets, *teacher = sampler.next_batch()
                soft = SoftTargets(*teacher, args.kd_weight, args.temperature) if teacher else None
                loss, grads = model.loss_and_grads(inputs, targets, args.threads, soft, bos_id)
                grad_norm = clip_grad_norm(grads, args.grad_clip)
                optimizer.step(grads, lr)
                step += 1
                losses.append(loss)
                step_seconds = time.perf_counter() - step_started
                train_seconds += step_seconds
                log_seconds += step_seconds
                last = step == args.steps
                bar.update(step, loss, force=last)
                if step % args.log_every == 0 or last:
                    summary["loss"] = float(np.mean(losses))
                    append_metrics(metrics, {
                        "step": step, "loss": summary["loss"], "lr": lr, "grad_norm": grad_norm,
                        "tokens_per_s": len(losses) * tokens_per_step / log_seconds})
                    losses, log_seconds = [], 0.0
                if step % args.eval_every == 0 or last:
                    summary["val_loss"], summary["val_bpb"] = _validate(
                        model, val_tokens, token_bytes, tokenizer.bos_id, args)
                    summary["val_step"] = step
                    append_metrics(metrics, {"step": step, "val_loss": summary["val_loss"],
                                             "val_bpb": summary["val_bpb"]})
                    bar.print(f"step {step}: val loss {summary['val_loss']:.4f} nats/token, "
                              f"{summary['val_bpb']:.4f} bits/byte")
                if step % args.checkpoint_every == 0 or last:
                    save()
                if on_step:
                    on_step(step, loss)
                if stop_requested.is_set():
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        save()
        summary["interrupted"] = True
        bar.print(f"interrupted after step {step}; saved {summary['checkpoint']}. "
                  f"To continue, run the same command with --resume.")
    summary["step"] = step
    summary["seconds"] = time.perf_counter() - started
    summary["tokens_per_s"] = (step - first_step) * tokens_per_step / max(train_seconds, 1e-9)
    return summary


def _validate(model, val_tokens, token_bytes, bos_id, args) -> tuple[float, float]:
    """Loss (nats/token) and bits per byte on the first eval_tokens validation tokens, taken
    document by document exactly as evaluate.evaluate does, so the two agree on the same text."""
    tokens = np.asarray(val_tokens[:args.eval_tokens], dtype=np.int64)
    documents = token_documents(tokens, bos_id)
    nats, n_tokens = document_nats(model, documents, args.batch_size)
    return nats / n_tokens, nats / math.log(2) / int(token_bytes[tokens].sum())


@contextlib.contextmanager
def _ctrl_c_stops_after_step():
    """While active, Ctrl-C (SIGINT) sets the yielded event instead of raising KeyboardInterrupt
    wherever the program happens to be, perhaps half-way through an optimizer update. The loop
    checks the event between steps, so the checkpoint it then saves is consistent."""
    stop = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals go there
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set()) \
        if in_main_thread else None
    try:
        yield stop
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
