"""A solution of examples/exercises/06_kl_with_rest.py."""
import numpy as np


def kl_with_rest(teacher_ids, teacher_probs, student_logits) -> float:
    s = np.exp(student_logits - student_logits.max())
    s /= s.sum()
    q = np.append(teacher_probs, max(1 - teacher_probs.sum(), 0.0))
    s_outcomes = np.append(s[teacher_ids], 1 - s[teacher_ids].sum())
    present = q > 0
    return float(np.sum(q[present] * np.log(q[present] / s_outcomes[present])))
