# %% [markdown]
# # Lesson 6: distillation, learning from a teacher's distribution
#
# Training on text teaches one right answer per position. A big teacher model knows more:
# after "The dog was" it gives " sad" 40%, " happy" 30%, ... Distillation trains the student
# to match that whole distribution. Two problems: the teacher's distribution is stored only
# as its top k tokens, and the teacher has its own tokenizer, so its tokens are not the
# student's. Here: the loss (tinylm/core/ops.py, kd_loss_forward) and the projection from
# one tokenizer to another (tinylm/distillation/projection.py), on numbers small enough to
# check by hand. docs/distillation.md has the whole method; `tinylm distill` runs it.
#
#     python examples/06_distillation.py

# %%
import numpy as np

from tinylm.core import ops
from tinylm.distillation.projection import Projector
from tinylm.distillation.targets import Piece, TeacherVocab
from tinylm.text.tokenizer import Tokenizer

# %% [markdown]
# ## The loss: KL divergence with a "rest"
# The teacher lists 3 of the student's 6 tokens with probabilities 0.6, 0.25, 0.1; the
# other 0.05 is its "rest". The student's rest is all its probability outside the listed
# tokens. Over these 4 outcomes, KL(q || s) = sum q log(q / s): 0 only when they agree.

# %%
logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -0.5])      # the student's, for 6 tokens
listed, q_listed = np.array([0, 2, 1]), np.array([0.6, 0.25, 0.1])
s = np.exp(logits) / np.exp(logits).sum()
q = np.append(q_listed, 1 - q_listed.sum())               # teacher: 3 tokens + rest
s_outcomes = np.append(s[listed], 1 - s[listed].sum())    # student: the same 4 outcomes
kl = np.sum(q * np.log(q / s_outcomes))


def kd_loss(weight, temperature, logits=logits):
    """The library's loss at one position whose hard label is token 0."""
    return ops.kd_loss_forward(logits[None], np.array([0]), listed[None],
                               np.log(q_listed)[None], weight, temperature)


print(f"teacher {np.round(q, 3)}\nstudent {np.round(s_outcomes, 3)}\nKL by hand {kl:.6f}, "
      f"library {kd_loss(1.0, 1.0)[0]:.6f}")
assert np.isclose(kl, kd_loss(1.0, 1.0)[0])

# Temperature T softens both distributions (p^(1/T), renormalized) to show more of the small
# probabilities; T^2 keeps the gradient's size the same. Weight w mixes in the hard label.
T, w = 2.0, 0.5
q_T = q ** (1 / T) / np.sum(q ** (1 / T))
s_T = s_outcomes ** (1 / T) / np.sum(s_outcomes ** (1 / T))
by_hand = (1 - w) * -np.log(s[0]) + w * T ** 2 * np.sum(q_T * np.log(q_T / s_T))
print(f"T = 2, w = 0.5: by hand {by_hand:.6f}, library {kd_loss(w, T)[0]:.6f}")
assert np.isclose(by_hand, kd_loss(w, T)[0])

# %% [markdown]
# The gradient with respect to the logits (w = 1, T = 1): s - q for each listed token, and
# the rest's s - q shared among the unlisted tokens in proportion to their probability.
# Following it, the student's 4 outcomes move to the teacher's.

# %%
gradient = np.empty(6)
gradient[listed] = s[listed] - q_listed
unlisted = np.setdiff1d(np.arange(6), listed)
gradient[unlisted] = (s_outcomes[3] - q[3]) * s[unlisted] / s[unlisted].sum()
assert np.allclose(gradient, ops.kd_loss_backward(kd_loss(1.0, 1.0)[1])[0])

student = logits.copy()
for step in range(300):
    loss, cache = kd_loss(1.0, 1.0, student)
    student -= 2.0 * ops.kd_loss_backward(cache)[0]
s = np.exp(student) / np.exp(student).sum()
print(f"after 300 steps: student {np.round(np.append(s[listed], s[unlisted].sum()), 3)}, "
      f"KL {loss:.1e}")
assert loss < 1e-4

# %% [markdown]
# ## Two tokenizers
# The teacher has whole words " cat", " car", " dog"; the student only " ca" and " do".
# The text is " cat". Before it the teacher said: " cat" 0.5, " car" 0.3, " dog" 0.15
# (and 0.05 for tokens beyond its top k). What should the student learn?
#
# * Before the word, the student's next token is " ca" for both " cat" and " car", so
#   P(" ca") = 0.5 + 0.3 = 0.8, P(" do") = 0.15, and 0.05 stays "rest".
# * After " ca", the student has seen bytes the teacher's token had not finished. Only
#   " cat" and " car" fit (together 0.8), so P("t") = 0.5 / 0.8 = 0.625, P("r") = 0.375.

# %%
words = [b" cat", b" car", b" dog"]
END = 259                                  # the teacher's end-of-text token
vocab = TeacherVocab([bytes([b]) for b in range(256)] + words + [None], [END],
                     dummy_prefix=False)
# The student: 256 bytes, merges " "+"c", " c"+"a", " "+"d", " d"+"o", then <bos>, <eos>.
space, c, a, d, o = b" cado"
student_tokenizer = Tokenizer([(space, c, 256, 0), (256, a, 257, 1), (space, d, 258, 2),
                               (258, o, 259, 3)], {"<bos>": 260, "<eos>": 261})
# The teacher's top 3 at each position: before " cat" (ids of " cat", " car", " dog") and
# after it (the end, certain); -inf marks an unused slot.
ids = np.array([[256, 257, 258], [END, 0, 0]], np.int32)
logprobs = np.array([np.log([0.5, 0.3, 0.15]), [0.0, -np.inf, -np.inf]])
piece = Piece("text", 0, 0, b" cat", None, np.array([256], np.int32), ids,
              logprobs.astype(np.float16))

tokens, soft_ids, soft_logprobs = Projector(vocab, student_tokenizer, k=4).project(
    piece, end_id=student_tokenizer.eos_id)
print("the student reads", [student_tokenizer.vocab[i] for i in tokens])
projected = []
for position, (row_ids, row_logprobs) in enumerate(zip(soft_ids, soft_logprobs)):
    row = {student_tokenizer.vocab[i]: float(np.exp(lp))
           for i, lp in zip(row_ids, row_logprobs) if np.isfinite(lp)}
    projected.append(row)
    print(f"  position {position}: " + ", ".join(f"{t!r} {p:.3f}" for t, p in row.items())
          + f"  (sum {sum(row.values()):.3f})")
# The teacher's log-probs are stored as float16: three digits.
assert np.allclose([projected[0][b" ca"], projected[0][b" do"]], [0.8, 0.15], rtol=2e-3)
assert np.allclose([projected[1][b"t"], projected[1][b"r"]], [0.625, 0.375], rtol=2e-3)
# Each position's distribution sums to 1, with the rest (0.05 at position 0) counted.
assert np.isclose(sum(projected[0].values()) + 0.05, 1.0, rtol=2e-3)
assert np.isclose(sum(projected[1].values()), 1.0) and projected[2] == {b"<eos>": 1.0}

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/06_kl_with_rest.py`: the KL divergence over the listed tokens and
#    the rest; its check compares you with `ops.kd_loss_forward`.
# 2. Make the teacher byte-level (no word tokens) and give the student " cat": the
#    projection multiplies the teacher's predictions along the word. Check it by hand.
# 3. Why is a rest outcome better than renormalizing the teacher's top k to sum to 1?
