"""A solution of examples/exercises/07_quantize_group.py."""
import numpy as np


def quantize_group(w: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    qmax = 2 ** (bits - 1) - 1                  # 127 or 7
    s = np.abs(w).max() / qmax
    lowest = -qmax - 1 if bits == 4 else -qmax  # int4 keeps -8; int8 stays symmetric
    return np.clip(np.round(w / s), lowest, qmax), s
