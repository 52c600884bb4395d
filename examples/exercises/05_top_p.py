"""Exercise 5: top-p ("nucleus") filtering (lesson 5).

Given a distribution probs (sums to 1), keep the fewest most likely tokens whose
probabilities add up to at least top_p, set the others to 0, and renormalize. The most
likely token always stays. (Ties: keep the lower id first, as a stable sort does.) The check
compares you with tinylm.training.generate.token_probs.

    python examples/exercises/05_top_p.py              # check yours
    python examples/exercises/05_top_p.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.training.generate import token_probs


def top_p_filter(probs: np.ndarray, top_p: float) -> np.ndarray:
    """A new array: the kept tokens' probabilities, renormalized; 0 elsewhere."""
    raise NotImplementedError("fill in top_p_filter() in examples/exercises/05_top_p.py")


def check(top_p_filter) -> None:
    rng = np.random.default_rng(5)
    for top_p in (0.05, 0.3, 0.5, 0.9, 0.99, 1.0):
        logits = rng.standard_normal(50) * 2
        probs = token_probs(logits)
        expected = token_probs(logits, top_p=top_p)
        got = np.asarray(top_p_filter(probs.copy(), top_p))
        assert np.array_equal(got > 0, expected > 0), (
            f"top_p {top_p}: kept {np.count_nonzero(got)} tokens, should keep "
            f"{np.count_nonzero(expected)}")
        assert np.allclose(got, expected, atol=1e-12), f"top_p {top_p}: not renormalized"


if __name__ == "__main__":
    run_check(check)
