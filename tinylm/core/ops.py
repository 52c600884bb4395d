"""The operations of a Llama-style transformer, each as a forward and a backward function.

Every forward returns its output plus whatever its backward needs (a "cache"); every backward
takes the gradient of the loss with respect to the output (`d_out`) and returns the gradients
with respect to the inputs and weights. Shapes: B batch, T time, D model width, H query heads,
K key/value heads, S head size, F hidden width, V vocabulary.

Matrices are stored (out, in), as in llama2.c, so a linear layer is y = x @ W.T.
The code works in whatever float dtype it is given (float32 to train, float64 to check
gradients) and avoids temporaries where it can: in NumPy the elementwise passes, not the
matrix products, are what cost time at these sizes.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ----------------------------------------------------------------------------------------------
# Embedding: y[b, t] = table[ids[b, t]]
# The gradient of a row is the sum of the output gradients of every position that looked it up.
# (np.add.at(d_table, ids, d_out) says that in one line, but adds one row at a time, several
# times slower: here the positions are sorted by token and each token's run summed at once.)

def embedding_forward(table, ids):
    return table[ids]


def embedding_backward(d_out, ids, vocab_size):
    ids, d_out = ids.reshape(-1), d_out.reshape(-1, d_out.shape[-1])
    order = np.argsort(ids, kind="stable")                 # positions grouped by token
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.diff(sorted_ids, prepend=-1))     # where each token's run begins
    d_table = np.zeros((vocab_size, d_out.shape[-1]), dtype=d_out.dtype)
    d_table[sorted_ids[starts]] = np.add.reduceat(d_out[order], starts, axis=0)
    return d_table


# ----------------------------------------------------------------------------------------------
# RMSNorm over rows x: (N, D):  y = x * r * w,  r = 1 / sqrt(mean(x^2) + eps)
# dx = r * (g - x_hat * mean(g * x_hat)) with g = dy * w and x_hat = x * r;  dw = sum(dy * x_hat).

def rmsnorm_forward(x, weight, eps):
    mean_square = np.einsum("nd,nd->n", x, x)[:, None] / x.shape[-1]
    rstd = 1.0 / np.sqrt(mean_square + eps)
    x_hat = x * rstd
    return x_hat * weight, (x_hat, rstd, weight)


def rmsnorm_backward(d_out, cache):
    x_hat, rstd, weight = cache
    d_weight = np.einsum("nd,nd->d", d_out, x_hat)
    g = d_out * weight
    mean_gx = np.einsum("nd,nd->n", g, x_hat)[:, None] / x_hat.shape[-1]
    g -= x_hat * mean_gx
    g *= rstd
    return g, d_weight


# ----------------------------------------------------------------------------------------------
# Linear: y = x @ W.T   ->   dx = dy @ W,   dW = dy.T @ x   (rows of all positions summed)

def linear_forward(x, weight):
    return x @ weight.T


def linear_backward(d_out, x, weight):
    d_x = d_out @ weight
    d_weight = d_out.reshape(-1, d_out.shape[-1]).T @ x.reshape(-1, x.shape[-1])
    return d_x, d_weight


# ----------------------------------------------------------------------------------------------
# Rotary position embedding (RoPE), on interleaved pairs (x[2i], x[2i+1]) as in llama2.c:
# each pair at position t is rotated by angle t * theta^(-2i/S):
#   y0 = x0 cos - x1 sin,   y1 = x0 sin + x1 cos.
# Read as a complex number x0 + i x1, that is one multiplication: y = x * e^(i angle).
# A rotation's transpose is the rotation by -angle, so the backward multiplies by e^(-i angle).

def rope_table(seq_len, head_dim, theta, dtype):
    """e^(i angle) for every position and pair: (seq_len, head_dim / 2) complex numbers."""
    inv_freq = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    angles = np.outer(np.arange(seq_len, dtype=np.float64), inv_freq)
    return np.exp(1j * angles).astype(np.result_type(dtype, np.complex64))


def _rotate(x, rotation):
    """x: (B, T, heads, S) real; rotation: (T, S/2) complex. The pairs of x seen as complex."""
    pairs = np.ascontiguousarray(x).view(rotation.dtype)        # (B, T, heads, S/2)
    return (pairs * rotation[:, None, :]).view(x.dtype)


def rope_forward(x, rotation):
    return _rotate(x, rotation)


def rope_backward(d_out, rotation):
    return _rotate(d_out, rotation.conj())


# ----------------------------------------------------------------------------------------------
# Causal self-attention with grouped key/value heads (GQA).
# Query head h reads key/value head h // (H/K). For one head:
#   scores = q k^T / sqrt(S) (future positions masked),  P = softmax(scores),  y = P v
# Backward:  dP = dy v^T,  dv = P^T dy,
#   dscores = P * (dP - rowsum(dP * P)) / sqrt(S),  dq = dscores k,  dk = dscores^T q.
# The G = H/K query heads that share a key/value head are stacked as rows of one (T*G, S)
# matrix, so each product is one batched matrix multiply and the shared k, v need no copies.
# Causality also saves work: queries are taken in blocks of QUERY_BLOCK positions, and a block
# is multiplied only with the keys up to its last position, never with the masked-out rest.
# The products with k^T and v^T take them copied as (S, T_keys) rows: a transposed view of k
# makes BLAS read with a stride, and the copy (small: no T x T array) pays for itself.

QUERY_BLOCK = 32


def _group_queries(x, n_kv_heads):
    """(B, T, H, S) -> (B, K, T*G, S): per kv head, its G query heads as rows ordered by time,
    so that a run of positions is a run of rows."""
    B, T, H, S = x.shape
    G = H // n_kv_heads
    return (x.reshape(B, T, n_kv_heads, G, S).transpose(0, 2, 1, 3, 4)
            .reshape(B, n_kv_heads, T * G, S))


def _ungroup_queries(x, T):
    """(B, K, T*G, S) -> (B, T, H, S), the inverse of _group_queries."""
    B, K, TG, S = x.shape
    G = TG // T
    return x.reshape(B, K, T, G, S).transpose(0, 2, 1, 3, 4).reshape(B, T, K * G, S)


def causal_mask(n_queries, n_keys, G, dtype):
    """(n_queries*G, n_keys) additive mask, rows as in _group_queries: 0 where a query may look,
    -inf at future keys. The queries are the last n_queries of the n_keys positions (a prompt
    continuing a cache)."""
    future = np.triu(np.ones((n_queries, n_keys), dtype=bool), k=1 + n_keys - n_queries)
    return np.repeat(np.where(future, -np.inf, 0.0).astype(dtype), G, axis=0)


def document_mask(tokens, bos_id, G, dtype):
    """(B, 1, T*G, T) additive mask for training windows cut anywhere in a stream of documents:
    a query sees the keys of its own document (from the last <bos> at or before it) up to
    itself, so each document trains as it is used, from its own <bos> alone."""
    document = np.cumsum(tokens == bos_id, axis=1)                       # (B, T)
    seen = (document[:, :, None] == document[:, None, :]) & np.tri(tokens.shape[1], dtype=bool)
    return np.repeat(np.where(seen, 0.0, -np.inf).astype(dtype), G, axis=1)[:, None]


def _query_blocks(T, T_keys, G):
    """(rows, keys) slices: a block of query rows and the keys its positions can see."""
    for t0 in range(0, T, QUERY_BLOCK):
        t1 = min(t0 + QUERY_BLOCK, T)
        yield slice(t0 * G, t1 * G), slice(0, T_keys - T + t1)


def attention_forward(q, k, v, mask):
    """q: (B, T, H, S); k, v: (B, T_keys, K, S); mask from causal_mask (or document_mask).
    Returns y like q."""
    B, T, H, S = q.shape
    K, T_keys = k.shape[2], k.shape[1]
    qg = _group_queries(q, K) * (1.0 / S ** 0.5)          # scale the small tensor, not the scores
    kt = k.transpose(0, 2, 1, 3)                          # (B, K, T_keys, S)
    vt = v.transpose(0, 2, 1, 3)
    k_columns = np.ascontiguousarray(k.transpose(0, 2, 3, 1))      # k^T: (B, K, S, T_keys)
    y = np.empty_like(qg)
    probs = []
    for rows, keys in _query_blocks(T, T_keys, H // K):
        p = qg[:, :, rows] @ k_columns[..., keys]          # scores
        p += mask[..., rows, keys]
        p -= p.max(axis=-1, keepdims=True)                # softmax in place, stable
        np.exp(p, out=p)
        p *= 1.0 / p.sum(axis=-1, keepdims=True)
        y[:, :, rows] = p @ vt[:, :, keys]
        probs.append(p)
    return _ungroup_queries(y, T), (qg, kt, vt, probs)


def attention_backward(d_out, cache):
    qg, kt, vt, probs = cache
    B, T, H, S = d_out.shape
    K = kt.shape[1]
    dyg = _group_queries(d_out, K)                         # (B, K, T*G, S)
    d_qg = np.empty_like(qg)                               # gradient w.r.t. the scaled queries
    d_kt, d_vt = np.zeros_like(kt), np.zeros_like(vt)
    v_columns = np.ascontiguousarray(vt.transpose(0, 1, 3, 2))     # v^T: (B, K, S, T_keys)
    for (rows, keys), p in zip(_query_blocks(T, kt.shape[2], H // K), probs):
        dy = dyg[:, :, rows]
        d_vt[:, :, keys] += p.transpose(0, 1, 3, 2) @ dy
        d_scores = dy @ v_columns[..., keys]                        # dP, then dscores in place
        d_scores -= np.einsum("bkqt,bkqt->bkq", d_scores, p)[..., None]
        d_scores *= p
        d_qg[:, :, rows] = d_scores @ kt[:, :, keys]
        d_kt[:, :, keys] += d_scores.transpose(0, 1, 3, 2) @ qg[:, :, rows]   # qg is scaled
    d_q = _ungroup_queries(d_qg, T)
    d_q *= 1.0 / S ** 0.5
    return d_q, d_kt.transpose(0, 2, 1, 3), d_vt.transpose(0, 2, 1, 3)


# ----------------------------------------------------------------------------------------------
# SwiGLU gate: y = silu(a) * b,  silu(a) = a * sigmoid(a)
# da = dy * b * sigmoid(a) * (1 + a * (1 - sigmoid(a))),   db = dy * silu(a)

def swiglu_forward(a, b):
    sig = np.negative(a)                # sigmoid(a) = 1 / (1 + exp(-a)), in one buffer
    np.exp(sig, out=sig)
    sig += 1.0
    np.reciprocal(sig, out=sig)
    silu = a * sig
    return silu * b, (a, b, sig, silu)


def swiglu_backward(d_out, cache):
    a, b, sig, silu = cache
    d_b = d_out * silu
    d_a = 1.0 - sig                     # reuse one buffer: sig * (1 + a * (1 - sig)) * b * dy
    d_a *= a
    d_a += 1.0
    d_a *= sig
    d_a *= b
    d_a *= d_out
    return d_a, d_b


# ----------------------------------------------------------------------------------------------
# Cross-entropy of the next token: loss = mean over positions of  logsumexp(z) - z[target]
# dz = (softmax(z) - onehot(target)) / N

def cross_entropy_forward(logits, targets):
    """logits: (N, V), targets: (N,). Returns mean loss (nats/token) and probabilities."""
    rows = np.arange(len(targets))
    probs = logits - logits.max(axis=-1, keepdims=True)
    target_logits = probs[rows, targets]               # z[target] - max, before exp
    np.exp(probs, out=probs)
    sums = probs.sum(axis=-1, keepdims=True)
    losses = np.log(sums[:, 0]) - target_logits
    probs *= 1.0 / sums
    return float(losses.mean()), (probs, targets)


def cross_entropy_backward(cache):
    probs, targets = cache
    d_logits = probs                    # the cache is not needed again: reuse its buffer
    d_logits[np.arange(len(targets)), targets] -= 1.0
    d_logits *= 1.0 / len(targets)
    return d_logits


# ----------------------------------------------------------------------------------------------
# Distillation: hard-label cross-entropy mixed with KL(teacher || student) at temperature T,
#   loss = mean over positions of  (1 - w) * CE(z, target) + w * T^2 * KL(q_T || s_T).
# The teacher is known only by its top k tokens (ids, log-probs; -inf marks an unused slot).
# All else it predicts is one more outcome, "rest", holding its remaining probability; the
# student's rest is its probability outside the listed ids. Both are then distributions over
# the same k + 1 outcomes, and T tempers those: q_T ~ q^(1/T), s_T ~ s^(1/T) (s = softmax(z)
# summed into the outcomes). At T = 1 this KL is exact for the teacher as stored, and a lower
# bound on the full one: merging outcomes never adds divergence.
# Backward: dL/d(log s_j) = T (s_T,j - q_T,j) =: g_j over the k + 1 outcomes, and through
# log s_j = z_id - logsumexp(z),  log s_rest = log(sum of p_v outside) - logsumexp(z):
#   dz_v = g_j                    for v the listed id of slot j
#   dz_v = g_rest * p_v / s_rest  for v not listed
# (a term -p_v * sum_j g_j drops out: both tempered distributions sum to 1).

class SoftTargets(NamedTuple):
    """A batch's teacher distributions, and how much they count against the hard labels."""
    ids: np.ndarray        # (B, T, k) token ids
    logprobs: np.ndarray   # (B, T, k) natural-log probabilities; -inf for an unused slot
    weight: float          # w above: 0 is plain training, 1 pure distillation
    temperature: float     # T above

    def rows(self, rows):
        """The targets of some sequences of the batch, e.g. for one thread."""
        return self._replace(ids=self.ids[rows], logprobs=self.logprobs[rows])


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kd_loss_forward(logits, targets, soft_ids, soft_logprobs, weight, temperature):
    """logits: (N, V); targets: (N,); soft_ids, soft_logprobs: (N, k) with the ids of a row
    distinct. Returns the mean loss and what the backward needs."""
    N, k = soft_ids.shape
    rows = np.arange(N)
    listed = np.isfinite(soft_logprobs)
    probs = logits - logits.max(axis=-1, keepdims=True)
    target_logits = probs[rows, targets]
    listed_logits = np.take_along_axis(probs, soft_ids, axis=1)
    np.exp(probs, out=probs)
    sums = probs.sum(axis=-1, keepdims=True)
    log_sums = np.log(sums)
    probs *= 1.0 / sums
    cross_entropy = log_sums[:, 0] - target_logits

    rest = probs.copy()                 # the student's probabilities outside the listed ids
    listed_rows, listed_slots = np.nonzero(listed)
    rest[listed_rows, soft_ids[listed_rows, listed_slots]] = 0.0
    student_rest = rest.sum(axis=-1)
    student = np.full((N, k + 1), -np.inf, dtype=probs.dtype)     # log s over the outcomes
    np.subtract(listed_logits, log_sums, out=student[:, :k], where=listed)
    student[:, k] = np.log(np.maximum(student_rest, np.finfo(probs.dtype).tiny))
    teacher = np.full((N, k + 1), -np.inf, dtype=probs.dtype)     # log q over the outcomes
    teacher[:, :k] = soft_logprobs
    teacher_rest = 1.0 - np.exp(teacher[:, :k]).sum(axis=-1)
    np.log(teacher_rest, out=teacher[:, k], where=teacher_rest > 0)

    log_s = _log_softmax(student / temperature)
    log_q = _log_softmax(teacher / temperature)
    q = np.exp(log_q)
    log_ratio = np.subtract(log_q, log_s, out=np.zeros_like(q), where=q > 0)  # 0 log 0 = 0
    kl = (q * log_ratio).sum(axis=-1)
    loss = (1 - weight) * cross_entropy.mean() + weight * temperature ** 2 * kl.mean()
    g = temperature * (np.exp(log_s) - q)
    return float(loss), (probs, rest, student_rest, targets, soft_ids, listed, g, weight)


def kd_loss_backward(cache):
    probs, rest, student_rest, targets, soft_ids, listed, g, weight = cache
    N, k = soft_ids.shape
    per_rest = np.divide(g[:, k], student_rest, out=np.zeros_like(student_rest),
                         where=student_rest > 0)
    d_logits = rest                     # reuse the buffer: rest * g_rest / s_rest, times w
    d_logits *= (weight * per_rest)[:, None]
    listed_rows, listed_slots = np.nonzero(listed)
    d_logits[listed_rows, soft_ids[listed_rows, listed_slots]] = \
        weight * g[listed_rows, listed_slots]
    probs *= 1.0 - weight               # plus (1 - w) (softmax - onehot), the cross-entropy's
    probs[np.arange(N), targets] -= 1.0 - weight
    d_logits += probs
    d_logits *= 1.0 / N
    return d_logits
