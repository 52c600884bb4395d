"""Using every core from NumPy.

NumPy runs each elementwise loop (exp, multiply, ...) on one core, but it releases Python's global
lock while the loop runs, so several Python threads, each working on its own slice of a batch, keep
several cores busy. The BLAS library under NumPy starts threads of its own for every matrix
product; together with ours that would put more busy threads than cores on the machine, so while
our threads run we ask BLAS for one thread each.

NumPy does not expose BLAS's thread count, so `single_threaded_blas` looks for the OpenBLAS that
NumPy's wheels load and calls its setter; with another BLAS it changes nothing (set the BLAS's
own environment variable, e.g. MKL_NUM_THREADS=1, for the same effect).
"""
from __future__ import annotations

import contextlib
import ctypes
import re

_SETTER_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                 "openblas_set_num_threads64_", "openblas_set_num_threads")


def _find_openblas():
    """(get, set, core name) functions of the loaded OpenBLAS, or None. Linux only: reads
    /proc/self/maps."""
    try:
        with open("/proc/self/maps") as f:
            paths = set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read()))
    except OSError:
        return None
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for setter in _SETTER_NAMES:
            getter = setter.replace("_set_", "_get_")
            if hasattr(lib, setter) and hasattr(lib, getter):
                core = getattr(lib, setter.replace("_set_num_threads", "_get_corename"), None)
                if core is not None:
                    core.restype = ctypes.c_char_p
                return getattr(lib, getter), getattr(lib, setter), core
    return None


_openblas = None
_searched = False


def _loaded_openblas():
    global _openblas, _searched
    if not _searched:
        import numpy  # noqa: F401  (BLAS is loaded with NumPy)
        _openblas, _searched = _find_openblas(), True
    return _openblas


def openblas_core() -> str | None:
    """The kernels OpenBLAS chose for this CPU (e.g. "SkylakeX", "Zen"), or None."""
    openblas = _loaded_openblas()
    return openblas[2]().decode() if openblas and openblas[2] else None


@contextlib.contextmanager
def single_threaded_blas():
    if _loaded_openblas() is None:
        yield
        return
    get_threads, set_threads, _ = _openblas
    before = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)
