"""Exercise 2: the backward pass of the SwiGLU gate (lesson 2).

    y = silu(a) * b,   silu(a) = a * sigmoid(a),   sigmoid(a) = 1 / (1 + e^-a)

Given d_out = dL/dy, return (dL/da, dL/db), elementwise. The check compares them with
central finite differences (tinylm/core/gradcheck.py), as lesson 2 does for RMSNorm.

    python examples/exercises/02_swiglu_backward.py              # check yours
    python examples/exercises/02_swiglu_backward.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.core import ops
from tinylm.core.gradcheck import numerical_gradient, relative_error


def swiglu_backward(d_out, a, b):
    """(dL/da, dL/db) for y = silu(a) * b."""
    raise NotImplementedError("fill in swiglu_backward() in "
                              "examples/exercises/02_swiglu_backward.py")


def check(swiglu_backward) -> None:
    rng = np.random.default_rng(2)
    a, b, G = (rng.standard_normal((3, 5)) * 2 for _ in range(3))

    def loss():                     # L = sum(y * G), so dL/dy = G
        return np.sum(ops.swiglu_forward(a, b)[0] * G)

    d_a, d_b = swiglu_backward(G.copy(), a.copy(), b.copy())
    for name, got, x in (("dL/da", d_a, a), ("dL/db", d_b, b)):
        error = relative_error(got, numerical_gradient(loss, x))
        assert error < 1e-7, f"{name} has relative error {error:.1e} against finite differences"


if __name__ == "__main__":
    run_check(check)
