"""AdamW against the textbook formulas, the learning-rate schedule, gradient clipping."""
import math

import numpy as np
import pytest

from tinylm.core.optim import AdamW, clip_grad_norm, learning_rate


def reference_adamw(p, grads, lrs, b1, b2, eps, wd):
    """AdamW written out element by element in float64, straight from the paper."""
    p = p.astype(np.float64).copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        for i in np.ndindex(p.shape):
            m[i] = b1 * m[i] + (1 - b1) * g[i]
            v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p[i] = p[i] - lr * wd * p[i] - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


def test_adamw_matches_reference():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "norm": rng.standard_normal(4)}
    start = {name: p.copy() for name, p in params.items()}
    grads = [{name: rng.standard_normal(p.shape) for name, p in params.items()} for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]
    opt = AdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for g, lr in zip(grads, lrs):
        opt.step(g, lr)
    for name, wd in (("w", 0.1), ("norm", 0.0)):  # no weight decay for 1-D (norm) weights
        expected = reference_adamw(start[name], [g[name] for g in grads], lrs, 0.9, 0.95, 1e-8, wd)
        np.testing.assert_allclose(params[name], expected, rtol=1e-12, atol=1e-14)
    assert opt.t == 3


def test_weight_decay_only_on_matrices():
    params = {"w": np.full((2, 2), 2.0), "norm": np.full(2, 2.0)}
    opt = AdamW(params, weight_decay=0.5)
    opt.step({"w": np.zeros((2, 2)), "norm": np.zeros(2)}, lr=0.1)  # zero gradient: decay only
    np.testing.assert_array_equal(params["w"], 2.0 * (1 - 0.1 * 0.5))
    np.testing.assert_array_equal(params["norm"], 2.0)


def test_state_round_trip_continues_exactly():
    rng = np.random.default_rng(1)
    shapes = {"w": (5, 3), "norm": (3,)}
    grads = [{n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
             for _ in range(4)]
    params_a = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    params_b = {n: p.copy() for n, p in params_a.items()}
    a = AdamW(params_a)
    for g in grads:
        a.step(g, 1e-2)
    b = AdamW(params_b)
    for g in grads[:2]:
        b.step(g, 1e-2)
    state = b.state_dict()
    c = AdamW(params_b)  # a fresh optimizer on the same params, as after loading a checkpoint
    c.load_state_dict({"t": state["t"], "m": {n: x.copy() for n, x in state["m"].items()},
                       "v": {n: x.copy() for n, x in state["v"].items()}})
    for g in grads[2:]:
        c.step(g, 1e-2)
    for name in shapes:
        np.testing.assert_array_equal(params_a[name], params_b[name])


def test_load_state_dict_rejects_other_parameters():
    opt = AdamW({"w": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="parameters"):
        opt.load_state_dict({"t": 1, "m": {"x": np.zeros((2, 2))}, "v": {"x": np.zeros((2, 2))}})


def test_schedule_key_points():
    lr, total, warmup = 1.0, 110, 10
    at = [learning_rate(s, lr, total, warmup, min_lr_ratio=0.1) for s in range(total + 5)]
    assert at[0] == pytest.approx(0.1)            # warmup starts at lr / warmup_steps, not 0
    assert at[4] == pytest.approx(0.5)
    assert at[9] == pytest.approx(1.0)            # end of warmup: the peak
    assert at[10] == pytest.approx(1.0)           # cosine starts at the peak
    assert at[60] == pytest.approx(0.55)          # halfway down: (max + min) / 2
    assert at[110] == pytest.approx(0.1) and at[114] == pytest.approx(0.1)  # floor, then flat
    assert all(x >= y for x, y in zip(at[10:], at[11:]))
    assert learning_rate(0, lr, total, warmup_steps=0) == pytest.approx(1.0)


def test_clip_grad_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}  # global norm 5
    assert clip_grad_norm(grads, max_norm=10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(grads["a"], [3.0, 0.0])  # below the limit: untouched
    assert clip_grad_norm(grads, max_norm=1.0) == pytest.approx(5.0)  # the norm before clipping
    np.testing.assert_allclose(grads["a"], [0.6, 0.0])
    np.testing.assert_allclose(grads["b"], [[0.0], [0.8]])
    assert clip_grad_norm(grads, max_norm=0) == pytest.approx(1.0)  # 0: measure only
