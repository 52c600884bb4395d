"""A solution of examples/exercises/08_xorshift.py."""
MASK = 2 ** 64 - 1


def xorshift_numbers(seed: int, n: int) -> list[int]:
    x = (seed + 0x9E3779B97F4A7C15) & MASK or 1
    numbers = []
    for _ in range(n):
        x ^= x >> 12
        x ^= (x << 25) & MASK
        x ^= x >> 27
        numbers.append(((x * 0x2545F4914F6CDD1D) & MASK) >> 32)
    return numbers
