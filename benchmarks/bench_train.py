"""Training speed: tinylm (NumPy, hand-written backward) next to PyTorch eager on the CPU.

Two models: the benchmark model (230,976 parameters, batch 32 x 128), where the matrix products
and attention take the time, and a ~8K-parameter one (7,792 parameters, batch 16 x 128, the size
an architecture search trains by the hundred), where the fixed cost of a step does. For each,
both frameworks train the same model from the same weights on the same batches with the same
number of threads: forward + backward + AdamW. Steps alternate between the two (one tinylm
step, one PyTorch step, ...) so that whatever else the machine is doing slows both alike; the
table gives the median of the timed steps, and the largest difference between the two losses
along the way (they compute the same thing). Peak memory is measured in a child process per
framework, as the growth of resident memory over the step loop. The CPU, the BLAS each
framework runs and the load average before and after are printed with the figures.

    python benchmarks/bench_train.py [--steps 20] [--threads 2] [--models benchmark 8k] [--json]

Also, for the benchmark model, the cost of attending within documents only (`tinylm train
--separate-documents`: a mask built from each batch's <bos> tokens) against the plain causal
mask, steps alternating the same way on batches of ~200-token documents.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tinylm.core import threads  # noqa: E402
from tinylm.core.config import ModelConfig  # noqa: E402
from tinylm.core.model import Transformer  # noqa: E402
from tinylm.core.optim import AdamW  # noqa: E402

# name: (config, batch size); both at sequence length 128
MODELS = {
    "benchmark": (ModelConfig(vocab_size=512, dim=64, n_layers=4, n_heads=4, n_kv_heads=4,
                              head_dim=16, hidden_dim=172, max_seq_len=128), 32),
    "8k": (ModelConfig(vocab_size=300, dim=16, n_layers=1, n_heads=2, n_kv_heads=2, head_dim=8,
                       hidden_dim=40, max_seq_len=128), 16),
}
SEQ, LR = 128, 1e-3


def batches(config, batch, n):
    rng = np.random.default_rng(0)
    return [(rng.integers(0, config.vocab_size, (batch, SEQ)),
             rng.integers(0, config.vocab_size, (batch, SEQ))) for _ in range(n)]


def tinylm_stepper(config, params, threads):
    model = Transformer(config, {k: v.copy() for k, v in params.items()})
    optimizer = AdamW(model.params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    def step(tokens, targets):
        loss, grads = model.loss_and_grads(tokens, targets, n_threads=threads)
        optimizer.step(grads, LR)
        return loss
    return step


def torch_stepper(config, params, threads):
    import torch
    from torch_reference import TorchLlama
    torch.set_num_threads(threads)
    model = TorchLlama(config, params)
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


STEPPERS = {"tinylm": tinylm_stepper, "pytorch": torch_stepper}
BOS, DOCUMENT = 1, 200       # separate_documents_cost: a <bos> every DOCUMENT tokens or so


def separate_documents_cost(args) -> dict:
    """Median step time of the benchmark model with the causal mask and with the document
    mask, on the same batches, steps alternating."""
    config, batch = MODELS["benchmark"]
    model = Transformer.initialize(config, seed=0)
    data = batches(config, batch, args.warmup + args.steps)
    rng = np.random.default_rng(1)
    for tokens, _ in data:
        tokens[rng.random(tokens.shape) < 1 / DOCUMENT] = BOS
    times = {"causal": [], "documents": []}
    for i, (tokens, targets) in enumerate(data):
        for mask, bos_id in (("causal", None), ("documents", BOS)):
            start = time.perf_counter()
            model.loss_and_grads(tokens, targets, args.threads, bos_id=bos_id)
            if i >= args.warmup:
                times[mask].append(time.perf_counter() - start)
    ms = {mask: float(np.median(t)) * 1e3 for mask, t in times.items()}
    return {"causal_step_ms": ms["causal"], "documents_step_ms": ms["documents"],
            "ratio": ms["documents"] / ms["causal"]}


def memory_kb(field):
    """VmRSS (resident now) or VmHWM (its peak) of this process. Not getrusage's ru_maxrss: a
    child started from this big process would report the parent's size at the fork."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_memory_child(framework, model, threads):
    """Run in a child: a few steps of one framework; print the peak growth of resident memory."""
    config, batch = MODELS[model]
    step = STEPPERS[framework](config, Transformer.initialize(config, seed=0).params, threads)
    data = batches(config, batch, 3)
    before = memory_kb("VmRSS")
    for tokens, targets in data:
        step(tokens, targets)
    peak = memory_kb("VmHWM")
    print(json.dumps({"peak_mb": (peak - before) / 1024}))


