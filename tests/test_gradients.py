"""Every hand-written backward against central finite differences, in float64 (gradcheck.py)."""
import numpy as np
import pytest

from tinylm.core import ops
from tinylm.core.config import ModelConfig
from tinylm.core.gradcheck import numerical_gradient, relative_error
from tinylm.core.model import KVCache, Transformer

TOLERANCE = 1e-6


def check(analytic, f, x):
    err = relative_error(analytic, numerical_gradient(f, x))
    assert err < TOLERANCE, f"relative error {err:.2e}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# Each op is checked through a scalar loss sum(op(x) * weights) with random weights, so the
# gradient flowing in (d_out = weights) is not special.

def test_embedding(rng):
    table = rng.standard_normal((7, 3))
    ids = np.array([[0, 3, 3], [6, 0, 1]])
    w = rng.standard_normal((2, 3, 3))
    d_table = ops.embedding_backward(w, ids, 7)
    check(d_table, lambda: np.sum(ops.embedding_forward(table, ids) * w), table)


def test_rmsnorm(rng):
    x, weight = rng.standard_normal((5, 6)), rng.standard_normal(6)
    w = rng.standard_normal((5, 6))
    y, cache = ops.rmsnorm_forward(x, weight, 1e-5)
    d_x, d_weight = ops.rmsnorm_backward(w.copy(), cache)
    f = lambda: np.sum(ops.rmsnorm_forward(x, weight, 1e-5)[0] * w)
    check(d_x, f, x)
    check(d_weight, f, weight)


def test_linear(rng):
    x, weight = rng.standard_normal((4, 5)), rng.standard_normal((3, 5))
    w = rng.standard_normal((4, 3))
    d_x, d_weight = ops.linear_backward(w, x, weight)
    f = lambda: np.sum(ops.linear_forward(x, weight) * w)
    check(d_x, f, x)
    check(d_weight, f, weight)


def test_rope(rng):
    x = rng.standard_normal((2, 5, 3, 6))
    rotation = ops.rope_table(5, 6, 10000.0, np.float64)
    w = rng.standard_normal(x.shape)
    check(ops.rope_backward(w, rotation), lambda: np.sum(ops.rope_forward(x, rotation) * w), x)


def test_rope_rotates_interleaved_pairs():
    x = np.array([1.0, 0.0, 0.0, 2.0]).reshape(1, 1, 1, 4)
    rotation = ops.rope_table(2, 4, 100.0, np.float64)[1:]     # position 1: angles 1, 1/10
    y = ops.rope_forward(x, rotation).ravel()
    a, b = 1.0, 0.1
    np.testing.assert_allclose(y, [np.cos(a), np.sin(a), -2 * np.sin(b), 2 * np.cos(b)])


def check_attention(q, k, v, mask, rng):
    w = rng.standard_normal(q.shape)
    _, cache = ops.attention_forward(q, k, v, mask)
    d_q, d_k, d_v = ops.attention_backward(w.copy(), cache)
    f = lambda: np.sum(ops.attention_forward(q, k, v, mask)[0] * w)
    check(d_q, f, q)
    check(d_k, f, k)
    check(d_v, f, v)


@pytest.mark.parametrize("n_heads,n_kv_heads,T,T_keys", [(4, 2, 5, 5), (3, 3, 4, 4), (2, 1, 1, 1),
                                                         (4, 2, 2, 6), (2, 1, 7, 7), (2, 2, 3, 8)])
