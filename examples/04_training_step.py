# %% [markdown]
# # Lesson 4: one training step, written out
#
# Training repeats one step: take a batch of text, measure how badly the model predicts each
# next token (the loss), find how each weight moves the loss (backward, lesson 2), keep the
# step from being too large (clipping), and move every weight a little (AdamW). Here we
# write the step out in NumPy and train one model with it, next to a copy trained by the
# library's own step (what `tinylm train` runs: tinylm/training/loop.py), and check after
# every step that both copies hold the same weights.
#
#     python examples/04_training_step.py

# %%
import math

import numpy as np

from tinylm.core.config import ModelConfig
from tinylm.core.model import Transformer
from tinylm.core.optim import AdamW, clip_grad_norm, learning_rate
from tinylm.text.corpus import make_stories
from tinylm.text.tokenizer import Tokenizer

from course import setting

stories = make_stories(300)
tokenizer = Tokenizer.train(stories, 300)
tokens = np.concatenate([tokenizer.encode(story, bos=True) for story in stories])
config = ModelConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                     head_dim=8, hidden_dim=88, max_seq_len=32)
# float64, so that "the same" can mean equal to 1e-12, not just close.
mine = Transformer.initialize(config, seed=0, dtype=np.float64)
library = Transformer.initialize(config, seed=0, dtype=np.float64)
rng = np.random.default_rng(0)

# %% [markdown]
# ## The loss
# A batch is B windows of T + 1 tokens; the model reads the first T and predicts the last T.
# The loss is the mean over positions of -log p(the true next token), in nats. Before
# training every token is about equally likely, so the loss starts near log(vocab size).

# %%
B, T = 8, config.max_seq_len
starts = rng.integers(0, len(tokens) - T - 1, size=B)
windows = np.stack([tokens[s:s + T + 1] for s in starts]).astype(np.int64)
inputs, targets = windows[:, :-1], windows[:, 1:]

logits = mine.logits(inputs)                              # (B, T, vocab)
log_probs = logits - logits.max(-1, keepdims=True)
log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
loss = -np.take_along_axis(log_probs, targets[..., None], axis=-1).mean()
print(f"loss by hand {loss:.6f}, the model's {mine.forward(inputs, targets)[0]:.6f}, "
      f"log(vocab) {math.log(config.vocab_size):.6f}")
assert np.isclose(loss, mine.forward(inputs, targets)[0], rtol=1e-12)

# %% [markdown]
# ## The step
# AdamW keeps two running averages per weight: m of the gradient, v of its square. The step
# is m / sqrt(v): about the learning rate in size whatever the gradient's scale. Dividing by
# 1 - beta^t ("bias correction") undoes the pull towards the zeros that m and v start from.
# Weight decay shrinks matrices (not norm gains) towards 0, apart from the gradient.

# %%
max_lr, warmup, steps, max_norm = 1e-2, 3, setting(20, 8), 1.0
beta1, beta2, eps, weight_decay = 0.9, 0.95, 1e-8, 0.1
m = {name: np.zeros_like(p) for name, p in mine.params.items()}
v = {name: np.zeros_like(p) for name, p in mine.params.items()}
optimizer = AdamW(library.params, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)

print("step   loss   grad norm  clipped  learning rate  largest weight difference")
for step in range(steps):
    starts = rng.integers(0, len(tokens) - T - 1, size=B)
    windows = np.stack([tokens[s:s + T + 1] for s in starts]).astype(np.int64)
    inputs, targets = windows[:, :-1], windows[:, 1:]

    # 1. loss and gradients (the hand-written backward of lesson 2)
    loss, activations = mine.forward(inputs, targets)
    grads = mine.backward(activations)
    # 2. the learning rate: a linear warmup, then a cosine down to a tenth
    if step < warmup:
        lr = max_lr * (step + 1) / warmup
    else:
        progress = (step - warmup) / (steps - warmup)
        lr = 0.1 * max_lr + 0.9 * max_lr * 0.5 * (1 + math.cos(math.pi * progress))
    # 3. clipping: scale all gradients together so that their global norm is <= max_norm
    norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    if norm > max_norm:
        for g in grads.values():
            g *= max_norm / norm
    # 4. AdamW
    t = step + 1
    for name, p in mine.params.items():
        g = grads[name]
        m[name] = beta1 * m[name] + (1 - beta1) * g
        v[name] = beta2 * v[name] + (1 - beta2) * g * g
        m_hat, v_hat = m[name] / (1 - beta1 ** t), v[name] / (1 - beta2 ** t)
        if p.ndim == 2:
            p *= 1 - lr * weight_decay
        p -= lr * m_hat / (np.sqrt(v_hat) + eps)

    # The library's step on the copy: the same four parts (n_threads=1: with two threads
    # the batch's halves are added in another order, which changes the last digits).
    library_loss, library_grads = library.loss_and_grads(inputs, targets, n_threads=1)
    library_norm = clip_grad_norm(library_grads, max_norm)
    optimizer.step(library_grads, learning_rate(step, max_lr, steps, warmup))

    difference = max(np.abs(mine.params[n] - library.params[n]).max() for n in mine.params)
    print(f"{step:4} {loss:7.4f} {norm:10.4f}  {str(norm > max_norm):7} {lr:13.6f}  "
          f"{difference:.1e}")
    assert np.isclose(lr, learning_rate(step, max_lr, steps, warmup), rtol=1e-14)
    assert np.isclose(loss, library_loss, rtol=1e-12) and np.isclose(norm, library_norm)
    assert difference < 1e-12
    if step == 0:
        first_loss = loss
print(f"loss {first_loss:.3f} -> {loss:.3f}: the hand-written step and the library's agree")
assert loss < first_loss - 0.5

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/04_adamw.py`: one AdamW update for one weight array; its check runs
#    it against `tinylm.core.optim.AdamW` for a few steps.
# 2. Drop the bias correction: how large are the first steps then, compared with lr?
# 3. Set max_norm to 0.1: which steps are clipped, and does the loss fall faster or slower?
