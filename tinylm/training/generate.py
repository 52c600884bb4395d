"""Text generation: pick the next token from the logits, feed it back, repeat.

The prompt goes through the model once, filling the key/value cache; after that each new
token costs one single-position forward pass. Sampling knobs, applied in this order:

    temperature  0 picks the most likely token (greedy); otherwise logits are divided by it,
                 so below 1 sharpens the distribution and above 1 flattens it
    top_k        keep only the k most likely tokens (0 = all)
    top_p        keep the fewest most likely tokens whose probabilities add up to top_p
                 ("nucleus" sampling; 1 = all)
"""
from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..core.model import KVCache


def token_probs(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """The distribution (float64, sums to 1) that the next token is drawn from; temperature > 0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if 0 < top_k < len(z):
        kept = np.argpartition(z, -top_k)[-top_k:]
        z_kept = np.full_like(z, -np.inf)
        z_kept[kept] = z[kept]
        z = z_kept
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        mass_before = np.cumsum(probs[order]) - probs[order]
        # A token stays while the more likely ones cover less than top_p: the top one always does.
        probs[order[mass_before >= top_p]] = 0.0
        probs /= probs.sum()
    return probs


def sample(logits, rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> int:
    """One token id drawn from `logits` (V,)."""
    if temperature == 0:
        return int(np.argmax(logits))
    probs = token_probs(logits, temperature, top_k, top_p)
    return int(rng.choice(len(probs), p=probs))


def generate(model, tokenizer, prompt: str | Sequence[int], max_tokens: int = 256,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int | None = None, end_id: int | None = None) -> Iterator[int]:
    """New token ids, one at a time, continuing `prompt` (a text, which gets <bos> in front, or
    token ids as they are). Stops after `max_tokens`, at <eos>, <bos> or `end_id` (a chat
    model's end of reply; none of them yielded), or when prompt plus output fill the model's
    context (max_seq_len). Bad arguments fail here, at the call, rather than at the first
    token."""
    if temperature < 0 or top_k < 0 or not 0 < top_p <= 1 or max_tokens < 0:
        raise ValueError("need temperature >= 0, top_k >= 0, 0 < top_p <= 1 and max_tokens >= 0")
    ids = tokenizer.encode(prompt, bos=True) if isinstance(prompt, str) else list(prompt)
    context = model.config.max_seq_len
    check_prompt(len(ids), context)
    # Models trained on texts that each begin with <bos> (llama2.c's) end one by starting the next.
    stop = {tokenizer.eos_id, tokenizer.bos_id, end_id} - {None}
    rng = np.random.default_rng(seed)

    def tokens():
        cache = KVCache(model.config, model.dtype)
        new = ids
        for _ in range(min(max_tokens, context - len(ids))):
            logits = model.forward_cached(new, cache)[-1]
            token = sample(logits, rng, temperature, top_k, top_p)
            if token in stop:
                return
            yield token
            new = [token]

    return tokens()


def check_prompt(n_tokens: int, context: int) -> None:
    """Refuse a prompt that leaves no room in the context for a new token (every engine
    refuses alike, before anything is generated)."""
    if not 0 < n_tokens < context:
        raise ValueError(f"the prompt has {n_tokens} tokens; it needs 1 to {context - 1} "
                         f"(the context is {context} tokens)")


def stream_text(tokenizer, ids: Iterable[int], context: Sequence[int] = ()) -> Iterator[str]:
    """Turn token ids into text as they arrive. A character whose UTF-8 bytes are spread over
    several tokens comes out once its last byte is in. `context`: the ids before `ids` (the
    prompt), which decide whether the first new piece keeps its leading space."""
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    previous = list(context[-1:])
    for i in ids:
        # A token's text depends only on the token before it: a text's first token (at the start
        # or after a special token) drops the dummy-prefix space of llama2.c vocabularies.
        before = len(tokenizer.decode_bytes(previous))
        text = utf8.decode(tokenizer.decode_bytes(previous + [i])[before:])
        if text:
            yield text
        previous = [i]
    tail = utf8.decode(b"", final=True)   # bytes of a character cut off by the end: U+FFFD
    if tail:
        yield tail
