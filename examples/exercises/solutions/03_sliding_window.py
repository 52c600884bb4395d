"""A solution of examples/exercises/03_sliding_window.py."""
import numpy as np


def sliding_window_attention(q, k, v, window: int):
    T, S = q.shape
    scores = q @ k.T / np.sqrt(S)
    query, key = np.arange(T)[:, None], np.arange(T)[None, :]
    scores[(key > query) | (key <= query - window)] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ v
