"""Model configuration: every number that fixes the shape of a tinylm model."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass


def hidden_width(dim: int, ratio: float = 8 / 3) -> int:
    """The SwiGLU hidden width for a ratio to dim (8/3 keeps its three matrices at the
    parameters of a 4x two-matrix MLP), rounded up to a multiple of 4."""
    return 4 * math.ceil(ratio * dim / 4)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 512
    dim: int = 64            # width of the residual stream
    n_layers: int = 4
    n_heads: int = 4         # query heads
    n_kv_heads: int = 4      # key/value heads; n_heads must be a multiple (grouped-query attention)
    head_dim: int = 16       # independent of dim / n_heads
    hidden_dim: int = 172    # SwiGLU inner width
    max_seq_len: int = 128
    tie_embeddings: bool = True   # LM head shares the token embedding matrix
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self):
        positive = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads",
                    "head_dim", "hidden_dim", "max_seq_len")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"config: {name} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"config: n_heads ({self.n_heads}) must be a multiple of "
                             f"n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"config: head_dim ({self.head_dim}) must be even for RoPE")
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("config: norm_eps and rope_theta must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"config: unknown field(s) {sorted(unknown)}")
        return cls(**d)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter. Matrices are (out, in), as in llama2.c."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        shapes = {"tok_emb": (self.vocab_size, self.dim)}
        for i in range(self.n_layers):
            p = f"layers.{i}."
            shapes.update({
                p + "attn_norm": (self.dim,),
                p + "wq": (q, self.dim),
                p + "wk": (kv, self.dim),
                p + "wv": (kv, self.dim),
                p + "wo": (self.dim, q),
                p + "mlp_norm": (self.dim,),
                p + "w1": (self.hidden_dim, self.dim),
                p + "w2": (self.dim, self.hidden_dim),
                p + "w3": (self.hidden_dim, self.dim),
            })
        shapes["final_norm"] = (self.dim,)
        if not self.tie_embeddings:
            shapes["lm_head"] = (self.vocab_size, self.dim)
        return shapes

    def n_params(self) -> int:
        total = 0
        for shape in self.param_shapes().values():
            n = 1
            for s in shape:
                n *= s
            total += n
        return total
