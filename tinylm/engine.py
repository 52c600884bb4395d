"""The NumPy reference engine: runs a .bin with exactly the integer arithmetic of the C runtime.

Same model as model.py, in fixed point (fixedpoint.py), step by step as tinylm/csrc/tinylm.c
does it, so both give the same logits bit for bit:

  * a matrix-vector product quantizes its input vector to int8 with one scale m * 2**k
    (fixedpoint.quantize_int8), multiplies int8 by int8 (or int4) into an int32 per group, and
    adds the groups up in int64, each times its uint16 scale; one shift at the end gives Q16.
    Float32 weights (--bits 32) take the input as float32 and add up in float32, in order.
  * RMSNorm uses an integer square root, softmax and SiLU an integer exp (fixedpoint.exp_neg),
    RoPE a Q14 cos/sin table stored in the file.
  * keys and values are cached as int8 with one such scale per position and head; queries,
    already divided by sqrt(head_dim), are rounded to int16 with a power-of-two scale.

Positions are independent except in attention, so a whole window of tokens is computed at once
(vectorized over positions), which is what makes `logits` fast enough for evaluation.
"""
from __future__ import annotations

import numpy as np

from . import fixedpoint as fx
from .binformat import F32, BinModel


class Engine:
    def __init__(self, model: BinModel, context: int | None = None):
        self.model = model
        self.config = c = model.config
        self.tokenizer = model.tokenizer
        self.context = min(context or c.max_seq_len, c.max_seq_len)
        self.norms = {name: fx.q16_from_float(t.values)
                      for name, t in model.tensors.items() if t.values.ndim == 1}
        self.eps_q32 = fx.q32_from_fraction(c.norm_eps)
        root = fx.isqrt_rows(np.int64(c.head_dim) << 40)           # sqrt(head_dim) in Q20
        self.inv_sqrt_head = ((1 << 50) + root // 2) // root       # 1/sqrt(head_dim) in Q30
        self.weights = {name: (t, t.values.astype(np.int64 if t.dtype != F32 else np.float32),
                               None if t.scales is None else t.scales.astype(np.int64))
                        for name, t in model.tensors.items() if t.values.ndim == 2}
        self.head = self.weights["tok_emb" if c.tie_embeddings else "lm_head"]
        self.reset()

    def reset(self):
        c = self.config
        shape = (c.n_layers, self.context, c.n_kv_heads)
        # int8 values and their scale m * 2**k (fixedpoint.quantize_int8)
        self.keys = (np.zeros((*shape, c.head_dim), np.int64), np.zeros(shape, np.int64),
                     np.zeros(shape, np.int64))
        self.values = tuple(np.zeros_like(a) for a in self.keys)
        self.length = 0

    # ---- the pieces ---------------------------------------------------------------------------

    def matvec(self, weight, h):
        """(T, in) Q16 -> (T, out) Q16."""
        t, w, scales = weight
        if t.dtype == F32:
            x = h.astype(np.float32) * np.float32(1 / fx.ONE)
            acc = np.zeros((len(h), w.shape[0]), np.float32)
            for j in range(w.shape[1]):      # in order, one rounding per step, as the C loop
                acc += x[:, j:j + 1] * w[:, j]
            return fx.q16_from_float(acc)
        q, m, k = fx.quantize_int8(h)
        acc = np.zeros((len(h), w.shape[0]), np.int64)
        for g in range(scales.shape[1]):
            cut = slice(g * t.group, (g + 1) * t.group)
            acc += (q[:, cut] @ w[:, cut].T) * scales[:, g]
        return fx.scale_sat(acc * m[:, None], t.shift - k[:, None])

    def embed(self, tokens):
        t, w, scales = self.weights["tok_emb"]
        if t.dtype == F32:
            return fx.q16_from_float(w[tokens])
        per_column = np.repeat(scales[tokens], t.group, axis=1)[:, :w.shape[1]]
        return fx.scale_sat(w[tokens] * per_column, t.shift - 16)

    def rmsnorm(self, x, name):
        shift = np.maximum(fx.bit_length(np.abs(x).max(axis=1)) - 20, 0)[:, None]
        xs = np.right_shift(x, shift)
        mean = (xs * xs).sum(axis=1, keepdims=True) // x.shape[1] + \
            np.right_shift(self.eps_q32, 2 * shift)
        inv = (1 << 46) // np.maximum(fx.isqrt_rows(mean), 1)           # 1/rms, see C
        normalized = fx.rshift_round(xs * inv, 30)
        return fx.scale_sat(normalized * self.norms[name], 16)

    def rope(self, v, start):
        """v: (T, heads, head_dim) Q16, pairs (v[2i], v[2i+1]) rotated by the Q14 table."""
        table = self.model.rope[start:start + len(v), None].astype(np.int64)
        cos, sin = table[..., 0], table[..., 1]
        x0, x1 = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = fx.sat(fx.rshift_round(x0 * cos - x1 * sin, 14))
        out[..., 1::2] = fx.sat(fx.rshift_round(x0 * sin + x1 * cos, 14))
        return out

    def attention(self, layer, q, start):
        """q: (T, n_heads, head_dim) Q16 for positions start.. -> (T, n_heads * head_dim)."""
        c = self.config
        T, end = len(q), start + len(q)
        group = c.n_heads // c.n_kv_heads
        q16, q_exp = fx.quantize_pow2(fx.rshift_round(q * self.inv_sqrt_head, 30))
        visible = np.arange(end)[None, :] <= np.arange(start, end)[:, None]      # (T, end)
        out = np.empty((T, c.n_heads, c.head_dim), np.int64)
        for head in range(c.n_heads):
            kv = head // group
            k8, k_m, k_exp = (a[layer, :end, kv] for a in self.keys)
            v8, v_m, v_exp = (a[layer, :end, kv] for a in self.values)
            dots = (q16[:, head] @ k8.T) * k_m[None, :]
            scores = fx.scale_sat(dots, 16 - q_exp[:, head, None] - k_exp[None, :])
            top = np.where(visible, scores, -fx.LIMIT).max(axis=1, keepdims=True)
            weights = np.where(visible, np.right_shift(fx.exp_neg(scores - top), 14), 0)
            base = np.where(visible, v_exp[None, :], -64).max(axis=1, keepdims=True) - 16
            rel = (v_exp[None, :] - base)[:, :, None]                    # (T, end, 1), <= 16
            terms = weights[:, :, None] * (v8 * v_m[:, None])[None, :, :]
            terms = np.where(rel >= 0, terms * np.left_shift(np.int64(1), np.maximum(rel, 0)),
                             fx.rshift_round(terms, np.maximum(-rel, 0)))
            average = fx.div_round(terms.sum(axis=1), weights.sum(axis=1, keepdims=True))
            out[:, head] = fx.scale_sat(average, -base)
        return out.reshape(T, -1)

    def swiglu(self, a, b):
        sig = (1 << 60) // ((1 << 30) + fx.exp_neg(-np.abs(a)))        # sigmoid(|a|), Q30
        sig = np.where(a < 0, (1 << 30) - sig, sig)
        return fx.scale_sat(fx.rshift_round(a * sig, 30) * b, 16)

    # ---- the model ----------------------------------------------------------------------------

    def forward(self, tokens) -> np.ndarray:
        """Feed tokens at the next positions; returns their logits, Q16 int64 (T, vocab)."""
        c, w = self.config, self.weights
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        start, T = self.length, len(tokens)
        if start + T > self.context:
            raise ValueError(f"context full: {start + T} tokens > {self.context}")
        x = self.embed(tokens)
        for i in range(c.n_layers):
            p = f"layers.{i}."
            h = self.rmsnorm(x, p + "attn_norm")
            q = self.rope(self.matvec(w[p + "wq"], h).reshape(T, c.n_heads, c.head_dim), start)
            k = self.rope(self.matvec(w[p + "wk"], h).reshape(T, c.n_kv_heads, c.head_dim), start)
            v = self.matvec(w[p + "wv"], h).reshape(T, c.n_kv_heads, c.head_dim)
            positions = slice(start, start + T)
            for cache, new in ((self.keys, k), (self.values, v)):
                for array, part in zip(cache, fx.quantize_int8(new)):
                    array[i, positions] = part
            x = fx.sat(x + self.matvec(w[p + "wo"], self.attention(i, q, start)))
            h = self.rmsnorm(x, p + "mlp_norm")
            gate = self.swiglu(self.matvec(w[p + "w1"], h), self.matvec(w[p + "w3"], h))
            x = fx.sat(x + self.matvec(w[p + "w2"], gate))
        self.length += T
        return self.matvec(self.head, self.rmsnorm(x, "final_norm"))

    def logits(self, batch) -> np.ndarray:
        """Float logits (B, T, vocab) of each row of token ids, each from an empty cache: the
        interface evaluate.py uses."""
        batch = np.asarray(batch)
        out = np.empty((*batch.shape, self.config.vocab_size), np.float64)
        for row, tokens in enumerate(batch):
            self.reset()
            out[row] = self.forward(tokens) / fx.ONE
        self.reset()
        return out
