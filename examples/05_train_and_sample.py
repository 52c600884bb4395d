# %% [markdown]
# # Lesson 5: training a model, and sampling from it
#
# `train` runs the step of lesson 4 a few hundred times on a text, with a tokenizer trained
# on the same text (lesson 1), and keeps a checkpoint. Then a model is only a function from
# tokens to a distribution over the next token: to write, draw a token from it, append it,
# repeat. How the token is drawn (temperature, top-k, top-p) changes what comes out.
#
# The text is "Ten green bottles" with other colours and things. Every verse counts one
# down, so after training, see whether the model knows that seven comes before six.
# This is what `tinylm train` and `tinylm generate` do; with your own text, try
# `tinylm train --data notes.txt --out runs/notes`.
#
#     python examples/05_train_and_sample.py

# %%
import math
import shutil

import numpy as np

from tinylm import load_model
from tinylm.training.generate import generate, stream_text, token_probs
from tinylm.training.loop import TrainArgs, train

from course import output_dir, setting

NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
COLOURS = ["green", "red", "blue", "yellow", "white", "brown"]
THINGS = ["bottles", "apples", "candles", "buttons", "teapots", "feathers"]


def count(n, colour, things):  # "seven red apples", "one red apple", "no red apples"
    return f"{NUMBERS[n]} {colour} {things[:-1] if n == 1 else things}"


song = "\n\n".join(f"{count(n, colour, things).capitalize()} sitting on the wall,\n"
                   f"And if {count(1, colour, things)} should accidentally fall,\n"
                   f"There'll be {count(n - 1, colour, things)} sitting on the wall."
                   for colour in COLOURS for things in THINGS for n in range(10, 0, -1))
work = output_dir() / "counting-song"
shutil.rmtree(work, ignore_errors=True)          # train() starts a new run, never overwrites
work.mkdir()
(work / "song.txt").write_text(song + "\n", encoding="utf-8")
print(song[:160], "...")

# %% [markdown]
# ## Training
# Small everything: 2 layers of width 64, a context of 64 tokens. Progress goes to stderr;
# the losses go to metrics.jsonl and, drawn, to loss.png in the run's folder.

# %%
args = TrainArgs(data=[work / "song.txt"], out=work / "run", vocab_size=320, dim=64,
                 n_layers=2, n_heads=4, seq_len=64, batch_size=16, steps=setting(600, 400),
                 lr=3e-3, eval_every=50)
summary = train(args)
print(f"trained {summary['n_params']:,} parameters in {summary['seconds']:.0f} s: validation "
      f"loss {summary['val_loss']:.3f} nats/token (log(vocab) = {math.log(320):.3f} at the "
      f"start)")
if (work / "run" / "loss.png").exists():
    print(f"[picture] {work / 'run' / 'loss.png'}  (the loss curve)")
assert summary["val_loss"] < 0.3 * math.log(320)

# %% [markdown]
# ## The next token's distribution
# Load the checkpoint back, as any later program would, and look at what the model
# predicts after a verse that ends "There'll be". Temperature divides the logits before the
# softmax: below 1 sharpens the distribution, above 1 flattens it. top-k keeps the k most
# likely tokens; top-p the fewest most likely whose probabilities add up to p.

# %%
model, tokenizer = load_model(args.out)
prompt = ("Seven red apples sitting on the wall,\n"
          "And if one red apple should accidentally fall,\nThere'll be")
prompt_ids = tokenizer.encode(prompt, bos=True)
logits = model.logits([prompt_ids])[0, -1]
settings = {"temperature 1": {}, "temperature 0.5": {"temperature": 0.5},
            "temperature 2": {"temperature": 2.0}, "top-k 3": {"top_k": 3},
            "top-p 0.9": {"top_p": 0.9}}
dists = {name: token_probs(logits, **knobs) for name, knobs in settings.items()}
for name, probs in dists.items():
    top = np.argsort(-probs)[:4]
    print(f"{name:16}" + "".join(f"{tokenizer.vocab[i].decode()!r:>10} {probs[i]:.3f}"
                                 for i in top) + f"   ({np.count_nonzero(probs)} tokens left)")
top = [dists[f"temperature {t}"].max() for t in ("0.5", "1", "2")]
assert top[0] > top[1] > top[2]                         # cooler is sharper
assert np.count_nonzero(dists["top-k 3"]) == 3
kept = np.sort(token_probs(logits)[dists["top-p 0.9"] > 0])[::-1]   # before renormalizing
assert kept.sum() >= 0.9 and kept[:-1].sum() < 0.9      # the fewest that reach 0.9
# " six" may be two tokens (" si", "x"): read on to see what the most likely path says
after_verse = tokenizer.decode(generate(model, tokenizer, prompt_ids, 8, temperature=0))
print(f"the most likely tokens after the verse: {after_verse!r}")
assert after_verse.startswith(" six red apples")

# %% [markdown]
# ## Writing
# `generate` feeds the prompt once, then one token at a time, reusing the keys and values
# of earlier positions (a KV cache) instead of recomputing them.

# %%
start = "Seven red"
start_ids = tokenizer.encode(start, bos=True)
for knobs in ({"temperature": 0.0}, {"temperature": 0.8}, {"temperature": 1.5, "top_p": 0.9}):
    new_ids = list(generate(model, tokenizer, start_ids, max_tokens=40, seed=0, **knobs))
    print(f"\n--- {knobs} ---\n{start}", end="")
    print("".join(stream_text(tokenizer, new_ids, start_ids)))
print(f"\nThe run is in {work}; try: tinylm generate {args.out} --prompt \"Three blue\"")

# %% [markdown]
# ## Exercises
# 1. `examples/exercises/05_top_p.py`: top-p filtering of a distribution; its check compares
#    you with `token_probs`.
# 2. Train for 100 steps instead: which parts of a verse does the model get right first?
# 3. Greedy decoding (temperature 0) of a model trained long enough repeats itself. Why?