def test_attention(rng, monkeypatch, n_heads, n_kv_heads, T, T_keys):
    monkeypatch.setattr(ops, "QUERY_BLOCK", 3)        # several blocks, the last one partial
    S = 4
    q = rng.standard_normal((2, T, n_heads, S))
    k = rng.standard_normal((2, T_keys, n_kv_heads, S))
    v = rng.standard_normal((2, T_keys, n_kv_heads, S))
    mask = ops.causal_mask(T, T_keys, n_heads // n_kv_heads, np.float64)
    check_attention(q, k, v, mask, rng)


def test_attention_within_documents(rng, monkeypatch):
    """The gradients through a document mask (windows holding several documents), and what it
    means: each document's outputs are those it has alone."""
    monkeypatch.setattr(ops, "QUERY_BLOCK", 3)
    BOS, T, S = 0, 7, 4
    tokens = np.array([[5, BOS, 3, 4, BOS, 2, 6], [BOS, 1, 2, 3, 4, 5, 6]])
    q = rng.standard_normal((2, T, 4, S))
    k, v = (rng.standard_normal((2, T, 2, S)) for _ in range(2))
    mask = ops.document_mask(tokens, BOS, 2, np.float64)
    check_attention(q, k, v, mask, rng)
    y = ops.attention_forward(q, k, v, mask)[0]
    for first, end in ((0, 1), (1, 4), (4, 7)):       # the first row's three documents alone
        alone = ops.attention_forward(q[:1, first:end], k[:1, first:end], v[:1, first:end],
                                      ops.causal_mask(end - first, end - first, 2, np.float64))
        np.testing.assert_allclose(y[:1, first:end], alone[0], rtol=1e-12)
    causal = ops.attention_forward(q[1:], k[1:], v[1:], ops.causal_mask(T, T, 2, np.float64))
    np.testing.assert_allclose(y[1:], causal[0], rtol=1e-12)    # one document: plain causal


def test_attention_blocks_do_not_change_the_result(rng, monkeypatch):
    q, k, v = (rng.standard_normal((2, 9, 4, 4)) for _ in range(3))
    k, v = k[:, :, :2], v[:, :, :2]
    mask = ops.causal_mask(9, 9, 2, np.float64)
    w = rng.standard_normal(q.shape)
    results = []
    for block in (1, 4, 9):
        monkeypatch.setattr(ops, "QUERY_BLOCK", block)
        y, cache = ops.attention_forward(q, k, v, mask)
        results.append((y, *ops.attention_backward(w, cache)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_attention_is_causal(rng):
    q, k, v = (rng.standard_normal((1, 6, 2, 4)) for _ in range(3))
    mask = ops.causal_mask(6, 6, 1, np.float64)
    y, _ = ops.attention_forward(q, k, v, mask)
    k2, v2 = k.copy(), v.copy()
    k2[:, 4:] += 1.0                     # change the future of position 3
    v2[:, 4:] -= 1.0
    y2, _ = ops.attention_forward(q, k2, v2, mask)
    np.testing.assert_allclose(y[:, :4], y2[:, :4])
    assert not np.allclose(y[:, 4:], y2[:, 4:])


def test_swiglu(rng):
    a, b = rng.standard_normal((4, 5)) * 3, rng.standard_normal((4, 5))
    w = rng.standard_normal((4, 5))
    _, cache = ops.swiglu_forward(a, b)
    d_a, d_b = ops.swiglu_backward(w, cache)
    f = lambda: np.sum(ops.swiglu_forward(a, b)[0] * w)
    check(d_a, f, a)
    check(d_b, f, b)


def test_cross_entropy(rng):
    logits = rng.standard_normal((6, 5)) * 4
    targets = np.array([0, 4, 2, 2, 1, 3])
    _, cache = ops.cross_entropy_forward(logits.copy(), targets)
    d_logits = ops.cross_entropy_backward(cache)
    check(d_logits, lambda: ops.cross_entropy_forward(logits.copy(), targets)[0], logits)


def test_cross_entropy_value_and_large_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 0.0]])
    loss, _ = ops.cross_entropy_forward(logits.copy(), np.array([1, 0]))
    assert loss == pytest.approx((1000.0 + np.log(2)) / 2)


# ----------------------------------------------------------------------------------------------
# The whole model

