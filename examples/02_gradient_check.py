# %% [markdown]
# # Lesson 2: one op forward and backward, and the gradient check
#
# tinylm computes gradients with backward functions written by hand (tinylm/core/ops.py), not
# with automatic differentiation. A wrong line there rarely crashes: the model just trains
# worse. So every gradient is checked against its definition, a central finite difference
# (tinylm/core/gradcheck.py):
#
#     dL/dx  ~  (L(x + h) - L(x - h)) / (2h)
#
# It needs float64: in float32 the difference L(x + h) - L(x - h) drowns in rounding error.
# A correct backward then agrees to a relative error around 1e-8 or better; a bug shows up
# as an error of order 1.
#
#     python examples/02_gradient_check.py

# %%
import numpy as np

from tinylm.core import ops
from tinylm.core.config import ModelConfig
from tinylm.core.gradcheck import finite_difference, numerical_gradient, relative_error
from tinylm.core.model import Transformer

rng = np.random.default_rng(0)

# %% [markdown]
# ## One op: RMSNorm
# y = x / sqrt(mean(x^2) + eps) * w, row by row. A backward function turns dL/dy into dL/dx
# and dL/dw. To test it we need some scalar L of y: L = sum(y * G) with a fixed random G
# works, because then dL/dy = G, an arbitrary "incoming gradient".

# %%
x = rng.standard_normal((4, 8))
w = rng.standard_normal(8)
G = rng.standard_normal((4, 8))


def rmsnorm_loss():
    y, _ = ops.rmsnorm_forward(x, w, 1e-5)
    return np.sum(y * G)


y, cache = ops.rmsnorm_forward(x, w, 1e-5)
print("each row of y / w has mean square 1:", np.round(np.mean((y / w) ** 2, axis=1), 4))
dx, dw = ops.rmsnorm_backward(G.copy(), cache)

numeric_dx = numerical_gradient(rmsnorm_loss, x)    # two calls of the loss per entry of x
numeric_dw = numerical_gradient(rmsnorm_loss, w)
error_dx, error_dw = relative_error(dx, numeric_dx), relative_error(dw, numeric_dw)
print(f"RMSNorm  dL/dx relative error {error_dx:.1e}, dL/dw {error_dw:.1e}")
assert error_dx < 1e-8 and error_dw < 1e-8

# %% [markdown]
# What a bug looks like: forget that x also appears inside the mean (the
# "- x_hat * mean(...)" term in `ops.rmsnorm_backward`), i.e. treat 1/rms as a constant.

# %%
rstd = 1 / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-5)
naive_dx = G * w * rstd
naive_error = relative_error(naive_dx, numeric_dx)
print(f"a buggy dL/dx that treats 1/rms as a constant: relative error {naive_error:.1e}")
assert naive_error > 1e-2     # the check catches it

# %% [markdown]
# ## The whole model
# Now L is the model's mean cross-entropy on a small batch, and x is any weight. Checking
# every weight takes two forward passes each, so we probe a few random entries of every
# parameter. This exercises all the backward functions chained together, including the
# places where one tensor feeds two paths (the residual stream, tied embeddings) and
# gradients must be added.

# %%
config = ModelConfig(vocab_size=32, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=4,
                     hidden_dim=24, max_seq_len=8)
model = Transformer.initialize(config, seed=0, dtype=np.float64)
# Freshly initialized weights are small (std 0.02): attention is then almost uniform and the
# gradients of wq and wk are tiny, too tiny to compare. Larger weights give every path a signal.
for param in model.params.values():
    if param.ndim == 2:
        param *= 10
tokens = rng.integers(0, config.vocab_size, size=(2, 8))
targets = rng.integers(0, config.vocab_size, size=(2, 8))

loss, activations = model.forward(tokens, targets)
grads = model.backward(activations)
print(f"\nWhole model ({config.n_params():,} parameters), loss {loss:.4f}")
worst = 0.0
for name, param in model.params.items():
    probes = [tuple(rng.integers(0, n) for n in param.shape) for _ in range(3)]
    analytic = np.array([grads[name][i] for i in probes])
    numeric = np.array([finite_difference(lambda: model.forward(tokens, targets)[0], param, i)
                        for i in probes])
    error = relative_error(analytic, numeric)
    worst = max(worst, error)
    print(f"  {name:18} relative error {error:.1e}")
print(f"worst: {worst:.1e}")
assert worst < 1e-6

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/02_swiglu_backward.py`: write the backward pass of the SwiGLU gate
#    y = silu(a) * b; its check is this lesson's gradient check.
# 2. Run the RMSNorm check in float32 (`x.astype(np.float32)`, and w, G too): how large is
#    the "error" of a correct backward now, and why?
# 3. Try h = 1e-2 and h = 1e-9 in `numerical_gradient`: which way does each go wrong?
