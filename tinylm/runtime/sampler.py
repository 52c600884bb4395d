"""Sampling in integers, as the C runtime does it, so both engines pick the same tokens.

Same knobs as generate.py (temperature, top-k, top-p), but on Q16 logits and in fixed point:
temperature and top-p are passed as Q16 integers, probabilities are exp_neg_coarse values
(Q30, unnormalized), and the random number generator is xorshift64*, so a seed gives the same text
from the C runtime and from the NumPy reference.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..training.generate import check_prompt
from .fixedpoint import ONE, exp_neg_coarse

MASK64 = (1 << 64) - 1


def to_q16(x: float) -> int:
    return int(x * ONE + 0.5)


class Rng:
    """xorshift64*: 64 bits of state, 32 random bits per call."""

    def __init__(self, seed: int):
        self.state = (seed + 0x9E3779B97F4A7C15) & MASK64 or 1

    def next_u32(self) -> int:
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        self.state = x
        return ((x * 0x2545F4914F6CDD1D) & MASK64) >> 32

    def next_u64(self) -> int:
        return (self.next_u32() << 32) | self.next_u32()


def sample(logits, rng: Rng, temperature_q16: int, top_k: int = 0, top_p_q16: int = ONE) -> int:
    """A token id from Q16 logits (V,). temperature_q16 0 is greedy (the first largest)."""
    logits = np.asarray(logits, np.int64)
    if temperature_q16 == 0:
        return int(np.argmax(logits))
    z = np.maximum(logits - logits.max(), -(1 << 27))          # so z * (2**32 / T) fits
    scaled = np.maximum(np.right_shift(z * ((1 << 32) // temperature_q16), 16), -(1 << 31))
    probs = [int(p) for p in exp_neg_coarse(scaled)]            # Q30; the top token has 2**30
    order = range(len(probs))
    if top_k > 0 or top_p_q16 < ONE:
        order = sorted(order, key=lambda i: (-probs[i], i))
        if 0 < top_k < len(order):
            order = order[:top_k]
        total, kept, mass = sum(probs[i] for i in order), [], 0
        for i in order:    # keep a token while the more likely ones hold less than top_p
            if mass * ONE >= top_p_q16 * total:
                break
            kept.append(i)
            mass += probs[i]
        order = kept
    r = rng.next_u64() % sum(probs[i] for i in order)
    for i in order:
        if r < probs[i]:
            return i
        r -= probs[i]
    raise AssertionError("unreachable: r is below the total")


def generate_ids(engine, prompt_ids, max_tokens: int, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0) -> Iterator[int]:
    """New token ids from the NumPy engine; stops as generate.generate does (max_tokens, <eos>
    or <bos>, a chat model's end of reply, or a full context), and as tlm_next does. The prompt
    is checked now, at the call."""
    check_prompt(len(prompt_ids), engine.context)
    stop = {engine.tokenizer.specials.get(name) for name in ("<bos>", "<eos>")}
    if engine.model.chat:
        stop.add(engine.model.chat.end)

    def tokens():
        rng = Rng(seed)
        engine.reset()
        new = list(prompt_ids)
        for _ in range(min(max_tokens, engine.context - len(new))):
            token = sample(engine.forward(new)[-1], rng, to_q16(temperature), top_k,
                           to_q16(top_p))
            if token in stop:
                return
            yield token
            new = [token]

    return tokens()