def peak_memory(framework, model, threads):
    out = subprocess.run([sys.executable, __file__, "--memory-child", framework, model,
                          "--threads", str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def machine(torch) -> dict:
    """What the figures depend on: the CPU, and the BLAS under each framework."""
    cpu = platform.processor()
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), cpu)
    blas = torch.__config__.show()
    return {"cpu": cpu, "cpus": os.cpu_count(), "numpy": np.__version__,
            "numpy_blas": threads.openblas_core() or "not OpenBLAS", "torch": torch.__version__,
            "torch_blas": "MKL" if "BLAS_INFO=mkl" in blas else "see torch.__config__.show()"}


def run_model(name, args) -> dict:
    config, batch = MODELS[name]
    params = Transformer.initialize(config, seed=0).params
    steppers = {fw: make(config, params, args.threads) for fw, make in STEPPERS.items()}
    data = batches(config, batch, args.warmup + args.steps)
    times = {fw: [] for fw in steppers}
    losses = {fw: [] for fw in steppers}
    for i, (tokens, targets) in enumerate(data):
        for fw, step in steppers.items():
            start = time.perf_counter()
            losses[fw].append(step(tokens, targets))
            if i >= args.warmup:
                times[fw].append(time.perf_counter() - start)
    result = {"config": config.to_dict(), "n_params": config.n_params(), "batch": batch,
              "seq_len": SEQ}
    for fw in steppers:
        median = float(np.median(times[fw]))
        result[fw] = {"median_step_ms": median * 1e3, "tokens_per_s": batch * SEQ / median,
                      "peak_mb": peak_memory(fw, name, args.threads),
                      "final_loss": losses[fw][-1]}
    result["speed_ratio"] = result["tinylm"]["tokens_per_s"] / result["pytorch"]["tokens_per_s"]
    # Same weights, same data, same optimizer: the two runs must also agree on what they learn.
    result["max_loss_difference"] = float(np.max(np.abs(np.subtract(losses["tinylm"],
                                                                    losses["pytorch"]))))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "MODEL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return peak_memory_child(*args.memory_child, args.threads)
    try:
        import torch
    except ImportError:
        sys.exit("bench_train needs PyTorch for the side-by-side run: pip install torch==2.13.0")

    result = {**machine(torch), "threads": args.threads, "steps": args.steps,
              "load_before": os.getloadavg()[0]}
    result["models"] = {name: run_model(name, args) for name in args.models}
    result["separate_documents"] = separate_documents_cost(args)
    result["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['cpu']} ({result['cpus']} CPUs), load average {result['load_before']:.1f} "
          f"before, {result['load_after']:.1f} after")
    print(f"NumPy {result['numpy']} with OpenBLAS {result['numpy_blas']}; PyTorch "
          f"{result['torch']} with {result['torch_blas']}; {args.threads} threads each; "
          f"median of {args.steps} steps")
    print(f"{'model':22} {'':8} {'ms/step':>8} {'tokens/s':>9} {'peak MB':>8} {'last loss':>10}")
    for name, r in result["models"].items():
        label = f"{name} ({r['n_params']:,}, {r['batch']}x{r['seq_len']})"
        for fw in STEPPERS:
            f = r[fw]
            print(f"{label:22} {fw:8} {f['median_step_ms']:8.2f} {f['tokens_per_s']:9.0f} "
                  f"{f['peak_mb']:8.1f} {f['final_loss']:10.4f}")
            label = ""
        print(f"{'':22} tinylm / pytorch: {r['speed_ratio']:.2f}x (max loss difference "
              f"{r['max_loss_difference']:.1e})")
    cost = result["separate_documents"]
    print(f"benchmark model, tinylm, forward + backward: {cost['causal_step_ms']:.2f} ms a step "
          f"with the causal mask, {cost['documents_step_ms']:.2f} attending within documents "
          f"({cost['ratio']:.2f}x)")


if __name__ == "__main__":
    main()
