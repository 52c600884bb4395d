"""Models for the memory planner and RP2040 firmware tests: a ~1K-parameter one (whole context:
256 tokens) that an RP2040 copies into SRAM, and one whose 2048-token context needs far more
than an RP2040's SRAM (a 303 KB file). Written once per test session."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from binmodels import random_model, stories_tokenizer, tiny_config, write_model_bin

from tinylm.core.config import ModelConfig

_scratch = tempfile.TemporaryDirectory(prefix="tinylm-plan-models-")


@functools.lru_cache(maxsize=None)
def model_bin(kind: str, bits: int = 8) -> Path:
    """kind: "small" or "long"."""
    tokenizer = stories_tokenizer()
    config = tiny_config(len(tokenizer)) if kind == "small" else ModelConfig(
        vocab_size=len(tokenizer), dim=64, n_layers=4, n_heads=4, n_kv_heads=4, head_dim=16,
        hidden_dim=172, max_seq_len=2048)
    path = Path(_scratch.name) / f"{kind}-q{bits}.bin"
    return write_model_bin(path, random_model(config), tokenizer, bits)
