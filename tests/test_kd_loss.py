"""The distillation loss (ops.kd_loss_forward/backward): its value in the cases where it must
equal something known, and its hand-written backward against central finite differences."""
import numpy as np
import pytest
from test_gradients import CONFIGS, check, numerical_gradient, random_model, relative_error

from tinylm.core import ops
from tinylm.core.config import ModelConfig

V, K = 7, 3


def soft_targets(rng, n, k=K, unused=0.3):
    """(ids, log-probs): k distinct ids per row, a random sub-distribution over them, and about
    `unused` of the slots marked unused (-inf), as a teacher's top-k after projection has."""
    ids = np.stack([rng.permutation(V)[:k] for _ in range(n)])
    logprobs = np.log(rng.dirichlet(np.ones(k + 1), size=n)[:, :k])
    logprobs[rng.random((n, k)) < unused] = -np.inf
    return ids, logprobs


def kd(logits, targets, ids, logprobs, weight, temperature):
    return ops.kd_loss_forward(logits.copy(), targets, ids, logprobs, weight, temperature)


@pytest.mark.parametrize("weight", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_backward_matches_finite_differences(weight, temperature):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, V)) * 3
    targets = rng.integers(0, V, 6)
    ids, logprobs = soft_targets(rng, 6)
    logprobs[0] = [0.0, -np.inf, -np.inf]          # a hard label given as a soft target
    ids[1], logprobs[1] = [4, 0, 2], np.log([0.5, 0.3, 0.2])   # no probability left over
    _, cache = kd(logits, targets, ids, logprobs, weight, temperature)
    d_logits = ops.kd_loss_backward(cache)
    check(d_logits, lambda: kd(logits, targets, ids, logprobs, weight, temperature)[0], logits)


def test_every_token_listed_backward_matches_finite_differences():
    """All V ids listed: the student has no rest, the teacher none either."""
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, V))
    ids = np.stack([rng.permutation(V) for _ in range(4)])
    logprobs = np.log(rng.dirichlet(np.ones(V), size=4))
    targets = rng.integers(0, V, 4)
    _, cache = kd(logits, targets, ids, logprobs, 0.7, 1.5)
    check(ops.kd_loss_backward(cache), lambda: kd(logits, targets, ids, logprobs, 0.7, 1.5)[0],
          logits)


def test_weight_zero_is_cross_entropy():
    rng = np.random.default_rng(2)
    logits, targets = rng.standard_normal((5, V)), rng.integers(0, V, 5)
    ids, logprobs = soft_targets(rng, 5)
    loss, cache = kd(logits, targets, ids, logprobs, 0.0, 2.0)
    ce, ce_cache = ops.cross_entropy_forward(logits.copy(), targets)
    assert loss == pytest.approx(ce, rel=1e-12)
    np.testing.assert_allclose(ops.kd_loss_backward(cache), ops.cross_entropy_backward(ce_cache),
                               atol=1e-15)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_one_hot_teacher_at_weight_one(temperature):
    """A teacher sure of the hard label: two outcomes, the label (s) and the rest (1 - s), so
    KL = -T^2 log of s^(1/T) / (s^(1/T) + (1 - s)^(1/T)); at T = 1 the cross-entropy."""
    rng = np.random.default_rng(3)
    logits, targets = rng.standard_normal((5, V)), rng.integers(0, V, 5)
    ids = np.stack([targets, (targets + 1) % V], axis=1)
    logprobs = np.array([[0.0, -np.inf]] * 5)
    loss, _ = kd(logits, targets, ids, logprobs, 1.0, temperature)
    s = np.exp(logits[np.arange(5), targets]) / np.exp(logits).sum(axis=1)
    tempered = s ** (1 / temperature) / (s ** (1 / temperature) + (1 - s) ** (1 / temperature))
    assert loss == pytest.approx(-temperature ** 2 * np.mean(np.log(tempered)), rel=1e-12)
    if temperature == 1.0:
        assert loss == pytest.approx(ops.cross_entropy_forward(logits.copy(), targets)[0],
                                     rel=1e-12)


def test_full_teacher_at_t1_is_the_true_kl():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, V))
    q = rng.dirichlet(np.ones(V), size=3)
    ids = np.tile(np.arange(V), (3, 1))
    loss, _ = kd(logits, np.zeros(3, int), ids, np.log(q), 1.0, 1.0)
    s = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(np.mean(np.sum(q * np.log(q / s), axis=1)), rel=1e-12)


def test_loss_is_zero_when_the_student_matches_the_teacher():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, V))
    log_s = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    ids = np.stack([rng.permutation(V)[:K] for _ in range(4)])
    logprobs = np.take_along_axis(log_s, ids, axis=1)
    for temperature in (1.0, 2.0):
        loss, cache = kd(logits, np.zeros(4, int), ids, logprobs, 1.0, temperature)
        assert abs(loss) < 1e-12
        np.testing.assert_allclose(ops.kd_loss_backward(cache), 0, atol=1e-15)


# ---- through the whole model --------------------------------------------------------------

def model_and_batch(seed=0):
    config = ModelConfig(max_seq_len=6, **CONFIGS["gqa"])
    model = random_model(config)
    rng = np.random.default_rng(seed)
    tokens, targets = rng.integers(0, 11, (3, 5)), rng.integers(0, 11, (3, 5))
    ids = np.stack([rng.permutation(11)[:4] for _ in range(15)]).reshape(3, 5, 4)
    logprobs = np.log(rng.dirichlet(np.ones(5), size=15)[:, :4]).reshape(3, 5, 4)
    logprobs[0, 0, 2:] = -np.inf
    return model, tokens, targets, ops.SoftTargets(ids, logprobs, 0.6, 2.0)


def test_model_gradients_with_soft_targets():
    model, tokens, targets, soft = model_and_batch()
    loss, activations = model.forward(tokens, targets, soft)
    grads = model.backward(activations)
    f = lambda: model.forward(tokens, targets, soft)[0]
    for name, value in model.params.items():
        err = relative_error(grads[name], numerical_gradient(f, value))
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_threads_split_the_soft_targets_with_the_batch():
    model, tokens, targets, soft = model_and_batch(1)
    loss1, grads1 = model.loss_and_grads(tokens, targets, n_threads=1, soft=soft)
    loss2, grads2 = model.loss_and_grads(tokens, targets, n_threads=2, soft=soft)
    assert loss2 == pytest.approx(loss1, rel=1e-12)
    for name in grads1:
        np.testing.assert_allclose(grads2[name], grads1[name], rtol=1e-10, atol=1e-14)


def test_float16_logprobs_and_float32_logits():
    """As in training: targets stored as float16, the model in float32."""
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((4, V)).astype(np.float32)
    ids, logprobs = soft_targets(rng, 4)
    loss, cache = kd(logits, np.zeros(4, int), ids, logprobs.astype(np.float16), 0.5, 2.0)
    d_logits = ops.kd_loss_backward(cache)
    assert d_logits.dtype == np.float32 and np.isfinite(loss)
