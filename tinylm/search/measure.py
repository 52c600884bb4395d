"""A model's speed on the search's target, measured or predicted.

Measured: what `tinylm bench --target rp2040|esp32c3` reports for a .bin (the emulators,
tinylm/boards/emulate_rp2040.py and emulate_riscv.py), or on the host the C runtime's time per
generated token (the median between two tokens, the least of 5 runs, through ctypes). The
benchmark's prompt and its 64 tokens, sampled at temperature 1 and top-p 0.9: a model that
ends its text sooner is measured again with the next seed (up to 5), so that every figure
covers the same positions (if none reaches 64 tokens, the run that came furthest counts).

Predicted: the cost model (costs.py) for the compute, then the same flash bounds as the
benchmarks (weights streamed from flash that the cache cannot hold), with the weights where
the memory plan puts them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..boards import emulate_riscv, emulate_rp2040
from ..boards.emulation import streamed_weight_bytes
from ..runtime.c_engine import CEngine
from ..runtime.fixedpoint import ONE
from .counts import TOKENS

PROMPT = "Once upon a time"
SEEDS = range(5)
TOP_P = 0.9              # the benchmark's sampling: temperature 1, top-p 0.9


@dataclass(frozen=True)
class Target:
    name: str
    board: str | None     # memplan's board; None: no memory limits (the host)
    hz: float             # units of cost per second
    unit: str
    cores: int = 1        # that share a token's work (`tinylm bench --cores`)


TARGETS = {
    "rp2040": Target("rp2040", "rp2040", emulate_rp2040.CPU_HZ, "cycles", cores=2),
    "esp32c3": Target("esp32c3", "esp32c3", emulate_riscv.CPU_HZ, "instructions"),
    "host": Target("host", None, 1e9, "ns"),
}


def headline(target: Target, compute_tok_s: float, model, flash_bytes: int) -> float:
    """tok/s: the compute's, or the flash reads' if they are slower (the benchmarks' rule);
    on the RP2040 those of the weight bytes a token reads from flash by the memory plan
    (flash_bytes: those it does not keep in SRAM), on the ESP32-C3 of all it streams."""
    if target.name == "rp2040":
        bound = emulate_rp2040.flash_bound(flash_bytes)
    elif target.name == "esp32c3":
        bound = emulate_riscv.flash_bound(streamed_weight_bytes(model))
    else:
        bound = None
    return compute_tok_s if bound is None else min(compute_tok_s, bound)


def measure(path, target: Target) -> dict:
    """{"cost" (per generated token, in the target's unit), "tok_s" (the headline),
    "prompt_tokens", "generated_tokens", "seed"} of a .bin on the target."""
    result = None
    for seed in SEEDS:
        try:
            measured = _host(path, seed) if target.name == "host" else \
                _emulated(path, target, seed)
        except ValueError:           # the model ended its text after one token
            continue
        if result is None or measured["generated_tokens"] > result["generated_tokens"]:
            result = measured
        if measured["generated_tokens"] == TOKENS:
            break
    if result is None:
        raise ValueError(f"{path} ends its text after one token with every seed tried")
    return result


def profile(path, target: Target, seed: int = 0) -> dict | None:
    """A generated token's cost by function, as `tinylm bench --profile` gives it (None on
    the host, which has no profile)."""
    if target.name == "host":
        return None
    if target.name == "rp2040":
        return emulate_rp2040.profile(path, PROMPT.encode(), TOKENS, seed, target.cores)
    return emulate_riscv.profile(path, PROMPT.encode(), TOKENS, seed)


def _emulated(path, target: Target, seed: int) -> dict:
    if target.name == "rp2040":
        r = emulate_rp2040.bench(path, PROMPT.encode(), TOKENS, seed, target.cores)
        cost, made = r["cycles_per_generated_token"], r["generated_tokens"]
    else:
        r = emulate_riscv.bench(path, PROMPT.encode(), TOKENS, seed)
        cost, made = r["instructions_per_generated_token"], r["generated_tokens"]
    return {"cost": cost, "tok_s": r["tok_s_headline"], "prompt_tokens": r["prompt_tokens"],
            "generated_tokens": made, "seed": seed}


def _host(path, seed: int, repeat: int = 5) -> dict:
    """The C runtime on this computer: a generated token's time is the median time between two
    of the benchmark's tokens, the least over `repeat` runs (other programs on the computer
    only ever add time, to some tokens: the median and the least leave it out)."""
    engine = CEngine(path)
    prompt = engine.encode(PROMPT, bos=True)
    best, made = None, 0
    for _ in range(repeat):
        stamps = [time.perf_counter() for _ in engine.generate(prompt, TOKENS, temperature=1.0,
                                                                top_p=TOP_P, seed=seed)]
        made = len(stamps)
        if made < 2:
            raise ValueError(f"{path} ended its text after {made} token(s)")
        per_token = float(np.median(np.diff(stamps)))
        best = per_token if best is None else min(best, per_token)
    return {"cost": best * 1e9, "tok_s": 1 / best, "prompt_tokens": len(prompt),
            "generated_tokens": made, "seed": seed}


def top_p_candidates(path, seed: int = 0) -> float:
    """How many tokens top-p's filter lets through to its selection, on average over the
    benchmark's tokens (the C runtime here, the benchmark's sampling): those whose weight is
    at least the mass top-p leaves out, shared among all tokens (tlm_sample's `least`)."""
    engine = CEngine(path)
    prompt = engine.encode(PROMPT, bos=True)
    made = list(engine.generate(prompt, TOKENS, temperature=1.0, top_p=TOP_P, seed=seed))
    engine.reset()
    counts = []
    for i, token in enumerate([*prompt, *made][:-1]):
        logits = engine.forward(token) / ONE
        if i >= len(prompt) - 1:                  # the logits a token was sampled from
            weights = np.exp(logits - logits.max())
            counts.append(int((weights >= (1 - TOP_P) * weights.sum() / len(weights)).sum()))
    return float(np.mean(counts)) if counts else 0.0
