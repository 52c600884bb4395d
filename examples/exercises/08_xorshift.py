"""Exercise 8: xorshift64*, the random number generator of both engines (lesson 8).

The C runtime and the NumPy engine pick the same tokens because they draw the same random
numbers: 64 bits of state, and each call

    x ^= x >> 12;  x ^= x << 25;  x ^= x >> 27      (x: the state, kept to 64 bits)
    return the top 32 bits of x * 0x2545F4914F6CDD1D (the product, too, kept to 64 bits)

A seed becomes the first state as (seed + 0x9E3779B97F4A7C15) mod 2^64, or 1 if that is 0.
Python's integers never overflow, so "kept to 64 bits" is yours to do. Return the first n
numbers for a seed; the check compares you with tinylm.runtime.sampler.Rng.

    python examples/exercises/08_xorshift.py              # check yours
    python examples/exercises/08_xorshift.py --solution   # check the solution
"""
from exercise import run_check

from tinylm.runtime.sampler import Rng


def xorshift_numbers(seed: int, n: int) -> list[int]:
    """The first n 32-bit numbers of the generator seeded with seed."""
    raise NotImplementedError("fill in xorshift_numbers() in examples/exercises/08_xorshift.py")


def check(xorshift_numbers) -> None:
    for seed in (0, 7, 2 ** 63 + 12345, 2 ** 64 - 0x9E3779B97F4A7C15):
        rng = Rng(seed)
        expected = [rng.next_u32() for _ in range(20)]
        got = list(xorshift_numbers(seed, 20))
        assert got == expected, f"seed {seed}: expected {expected[:3]}..., got {got[:3]}..."


if __name__ == "__main__":
    run_check(check)
