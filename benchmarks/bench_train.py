"""Training speed: tinylm (NumPy, hand-written backward) next to PyTorch eager on the CPU.

Both train the same model from the same weights on the same batches: forward + backward + AdamW.
Steps alternate between the two (one tinylm step, one PyTorch step, ...) so that whatever else the
machine is doing slows both alike; the table gives the median of the timed steps. Peak memory is
measured in a child process per framework, as the growth of resident memory over the step loop.

    python benchmarks/bench_train.py [--steps 20] [--threads 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tinylm.core.config import ModelConfig  # noqa: E402
from tinylm.core.model import Transformer  # noqa: E402
from tinylm.core.optim import AdamW  # noqa: E402

CONFIG = ModelConfig(vocab_size=512, dim=64, n_layers=4, n_heads=4, n_kv_heads=4, head_dim=16,
                     hidden_dim=172, max_seq_len=128)
BATCH, SEQ, LR = 32, 128, 1e-3


def batches(n):
    rng = np.random.default_rng(0)
    return [(rng.integers(0, CONFIG.vocab_size, (BATCH, SEQ)),
             rng.integers(0, CONFIG.vocab_size, (BATCH, SEQ))) for _ in range(n)]


def tinylm_stepper(params, threads):
    model = Transformer(CONFIG, {k: v.copy() for k, v in params.items()})
    optimizer = AdamW(model.params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    def step(tokens, targets):
        loss, grads = model.loss_and_grads(tokens, targets, n_threads=threads)
        optimizer.step(grads, LR)
        return loss
    return step


def torch_stepper(params, threads):
    import torch
    from torch_reference import TorchLlama
    torch.set_num_threads(threads)
    model = TorchLlama(CONFIG, params)
    decay = [p for p in model.parameters() if p.ndim == 2]
    no_decay = [p for p in model.parameters() if p.ndim != 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.95), eps=1e-8)

    def step(tokens, targets):
        optimizer.zero_grad(set_to_none=True)
        loss = model(torch.from_numpy(tokens), torch.from_numpy(targets))
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def peak_memory_child(framework, threads):
    """Run in a child: a few steps of one framework; print the peak growth of resident memory."""
    params = Transformer.initialize(CONFIG, seed=0).params
    make = tinylm_stepper if framework == "tinylm" else torch_stepper
    step = make(params, threads)
    data = batches(3)
    before = rss_kb()
    for tokens, targets in data:
        step(tokens, targets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - before) / 1024}))


def peak_memory(framework, threads):
    out = subprocess.run([sys.executable, __file__, "--memory-child", framework,
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", choices=["tinylm", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.threads)
    try:
        import torch
    except ImportError:
        sys.exit("bench_train needs PyTorch for the side-by-side run: pip install torch==2.13.0")

    params = Transformer.initialize(CONFIG, seed=0).params
    steppers = {"tinylm": tinylm_stepper(params, args.threads),
                "pytorch": torch_stepper(params, args.threads)}
    data = batches(args.warmup + args.steps)
    times = {name: [] for name in steppers}
    losses = {name: [] for name in steppers}
    for i, (tokens, targets) in enumerate(data):
        for name, step in steppers.items():
            start = time.perf_counter()
            losses[name].append(step(tokens, targets))
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    tokens_per_step = BATCH * SEQ
    result = {"config": CONFIG.to_dict(), "batch": BATCH, "seq_len": SEQ, "threads": args.threads,
              "steps": args.steps, "torch_version": torch.__version__, "numpy_version": np.__version__}
    for name in steppers:
        median = float(np.median(times[name]))
        result[name] = {"median_step_ms": median * 1e3, "tokens_per_s": tokens_per_step / median,
                        "peak_mb": peak_memory(name if name == "tinylm" else "torch", args.threads),
                        "final_loss": losses[name][-1]}
    result["speed_ratio"] = result["tinylm"]["tokens_per_s"] / result["pytorch"]["tokens_per_s"]
    # Same weights, same data, same optimizer: the two runs must also agree on what they learn.
    result["max_loss_difference"] = float(np.max(np.abs(np.subtract(losses["tinylm"],
                                                                    losses["pytorch"]))))
    if args.json:
        print(json.dumps(result))
        return
    print(f"train step, vocab {CONFIG.vocab_size}, dim {CONFIG.dim}, {CONFIG.n_layers} layers, "
          f"batch {BATCH} x seq {SEQ}, {args.threads} threads, median of {args.steps} steps")
    print(f"{'':10} {'ms/step':>9} {'tokens/s':>10} {'peak MB':>8} {'last loss':>10}")
    for name in steppers:
        r = result[name]
        print(f"{name:10} {r['median_step_ms']:9.1f} {r['tokens_per_s']:10.0f} {r['peak_mb']:8.1f} "
              f"{r['final_loss']:10.4f}")
    print(f"tinylm / pytorch speed: {result['speed_ratio']:.2f}x "
          f"(max loss difference along the way {result['max_loss_difference']:.1e})")


if __name__ == "__main__":
    main()
