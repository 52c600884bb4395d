"""Speed and memory of the C runtime on this machine, on stories260K: float32 and int8 .bin
(and int4), greedy, from the same prompt for the same number of positions; with --llama2c,
also llama2.c's `run` on the original stories260K.bin, side by side.

llama2.c is not part of this repository: build it yourself by its own instructions
(`make run` in a checkout of github.com/karpathy/llama2.c: `gcc -O3`) and pass the binary's
path, and with --llama2c-flags the flags you built it with if they were others.

    python benchmarks/bench_host.py [--llama2c PATH/run] [--steps 256] [--repeat 11] [--json]

Both programs are timed the same way, by neither's own report: the CPU time (user + system)
of the whole process, from the kernel (wait4), for the same number of positions, each run of
one program followed by one of each other (so that the load of a shared machine falls on all
alike); tok/s is positions over that time, best and median of --repeat runs. The whole
process includes loading the model (tinylm checks its CRC; llama2.c reads its tokenizer): both
pay their start. Each program's own figure is not used: llama2.c counts the positions after
the first over wall time, tinylm all positions over CPU time. The peak resident memory is
GNU time's %M. Target: int8 >= 1.5x llama2.c, and an arena under 100 KB at 256 tokens of
context.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

import click

from tinylm.export.binformat import read_bin, write_bin
from tinylm.export.llama2c import import_llama2c
from tinylm.export.quantize import DEFAULT_GROUP, calibration_sequences, quantize_model
from tinylm.runtime.build import FLAGS, build, compiler
from tinylm.runtime.c_engine import arena_bytes
from tinylm.training.checkpoint import load_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL_BIN = SHARED / "models" / "stories260K.bin"
TOKENIZER_BIN = SHARED / "models" / "tok512.bin"
PROMPT = "Once upon a time"
TIME = "/usr/bin/time"   # GNU time (Debian package "time")


def run_once(command: list[str]) -> tuple[float, float, str]:
    """CPU seconds (user + system) of the whole process, its peak resident MB, and its
    output. GNU time runs it so that the peak is the program's own (a process forked from
    Python would count Python's memory too); its own CPU time, a fraction of a millisecond,
    is in the figure of every program alike."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([TIME, "-f", "peak_rss_kb=%M", *command], stdout=out,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    rss = re.search(r"peak_rss_kb=(\d+)", text)
    if process.returncode or not rss:
        raise SystemExit(f"{command[0]} failed:\n{text[-2000:]}")
    return usage.ru_utime + usage.ru_stime, int(rss.group(1)) / 1024, text


def measure(commands: dict[str, list[str]], positions: int, repeat: int) -> dict[str, dict]:
    """Every command `repeat` times, in turns; tok/s as positions over CPU seconds."""
    runs = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            runs[name].append(run_once(command))
    results = {}
    for name, done in runs.items():
        seconds = sorted(s for s, _, _ in done)
        results[name] = {"tok_s": positions / seconds[0],
                         "tok_s_median": positions / seconds[len(seconds) // 2],
                         "peak_rss_mb": max(rss for _, rss, _ in done), "output": done[0][2]}
    return results


def run_all(work: Path, llama2c_run, steps: int, repeat: int) -> list[dict]:
    import_llama2c(MODEL_BIN, TOKENIZER_BIN, work / "stories260K")
    model, tokenizer = load_model(work / "stories260K")
    prompt_ids = tokenizer.encode(PROMPT, bos=True)
    program = str(build("program"))
    commands, rows = {}, {}
    for bits in (32, 8, 4):
        group = DEFAULT_GROUP.get(bits, 0)
        calibration = calibration_sequences(model, tokenizer) if bits == 4 else None
        path = work / f"stories260K-{bits}.bin"
        write_bin(path, model.config, tokenizer, quantize_model(model, bits, group, calibration),
                  bits, group)
        weights = {32: "float32", 8: "int8", 4: "int4"}[bits]
        # the prompt's positions, then one per generated token but the last (sampled, not fed):
        # `steps` positions through the model, as llama2.c's -n counts them
        commands[weights] = [program, str(path), "-p", PROMPT, "-n",
                             str(steps - len(prompt_ids) + 1), "-t", "0", "-c",
                             str(model.config.max_seq_len)]
        rows[weights] = dict(runtime="tinylm C", weights=weights, file_bytes=path.stat().st_size,
                             arena_bytes_256=arena_bytes(read_bin(path).config, 256))
    if llama2c_run:
        commands["llama2.c"] = [llama2c_run, str(MODEL_BIN), "-z", str(TOKENIZER_BIN), "-t",
                                "0", "-n", str(steps), "-i", PROMPT]
        rows["llama2.c"] = dict(runtime="llama2.c run", weights="float32",
                                file_bytes=MODEL_BIN.stat().st_size, arena_bytes_256=None)
    measured = measure(commands, steps, repeat)
    for weights in ("float32", "int8", "int4"):   # none may stop early (an <eos>)
        count = re.search(r"(\d+) tokens \(\+(\d+) prompt\)", measured[weights].pop("output"))
        if not count or int(count.group(1)) != steps - len(prompt_ids) + 1:
            raise SystemExit(f"tinylm {weights} stopped before {steps} positions")
    if llama2c_run:
        measured["llama2.c"].pop("output")
    results = [{**rows[name], **measured[name]} for name in commands]
    if llama2c_run:
        int8 = next(r for r in results if r["weights"] == "int8")
        int8["speedup_vs_llama2c"] = int8["tok_s"] / results[-1]["tok_s"]
        int8["speedup_vs_llama2c_median"] = int8["tok_s_median"] / results[-1]["tok_s_median"]
    return results


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f
                     if line.startswith("model name")), platform.processor())


