"""AdamW, the learning-rate schedule, and gradient clipping.

AdamW keeps, for every parameter, running averages of the gradient (m) and of its square (v):

    m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)      (t = number of steps so far)

The divisions by 1 - b^t ("bias correction") undo the pull towards the zeros m and v start at.
Weight decay is "decoupled": p *= 1 - lr * weight_decay, separately from the gradient, and only
for matrices. Norm weights (1-D) are gains around 1; decaying them towards 0 would fight the model.
"""
from __future__ import annotations

import math

import numpy as np


class AdamW:
    def __init__(self, params: dict[str, np.ndarray], betas=(0.9, 0.95), eps=1e-8,
                 weight_decay=0.1):
        self.params = params
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.m = {name: np.zeros_like(p) for name, p in params.items()}
        self.v = {name: np.zeros_like(p) for name, p in params.items()}
        self.t = 0
        # One scratch buffer, shared by all parameters, so a step allocates no new arrays.
        largest = max(params.values(), key=lambda p: p.size)
        self._scratch = np.empty(largest.size, dtype=largest.dtype)

    def step(self, grads: dict[str, np.ndarray], lr: float) -> None:
        """Update every parameter in place from its gradient."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = lr / (1 - b1 ** self.t)
        v_scale = 1 / math.sqrt(1 - b2 ** self.t)
        for name, p in self.params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            tmp = self._scratch[:p.size].reshape(p.shape)
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            if p.ndim == 2 and self.weight_decay:
                p *= 1 - lr * self.weight_decay
            # tmp = step_size * m / (sqrt(v / (1 - b2^t)) + eps)
            np.sqrt(v, out=tmp)
            tmp *= v_scale
            tmp += self.eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp

    def state_dict(self) -> dict:
        """Everything a later step depends on: {"t": int, "m": {name: array}, "v": {...}}.
        The arrays are the live ones, not copies: save them before the next step."""
        return {"t": self.t, "m": self.m, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        for key in ("m", "v"):
            if set(state[key]) != set(self.params):
                raise ValueError(f"optimizer state: {key} has entries {sorted(state[key])}, "
                                 f"the model has parameters {sorted(self.params)}")
            for name, p in self.params.items():
                getattr(self, key)[name][...] = state[key][name]
        self.t = int(state["t"])


def learning_rate(step: int, max_lr: float, total_steps: int, warmup_steps: int,
                  min_lr_ratio: float = 0.1) -> float:
    """Learning rate for step `step` (0-based): linear warmup to max_lr over `warmup_steps`
    steps, then a cosine down to min_lr_ratio * max_lr at `total_steps`, constant after.

    Warmup starts at max_lr / warmup_steps, not 0, so that the first step already learns."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    min_lr = min_lr_ratio * max_lr
    decay_steps = total_steps - warmup_steps
    if step >= total_steps or decay_steps <= 0:
        return min_lr
    progress = (step - warmup_steps) / decay_steps
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together, in place, so that their global L2 norm is at most
    max_norm (no clipping if max_norm <= 0). Returns the norm before clipping, for logging."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if 0 < max_norm < norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm
