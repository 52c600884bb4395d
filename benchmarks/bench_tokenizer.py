"""BPE training speed and compression of tinylm against Hugging Face `tokenizers`.

Both train a byte-level BPE on ../shared/data/tinystories_train_head.txt (fed as lines, which
lets `tokenizers` use all cores) with the same vocab size and the same 4 special tokens, hence
the same number of merges; then each encodes the whole text. Training time is the best of
--repeat runs. Target: tinylm trains within 5x of `tokenizers` at bytes/token >= theirs.

    python benchmarks/bench_tokenizer.py [--json] [--repeat 3]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from tinylm.text.tokenizer import SPECIALS, Tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRAIN_TEXT = SHARED / "data" / "tinystories_train_head.txt"
VOCAB_SIZES = (512, 1024, 4096)


def best_time(train, repeat: int):
    """(fastest seconds, the trained tokenizer)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        tokenizer = train()
        times.append(time.perf_counter() - start)
    return min(times), tokenizer


def train_hf(lines: list[str], vocab_size: int):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(lines, trainer)
    return tokenizer


def measure(text: str, vocab_size: int, repeat: int) -> dict:
    lines = text.splitlines(keepends=True)
    n_bytes = len(text.encode())
    ours_s, ours = best_time(lambda: Tokenizer.train(lines, vocab_size), repeat)
    hf_s, hf = best_time(lambda: train_hf(lines, vocab_size), repeat)
    assert len(ours) == hf.get_vocab_size() == vocab_size
    ours_bpt = n_bytes / len(ours.encode(text))
    hf_bpt = n_bytes / len(hf.encode(text).ids)
    return {"vocab_size": vocab_size,
            "tinylm_train_s": round(ours_s, 3), "tokenizers_train_s": round(hf_s, 3),
            "time_ratio": round(ours_s / hf_s, 2),
            "tinylm_bytes_per_token": round(ours_bpt, 4),
            "tokenizers_bytes_per_token": round(hf_bpt, 4),
            "compression_ratio": round(ours_bpt / hf_bpt, 4)}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--repeat", default=3, show_default=True,
              help="Training runs per measurement; the fastest counts.")
def main(as_json: bool, repeat: int) -> None:
    if not TRAIN_TEXT.exists():
        sys.exit(f"skipped: {TRAIN_TEXT} is absent (the benchmark needs ../shared)")
    try:
        import tokenizers
    except ImportError:
        sys.exit("skipped: the `tokenizers` package is not installed (pip install tokenizers)")
    text = TRAIN_TEXT.read_text(encoding="utf-8")
    rows = [measure(text, vocab_size, repeat) for vocab_size in VOCAB_SIZES]
    if as_json:
        print(json.dumps({"data": TRAIN_TEXT.name, "bytes": len(text.encode()), "repeat": repeat,
                          "tokenizers_version": tokenizers.__version__, "rows": rows}))
        return
    print(f"{TRAIN_TEXT.name}, {len(text.encode()):,} bytes; tokenizers {tokenizers.__version__}; "
          f"best of {repeat} training runs")
    print(f"{'vocab':>6} | {'train s: tinylm':>15} {'tokenizers':>10} {'ratio':>6} | "
          f"{'bytes/token: tinylm':>19} {'tokenizers':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['vocab_size']:>6} | {r['tinylm_train_s']:>15.3f} "
              f"{r['tokenizers_train_s']:>10.3f} {r['time_ratio']:>6.2f} | "
              f"{r['tinylm_bytes_per_token']:>19.4f} "
              f"{r['tokenizers_bytes_per_token']:>10.4f} {r['compression_ratio']:>6.4f}")


if __name__ == "__main__":
    main()
