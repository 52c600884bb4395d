"""How well a model predicts a text: loss in nats per token, and bits per byte.

Each document (data.split_documents) is encoded as <bos> + text, like the training data, and
every token after <bos> is predicted from the ones before it. Loss per token depends on the
tokenizer (bigger tokens carry more information each); bits per byte does not, so it compares
models with different vocabularies:

    bpb = (total nats over all predicted tokens) / ln 2 / (UTF-8 bytes of the documents)

A document longer than the model's context is cut into consecutive, non-overlapping windows
of max_seq_len predictions; each window starts without memory of the one before. This is
simple and counts every token exactly once, but tokens at the start of a window see less
context than the model could use, so the loss is a little pessimistic for long documents.

A chat model is scored on its replies (evaluate_chat): each prompt/reply pair is encoded in the
model's turn, <bos> user prompt assistant reply end, and only the reply's tokens and its end
are predicted and counted, over the reply's bytes; so two chat models with different
tokenizers compare on what they answer, not on how well they guess the questions.
"""
from __future__ import annotations

import math

import numpy as np

from ..text.data import split_documents


def evaluate(model, tokenizer, text_or_documents: str | list[str], split: str = "auto",
             batch_size: int = 8) -> dict:
    """Returns {"loss": nats/token, "bpb": bits/byte, "tokens": predicted tokens,
    "bytes": UTF-8 bytes of the documents}. A str is cut into documents by `split`
    (data.split_documents); a list is taken as the documents, as they are."""
    if isinstance(text_or_documents, str):
        documents = split_documents(text_or_documents, split)
    else:
        documents = list(text_or_documents)
    if not documents:
        raise ValueError("nothing to evaluate: no non-empty documents")
    encoded = (np.array(tokenizer.encode(doc, bos=True), np.int32) for doc in documents)
    nats, n_tokens = document_nats(model, encoded, batch_size)
    n_bytes = sum(len(doc.encode("utf-8", "surrogatepass")) for doc in documents)
    return {"loss": nats / n_tokens, "bpb": nats / math.log(2) / n_bytes,
            "tokens": n_tokens, "bytes": n_bytes}


def document_nats(model, encoded_documents, batch_size: int = 8,
                  windows_at_once: int = 1024) -> tuple[float, int]:
    """Total nats and number of predicted tokens over documents given as token ids, each
    <bos> + text, cut into windows as the module docstring says. Documents may come one at a
    time (a generator): only `windows_at_once` windows are held, however long the text."""
    T = model.config.max_seq_len
    total, count, windows = 0.0, 0, []
    for ids in encoded_documents:
        windows += [ids[start:start + T + 1] for start in range(0, len(ids) - 1, T)]
        if len(windows) >= windows_at_once:
            nats, n = total_nats(model, windows, batch_size)
            total, count, windows = total + nats, count + n, []
    nats, n = total_nats(model, windows, batch_size)
    return total + nats, count + n


def evaluate_chat(model, tokenizer, turn, pairs, batch_size: int = 8) -> dict:
    """A chat model's replies scored (module docstring): {"loss": nats per reply token,
    "bpb": bits per reply byte, "tokens", "bytes"} for (prompt, reply) pairs; `turn` is the
    model's ChatTurn. A pair must fit the model's context."""
    sequences, first_scored = [], []
    for number, (prompt, reply) in enumerate(pairs, 1):
        ids = turn.prompt_ids(tokenizer, prompt)
        first_scored.append(len(ids) - 1)     # the prediction of the reply's first token
        sequences.append([*ids, *tokenizer.encode(reply), turn.end])
        if len(sequences[-1]) > model.config.max_seq_len + 1:
            raise ValueError(f"pair {number} is {len(sequences[-1])} tokens long in this "
                             f"model's turn, more than its context ({model.config.max_seq_len})")
    if not sequences:
        raise ValueError("nothing to evaluate: no prompt/reply pairs")
    nats, n_tokens = total_nats(model, sequences, batch_size, first_scored)
    n_bytes = sum(len(reply.encode("utf-8", "surrogatepass")) for _, reply in pairs)
    return {"loss": nats / n_tokens, "bpb": nats / math.log(2) / max(n_bytes, 1),
            "tokens": n_tokens, "bytes": n_bytes}


def total_nats(model, sequences, batch_size: int = 8,
               first_scored: list[int] | None = None) -> tuple[float, int]:
    """Sum over all sequences of -ln p(token | the tokens before it), for every token but the
    first of each sequence (or, with first_scored, from token first_scored[i] + 1 of sequence
    i on), and how many tokens that is. Sequences of at least 2 and at most max_seq_len + 1
    tokens.

    Sequences are sorted by length and batched; shorter ones are padded at the end. Attention
    is causal, so padding after a sequence cannot change its predictions, and the padded
    positions are masked out of the sum."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    total, count = 0.0, 0
    for first in range(0, len(order), batch_size):
        batch = [sequences[i] for i in order[first:first + batch_size]]
        T = len(batch[-1]) - 1  # the longest, as the batch is sorted
        inputs = np.zeros((len(batch), T), dtype=np.int64)
        targets = np.zeros((len(batch), T), dtype=np.int64)
        mask = np.zeros((len(batch), T), dtype=bool)
        for row, i in enumerate(order[first:first + batch_size]):
            seq, n = sequences[i], len(sequences[i]) - 1
            inputs[row, :n], targets[row, :n] = seq[:-1], seq[1:]
            mask[row, first_scored[i] if first_scored else 0:n] = True
        logits = model.logits(inputs)
        # -log softmax at the target = logsumexp(logits) - logits[target], shifted by the max
        # so exp cannot overflow.
        logits -= logits.max(axis=-1, keepdims=True)
        target_logits = np.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
        nats = np.log(np.exp(logits).sum(axis=-1)) - target_logits
        total += float(nats[mask].sum(dtype=np.float64))
        count += int(mask.sum())
    return total, count
