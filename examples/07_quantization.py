# %% [markdown]
# # Lesson 7: quantization, a model in small integers
#
# A microcontroller has no room for float32 weights and often no floating-point unit. So
# the weights become 8- or 4-bit integers with one scale per group of inputs, w ~ q * s
# (tinylm/export/quantize.py), and the activations become fixed-point integers, value * 2^16
# (tinylm/runtime/fixedpoint.py). The NumPy engine (tinylm/runtime/engine.py) runs a model
# in that integer arithmetic; here we see what each step costs in accuracy.
#
#     python examples/07_quantization.py     (trains the small story model once)

# %%
import numpy as np

from tinylm.export.binformat import read_bin, write_bin
from tinylm.export.quantize import (
    calibration_sequences,
    error_table,
    quantize_matrix,
    quantize_model,
)
from tinylm.runtime import fixedpoint as fx
from tinylm.runtime.engine import Engine
from tinylm.text.corpus import make_stories
from tinylm.training.evaluate import evaluate

from course import output_dir, picture, story_model

model, tokenizer = story_model()
w = model.params["layers.0.w2"].astype(np.float64)      # (out, in) = (dim, hidden)

# %% [markdown]
# ## int8 by hand
# Cut each row into groups of 32 inputs. A group's scale s = max|w| / 127 maps its largest
# weight to 127; every weight becomes round(w / s). The scales are stored as 16-bit
# integers with one power-of-two shift per tensor, s = stored / 2^shift, so the C runtime
# combines groups with integer multiplies only.

# %%
group, qmax = 32, 127
shift = int(np.floor(np.log2(32767 / (np.abs(w).max() / qmax))))   # largest scale ~ 2^15
groups = w.reshape(w.shape[0], -1, group)                            # (rows, groups, 32)
stored = np.round(np.abs(groups).max(axis=2) / qmax * 2.0 ** shift)
s = stored / 2.0 ** shift
q = np.clip(np.round(groups / s[..., None]), -qmax, qmax).reshape(w.shape)

library = quantize_matrix(w, bits=8, group=group)
assert library.shift == shift and np.array_equal(library.scales, stored)
assert np.array_equal(library.values, q)
error = library.dequantize() - w
print(f"w2 {w.shape}: int8 by hand = quantize_matrix; relative RMS error "
      f"{np.sqrt((error ** 2).sum() / (w ** 2).sum()):.4f}, 8 + 16/32 = 8.5 bits per weight")

# %% [markdown]
# ## int4, and the error of every tensor
# With 4 bits (-8..7) the rounding step is 18 times larger. The library fights back: it
# searches each group's scale, and with calibration text it pushes each column's rounding
# error onto the columns not yet rounded (as GPTQ does), so that the layer's outputs, not
# its weights, stay close. The embedding table stays int8.

# %%
stories = make_stories(300, seed=1)
int8 = quantize_model(model, bits=8, group=32)
int4 = quantize_model(model, bits=4, group=16,
                      calibration=calibration_sequences(model, tokenizer, stories))
print(f"{'tensor':20} {'int8 error':>11} {'int4 error':>11} {'int4 bits/w':>11}")
for row8, row4 in zip(error_table(model, int8), error_table(model, int4)):
    print(f"{row8['tensor']:20} {row8['rel_rms']:11.4f} {row4['rel_rms']:11.4f} "
          f"{row4['bits_per_weight']:11.2f}")
    if row8["bits_per_weight"] < 32 and row4["bits_per_weight"] < 8:     # the int4 matrices
        assert row4["rel_rms"] > 2 * row8["rel_rms"]


def draw_errors(figure):
    for axes, (name, tensors) in zip(figure.subplots(1, 2), (("int8", int8), ("int4", int4))):
        errors = (tensors["layers.0.w2"].dequantize() - w).ravel()
        axes.hist(errors, bins=60)
        axes.set_title(f"{name}: RMS error {errors.std():.5f}")
        axes.set_xlabel("quantized - float weight (layers.0.w2)")
    figure.axes[0].set_ylabel("weights")


picture("07_quantization_errors.png", draw_errors, size=(10, 4))
print("int8 errors spread evenly over half a step (plain rounding); int4's pile up near 0,\n"
      "with long tails: error compensation moved weights to keep the outputs right")

# %% [markdown]
# ## Fixed-point activations
# Activations are integers too: value * 2^16 ("Q16"). Before a matrix product the input
# vector is rounded once more, to -63..63 with one scale m * 2^k (m = 8..15), so that each
# product of an int8 weight and an input fits in 16 bits on the chip.

# %%
x = model.params["tok_emb"][tokenizer.encode(" upon")[0], :8]    # where a token starts
x_q16 = fx.q16_from_float(x)
codes, m, k = fx.quantize_int8(x_q16[None], fx.INPUT_TOP)
step = m[0] * 2.0 ** k[0] / fx.ONE                   # one code's worth, in real units
print(f"x          {np.round(x, 4)}\nQ16        {x_q16}\ncodes      {codes[0]} "
      f"(step {m[0]} * 2^{k[0]} / 2^16 = {step:.5f})")
assert np.all(np.abs(codes[0] * step - x) <= step / 2 + 1 / fx.ONE)

# %% [markdown]
# ## The integer engine against the float model
# Write each as a .bin (docs/format.md) and run it in the NumPy engine, which does exactly
# what the C runtime does. Compare the next-token logits, then the loss on stories that
# neither model trained on.

# %%
held_out = make_stories(100, seed=7)
losses = {"float": evaluate(model, tokenizer, held_out)["loss"]}
ids = [tokenizer.encode(story, bos=True)[:64] for story in held_out[:1]]
for bits, tensors, group in ((8, int8, 32), (4, int4, 16)):
    path = output_dir() / f"story-model-int{bits}.bin"
    size = write_bin(path, model.config, tokenizer, tensors, bits, group)
    engine = Engine(read_bin(path))
    difference = np.abs(engine.logits(ids) - model.logits(ids)).max()
    losses[f"int{bits}"] = evaluate(engine, tokenizer, held_out)["loss"]
    print(f"int{bits}: {size:,} bytes, logits differ by up to {difference:.3f}, loss "
          f"{losses[f'int{bits}']:.4f} nats/token (float: {losses['float']:.4f})")
assert losses["int8"] < 1.02 * losses["float"] and losses["int4"] < 1.15 * losses["float"]

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/07_quantize_group.py`: quantize one group to int8 or int4; its check
#    compares you with the library's rounding.
# 2. Quantize w2 to int4 with group sizes 8, 16, 32 and 64: plot the error against bits per
#    weight. Which group size would you pick?
# 3. Quantize to int4 without calibration (`calibration=None`): how much worse is the loss?
