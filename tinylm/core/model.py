"""A Llama-style decoder: the forward pass, its hand-written backward pass, and cached inference.

    tokens -> embedding -> n_layers x [ x += Attention(RMSNorm(x)) ; x += SwiGLU-MLP(RMSNorm(x)) ]
           -> RMSNorm -> LM head (tied to the embedding or not) -> logits

`forward` keeps every activation the backward pass needs; `backward` walks the same steps in
reverse and returns a gradient for every parameter. `KVCache` + `forward_cached` run the model one
token (or one prompt) at a time for generation, reusing the keys and values of earlier positions.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import ops
from .config import ModelConfig
from .memory import keep_freed_memory
from .threads import single_threaded_blas


def init_params(config: ModelConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random weights: N(0, 0.02) for matrices, with the projections that write into the residual
    stream (wo, w2) scaled down by sqrt(2 * n_layers) so the stream's variance stays steady with
    depth; norm weights start at 1."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in config.param_shapes().items():
        if len(shape) == 1:
            params[name] = np.ones(shape, dtype=dtype)
            continue
        std = 0.02
        if name.endswith((".wo", ".w2")):
            std /= np.sqrt(2 * config.n_layers)
        params[name] = (rng.standard_normal(shape) * std).astype(dtype)
    return params


class Transformer:
    def __init__(self, config: ModelConfig, params: dict[str, np.ndarray]):
        expected = config.param_shapes()
        for name, shape in expected.items():
            if name not in params:
                raise ValueError(f"model: missing parameter {name!r}")
            if params[name].shape != shape:
                raise ValueError(f"model: {name} has shape {params[name].shape}, "
                                 f"config wants {shape}")
        extra = set(params) - set(expected)
        if extra:
            raise ValueError(f"model: unexpected parameter(s) {sorted(extra)}")
        self.config = config
        self.params = params
        self.dtype = params["tok_emb"].dtype
        self.rope = ops.rope_table(config.max_seq_len, config.head_dim, config.rope_theta,
                                   self.dtype)
        self._masks = {}

    @classmethod
    def initialize(cls, config: ModelConfig, seed: int = 0, dtype=np.float32) -> "Transformer":
        return cls(config, init_params(config, seed, dtype))

    @property
    def lm_head(self):
        return self.params["tok_emb"] if self.config.tie_embeddings else self.params["lm_head"]

    def _mask(self, n_queries, n_keys):
        key = (n_queries, n_keys)
        if key not in self._masks:
            G = self.config.n_heads // self.config.n_kv_heads
            self._masks[key] = ops.causal_mask(n_queries, n_keys, G, self.dtype)
        return self._masks[key]

    # ------------------------------------------------------------------------------------------
    # One transformer block. `past` (keys, values of earlier positions) is used by cached
    # inference; training passes None.

    def _block(self, i, x, B, T, start, past=None, mask=None):
        c, p = self.config, self.params
        pre = f"layers.{i}."
        N = B * T
        h, attn_norm_cache = ops.rmsnorm_forward(x, p[pre + "attn_norm"], c.norm_eps)
        rotation = self.rope[start:start + T]
        q = ops.linear_forward(h, p[pre + "wq"]).reshape(B, T, c.n_heads, c.head_dim)
        k = ops.linear_forward(h, p[pre + "wk"]).reshape(B, T, c.n_kv_heads, c.head_dim)
        v = ops.linear_forward(h, p[pre + "wv"]).reshape(B, T, c.n_kv_heads, c.head_dim)
        q, k = ops.rope_forward(q, rotation), ops.rope_forward(k, rotation)
        if past is not None:
            k, v = past(i, k, v)
        if mask is None:
            mask = self._mask(T, k.shape[1])
        att, attention_cache = ops.attention_forward(q, k, v, mask)
        att = att.reshape(N, -1)
        x = x + ops.linear_forward(att, p[pre + "wo"])

        h2, mlp_norm_cache = ops.rmsnorm_forward(x, p[pre + "mlp_norm"], c.norm_eps)
        a = ops.linear_forward(h2, p[pre + "w1"])
        b = ops.linear_forward(h2, p[pre + "w3"])
        gate, swiglu_cache = ops.swiglu_forward(a, b)
        x = x + ops.linear_forward(gate, p[pre + "w2"])
        cache = (attn_norm_cache, h, attention_cache, att, mlp_norm_cache, h2, swiglu_cache, gate)
        return x, cache

    def _block_backward(self, i, d_x, B, T, cache, grads):
        c, p = self.config, self.params
        pre = f"layers.{i}."
        attn_norm_cache, h, attention_cache, att, mlp_norm_cache, h2, swiglu_cache, gate = cache
        # MLP branch: x_out = x_mid + w2(swiglu(w1 h2, w3 h2)),  h2 = rmsnorm(x_mid)
        d_gate, grads[pre + "w2"] = ops.linear_backward(d_x, gate, p[pre + "w2"])
        d_a, d_b = ops.swiglu_backward(d_gate, swiglu_cache)
        d_h2, grads[pre + "w1"] = ops.linear_backward(d_a, h2, p[pre + "w1"])
        d_h2_b, grads[pre + "w3"] = ops.linear_backward(d_b, h2, p[pre + "w3"])
        d_h2 += d_h2_b
        d_norm, grads[pre + "mlp_norm"] = ops.rmsnorm_backward(d_h2, mlp_norm_cache)
        d_x = d_x + d_norm
        # attention branch: x_mid = x_in + wo(attention(rope(wq h), rope(wk h), wv h)),
        #                   h = rmsnorm(x_in)
        d_att, grads[pre + "wo"] = ops.linear_backward(d_x, att, p[pre + "wo"])
        d_q, d_k, d_v = ops.attention_backward(d_att.reshape(B, T, c.n_heads, c.head_dim),
                                               attention_cache)
        rotation = self.rope[:T]
        d_q, d_k = ops.rope_backward(d_q, rotation), ops.rope_backward(d_k, rotation)
        d_h, grads[pre + "wq"] = ops.linear_backward(d_q.reshape(B * T, -1), h, p[pre + "wq"])
        d_h_k, grads[pre + "wk"] = ops.linear_backward(d_k.reshape(B * T, -1), h, p[pre + "wk"])
        d_h_v, grads[pre + "wv"] = ops.linear_backward(d_v.reshape(B * T, -1), h, p[pre + "wv"])
        d_h += d_h_k
        d_h += d_h_v
        d_norm, grads[pre + "attn_norm"] = ops.rmsnorm_backward(d_h, attn_norm_cache)
        return d_x + d_norm

    # ------------------------------------------------------------------------------------------
    # Training: forward keeps the activations, backward consumes them.

    def forward(self, tokens, targets, soft: ops.SoftTargets | None = None, bos_id=None):
        """tokens, targets: (B, T) ints. Returns the mean loss (nats/token) and the activations
        that `backward` needs. The loss is the cross-entropy of the targets or, given a
        teacher's `soft` targets, the distillation loss (ops.kd_loss_forward). Given bos_id,
        each position attends to its own document only (ops.document_mask)."""
        c = self.config
        tokens = np.asarray(tokens)
        B, T = tokens.shape
        if T > c.max_seq_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_seq_len {c.max_seq_len}")
        x = ops.embedding_forward(self.params["tok_emb"], tokens).reshape(B * T, c.dim)
        mask = None if bos_id is None else ops.document_mask(
            tokens, bos_id, c.n_heads // c.n_kv_heads, self.dtype)
        block_caches = []
        for i in range(c.n_layers):
            x, cache = self._block(i, x, B, T, start=0, mask=mask)
            block_caches.append(cache)
        h, final_norm_cache = ops.rmsnorm_forward(x, self.params["final_norm"], c.norm_eps)
        logits = ops.linear_forward(h, self.lm_head)
        targets = np.asarray(targets).reshape(-1)
        if soft is None:
            loss, loss_cache = ops.cross_entropy_forward(logits, targets)
            loss_backward = ops.cross_entropy_backward
        else:
            loss, loss_cache = ops.kd_loss_forward(
                logits, targets, soft.ids.reshape(B * T, -1), soft.logprobs.reshape(B * T, -1),
                soft.weight, soft.temperature)
            loss_backward = ops.kd_loss_backward
        return loss, (tokens, block_caches, final_norm_cache, h, loss_backward, loss_cache)

    def backward(self, activations) -> dict[str, np.ndarray]:
        """Gradients of the loss of the `forward` that returned `activations`, for every parameter
        (same names as params). The activations are consumed: some of their buffers are reused."""
        c = self.config
        tokens, block_caches, final_norm_cache, h, loss_backward, loss_cache = activations
        B, T = tokens.shape
        grads = {}
        d_logits = loss_backward(loss_cache)
        d_h, d_head = ops.linear_backward(d_logits, h, self.lm_head)
        d_x, grads["final_norm"] = ops.rmsnorm_backward(d_h, final_norm_cache)
        for i in reversed(range(c.n_layers)):
            d_x = self._block_backward(i, d_x, B, T, block_caches[i], grads)
        d_emb = ops.embedding_backward(d_x, tokens, c.vocab_size)
        if c.tie_embeddings:
            d_emb += d_head
        else:
            grads["lm_head"] = d_head
        grads["tok_emb"] = d_emb
        return grads

    def loss_and_grads(self, tokens, targets, n_threads=2, soft: ops.SoftTargets | None = None,
                       bos_id=None):
        """forward + backward (`soft` and `bos_id` as in forward), with the batch split across
        threads.
        NumPy's elementwise loops run on one core but release Python's lock, so halves of a
        batch in two threads use two cores. The halves' gradients are averaged in a fixed
        order, so the result does not depend on thread timing. BLAS runs one thread per
        thread of ours (n_threads cores in all): at these sizes its own threads cost more in
        hand-offs than they save, and on a busy machine far more (threads.py)."""
        keep_freed_memory()
        tokens, targets = np.asarray(tokens), np.asarray(targets)
        n_threads = max(1, min(n_threads, len(tokens)))
        if n_threads == 1:
            with single_threaded_blas():
                loss, activations = self.forward(tokens, targets, soft, bos_id)
                return loss, self.backward(activations)
        parts = np.array_split(np.arange(len(tokens)), n_threads)

        def one_part(rows):
            part_soft = None if soft is None else soft.rows(rows)
            loss, activations = self.forward(tokens[rows], targets[rows], part_soft, bos_id)
            return loss, self.backward(activations)

        with single_threaded_blas(), ThreadPoolExecutor(n_threads) as pool:
            results = list(pool.map(one_part, parts))
        weights = [len(rows) / len(tokens) for rows in parts]
        loss = sum(w * part_loss for w, (part_loss, _) in zip(weights, results))
        grads = {}
        for name in results[0][1]:
            total = results[0][1][name]          # this step's own array: scaled in place
            total *= weights[0]
            for w, (_, part_grads) in zip(weights[1:], results[1:]):
                total += part_grads[name] * w
            grads[name] = total
        return loss, grads

    # ------------------------------------------------------------------------------------------
    # Inference: no activations kept. The matrix products are small, so BLAS's own threads would
    # cost more in hand-offs than they save.

    def _inference(self, tokens, start=0, past=None):
        c = self.config
        B, T = tokens.shape
        with single_threaded_blas():
            x = ops.embedding_forward(self.params["tok_emb"], tokens).reshape(B * T, c.dim)
            for i in range(c.n_layers):
                x, _ = self._block(i, x, B, T, start, past)
            h, _ = ops.rmsnorm_forward(x, self.params["final_norm"], c.norm_eps)
            return ops.linear_forward(h, self.lm_head)

    def logits(self, tokens):
        """Logits (B, T, V) for a batch of token sequences (B, T)."""
        tokens = np.asarray(tokens)
        return self._inference(tokens).reshape(*tokens.shape, self.config.vocab_size)

    def forward_cached(self, tokens, cache: "KVCache"):
        """Feed `tokens` (1-D, the next positions after what the cache holds) and return the
        logits (len(tokens), V). One call can take a whole prompt, later calls one token each."""
        tokens = np.asarray(tokens).reshape(1, -1)
        start = cache.length
        if start + tokens.shape[1] > self.config.max_seq_len:
            raise ValueError(f"context full: {start + tokens.shape[1]} tokens > max_seq_len "
                             f"{self.config.max_seq_len}")
        logits = self._inference(tokens, start, past=cache.extend)
        cache.length += tokens.shape[1]
        return logits


class KVCache:
    """Keys and values (after RoPE) of every position seen so far, for each layer."""

    def __init__(self, config: ModelConfig, dtype=np.float32):
        shape = (config.n_layers, 1, config.max_seq_len, config.n_kv_heads, config.head_dim)
        self.keys = np.zeros(shape, dtype=dtype)
        self.values = np.zeros(shape, dtype=dtype)
        self.length = 0

    def extend(self, layer, k, v):
        """Store the new positions' k, v (1, T, K, S) and return all positions so far."""
        end = self.length + k.shape[1]
        self.keys[layer, :, self.length:end] = k
        self.values[layer, :, self.length:end] = v
        return self.keys[layer, :, :end], self.values[layer, :, :end]
