# %% [markdown]
# # Lesson 3: causal attention and RoPE, by hand
#
# Attention is how a position reads the positions before it: each position asks a question
# (its query q), every earlier position offers a label (key k) and a content (value v), and
# the answer is the values averaged with weights softmax(q . k / sqrt(head size)). RoPE
# (rotary position embedding) tells attention where each position is, by rotating q and k
# by an angle that grows with the position. We compute both by hand in the first layer of a
# small trained model and compare with the library's ops (tinylm/core/ops.py).
#
#     python examples/03_attention_and_rope.py     (trains the small story model once)

# %%
import numpy as np

from tinylm.core import ops

from course import picture, story_model

model, tokenizer = story_model()
c, p = model.config, model.params
text = "Once upon a time, Tom saw a dog at the park. The dog was sad. Tom"
ids = tokenizer.encode(text, bos=True)
labels = ["<bos>"] + [tokenizer.vocab[i].decode() for i in ids[1:]]
T = len(ids)
print(f"{T} tokens; {c.n_heads} query heads share {c.n_kv_heads} key/value heads "
      f"of size {c.head_dim}")

# %% [markdown]
# ## Queries, keys and values
# The first layer's input: each token's embedding, RMS-normalized; then three linear maps.
# Shapes (batch, time, heads, head size), as the library uses.

# %%
x = ops.embedding_forward(p["tok_emb"], np.array(ids)).astype(np.float64)
h, _ = ops.rmsnorm_forward(x, p["layers.0.attn_norm"], c.norm_eps)
q = ops.linear_forward(h, p["layers.0.wq"]).reshape(1, T, c.n_heads, c.head_dim)
k = ops.linear_forward(h, p["layers.0.wk"]).reshape(1, T, c.n_kv_heads, c.head_dim)
v = ops.linear_forward(h, p["layers.0.wv"]).reshape(1, T, c.n_kv_heads, c.head_dim)

# %% [markdown]
# ## RoPE
# Take the numbers of a head in pairs (x0, x1) and turn pair i at position t by the angle
# t * theta^(-2i/S): fast turns for the first pairs, slow ones for the last.

# %%


def rope_by_hand(x, theta=c.rope_theta):
    out = np.empty_like(x)
    S = x.shape[-1]
    for t in range(x.shape[1]):
        for i in range(S // 2):
            angle = t * theta ** (-2 * i / S)
            x0, x1 = x[:, t, :, 2 * i], x[:, t, :, 2 * i + 1]
            out[:, t, :, 2 * i] = x0 * np.cos(angle) - x1 * np.sin(angle)
            out[:, t, :, 2 * i + 1] = x0 * np.sin(angle) + x1 * np.cos(angle)
    return out


rotation = ops.rope_table(T, c.head_dim, c.rope_theta, np.float64)
q_rot, k_rot = rope_by_hand(q), rope_by_hand(k)
assert np.allclose(q_rot, ops.rope_forward(q, rotation), atol=1e-12)
assert np.allclose(k_rot, ops.rope_forward(k, rotation), atol=1e-12)
print("RoPE by hand = ops.rope_forward")

# Why rotate: turning q by angle(m) and k by angle(n) leaves their dot product depending on
# m - n only. Attention then sees how far back a key is, not where the text started.
a, b = (np.tile(vector, (1, T, 1, 1)) for vector in (q[:, :1, :1], k[:, :1, :1]))
a, b = rope_by_hand(a), rope_by_hand(b)
dots = {(m, n): float(a[0, m, 0] @ b[0, n, 0]) for m, n in [(5, 2), (9, 6), (9, 2)]}
print("q at 5 . k at 2 = {:.6f}; q at 9 . k at 6 = {:.6f}; q at 9 . k at 2 = {:.6f}".format(
    *dots.values()))
assert np.isclose(dots[5, 2], dots[9, 6]) and not np.isclose(dots[5, 2], dots[9, 2])

# %% [markdown]
# ## Attention, one head at a time
# Scores q . k / sqrt(S); a position may not look at later ones (their scores become -inf,
# so softmax gives them weight 0); the output is the weighted sum of values. With grouped-
# query attention, query head h reads key/value head h // (n_heads / n_kv_heads).

# %%
group = c.n_heads // c.n_kv_heads
y_hand = np.empty_like(q)
patterns = []
for head in range(c.n_heads):
    kv = head // group
    scores = q_rot[0, :, head] @ k_rot[0, :, kv].T / np.sqrt(c.head_dim)
    scores[np.triu_indices(T, k=1)] = -np.inf
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    y_hand[0, :, head] = weights @ v[0, :, kv]
    patterns.append(weights)

y_library, _ = ops.attention_forward(q_rot, k_rot, v, ops.causal_mask(T, T, group, q.dtype))
assert np.allclose(y_hand, y_library, atol=1e-12)
assert all(np.allclose(w.sum(axis=1), 1) and not np.triu(w, k=1).any() for w in patterns)
print("attention by hand = ops.attention_forward; every row sums to 1, nothing from the future")

last = patterns[0][-1]
print(f"head 0: where the last token {labels[-1]!r} looks (the top 4):")
for i in np.argsort(-last)[:4]:
    print(f"  {i:3} {labels[i]!r:10} {last[i]:.3f}")

# %%


def draw_patterns(figure):
    for head, (axes, weights) in enumerate(zip(figure.subplots(1, c.n_heads), patterns)):
        axes.imshow(weights, cmap="Blues", vmin=0, vmax=1)
        axes.set_title(f"head {head} (kv {head // group})")
        axes.set_xticks(range(T), labels, rotation=90, fontsize=6)
        axes.set_yticks(range(T), labels if head == 0 else [], fontsize=6)


picture("03_attention.png", draw_patterns, size=(14, 4.5))
print("row: the position that reads; column: the position read; dark: a large weight")

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/03_sliding_window.py`: attention that sees only the last W
#    positions (as in Mistral and Gemma's local layers); its check builds it from the
#    library's op.
# 2. Set rope_theta to 100 and to 1e6 in `rope_by_hand`: how far back can a pair still tell
#    two positions apart before its angle wraps around?
# 3. Remove the division by sqrt(S): what happens to the rows of the pattern, and why?
