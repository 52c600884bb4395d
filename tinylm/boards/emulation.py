"""What both emulated boards measure alike: the work of a token (weight multiply-accumulates)
and the weight bytes a token reads from flash, whatever the CPU. emulate_rp2040.py and
emulate_riscv.py turn their cycle or instruction counts into figures with these."""
from __future__ import annotations

from ..export.binformat import tensor_bytes


def matvec_macs(config) -> int:
    """Multiply-accumulates of the weight matrices for one token (attention over the cache
    not included: it grows with the position)."""
    c = config
    per_layer = c.dim * (c.n_heads + 2 * c.n_kv_heads) * c.head_dim \
        + c.n_heads * c.head_dim * c.dim + 3 * c.dim * c.hidden_dim
    return c.n_layers * per_layer + c.vocab_size * c.dim


def streamed_weight_bytes(model) -> int:
    """Bytes of weights read from flash per token: every tensor, but only one row of the
    embedding table unless it is also the output matrix (tied)."""
    total = sum(len(tensor_bytes(t)) for t in model.tensors.values())
    if not model.config.tie_embeddings:
        embeddings = len(tensor_bytes(model.tensors["tok_emb"]))
        total -= embeddings - embeddings // model.config.vocab_size
    return total
