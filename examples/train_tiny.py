"""Train a tiny model on a small text in about a minute, then sample from it.

    python examples/train_tiny.py              # a counting song that this script writes itself
    python examples/train_tiny.py notes.txt    # or any UTF-8 text of yours (a few 100 KB is plenty)

This is what `tinylm train` and `tinylm generate` do, spelled out with the library.
The song is "Ten green bottles" with other colours and things. Every verse counts one down, so
after training, watch whether the model knows that seven comes before six.
"""
import sys
import tempfile
from pathlib import Path

from tinylm import load_model
from tinylm.training.generate import generate, stream_text
from tinylm.training.loop import TrainArgs, train

NUMBERS = ["no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
COLOURS = ["green", "red", "blue", "yellow", "white", "brown"]
THINGS = ["bottles", "apples", "candles", "buttons", "teapots", "feathers"]


def counting_song() -> str:
    def count(n, colour, things):  # "seven red apples", "one red apple", "no red apples"
        return f"{NUMBERS[n]} {colour} {things[:-1] if n == 1 else things}"

    verses = [f"{count(n, colour, things).capitalize()} sitting on the wall,\n"
              f"And if {count(1, colour, things)} should accidentally fall,\n"
              f"There'll be {count(n - 1, colour, things)} sitting on the wall."
              for colour in COLOURS for things in THINGS for n in range(10, 0, -1)]
    return "\n\n".join(verses) + "\n"


def main():
    work = Path(tempfile.mkdtemp(prefix="tinylm-train-tiny-"))
    if len(sys.argv) > 1:
        text_file, prompt = Path(sys.argv[1]), ""  # "": start from <bos>, a new document
    else:
        text_file, prompt = work / "song.txt", "Seven red"
        text_file.write_text(counting_song(), encoding="utf-8")

    # 1. Train: a BPE tokenizer, then the model; progress goes to stderr.
    #    Small everything: 2 layers of width 64, a context of 64 tokens.
    args = TrainArgs(data=[text_file], out=work / "run", vocab_size=320, dim=64, n_layers=2,
                     n_heads=4, seq_len=64, batch_size=16, steps=600, lr=2e-3, eval_every=200)
    summary = train(args)
    print(f"\ntrained {summary['n_params']:,} parameters in {summary['seconds']:.0f} s: "
          f"validation loss {summary['val_loss']:.3f} nats/token")

    # 2. Load the checkpoint back, as any later program would, and sample from it.
    model, tokenizer = load_model(args.out)
    prompt_ids = tokenizer.encode(prompt, bos=True)
    for temperature in (0.0, 0.8):
        new_ids = generate(model, tokenizer, prompt_ids, max_tokens=50, temperature=temperature,
                           seed=0)
        print(f"\n--- temperature {temperature} ---\n{prompt}", end="")
        for piece in stream_text(tokenizer, new_ids, prompt_ids):
            print(piece, end="", flush=True)
        print()
    print(f"\nThe run is in {work}; try: tinylm generate {args.out} --prompt \"Three blue\"")


if __name__ == "__main__":
    main()
