# %% [markdown]
# # Lesson 9: choosing an architecture for a board
#
# A model for a microcontroller has three budgets: its file must fit the flash, its working
# memory (activations and the key/value cache, "the arena") the SRAM, and its tokens must
# come fast enough. Within them, the best model is the one that predicts text best. Here we
# train a few hand-picked shapes on the same stories, plan each on an RP2040
# (tinylm/boards/memplan.py), count its cycles in the emulators, and pick one.
#
#     python examples/09_choosing_an_architecture.py
#
# The speeds need arm-none-eabi-gcc, node and npm (RP2040) and riscv64-unknown-elf-gcc and
# qemu-system-riscv32 (ESP32-C3); without them the lesson says so and compares the rest.

# %%
import shutil

from tinylm import ModelConfig, Transformer, load_model
from tinylm.boards import emulate_riscv, emulate_rp2040, memplan, rp2040_flash
from tinylm.boards.emulation import matvec_macs
from tinylm.export.binformat import write_bin
from tinylm.export.quantize import quantize_model
from tinylm.text.corpus import make_stories
from tinylm.training.loop import TrainArgs, train

from course import output_dir, picture, setting

work = output_dir() / "shapes"
shutil.rmtree(work, ignore_errors=True)
work.mkdir()
(work / "stories.txt").write_text("\n\n".join(make_stories(1000)), encoding="utf-8")
shapes = {"narrow": {"dim": 32, "n_layers": 2}, "deep": {"dim": 48, "n_layers": 6},
          "wide": {"dim": 96, "n_layers": 2}}
rp2040_room = rp2040_flash.flash_room()     # the flash after the firmware's first 1 MiB
missing = {"rp2040": emulate_rp2040.missing_tools(), "esp32c3": emulate_riscv.missing_tools()}
for chip, reason in missing.items():
    if reason:
        print(f"skipped the {chip} speeds: {reason}")

# %% [markdown]
# ## Train, plan and time each shape
# The same stories, steps and tokenizer for every shape, so only the shape differs.
# Quality is bits per byte on held-out stories (lower is better); speed is the emulated
# tokens per second (the RP2040's two cores at 133 MHz; an ESP32-C3's one at 160 MHz,
# assuming one instruction per cycle).

# %%
results = {}
for name, shape in shapes.items():
    summary = train(TrainArgs(data=[work / "stories.txt"], out=work / name, vocab_size=512,
                              n_heads=4, n_kv_heads=2, seq_len=64, batch_size=16,
                              steps=setting(300, 120), lr=3e-3, eval_every=1000, **shape))
    model, tokenizer = load_model(work / name)
    path = work / f"{name}.bin"
    write_bin(path, model.config, tokenizer, quantize_model(model, 8, 32), 8, 32)
    plan = memplan.plan(path, "rp2040", rp2040_room)
    result = {"params": model.config.n_params(), "macs": matvec_macs(model.config),
              "bytes": plan.model_bytes, "arena": plan.arena_bytes, "fits": plan.fits,
              "bpb": summary["val_bpb"], "rp2040": None, "esp32c3": None}
    if not missing["rp2040"]:
        figures = emulate_rp2040.bench(path, max_tokens=8)
        result.update(rp2040=figures["tok_s_headline"], bound_by=figures["bound_by"],
                      cycles_per_mac=figures["cycles_per_mac"])
    if not missing["esp32c3"]:
        result["esp32c3"] = emulate_riscv.bench(path, max_tokens=8)["tok_s_headline"]
    results[name] = result

print(f"{'shape':7} {'params':>8} {'MACs':>8} {'.bin':>8} {'arena':>7} {'fits':>5} "
      f"{'bits/byte':>9}  {'RP2040 tok/s, bound by':>23} {'cycles/MAC':>10} {'ESP32-C3':>8}")
for name, r in results.items():
    rp2040 = f"{r['rp2040']} {r['bound_by']}" if r["rp2040"] else "-"
    print(f"{name:7} {r['params']:8,} {r['macs']:8,} {r['bytes']:8,} {r['arena']:7,} "
          f"{str(r['fits']):>5} {r['bpb']:9.3f}  {rp2040:>23} {r.get('cycles_per_mac', '-'):>10} "
          f"{r['esp32c3'] or '-':>8}")

