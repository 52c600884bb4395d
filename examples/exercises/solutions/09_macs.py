"""A solution of examples/exercises/09_macs.py."""


def macs_per_token(config) -> int:
    c = config
    q, kv = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    attention = c.dim * q + 2 * c.dim * kv + q * c.dim        # wq; wk and wv; wo
    mlp = 3 * c.dim * c.hidden_dim                            # w1, w3 (in) and w2 (out)
    return c.n_layers * (attention + mlp) + c.vocab_size * c.dim
