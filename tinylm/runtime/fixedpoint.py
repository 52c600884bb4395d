"""Integer arithmetic of the runtime, on NumPy int64 arrays, exactly as csrc/tinylm.c.

Activations are fixed-point "Q16" integers (value * 2**16), saturated to +-LIMIT. Every
rounding is spelled out: `>>` is an arithmetic shift (floor), and rshift_round adds half
before shifting (round half up). Bounds that keep int64 from overflowing are noted in the C.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

ONE = 1 << 16
LIMIT = 1 << 30
LOG2E_MINUS_1_Q16 = 29012     # (log2(e) - 1) * 2**16
LOG2E_Q15 = 47274             # log2(e) * 2**15
EXP_FLOOR = -(1 << 21)        # e**z rounds to 0 in Q30 below z = -21.5 (Q16 -1408000)
# 2**(-i/64) in Q30, i = 0..64: the C runtime has the same numbers (EXP2_TABLE in tinylm.c)
EXP2_TABLE = np.array([round(2 ** 30 * 2 ** (-i / 64)) for i in range(65)], np.int64)


def sat(v):
    return np.clip(v, -LIMIT, LIMIT)


def rshift_round(v, s):
    """v / 2**s rounded half up, for s >= 0 (array or scalar); s is capped at 62."""
    s = np.minimum(s, 62)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(v + half, s)


def scale_sat(v, s):
    """v * 2**-s, rounded and saturated to +-LIMIT; s may be negative (a left shift)."""
    v, s = np.asarray(v, np.int64), np.asarray(s, np.int64)
    right = sat(rshift_round(v, np.maximum(s, 0)))
    left_by = np.minimum(np.maximum(-s, 0), 31)
    fits = np.abs(v) <= np.right_shift(LIMIT, left_by)
    left = np.where(fits, v * np.left_shift(np.int64(1), left_by), np.sign(v) * LIMIT)
    return np.where(s >= 0, right, left)


def bit_length(a):
    """Bits of non-negative integers below 2**53 (0 for 0)."""
    return np.where(a > 0, np.frexp(np.asarray(a, np.float64))[1], 0)


def quantize_pow2(v, bits=16):
    """Rows of Q16 values as integers q of `bits` bits and exponents e, v ~ q * 2**e: e is the
    smallest with max |q| <= 2**(bits-1) - 1 (one exponent per row, over the last axis)."""
    top = (1 << (bits - 1)) - 1
    e = bit_length(np.abs(v).max(axis=-1)) - (bits - 1)
    e_col = e[..., None]
    q = np.where(e_col > 0, rshift_round(v, np.maximum(e_col, 0)),
                 v * np.left_shift(np.int64(1), np.maximum(-e_col, 0)))
    return np.clip(q, -top, top), e


SCALE_MIN_EXP = -10
INPUT_TOP = 63      # a matrix's input is rounded to -63..63 (the C kernel needs 7 bits)
CACHE_TOP = 127     # keys and values to -127..127


def quantize_int8(v, top=CACHE_TOP):
    """Rows of Q16 values as integers q in -top..top with one scale per row, s = m * 2**k
    (m in 8..15, k >= -10), the smallest such that top * s >= max |v|: v ~ q * s. An 8-bit
    "float" scale: within 1/8 of max|v| / top, where a power of two alone can be off by 2x.
    q = v / s is computed in 32 bits as u * round(2**18 / m) >> 23, u = v * 2**(5 - k)
    rounded (16 bits, as |v| < 2**(11 + k)). Returns q, m, k."""
    a = np.abs(v).max(axis=-1)
    k = np.maximum(bit_length(a) - 12, SCALE_MIN_EXP)

    def needed(k):    # ceil(a / (top * 2**k))
        num = np.where(k < 0, a * np.left_shift(np.int64(1), np.maximum(-k, 0)), a)
        den = np.where(k < 0, top, np.left_shift(np.int64(top), np.maximum(k, 0)))
        return -(-num // den)

    m = needed(k)
    while np.any(m > 15):
        k = np.where(m > 15, k + 1, k)
        m = needed(k)
    m = np.maximum(m, 8)
    reciprocal = ((1 << 19) // m + 1) // 2                     # 2**18 / m, rounded
    k_col = k[..., None]
    u = np.where(k_col >= 5, rshift_round(v, np.maximum(k_col - 5, 0)),
                 v * np.left_shift(np.int64(1), np.maximum(5 - k_col, 0)))
    q = rshift_round(u * reciprocal[..., None], 23)
    return np.clip(q, -top, top), m, k


def q16_from_float(x):
    """float32 values to Q16: round half away from zero, saturated; inf and nan saturate by
    sign. (float64 holds |x| * 2**16 + 0.5 exactly for every float32 x that matters.)"""
    x = np.asarray(x, np.float32).astype(np.float64)
    magnitude = np.floor(np.minimum(np.abs(np.nan_to_num(x, nan=0.0)), 2.0 ** 20) * ONE + 0.5)
    value = np.where(np.signbit(x), -magnitude, magnitude).astype(np.int64)
    return np.where(np.isfinite(x), sat(value), np.where(np.signbit(x), -LIMIT, LIMIT))


def q32_from_fraction(x: float) -> int:
    """A float in (0, 1) times 2**32, rounded half up, exactly."""
    return math.floor(Fraction(x) * 2 ** 32 + Fraction(1, 2))


def exp_neg(z):
    """e**(z / 2**16) in Q30 for Q16 z <= 0: 2**-(n + f) = 2**-f >> n, 2**-f from EXP2_TABLE,
    linearly between entries; -z log2(e) as -z + (-z)(log2(e) - 1) in 16-bit halves, as the
    C does it in 32 bits."""
    m = -np.asarray(z, np.int64)
    y = m + np.right_shift(m, 16) * LOG2E_MINUS_1_Q16 + \
        np.right_shift((m & 0xFFFF) * LOG2E_MINUS_1_Q16, 16)               # -z log2(e), Q16
    n, i, r = np.right_shift(y, 16), np.right_shift(y, 10) & 63, y & 1023
    step = np.right_shift(EXP2_TABLE[i] - EXP2_TABLE[i + 1], 4)
    p = EXP2_TABLE[i] - np.right_shift(step * r, 6)
    return np.where((n < 31) & (m <= -EXP_FLOOR), np.right_shift(p, np.minimum(n, 31)), 0)


def exp_neg_coarse(z):
    """e**(z / 2**16) in Q30 for Q16 z <= 0 within 0.6%, for the sampler: -z log2(e) rounded
    to 1/64 in one 32-bit multiply, then the nearest EXP2_TABLE entry, no interpolation."""
    m = -np.asarray(z, np.int64)
    k = np.right_shift(np.right_shift(m, 5) * LOG2E_Q15 + (1 << 19), 20)
    n = np.right_shift(k, 6)
    return np.where((n < 31) & (m <= -EXP_FLOOR),
                    np.right_shift(EXP2_TABLE[k & 63], np.minimum(n, 31)), 0)


def mul_q16(a, b):
    """a * b / 2**16 rounded half away from zero, saturated to +-LIMIT."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    magnitude = np.minimum(np.right_shift(np.abs(a) * np.abs(b) + (1 << 15), 16), LIMIT)
    return np.where((a < 0) != (b < 0), -magnitude, magnitude)


def isqrt_rows(m):
    return np.array([math.isqrt(int(v)) for v in np.ravel(m)], np.int64).reshape(np.shape(m))


def div_round(num, den):
    """num / den rounded half away from zero, den > 0."""
    q = (np.abs(num) + den // 2) // den
    return np.where(num < 0, -q, q)
