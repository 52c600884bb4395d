"""Keeping freed memory for the next training step.

A training step allocates its activations (tens to hundreds of megabytes in NumPy arrays),
and the backward pass frees them. The C library's malloc (glibc's) gives large blocks back
to the kernel as they are freed, so the next step gets fresh pages, and the first write to
each page costs a page fault and the zeroing of the page: for a small model most of a step
goes there, for the benchmark model of benchmarks/bench_train.py about a quarter of it
(docs/benchmarks.md). `keep_freed_memory` tells malloc to keep freed blocks up to 32 MB in
the process and not to give the top of its heap back, so every step after the first reuses
the pages of the one before. The process then holds the memory of its largest step until it
ends, which is what training needs anyway.

With another C library (no mallopt, or one that ignores it) this changes nothing.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # glibc's <malloc.h>
LARGEST_KEPT_BLOCK = 32 << 20                  # the most glibc takes for M_MMAP_THRESHOLD
NEVER_TRIM = (1 << 31) - 1                     # mallopt takes an int

_kept = False


def keep_freed_memory() -> None:
    """Once per process: freed blocks stay with malloc for reuse (see above)."""
    global _kept
    if _kept:
        return
    _kept = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(M_MMAP_THRESHOLD, LARGEST_KEPT_BLOCK)
    mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