CONFIGS = {
    "gqa": dict(vocab_size=11, dim=8, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4,
                hidden_dim=12),
    "untied": dict(vocab_size=9, dim=6, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=4,
                   hidden_dim=10, tie_embeddings=False),
    "head_dim_not_dim_over_heads": dict(vocab_size=7, dim=8, n_layers=1, n_heads=8, n_kv_heads=4,
                                        head_dim=2, hidden_dim=6),
    "wide_heads": dict(vocab_size=7, dim=4, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=6,
                       hidden_dim=6, tie_embeddings=False),
}
SHAPES = {"batch": (3, 5), "seq_len_1": (2, 1), "batch_1": (1, 4)}


def random_model(config, seed=0):
    model = Transformer.initialize(config, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    for value in model.params.values():          # move away from the symmetric initial state
        value += rng.standard_normal(value.shape) * 0.3
    return model


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_model_gradients(config, shape):
    config = ModelConfig(max_seq_len=6, **config)
    model = random_model(config)
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, config.vocab_size, shape)
    targets = rng.integers(0, config.vocab_size, shape)
    loss, activations = model.forward(tokens, targets)
    grads = model.backward(activations)
    assert set(grads) == set(model.params)
    f = lambda: model.forward(tokens, targets)[0]
    for name, value in model.params.items():
        assert grads[name].shape == value.shape
        err = relative_error(grads[name], numerical_gradient(f, value))
        assert err < TOLERANCE, f"{name}: relative error {err:.2e}"


def test_model_gradients_within_documents():
    config = ModelConfig(max_seq_len=6, **CONFIGS["gqa"])
    model = random_model(config)
    tokens = np.array([[3, 1, 4, 0, 5, 9], [0, 2, 6, 5, 0, 3]])
    targets = np.roll(tokens, -1, axis=1)
    loss, activations = model.forward(tokens, targets, bos_id=0)
    grads = model.backward(activations)
    assert loss != pytest.approx(model.forward(tokens, targets)[0])
    f = lambda: model.forward(tokens, targets, bos_id=0)[0]
    for name, value in model.params.items():
        err = relative_error(grads[name], numerical_gradient(f, value))
        assert err < TOLERANCE, f"{name}: relative error {err:.2e}"


def test_threaded_gradients_equal_single_thread():
    config = ModelConfig(max_seq_len=6, **CONFIGS["gqa"])
    model = random_model(config)
    rng = np.random.default_rng(3)
    tokens, targets = rng.integers(0, 11, (5, 6)), rng.integers(0, 11, (5, 6))
    loss1, grads1 = model.loss_and_grads(tokens, targets, n_threads=1)
    loss2, grads2 = model.loss_and_grads(tokens, targets, n_threads=2)
    assert loss2 == pytest.approx(loss1, rel=1e-12)
    for name in grads1:
        np.testing.assert_allclose(grads2[name], grads1[name], rtol=1e-10, atol=1e-14)
    again = model.loss_and_grads(tokens, targets, n_threads=2)[1]
    for name in grads2:                  # bit-identical when repeated: no dependence on timing
        assert np.array_equal(again[name], grads2[name])


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_cached_inference_matches_full_forward(config):
    config = ModelConfig(max_seq_len=7, **config)
    model = random_model(config)
    tokens = np.random.default_rng(4).integers(0, config.vocab_size, 7)
    full = model.logits(tokens[None])[0]
    cache = KVCache(config, np.float64)
    pieces = [model.forward_cached(tokens[:3], cache)]          # a prompt, then one at a time
    pieces += [model.forward_cached(tokens[i:i + 1], cache) for i in range(3, 7)]
    np.testing.assert_allclose(np.concatenate(pieces), full, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="context full"):
        model.forward_cached(tokens[:1], cache)


def test_float32_training_dtype():
    config = ModelConfig(max_seq_len=6, **CONFIGS["gqa"])
    model = Transformer.initialize(config, seed=0)
    tokens = np.random.default_rng(5).integers(0, 11, (2, 6))
    loss, grads = model.loss_and_grads(tokens, tokens[:, ::-1])
    assert all(g.dtype == np.float32 for g in grads.values())
    assert loss == pytest.approx(np.log(11), rel=0.05)        # untrained: near-uniform guess
