"""A solution of examples/exercises/05_top_p.py."""
import numpy as np


def top_p_filter(probs: np.ndarray, top_p: float) -> np.ndarray:
    order = np.argsort(-probs, kind="stable")
    mass_before = np.cumsum(probs[order]) - probs[order]
    kept = np.zeros_like(probs)
    keep = order[mass_before < top_p]       # a token stays while the ones before it lack top_p
    kept[keep] = probs[keep]
    return kept / kept.sum()