# %% [markdown]
# What to read in the table: the work of a token is its multiply-adds (MACs), nearly all in
# the weight matrices, so the shape with the fewest is the fastest. But not every MAC costs
# the same: six narrow layers cost more cycles per MAC than two wide ones, as each layer adds
# norms, attention and the rounding of its inputs, enough that the deep shape can be slower
# than the wide one with its many more MACs. And a file larger than the SRAM the firmware
# leaves cannot be copied there whole: what does not fit beside the arena is read from flash
# for every token, and then the flash's bandwidth, not the CPU, may set the speed
# ("xip-flash"). Quality grows with parameters, but not evenly.

# %%
if not missing["rp2040"]:
    fewest_macs = min(results.values(), key=lambda r: r["macs"])
    assert fewest_macs["rp2040"] == max(r["rp2040"] for r in results.values())
    assert results["deep"]["cycles_per_mac"] > results["wide"]["cycles_per_mac"]

# %% [markdown]
# ## When a shape does not fit
# A plan says what to shrink. A shape twenty times the wide one, with 1,024 tokens of
# context, fits neither the RP2040's flash nor, for its whole context, the SRAM: the
# firmware would take the longest context whose key/value cache does fit.

# %%
big = ModelConfig(vocab_size=512, dim=256, n_layers=6, n_heads=8, n_kv_heads=8, head_dim=32,
                  hidden_dim=688, max_seq_len=1024)
path = work / "big.bin"
write_bin(path, big, tokenizer, quantize_model(Transformer.initialize(big), 8, 32), 8, 32)
whole_context = memplan.plan(path, "rp2040", rp2040_room, context=big.max_seq_len)
print(f"{big.n_params():,} parameters, {big.max_seq_len} tokens of context on the RP2040:")
for problem in whole_context.problems:
    print(f"  - {problem}")
firmware_choice = memplan.plan(path, "rp2040", rp2040_room)      # context 0: the firmware's
print(f"the firmware would use {firmware_choice.context} tokens of context")
assert len(whole_context.problems) == 2 and firmware_choice.context < big.max_seq_len

# %% [markdown]
# ## The choice
# Among the shapes that fit, and (where measured) give at least 50 tokens per second on the
# RP2040, faster than anyone reads, take the one that predicts the held-out text best.

# %%
usable = {name: r for name, r in results.items()
          if r["fits"] and (r["rp2040"] is None or r["rp2040"] >= 50)}
choice = min(usable, key=lambda name: usable[name]["bpb"])
print(f"the choice: {choice} ({results[choice]['params']:,} parameters, "
      f"{results[choice]['bpb']:.3f} bits/byte)")
assert results[choice]["fits"]


def draw_tradeoff(figure):
    axes = figure.subplots()
    speed = "rp2040" if not missing["rp2040"] else "macs"
    for name, r in results.items():
        axes.scatter(r[speed], r["bpb"], s=r["bytes"] / 500)
        axes.annotate(name, (r[speed], r["bpb"]), textcoords="offset points", xytext=(8, 4))
    axes.set_xlabel("RP2040 tok/s, emulated" if speed == "rp2040" else "MACs per token")
    axes.set_ylabel("bits per byte, held-out stories (lower is better)")
    axes.set_title("speed against quality (marker area: the .bin's size)")


picture("09_tradeoff.png", draw_tradeoff)

# %% [markdown]
# ## Automating the search
# `tinylm search --target rp2040 --data stories.txt --min-tok-s 50` automates this: an Optuna
# study of width, depth, heads, FFN width, vocabulary and bits, each shape planned before it
# is trained, the Pareto front measured in the emulator (docs/architecture.md).

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/09_macs.py`: count the multiply-adds of a token from a shape; its
#    check compares you with `tinylm.boards.emulation.matvec_macs`.
# 2. Add a shape with n_kv_heads=1: what changes in size, arena, speed and quality?
# 3. Quantize the chosen shape to int4 (`quantize_model(model, 4, 16, calibration)`): is a
#    bigger int4 model better than a smaller int8 one of the same file size?
