"""Exercise 6: the distillation loss over a teacher's top k and the rest (lesson 6).

The teacher lists k token ids with probabilities (summing to at most 1); whatever they leave
is the teacher's "rest". The student's logits cover its whole vocabulary; its rest is its
probability outside the listed ids. Return KL(teacher || student) over these k + 1 outcomes,
sum of q log(q / s), counting an outcome with q = 0 as 0. The check compares you with
tinylm.core.ops.kd_loss_forward at weight 1 and temperature 1.

    python examples/exercises/06_kl_with_rest.py              # check yours
    python examples/exercises/06_kl_with_rest.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.core import ops


def kl_with_rest(teacher_ids, teacher_probs, student_logits) -> float:
    """KL over the k listed ids and the rest, in nats."""
    raise NotImplementedError("fill in kl_with_rest() in examples/exercises/06_kl_with_rest.py")


def check(kl_with_rest) -> None:
    rng = np.random.default_rng(6)
    for vocab, k, tail in ((8, 3, 0.2), (20, 5, 0.01), (6, 6, 0.0), (10, 2, 0.5)):
        logits = rng.standard_normal(vocab) * 2
        ids = rng.choice(vocab, size=k, replace=False)
        probs = rng.dirichlet(np.ones(k)) * (1 - tail)
        expected = ops.kd_loss_forward(logits[None], ids[:1], ids[None], np.log(probs)[None],
                                       1.0, 1.0)[0]
        got = kl_with_rest(ids.copy(), probs.copy(), logits.copy())
        assert np.isclose(got, expected, rtol=1e-9, atol=1e-12), (
            f"vocabulary {vocab}, top {k}, rest {tail}: KL should be {expected:.6f}, not {got}")


if __name__ == "__main__":
    run_check(check)
