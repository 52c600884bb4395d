"""Exercise 7: quantize one group of weights (lesson 7).

Symmetric quantization with one scale for the group: s = max|w| / qmax, q = round(w / s),
clipped to the integers that `bits` bits hold: -127..127 for 8 bits (the same range both
ways), -8..7 for 4 bits (qmax 7, and -8 is free). Return (q, s); q * s is then close to w.
The check compares you with the library's rounding (tinylm/export/quantize.py, without its
scale search).

    python examples/exercises/07_quantize_group.py              # check yours
    python examples/exercises/07_quantize_group.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.export.quantize import best_scales, quantize_values


def quantize_group(w: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    """(q, s) for one group w (1-D)."""
    raise NotImplementedError("fill in quantize_group() in "
                              "examples/exercises/07_quantize_group.py")


def check(quantize_group) -> None:
    rng = np.random.default_rng(7)
    for bits in (8, 4):
        qmax = 127 if bits == 8 else 7
        for _ in range(20):
            w = rng.standard_normal(32) * rng.uniform(0.01, 1)
            s = best_scales(w[None], qmax, search=False)[0, 0]
            q, your_s = quantize_group(w.copy(), bits)
            assert np.isclose(your_s, s, rtol=1e-12), f"{bits} bits: s should be {s:.6g}"
            assert np.array_equal(np.asarray(q), quantize_values(w, s, qmax)), (
                f"{bits} bits: q should be {quantize_values(w, s, qmax).astype(int)}")


if __name__ == "__main__":
    run_check(check)
