"""Exercise 3: causal attention with a sliding window (lesson 3).

One head: q, k, v are (T, S) arrays. Position i may read positions i - window + 1 .. i
(itself and the window - 1 before it), nothing older and nothing later. Return y, (T, S):
softmax(q k^T / sqrt(S)) over the visible keys, times v. The check builds the same from the
library's ops.attention_forward with a mask of its own.

    python examples/exercises/03_sliding_window.py              # check yours
    python examples/exercises/03_sliding_window.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.core import ops


def sliding_window_attention(q, k, v, window: int):
    """y (T, S) for one head."""
    raise NotImplementedError("fill in sliding_window_attention() in "
                              "examples/exercises/03_sliding_window.py")


def check(sliding_window_attention) -> None:
    rng = np.random.default_rng(3)
    T, S = 12, 8
    q, k, v = (rng.standard_normal((1, T, 1, S)) * 2 for _ in range(3))   # (B, T, heads, S)
    for window in (1, 3, T):
        too_old = np.tril(np.ones((T, T), bool), k=-window)
        mask = ops.causal_mask(T, T, 1, np.float64) + np.where(too_old, -np.inf, 0)
        expected = ops.attention_forward(q, k, v, mask)[0][0, :, 0]
        got = np.asarray(sliding_window_attention(q[0, :, 0], k[0, :, 0], v[0, :, 0], window))
        assert got.shape == expected.shape, f"y should be {expected.shape}, not {got.shape}"
        worst = np.abs(got - expected).max()
        assert worst < 1e-10, f"window {window}: y is off by up to {worst:.2g}"


if __name__ == "__main__":
    run_check(check)
