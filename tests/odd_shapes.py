"""A model shape that takes the C runtime's less common paths: matrices with an odd number of
rows (the int8 pair kernel pairs the last row with itself) and an input whose length is not
a multiple of 4 (the int8 matrix falls back to the plain loop)."""
from tinylm.core.config import ModelConfig


def odd_config(vocab_size: int) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, dim=8, n_layers=1, n_heads=2, n_kv_heads=1,
                       head_dim=4, hidden_dim=7, max_seq_len=256)
