"""Exercise 9: the multiply-adds of one token (lesson 9).

For one token, every weight matrix is multiplied by one vector: a matrix of shape (out, in)
costs out * in multiply-adds (MACs). Count them for a shape (tinylm/core/config.py): per
layer wq, wk, wv, wo, w1, w2, w3 (with grouped-query attention, wk and wv have n_kv_heads
heads, not n_heads), and at the end the output matrix (vocab_size x dim). The embedding is a
lookup, not a product; attention over the cache grows with the position and is not counted.
The check compares you with tinylm.boards.emulation.matvec_macs.

    python examples/exercises/09_macs.py              # check yours
    python examples/exercises/09_macs.py --solution   # check the solution
"""
from exercise import run_check

from tinylm.boards.emulation import matvec_macs
from tinylm.core.config import ModelConfig


def macs_per_token(config: ModelConfig) -> int:
    """Multiply-adds of the weight matrices for one token."""
    raise NotImplementedError("fill in macs_per_token() in examples/exercises/09_macs.py")


def check(macs_per_token) -> None:
    shapes = [ModelConfig(),
              ModelConfig(vocab_size=512, dim=48, n_layers=6, n_heads=4, n_kv_heads=2,
                          head_dim=12, hidden_dim=128),
              ModelConfig(vocab_size=1000, dim=64, n_layers=3, n_heads=8, n_kv_heads=1,
                          head_dim=16, hidden_dim=100, tie_embeddings=False)]
    for config in shapes:
        expected, got = matvec_macs(config), macs_per_token(config)
        assert got == expected, f"{config}: {expected:,} MACs, not {got:,}"


if __name__ == "__main__":
    run_check(check)
