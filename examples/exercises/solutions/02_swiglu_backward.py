"""A solution of examples/exercises/02_swiglu_backward.py."""
import numpy as np


def swiglu_backward(d_out, a, b):
    sigmoid = 1 / (1 + np.exp(-a))
    silu = a * sigmoid
    # d silu / da = sigmoid + a * sigmoid * (1 - sigmoid)
    d_a = d_out * b * (sigmoid + a * sigmoid * (1 - sigmoid))
    return d_a, d_out * silu
