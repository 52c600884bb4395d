"""How fast does a google/gemma-3-1b-it-sized teacher write on this machine?

No download: transformers' Gemma3ForCausalLM with gemma-3-1b's shape (999,885,952 parameters,
vocabulary 262,144) and random weights, which cost the same arithmetic as the real ones.
`model.generate` as teacher/load.py calls it, greedy, a fixed number of new tokens, float32
on the CPU (bfloat16 on a GPU). The time covers reading the prompts and writing the tokens,
as a `tinylm synthesize` batch does.

    python benchmarks/bench_teacher_speed.py [--batch 1 32] [--prompt-tokens 64] [--new 16]
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

# google/gemma-3-1b-it's config.json, the sizes that set the arithmetic
GEMMA_3_1B = dict(vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                  num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1,
                  head_dim=256, sliding_window=512, max_position_embeddings=32768)


def new_tokens_per_second(model, batch: int, prompt_tokens: int, new: int, device) -> float:
    ids = torch.randint(10, 1000, (batch, prompt_tokens), device=device)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, do_sample=False)   # warm up
        started = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
        return batch * new / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new", type=int, default=16, help="new tokens per prompt")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = Gemma3ForCausalLM(Gemma3TextConfig(**GEMMA_3_1B)).to(device, dtype).eval()
    for batch in args.batch:
        rate = new_tokens_per_second(model, batch, args.prompt_tokens, args.new, device)
        print(json.dumps({"device": device, "threads": torch.get_num_threads(), "batch": batch,
                          "prompt_tokens": args.prompt_tokens, "new": args.new,
                          "new_tokens_per_s": round(rate, 2)}), flush=True)


if __name__ == "__main__":
    main()
