"""Exercise 4: one AdamW update (lesson 4).

Update the weights p, and AdamW's running averages m and v, in place, for step t (1 on the
first step), from the gradient g and the learning rate lr:

    m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
    p -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

and before that, for a matrix (p.ndim == 2) only, the decoupled weight decay
p *= 1 - lr * weight_decay. The check runs yours next to tinylm.core.optim.AdamW.

    python examples/exercises/04_adamw.py              # check yours
    python examples/exercises/04_adamw.py --solution   # check the solution
"""
import numpy as np
from exercise import run_check

from tinylm.core.optim import AdamW


def adamw_update(p, g, m, v, t, lr, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1):
    """Change p, m and v in place; return nothing."""
    raise NotImplementedError("fill in adamw_update() in examples/exercises/04_adamw.py")


def check(adamw_update) -> None:
    rng = np.random.default_rng(4)
    yours = {"matrix": rng.standard_normal((4, 6)), "gain": rng.standard_normal(6)}
    library = {name: p.copy() for name, p in yours.items()}
    optimizer = AdamW(library)
    m = {name: np.zeros_like(p) for name, p in yours.items()}
    v = {name: np.zeros_like(p) for name, p in yours.items()}
    for t in range(1, 6):
        grads = {name: rng.standard_normal(p.shape) for name, p in yours.items()}
        lr = 0.01 * t
        for name, p in yours.items():
            adamw_update(p, grads[name].copy(), m[name], v[name], t, lr)
        optimizer.step(grads, lr)
        for name in yours:
            worst = np.abs(yours[name] - library[name]).max()
            assert worst < 1e-12, f"step {t}: {name} is off by {worst:.2g} from AdamW's"


if __name__ == "__main__":
    run_check(check)
