"""The NumPy reference engine: runs a .bin with exactly the integer arithmetic of the C runtime.

Same model as model.py, in fixed point (fixedpoint.py), step by step as tinylm/runtime/csrc/tinylm.c
does it, so both give the same logits bit for bit:

  * a matrix-vector product rounds its input vector to -63..63 with one scale m * 2**k
    (fixedpoint.quantize_int8), multiplies by the int8 (or int4) weights into an exact dot per
    group, and adds the groups up in 32 bits: each dot rounded to 15 bits, times its uint16
    scale, cut by a few bits more (Engine.group_shifts); one shift at the end gives Q16.
    Float32 weights (--bits 32) take the input as float32 and add up in float32, in order.
  * RMSNorm uses an integer square root, softmax and SiLU an integer exp (fixedpoint.exp_neg),
    RoPE a Q14 cos/sin table stored in the file. Every step fits 32-bit integers in the C
    (no 64-bit multiply or divide per token); the bounds are noted there.
  * keys and values are cached as int8 with one such scale per position and head; queries,
    already divided by sqrt(head_dim), are rounded to int16 with a power-of-two scale.

Positions are independent except in attention, so a whole window of tokens is computed at once
(vectorized over positions), which is what makes `logits` fast enough for evaluation.
"""
from __future__ import annotations

import numpy as np

from ..export.binformat import F32, Q8, BinModel
from . import fixedpoint as fx

# 1 / (1 + i/64) in Q16, rounded, i = 0..65 (RECIPROCAL_TABLE in tinylm.c)
RECIPROCALS = np.array([(65536 * 128 + 64 + i) // (2 * (64 + i)) for i in range(66)], np.int64)


def by_group(t) -> np.ndarray:
    """An int8/int4 matrix (out, in) as float32 (groups, group, out), zero-padded to whole
    groups: the layout of Engine.matvec's one batched product."""
    out, n_in = t.values.shape
    n_groups = -(-n_in // t.group)
    w = np.pad(t.values.astype(np.float32), ((0, 0), (0, n_groups * t.group - n_in)))
    return np.ascontiguousarray(w.reshape(out, n_groups, t.group).transpose(1, 2, 0))


def exact_matmul(a, b) -> np.ndarray:
    """a @ b of integer arrays, by BLAS in float64: exact while every partial sum stays below
    2**53 in magnitude (attention's are below 2**42: 16-bit queries or 19-bit weights, int8
    keys or values, at most 2**16 positions)."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


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
        self.inv_sqrt_head = ((1 << 35) + root // 2) // root       # 1/sqrt(head_dim) in Q15
        extra = int(fx.bit_length(c.head_dim - 1)) - 5             # tinylm.c query_bits
        self.query_bits = 16 - max(extra, 0)
        self.weights = {name: (t, by_group(t) if t.dtype != F32 else t.values,
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
        q, m, k = fx.quantize_int8(h, fx.INPUT_TOP)
        n_groups, group = w.shape[0], w.shape[1]
        group_shift, sum_shift = self.group_shifts(t, n_groups)
        q = np.pad(q, ((0, 0), (0, n_groups * group - q.shape[1])))
        q = q.reshape(len(h), n_groups, group).transpose(1, 0, 2).astype(np.float32)
        # Each group's dot is an integer below 2**24 in magnitude (63 * 127 * 256 at most),
        # which float32 holds exactly at every step: BLAS gives the integer sums.
        dots = fx.rshift_round((q @ w).astype(np.int64), group_shift)       # (groups, T, out)
        terms = np.right_shift(dots * scales.T[:, None, :], sum_shift)
        return fx.scale_sat(terms.sum(axis=0) * m[:, None],
                            t.shift - k[:, None] - group_shift - sum_shift)

    @staticmethod
    def group_shifts(t, n_groups):
        """Bits cut from a group's dot (to 15 bits) and from each scaled group term (so that
        their sum times m < 2**30): the 32-bit bounds of tinylm.c's matvec."""
        largest = (127 if t.dtype == Q8 else 8) * fx.INPUT_TOP * t.group
        return max(int(fx.bit_length(largest)) - 15, 0), 5 + int(fx.bit_length(n_groups - 1))

    def embed(self, tokens):
        t, _, scales = self.weights["tok_emb"]
        rows = t.values[tokens]
        if t.dtype == F32:
            return fx.q16_from_float(rows)
        per_column = np.repeat(scales[tokens], t.group, axis=1)[:, :rows.shape[1]]
        return fx.scale_sat(rows.astype(np.int64) * per_column, t.shift - 16)

    def rmsnorm(self, x, name):
        dim_bits = int(fx.bit_length(x.shape[1]))
        bits, p = (31 - dim_bits) // 2, 13 - (dim_bits + 1) // 2          # see tinylm.c
        shift = np.maximum(fx.bit_length(np.abs(x).max(axis=1)) - bits, 0)[:, None]
        xs = np.right_shift(x, shift)
        eps = np.where(2 * shift > 31, 0, np.right_shift(self.eps_q32, np.minimum(2 * shift, 31)))
        mean = np.minimum((xs * xs).sum(axis=1, keepdims=True) // x.shape[1] + eps, 2**32 - 1)
        root = np.maximum(fx.isqrt_rows(mean), 1)
        inv = ((1 << (16 + p)) + root // 2) // root                     # 1/rms, see C
        return fx.mul_q16(fx.rshift_round(xs * inv, p), self.norms[name])

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
        q16, q_exp = fx.quantize_pow2(fx.rshift_round(q * self.inv_sqrt_head, 15), self.query_bits)
        visible = np.arange(end)[None, :] <= np.arange(start, end)[:, None]      # (T, end)
        out = np.empty((T, c.n_heads, c.head_dim), np.int64)
        for head in range(c.n_heads):
            kv = head // group
            k8, k_m, k_exp = (a[layer, :end, kv] for a in self.keys)
            v8, v_m, v_exp = (a[layer, :end, kv] for a in self.values)
            dots = exact_matmul(q16[:, head], k8.T) * k_m[None, :]
            scores = fx.scale_sat(dots, 16 - q_exp[:, head, None] - k_exp[None, :])
            top = np.where(visible, scores, -fx.LIMIT).max(axis=1, keepdims=True)
            z = scores - top
            weights = np.where(visible & (z >= -(12 << 16)), np.right_shift(fx.exp_neg(z), 14), 0)
            cut = fx.bit_length(weights.sum(axis=1, keepdims=True)) - 15   # 15 bits of the total
            weights = fx.rshift_round(weights, np.maximum(cut, 0))
            norm = np.maximum(weights.sum(axis=1, keepdims=True), 1)
            top_exp = np.where(visible, v_exp[None, :], -64).max(axis=1, keepdims=True)
            below = np.clip(top_exp - v_exp[None, :], 0, 62)                        # (T, end)
            factor = fx.rshift_round(weights * v_m[None, :], below)        # units of 2**top_exp
            acc = exact_matmul(factor, v8)
            out[:, head] = fx.scale_sat(fx.div_round(acc * 8, norm), 3 - top_exp)
        return out.reshape(T, -1)

    def swiglu(self, a, b):
        e = np.right_shift(fx.exp_neg(-np.abs(a)), 14)                   # e**-|a|, Q16
        i, r = np.right_shift(e, 10), e & 1023
        step = RECIPROCALS[i] - RECIPROCALS[i + 1]
        sig = RECIPROCALS[i] - np.right_shift(step * r, 10)           # sigmoid(|a|), Q16
        sig = np.where(a < 0, (1 << 16) - sig, sig)
        return fx.mul_q16(fx.rshift_round(a * sig, 16), b)

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