@click.command()
@click.option("--llama2c", "llama2c_run", type=click.Path(exists=True, dir_okay=False),
              help="llama2.c's `run` binary, built outside this repository.")
@click.option("--llama2c-flags", default="gcc -O3", show_default=True,
              help="How that binary was built (printed beside tinylm's flags).")
@click.option("--steps", default=256, show_default=True,
              help="Positions in all: the prompt's tokens, then generated ones.")
@click.option("--repeat", default=11, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(llama2c_run, llama2c_flags, steps, repeat, as_json):
    if not MODEL_BIN.exists():
        raise SystemExit(f"{MODEL_BIN} is missing")
    if not Path(TIME).exists():
        raise SystemExit(f"{TIME} is missing: apt-get install time")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-host-") as work:
        results = run_all(Path(work), llama2c_run, steps, repeat)
    header = {"cpu": cpu_name(), "load_before": load_before, "load_after": os.getloadavg()[0],
              "tinylm_flags": f"{compiler()} {' '.join(FLAGS)}",
              "llama2c_flags": llama2c_flags if llama2c_run else None, "steps": steps,
              "repeat": repeat, "clock": "whole-process CPU time (user + system)"}
    if as_json:
        click.echo(json.dumps({**header, "results": results}))
        return
    click.echo(f"{header['cpu']}, load average {load_before:.1f} before, "
               f"{header['load_after']:.1f} after")
    click.echo(f"stories260K, prompt {PROMPT!r}, {steps} positions, greedy; best and median of "
               f"{repeat} runs taken in turns; tok/s = positions / whole-process CPU time")
    click.echo(f"tinylm built with: {header['tinylm_flags']}" +
               (f"; llama2.c with: {llama2c_flags}" if llama2c_run else ""))
    click.echo(f"{'runtime':14} {'weights':8} {'tok/s':>8} {'median':>8} {'peak RSS MB':>12} "
               f"{'file bytes':>11} {'arena@256':>10}")
    for r in results:
        arena = "" if r["arena_bytes_256"] is None else f"{r['arena_bytes_256']:,}"
        click.echo(f"{r['runtime']:14} {r['weights']:8} {r['tok_s']:8.0f} {r['tok_s_median']:8.0f} "
                   f"{r['peak_rss_mb']:12.1f} {r['file_bytes']:11,} {arena:>10}")
    if llama2c_run:
        int8 = results[1]
        click.echo(f"int8 / llama2.c: {int8['speedup_vs_llama2c']:.2f}x best to best, "
                   f"{int8['speedup_vs_llama2c_median']:.2f}x median to median")


if __name__ == "__main__":
    main()
