"""Speed and memory of the C runtime on this machine, on stories260K: float32 and int8 .bin
(and int4), greedy, from the same prompt for the same number of positions; with --llama2c,
also llama2.c's `run` on the original stories260K.bin, side by side.

llama2.c is not part of this repository: build it yourself by its own instructions
(`make run` in a checkout of github.com/karpathy/llama2.c) and pass the binary's path.

    python benchmarks/bench_host.py [--llama2c PATH/run] [--steps 256] [--repeat 5] [--json]

Each program is run --repeat times; the table gives the best tok/s (the least disturbed run
on a shared machine) as the program itself reports it (llama2.c: positions after the first /
wall time; tinylm: all positions / CPU time), and the peak resident memory of its process
(GNU time's %M).
Target: int8 >= 1.5x llama2.c, and an arena under 100 KB at 256 tokens of context.
"""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import click

from tinylm.export.binformat import read_bin, write_bin
from tinylm.export.llama2c import import_llama2c
from tinylm.export.quantize import DEFAULT_GROUP, calibration_sequences, quantize_model
from tinylm.runtime.build import build
from tinylm.runtime.c_engine import arena_bytes
from tinylm.training.checkpoint import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL_BIN = SHARED / "models" / "stories260K.bin"
TOKENIZER_BIN = SHARED / "models" / "tok512.bin"
PROMPT = "Once upon a time"
TIME = "/usr/bin/time"   # GNU time (Debian package "time")


def measure(command: list[str], pattern: str, repeat: int) -> dict:
    """Best and median tok/s over `repeat` runs, and the peak resident memory of the program
    itself, from GNU time (a process started from Python would count Python's memory too)."""
    runs = []
    for _ in range(repeat):
        result = subprocess.run([TIME, "-f", "peak_rss_kb=%M", *command], capture_output=True,
                                text=True, errors="replace")
        text = result.stdout + result.stderr
        match, rss = re.search(pattern, text), re.search(r"peak_rss_kb=(\d+)", text)
        if result.returncode or not match or not rss:
            raise SystemExit(f"{command[0]} failed or gave no speed:\n{text[-2000:]}")
        runs.append((float(match.group(1)), int(rss.group(1)) / 1024))
    rates = sorted(rate for rate, _ in runs)
    return {"tok_s": rates[-1], "tok_s_median": rates[len(rates) // 2],
            "peak_rss_mb": max(rss for _, rss in runs)}


def run_all(work: Path, llama2c_run, steps: int, repeat: int) -> list[dict]:
    import_llama2c(MODEL_BIN, TOKENIZER_BIN, work / "stories260K")
    model, tokenizer = load_model(work / "stories260K")
    prompt_ids = tokenizer.encode(PROMPT, bos=True)
    program = str(build("program"))
    results = []
    for bits in (32, 8, 4):
        group = DEFAULT_GROUP.get(bits, 0)
        calibration = calibration_sequences(model, tokenizer) if bits == 4 else None
        path = work / f"stories260K-{bits}.bin"
        write_bin(path, model.config, tokenizer, quantize_model(model, bits, group, calibration),
                  bits, group)
        command = [program, str(path), "-p", PROMPT, "-n", str(steps - len(prompt_ids)),
                   "-t", "0", "-c", str(model.config.max_seq_len)]
        row = measure(command, r"s: ([0-9.]+) tok/s", repeat)
        row.update(runtime="tinylm C", weights={32: "float32", 8: "int8", 4: "int4"}[bits],
                   file_bytes=path.stat().st_size,
                   arena_bytes_256=arena_bytes(read_bin(path).config, 256))
        results.append(row)
    if llama2c_run:
        command = [llama2c_run, str(MODEL_BIN), "-z", str(TOKENIZER_BIN), "-t", "0",
                   "-n", str(steps), "-i", PROMPT]
        row = measure(command, r"achieved tok/s: ([0-9.]+)", repeat)
        row.update(runtime="llama2.c run", weights="float32", file_bytes=MODEL_BIN.stat().st_size,
                   arena_bytes_256=None)
        results.append(row)
        int8 = next(r for r in results if r["weights"] == "int8")
        int8["speedup_vs_llama2c"] = int8["tok_s"] / row["tok_s"]
    return results


@click.command()
@click.option("--llama2c", "llama2c_run", type=click.Path(exists=True, dir_okay=False),
              help="llama2.c's `run` binary, built outside this repository.")
@click.option("--steps", default=256, show_default=True,
              help="Positions in all: the prompt's tokens, then generated ones.")
@click.option("--repeat", default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(llama2c_run, steps, repeat, as_json):
    if not MODEL_BIN.exists():
        raise SystemExit(f"{MODEL_BIN} is missing")
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} is missing: apt-get install time")
    with tempfile.TemporaryDirectory(prefix="bench-host-") as work:
        results = run_all(Path(work), llama2c_run, steps, repeat)
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo(f"stories260K, prompt {PROMPT!r}, {steps} positions, greedy, best of {repeat}")
    click.echo(f"{'runtime':14} {'weights':8} {'tok/s':>8} {'median':>8} {'peak RSS MB':>12} "
               f"{'file bytes':>11} {'arena@256':>10}")
    for r in results:
        arena = "" if r["arena_bytes_256"] is None else f"{r['arena_bytes_256']:,}"
        click.echo(f"{r['runtime']:14} {r['weights']:8} {r['tok_s']:8.0f} {r['tok_s_median']:8.0f} "
                   f"{r['peak_rss_mb']:12.1f} {r['file_bytes']:11,} {arena:>10}")
    if llama2c_run:
        click.echo(f"int8 / llama2.c: {results[1]['speedup_vs_llama2c']:.2f}x")


if __name__ == "__main__":
    main()
