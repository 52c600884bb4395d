"""Running the teacher over the corpus: its top-k next-token predictions, shard by shard.

For each shard of records (sources.py), in order:
    1. chat records without a reply and free records: the teacher writes the text, sampling
       in batches (chat prompts go through the tokenizer's chat template; free texts start
       from <bos>)
    2. every text is read back by one forward pass over context + text, where the context is
       the chat template's prompt or <bos>, and at each position the top k tokens and their
       log-probs (log-softmax in float32) are kept
    3. the shard is written atomically (tinylm/distillation/targets.py describes the files)

Sampling is seeded per shard (seed, shard index), so a shard redone after a kill comes out the
same on the same machine. The progress line shows teacher tokens per second, the time left, and
how many bytes each token's targets take on disk.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.distillation.targets import (
    Piece,
    TeacherVocab,
    ensure_manifest,
    missing_shards,
    write_shard,
)
from tinylm.training.progress import ProgressBar, duration

from .vocab import teacher_vocab


@dataclass
class TargetSettings:
    k: int = 32                  # top-k tokens kept per position
    shard_size: int = 64         # records per shard file
    max_new_tokens: int = 256    # longest chat reply or free text
    temperature: float = 1.0     # sampling, for chat and free records
    top_p: float = 0.95
    batch_size: int = 8          # sequences sampled together
    seed: int = 0


def records_digest(records) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.kind, r.text] + ([r.reply] if r.reply is not None else []))
                 .encode())
    return h.hexdigest()[:16]


def make_targets(teacher, records, directory, settings: TargetSettings = TargetSettings(),
                 shard: tuple[int, int] = (1, 1), on_shard=None, stream=None) -> dict:
    """Do this process's missing shards. `on_shard(index)` is called after each is written.
    Returns {"shards_written", "shards_missing" (still, by any process), "teacher_tokens" and
    "seconds" (of this run), "bytes_per_token" (on disk, of the shards written)}."""
    directory = Path(directory)
    if any(r.kind == "chat" for r in records) and not teacher.tokenizer.chat_template:
        raise ValueError(f"teacher {teacher.name} has no chat template, so it cannot answer "
                         f"prompts: give it text to read (--data) or let it write (--free N)")
    n_shards = -(-len(records) // settings.shard_size)
    ensure_manifest(directory, {
        "teacher": teacher.name, "n_records": len(records), "n_shards": n_shards,
        "records": records_digest(records), "settings": asdict(settings)})
    model_vocab = teacher.model.get_output_embeddings().weight.shape[0]
    vocab = teacher_vocab(teacher.tokenizer, model_vocab, teacher.model.config)
    vocab.save(directory / "vocab.json")  # the same every time: rewriting it is harmless
    k, n = shard
    todo = [i for i in missing_shards(directory) if i % n == k - 1]
    bar = ProgressBar(len(todo), stream=stream)
    started, tokens, disk_bytes = time.perf_counter(), 0, 0
    for done, index in enumerate(todo):
        chunk = records[index * settings.shard_size:(index + 1) * settings.shard_size]
        torch.manual_seed(settings.seed * 1_000_003 + index)
        pieces = _shard_pieces(teacher, vocab, chunk, index * settings.shard_size, settings)
        disk_bytes += write_shard(directory, index, pieces).stat().st_size
        tokens += sum(len(p.tokens) + 1 for p in pieces)
        seconds = time.perf_counter() - started
        left = seconds / (done + 1) * (len(todo) - done - 1)
        bar.show(f"teacher targets: shard {done + 1}/{len(todo)} | {tokens / seconds:,.0f} "
                 f"tok/s | ETA {duration(left)} | {disk_bytes / tokens:,.0f} bytes/token",
                 force=done + 1 == len(todo))
        if on_shard:
            on_shard(index)
    return {"shards_written": len(todo), "shards_missing": len(missing_shards(directory)),
            "teacher_tokens": tokens, "seconds": time.perf_counter() - started,
            "bytes_per_token": disk_bytes / tokens if tokens else None}


# ---- one shard ------------------------------------------------------------------------------

def _shard_pieces(teacher, vocab: TeacherVocab, records, first_index, settings) -> list[Piece]:
    tokenizer = teacher.tokenizer
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else \
        tokenizer.eos_token_id
    # (kind, record index, context ids, text ids) for every piece
    work = []
    for offset, record in enumerate(records):
        if record.kind == "text":
            ids = tokenizer(record.text, add_special_tokens=False, verbose=False)["input_ids"]
            step = teacher.max_len - 1
            work += [("text", first_index + offset, [bos], ids[i:i + step])
                     for i in range(0, len(ids), step)]
        elif record.reply is not None:     # a reply the corpus has: read, not written
            context = teacher.chat_context(record.text)
            ids = tokenizer(record.reply, add_special_tokens=False, verbose=False)["input_ids"]
            work.append(("chat", first_index + offset, context,
                         ids[:max(teacher.max_len - len(context) - 1, 0)]))
    to_sample = [(first_index + offset, r) for offset, r in enumerate(records)
                 if r.kind != "text" and r.reply is None]
    contexts = [teacher.chat_context(r.text) if r.kind == "chat" else [bos]
                for _, r in to_sample]
    written = teacher.continue_ids(contexts, settings.max_new_tokens, settings.temperature,
                                   settings.top_p, settings.batch_size)
    for (index, record), context, ids in zip(to_sample, contexts, written):
        work.append((record.kind, index, context, ids))
    work.sort(key=lambda w: w[1])  # plan order
    predictions = _score(teacher, [(context, ids) for _, _, context, ids in work], settings.k)
    pieces = []
    for (kind, index, context, ids), (topk_ids, topk_logprobs) in zip(work, predictions):
        text = b"".join(vocab.token_bytes[i] or b"" for i in ids)
        first_piece = not pieces or pieces[-1].record != index
        prefix = int(vocab.dummy_prefix and first_piece and text.startswith(b" "))
        pieces.append(Piece(kind, index, prefix, text[prefix:],
                            records[index - first_index].text if kind == "chat" else None,
                            np.array(ids, np.int32), topk_ids,
                            topk_logprobs))
    return pieces


@torch.no_grad()
def _score(teacher, sequences, k) -> list[tuple]:
    """For each (context, ids): the top-k predictions (ids int32, log-probs float16) at the
    last context position and at every position of ids: len(ids) + 1 rows."""
    model = teacher.model
    vocab_size = model.get_output_embeddings().weight.shape[0]
    budget = min(16384, max(256, 2 ** 27 // vocab_size))   # positions per forward pass
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]) +
                   len(sequences[i][1]))
    results = [None] * len(sequences)
    batch = []

    def run(batch):
        rows = [sequences[i][0] + sequences[i][1] for i in batch]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=teacher.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows],
                            device=teacher.device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        for b, i in enumerate(batch):
            context, text = sequences[i]
            wanted = logits[b, len(context) - 1:len(context) + len(text)].float()
            top = torch.log_softmax(wanted, dim=-1).topk(min(k, vocab_size), dim=-1)
            results[i] = (top.indices.to(torch.int32).cpu().numpy(),
                          top.values.to(torch.float16).cpu().numpy())

    for i in order:
        length = len(sequences[i][0]) + len(sequences[i][1])
        if batch and (len(batch) + 1) * length > budget:
            run(batch)
            batch = []
        batch.append(i)
    if batch:
        run(batch)
    return results
