# %% [markdown]
# # Lesson 8: the C runtime, and a token on a microcontroller
#
# The .bin of lesson 7 runs in tinylm's C runtime (tinylm/runtime/csrc): portable C99, no
# allocation, integer arithmetic only, the file read in place (from flash on a chip). The
# NumPy engine does the same arithmetic, so the two must agree to the last bit: same logits,
# and with the same seed the same tokens. Then the same C, cross-compiled for an RP2040 (a
# $4 chip: two Cortex-M0+ cores at 133 MHz, 264 KB of RAM, no floating point), runs in an
# emulator that counts every cycle: what a token costs, and where the cycles go.
#
#     python examples/08_c_runtime_and_mcu.py
#
# The RP2040 part needs arm-none-eabi-gcc, node and npm (rp2040js is installed on first
# use); without them the lesson says so and skips that part.

# %%
import time

import numpy as np

from tinylm.boards import emulate_rp2040
from tinylm.export.binformat import read_bin, write_bin
from tinylm.export.quantize import quantize_model
from tinylm.runtime.build import build
from tinylm.runtime.c_engine import CEngine, arena_bytes
from tinylm.runtime.engine import Engine
from tinylm.runtime.sampler import generate_ids
from tinylm.training.generate import stream_text

from course import output_dir, picture, story_model

model, tokenizer = story_model()
path = output_dir() / "story-model-int8.bin"
size = write_bin(path, model.config, tokenizer, quantize_model(model, 8, 32), 8, 32)
print(f"{path}: {size:,} bytes. Besides the file, the runtime needs "
      f"{arena_bytes(model.config):,} bytes of RAM (activations and the int8 key/value cache "
      f"for {model.config.max_seq_len} tokens)")

# %% [markdown]
# ## The same logits
# `build` compiles the C sources with this computer's C compiler (once; then cached) and
# `CEngine` calls them through ctypes. Logits come out as integers, value * 2^16.

# %%
print("C runtime:", build("library"))
c_engine, numpy_engine = CEngine(path), Engine(read_bin(path))
prompt = "Once upon a time"
prompt_ids = tokenizer.encode(prompt, bos=True)
numpy_logits = numpy_engine.forward(prompt_ids)               # all positions at once
c_logits = np.stack([c_engine.forward(token) for token in prompt_ids])
print("last position, first logits:", c_logits[-1, :5], "/ 2^16 =",
      np.round(c_logits[-1, :5] / 2 ** 16, 3))
assert np.array_equal(c_logits, numpy_logits)
print("C logits = NumPy engine logits, bit for bit")

# %% [markdown]
# ## The same tokens
# Sampling is integer arithmetic too, with the same random number generator (xorshift64*)
# on both sides.

# %%
sampling = {"temperature": 1.0, "top_p": 0.9, "seed": 7}     # the defaults of `tinylm run`
started = time.perf_counter()
c_tokens = list(c_engine.generate(prompt_ids, 40, **sampling))
c_seconds = time.perf_counter() - started
started = time.perf_counter()
numpy_tokens = list(generate_ids(numpy_engine, prompt_ids, 40, **sampling))
numpy_seconds = time.perf_counter() - started
assert c_tokens == numpy_tokens
print(prompt + "".join(stream_text(tokenizer, c_tokens, prompt_ids)))
print(f"the same {len(c_tokens)} tokens: C {len(c_tokens) / c_seconds:,.0f} tok/s, "
      f"NumPy {len(c_tokens) / numpy_seconds:,.0f} tok/s on this computer")

# %% [markdown]
# ## On an RP2040
# The bare-metal firmware (firmware_rp2040/baremetal) is the runtime plus the serial line
# protocol of docs/protocol.md. The emulator boots it with the model in flash, types the
# prompt, and records the cycle count at every byte the chip sends back.

# %%
missing = emulate_rp2040.missing_tools()
if missing:
    print(f"skipped the RP2040 part: {missing}")
else:
    firmware = emulate_rp2040.build_firmware(seed=7, max_tokens=16)
    run = emulate_rp2040.run(firmware, emulate_rp2040.model_flash(path), prompt.encode() + b"\n")
    ready, text, *_ = emulate_rp2040.answers(run.output)
    print(f"the chip: {ready.fields}\n{prompt}{text.data.decode()}")
    assert text.data.decode() == "".join(stream_text(tokenizer, c_tokens[:16], prompt_ids))
    print("the same tokens as the C runtime on this computer")

    figures = emulate_rp2040.bench(path, prompt.encode(), max_tokens=16, seed=7)
    print(f"{figures['cycles_per_generated_token']:,} cycles per token: "
          f"{figures['tok_s_133mhz_emulated']} tok/s at 133 MHz on both cores; "
          f"{figures['matvec_macs_per_token']:,} weight multiply-adds, "
          f"{figures['cycles_per_mac']} cycles each; peak SRAM "
          f"{figures['peak_sram_bytes']:,} bytes")

# %% [markdown]
# ## Where the cycles go
# The emulator also counts the cycles spent at each instruction address; the firmware's
# symbol table turns addresses into functions.

# %%
if not missing:
    by_function = emulate_rp2040.profile(path, prompt.encode(), max_tokens=16, seed=7)
    total = sum(by_function.values())
    for name, cycles in list(by_function.items())[:8]:
        print(f"  {cycles:9,} {100 * cycles / total:5.1f}%  {name}")
    print(f"the matrices' rows take {100 * figures['matrix_rows_share']:.0f}% of a token")
    assert figures["matrix_rows_share"] > 0.4        # a token is mostly matrix products

    def draw_profile(figure):
        axes = figure.subplots()
        names = list(by_function)[:12][::-1]
        axes.barh(names, [by_function[n] for n in names])
        axes.set_xlabel("cycles per generated token (RP2040, emulated)")

    picture("08_cycles_by_function.png", draw_profile)

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/08_xorshift.py`: the random number generator both engines share;
#    its check compares you with `tinylm.runtime.sampler.Rng`.
# 2. Quantize to int4 and run the RP2040 part again: what happens to cycles per MAC, and to
#    the bytes read from flash per token?
# 3. `tinylm bench --target esp32c3 examples/output/story-model-int8.bin` counts the same on
#    a RISC-V core (an ESP32-C3) in qemu. Which chip needs fewer instructions per MAC?
