"""Checking a gradient against its definition, with central finite differences.

For a scalar loss L and one number x inside the model,

    dL/dx  ~  (L(x + h) - L(x - h)) / (2h)

The error of this estimate shrinks like h^2, but h cannot be tiny either, or L(x + h) - L(x - h)
drowns in rounding error: in float64, h = 1e-5 leaves about 10 good digits (float32 would leave
almost none), so gradient checks run in float64. A correct backward then agrees to a relative
error around 1e-8; a bug shows up as an error of order 1.
"""
from __future__ import annotations

import numpy as np


def finite_difference(loss, x, index, h=1e-5) -> float:
    """dL/dx[index]: nudge that one entry of x (in place) up and down and call loss()."""
    saved = x[index]
    x[index] = saved + h
    up = loss()
    x[index] = saved - h
    down = loss()
    x[index] = saved
    return (up - down) / (2 * h)


def numerical_gradient(loss, x, h=1e-5) -> np.ndarray:
    """dL/dx for every entry of x: two calls of loss() per entry."""
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        grad[index] = finite_difference(loss, x, index, h)
    return grad


def relative_error(a, b) -> float:
    """Largest difference, relative to the largest magnitude of either side."""
    a, b = np.asarray(a), np.asarray(b)
    scale = max(np.abs(a).max(), np.abs(b).max(), 1e-12)
    return float(np.abs(a - b).max() / scale)
